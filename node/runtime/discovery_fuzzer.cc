// Copyright e2d authors.
//
// Fuzz target for what peer discovery reads from outside (node/runtime/discovery.h,
// aws_discovery.h): peer files, etcd v2 replies, DigitalOcean's droplet lists, EC2's and Auto
// Scaling's XML, and the instance metadata service's credentials (aws_credentials.h). The first byte picks the parser, the rest is its input. Every parser must
// refuse bad bytes with an error (never crash), and what it accepts must hold its bounds:
// at most kDiscoveredMax addresses, each HOST:PORT with a port from 1.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "node/runtime/aws_credentials.h"
#include "node/runtime/aws_discovery.h"
#include "node/runtime/discovery.h"
#include "tools/fuzz/fuzz.h"

namespace e2d::node {
namespace {

void CheckAddresses(const std::vector<std::string>& found) {
  E2D_CHECK(found.size() <= kDiscoveredMax, "%zu addresses", found.size());
  for (const std::string& a : found) {
    const size_t colon = a.rfind(':');
    E2D_CHECK(colon != std::string::npos && colon > 0, "no port in \"%s\"", a.c_str());
    uint32_t port = 0;
    E2D_CHECK(absl::SimpleAtoi(a.substr(colon + 1), &port) && port >= 1 && port <= 65535,
              "bad port in \"%s\"", a.c_str());
  }
}

}  // namespace
}  // namespace e2d::node

namespace e2d::fuzz {

std::vector<std::string> Seeds() {
  return {
      std::string("\x00", 1) + "# peers\n10.0.0.1\n10.0.0.2:7001\n[::1]:7980\nname.example\n",
      "\x01{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/m1\","
      "\"value\":\"m1=10.0.0.1:7980\",\"modifiedIndex\":5,\"createdIndex\":5}]}}",
      "\x02{\"action\":\"get\",\"node\":{\"key\":\"/d/_config/size\",\"value\":\"3\"}}",
      "\x03{\"droplets\":[{\"id\":1,\"name\":\"d1\",\"status\":\"active\",\"networks\":{\"v4\":"
      "[{\"ip_address\":\"10.0.0.1\",\"type\":\"private\"}]}}],\"links\":{\"pages\":{\"next\":"
      "\"x\"}},\"meta\":{\"total\":1}}",
      "\x04<?xml version=\"1.0\"?><DescribeInstancesResponse><reservationSet><item><instancesSet>"
      "<item><instanceState><name>running</name></instanceState><privateIpAddress>10.0.0.1"
      "</privateIpAddress></item></instancesSet></item></reservationSet><nextToken>t</nextToken>"
      "</DescribeInstancesResponse>",
      "\x05<DescribeAutoScalingGroupsResponse><DescribeAutoScalingGroupsResult><AutoScalingGroups>"
      "<member><Instances><member><InstanceId>i-1</InstanceId><LifecycleState>InService"
      "</LifecycleState></member></Instances></member></AutoScalingGroups>"
      "</DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>",
      "\x06<Response><Errors><Error><Code>AuthFailure</Code><Message>m &amp; n</Message></Error>"
      "</Errors></Response>",
      "\x07{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\","
      "\"Expiration\":\"2026-12-05T12:00:00Z\"}",
  };
}

}  // namespace e2d::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace e2d::node;  // NOLINT
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: {
      absl::StatusOr<std::vector<std::string>> found = ParsePeerList(input, 7980, "fuzz");
      if (found.ok()) CheckAddresses(*found);
      break;
    }
    case 1: {
      absl::StatusOr<std::vector<std::string>> found = ParseEtcdDiscoveryListing(input, 7980);
      if (found.ok()) CheckAddresses(*found);
      break;
    }
    case 2: {
      absl::StatusOr<int> n = ParseEtcdDiscoverySize(input);
      E2D_CHECK(!n.ok() || *n >= 1, "size %d", *n);
      break;
    }
    case 3: {
      std::vector<std::string> found;
      if (ParseDigitalOceanDroplets(input, 7980, &found).ok()) CheckAddresses(found);
      break;
    }
    case 4: {
      std::vector<std::string> ips;
      absl::StatusOr<std::string> next = ParseEc2Instances(input, &ips);
      for (const std::string& ip : ips) CheckAddresses({absl::StrCat(ip, ":1")});
      break;
    }
    case 5: {
      absl::StatusOr<std::vector<std::string>> ids = ParseAutoScalingInstances(input);
      break;
    }
    case 6: {
      const std::string s = AwsErrorOf(input);
      E2D_CHECK(s.size() <= input.size() + 2, "an error longer than its reply");
      break;
    }
    case 7: {
      absl::StatusOr<ImdsCredentials> c = ParseImdsCredentials(input);
      E2D_CHECK(!c.ok() || (!c->credentials.access_key.empty() &&
                            !c->credentials.secret_key.empty()),
                "accepted credentials without keys");
      break;
    }
  }
  return 0;
}
