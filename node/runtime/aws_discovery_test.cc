// Copyright e2d authors.

#include "node/runtime/aws_discovery.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

using ::testing::HasSubstr;

// An instance in DescribeInstances' shape, with the nested sets that also hold
// privateIpAddress elements (which are not the instance's).
std::string Instance(const std::string& id, const std::string& state, const std::string& ip) {
  return absl::StrCat(
      "<item><instanceId>", id, "</instanceId><imageId>ami-1</imageId>",
      "<instanceState><code>16</code><name>", state, "</name></instanceState>",
      "<privateDnsName>ip.ec2.internal</privateDnsName>",
      ip.empty() ? "" : absl::StrCat("<privateIpAddress>", ip, "</privateIpAddress>"),
      "<groupSet><item><groupId>sg-1</groupId></item></groupSet>",
      "<networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId>",
      "<privateIpAddress>10.99.0.1</privateIpAddress><privateIpAddressesSet><item>",
      "<privateIpAddress>10.99.0.2</privateIpAddress><primary>false</primary></item>",
      "</privateIpAddressesSet></item></networkInterfaceSet>",
      "<tagSet><item><key>cluster</key><value>prod &amp; co</value></item></tagSet></item>");
}

std::string Reservations(const std::string& instances, const std::string& next = "") {
  return absl::StrCat(
      R"(<?xml version="1.0" encoding="UTF-8"?>)", "\n",
      R"(<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">)",
      "<requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId>",
      "<!-- a comment --><instancesSet>", instances, "</instancesSet></item></reservationSet>",
      next.empty() ? "" : absl::StrCat("<nextToken>", next, "</nextToken>"),
      "</DescribeInstancesResponse>");
}

TEST(AwsDiscoveryTest, RunningInstancesGiveTheirOwnPrivateAddress) {
  std::vector<std::string> ips;
  absl::StatusOr<std::string> next = ParseEc2Instances(
      Reservations(Instance("i-1", "running", "10.0.0.1") + Instance("i-2", "stopped", "10.0.0.2") +
                       Instance("i-3", "running", "") + Instance("i-4", "running", "10.0.0.4"),
                   "tok+/="),
      &ips);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, "tok+/=");
  EXPECT_EQ(ips, (std::vector<std::string>{"10.0.0.1", "10.0.0.4"}));
  ips.clear();
  next = ParseEc2Instances(Reservations(""), &ips);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, "");
  EXPECT_TRUE(ips.empty());
}

TEST(AwsDiscoveryTest, BadInstanceRepliesAreRefused) {
  std::vector<std::string> ips;
  for (const std::string& bad : {
           std::string("<Other/>"),
           Reservations(Instance("i-1", "running", "not-an-ip")),
           std::string("<DescribeInstancesResponse><reservationSet>"),
           std::string("<DescribeInstancesResponse></reservationSet>"),
           std::string("<DescribeInstancesResponse><a/></DescribeInstancesResponse>trailing"),
           std::string(100, '<'),
       }) {
    EXPECT_FALSE(ParseEc2Instances(bad, &ips).ok()) << bad;
  }
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "<a>";
  EXPECT_THAT(std::string(ParseEc2Instances(deep, &ips).status().message()), HasSubstr("deeper"));
}

std::string Groups(const std::string& members) {
  return absl::StrCat(
      R"(<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">)",
      "<DescribeAutoScalingGroupsResult><AutoScalingGroups>", members,
      "</AutoScalingGroups></DescribeAutoScalingGroupsResult>",
      "<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>",
      "</DescribeAutoScalingGroupsResponse>");
}

std::string AsgInstance(const std::string& id, const std::string& lifecycle) {
  return absl::StrCat("<member><InstanceId>", id, "</InstanceId><LifecycleState>", lifecycle,
                      "</LifecycleState><HealthStatus>Healthy</HealthStatus></member>");
}

