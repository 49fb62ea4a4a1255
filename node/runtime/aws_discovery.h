// Copyright e2d authors.
//
// Peer discovery through AWS's APIs (see discovery.h for the interface):
//
//   ec2-tags:KEY=VALUE[,KEY=VALUE...]  running EC2 instances carrying every tag given
//   aws-autoscaling-group:NAME          the InService instances of that autoscaling group
//
// Each instance's private IPv4 address, at the gossip port. Requests are EC2's and Auto
// Scaling's query APIs (GET, AWS Signature Version 4), with credentials from
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, the region from AWS_REGION or
// AWS_DEFAULT_REGION (default us-east-1), and endpoints from AWS_ENDPOINT_URL_EC2 /
// AWS_ENDPOINT_URL_AUTO_SCALING / AWS_ENDPOINT_URL (tests point them at a fake on loopback).
// Instance-profile credentials (the instance metadata service) are not read.
//
// Bounded: each request by DiscoveryOptions::http_timeout, each reply by
// kEtcdDiscoveryReplyMax bytes and 64 levels of XML, at most 2 pages of instances.

#ifndef E2D_NODE_RUNTIME_AWS_DISCOVERY_H_
#define E2D_NODE_RUNTIME_AWS_DISCOVERY_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node/runtime/discovery.h"

namespace e2d::node {

// For NewPeerDiscovery: `provider` is ec2-tags or aws-autoscaling-group. InvalidArgument, as
// NewPeerDiscovery's, for a malformed argument or missing credentials.
absl::StatusOr<std::unique_ptr<PeerDiscovery>> NewAwsDiscovery(std::string_view spec,
                                                               std::string_view provider,
                                                               std::string_view arg,
                                                               const DiscoveryOptions& options);

// --- The replies, exposed for tests ---

// Walks an XML document: `on_text(path, text)` for each element's text (entities decoded),
// `on_close(path)` as each element ends; `path` holds the open elements' local names, the
// document element first. Comments, processing instructions and attributes are skipped.
absl::Status WalkXml(
    std::string_view xml,
    const std::function<void(const std::vector<std::string>&, const std::string&)>& on_text,
    const std::function<void(const std::vector<std::string>&)>& on_close);

// DescribeInstances: the private IPv4 address of each instance whose state is running,
// appended to `ips`; the nextToken, or "".
absl::StatusOr<std::string> ParseEc2Instances(std::string_view xml, std::vector<std::string>* ips);

// DescribeAutoScalingGroups for one group: the ids of its InService instances. NotFound if the
// reply has no group.
absl::StatusOr<std::vector<std::string>> ParseAutoScalingInstances(std::string_view xml);

// An error reply of either API: "Code: Message", or the start of the body.
std::string AwsErrorOf(std::string_view xml);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_AWS_DISCOVERY_H_