TEST(AwsDiscoveryTest, AnAutoscalingGroupGivesItsInServiceInstances) {
  absl::StatusOr<std::vector<std::string>> ids = ParseAutoScalingInstances(
      Groups(absl::StrCat("<member><AutoScalingGroupName>e2d</AutoScalingGroupName><Instances>",
                          AsgInstance("i-1", "InService"), AsgInstance("i-2", "Pending"),
                          AsgInstance("i-3", "InService"), "</Instances><Tags/></member>")));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<std::string>{"i-1", "i-3"}));
  EXPECT_EQ(ParseAutoScalingInstances(Groups("")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ParseAutoScalingInstances(
                   Groups(absl::StrCat("<member><Instances>", AsgInstance("x/y", "InService"),
                                       "</Instances></member>")))
                   .ok());
}

TEST(AwsDiscoveryTest, ErrorRepliesOfBothApisAreNamed) {
  EXPECT_EQ(AwsErrorOf("<?xml version=\"1.0\"?><Response><Errors><Error><Code>AuthFailure</Code>"
                       "<Message>AWS was not able to validate the provided access credentials"
                       "</Message></Error></Errors><RequestID>x</RequestID></Response>"),
            "AuthFailure: AWS was not able to validate the provided access credentials");
  EXPECT_EQ(AwsErrorOf("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                       "<Message>Rate exceeded</Message></Error></ErrorResponse>"),
            "Throttling: Rate exceeded");
  EXPECT_EQ(AwsErrorOf("Service Unavailable"), "Service Unavailable");
}

TEST(AwsDiscoveryTest, SpecsAndCredentialsAreCheckedUpFront) {
  std::map<std::string, std::string> environment = {{"AWS_ACCESS_KEY_ID", "AKID"},
                                                    {"AWS_SECRET_ACCESS_KEY", "secret"}};
  DiscoveryOptions o;
  o.getenv = [&environment](const char* name) -> const char* {
    auto it = environment.find(name);
    return it == environment.end() ? nullptr : it->second.c_str();
  };
  EXPECT_TRUE(NewPeerDiscovery("ec2-tags:cluster=prod,role=e2d", o).ok());
  EXPECT_TRUE(NewPeerDiscovery("ec2-tags:cluster=", o).ok());
  EXPECT_TRUE(NewPeerDiscovery("aws-autoscaling-group:e2d-asg", o).ok());
  for (const char* spec : {"ec2-tags:cluster", "ec2-tags:=x", "ec2-tags:a=b,,c=d"}) {
    absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery(spec, o);
    ASSERT_FALSE(d.ok()) << spec;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("is not KEY=VALUE")) << spec;
  }
  environment["AWS_ENDPOINT_URL"] = "ftp://x";
  EXPECT_THAT(std::string(NewPeerDiscovery("ec2-tags:a=b", o).status().message()),
              HasSubstr("AWS_ENDPOINT_URL \"ftp://x\""));
  environment["AWS_ENDPOINT_URL_EC2"] = "http://127.0.0.1:1";
  EXPECT_TRUE(NewPeerDiscovery("ec2-tags:a=b", o).ok());
  EXPECT_THAT(std::string(NewPeerDiscovery("aws-autoscaling-group:g", o).status().message()),
              HasSubstr("AWS_ENDPOINT_URL \"ftp://x\""));
  environment.erase("AWS_SECRET_ACCESS_KEY");
  EXPECT_THAT(std::string(NewPeerDiscovery("ec2-tags:a=b", o).status().message()),
              HasSubstr("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY"));
}

// Nothing listens: the lookup fails within its bound, naming the action and the endpoint.
TEST(AwsDiscoveryTest, AnUnreachableEndpointIsNamed) {
  std::map<std::string, std::string> environment = {{"AWS_ACCESS_KEY_ID", "AKID"},
                                                    {"AWS_SECRET_ACCESS_KEY", "secret"},
                                                    {"AWS_ENDPOINT_URL", "http://127.0.0.1:1"}};
  DiscoveryOptions o;
  o.http_timeout = absl::Seconds(2);
  o.getenv = [&environment](const char* name) -> const char* {
    auto it = environment.find(name);
    return it == environment.end() ? nullptr : it->second.c_str();
  };
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery("aws-autoscaling-group:g", o);
  ASSERT_TRUE(d.ok()) << d.status();
  absl::Status s = (*d)->Find().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("DescribeAutoScalingGroups at 127.0.0.1:1"));
}

}  // namespace
}  // namespace e2d::node
