// Copyright e2d authors.
//
// What the scenarios that run the whole node (node::Node) on simulated machines share: the
// machines' disks, finding the leader, and a final linearizable read through it.

#ifndef E2D_SCENARIOS_NODE_HARNESS_H_
#define E2D_SCENARIOS_NODE_HARNESS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "kv/mem_engine.h"
#include "node/node.h"
#include "sim/cluster.h"

namespace e2d::scenarios {

// Machine n's member as the whole-node scenarios name it ("mN", peers at 10.0.0.N:2380,
// clients at https://10.0.0.N:2379), and its gossip address (10.0.0.N:7980).
node::Member MemberOf(sim::NodeId n);
env::Address GossipAddress(sim::NodeId n);

// Machine n's gossip as `e2d run --bootstrap-addrs` runs it: its own env on the machine's
// clock, network (at GossipAddress(n)) and disk, every message sealed with `key`, invariants
// checked after every step, joined to machines 1..machines.
struct MachineGossip {
  std::unique_ptr<sim::SimEnv> env;
  std::unique_ptr<gossip::GossipNode> node;  // destroyed before `env`
};
MachineGossip StartMachineGossip(sim::Cluster& cluster, env::Env& env, sim::NodeId n,
                                 const gossip::Key& key, int machines);

// One in-memory KV engine per machine: its disk, kept across crashes and replaced by an empty
// one when the machine's disk is lost (`losses`, the cluster's count for it, moved on).
class MachineDisks {
 public:
  kv::KvEngine* Engine(sim::NodeId n, uint64_t losses);

 private:
  absl::btree_map<sim::NodeId, std::pair<uint64_t, std::unique_ptr<kv::MemEngine>>> engines_;
};

// Machine n's open node, or null (down, or not opened).
using NodeAt = std::function<node::Node*(sim::NodeId)>;

// The running, unpaused machine whose node believes it leads, or sim::kNoNode.
sim::NodeId FindLeader(const sim::Cluster& cluster, const NodeAt& node_at);

// A linearizable Range through whoever leads (`leader`), tried again every 200 ms while it is
// refused (a leader that has not committed in its term yet) or there is no leader, until
// `timeout_ns` of simulated time passed. nullopt if nobody ever answered.
std::optional<absl::StatusOr<etcdserverpb::RangeResponse>> ReadThroughLeader(
    sim::Simulator& sim, const std::function<sim::NodeId()>& leader, const NodeAt& node_at,
    const etcdserverpb::RangeRequest& range, int64_t timeout_ns);

// Whether the cluster of whoever leads has exactly `size` voters and no learner, each a
// running node of that cluster that applied the same membership.
bool ClusterConverged(const sim::Cluster& cluster, const NodeAt& node_at, int size);

// One line per machine for a failure message: down, what it waits for (`waiting(n)`, asked of
// machines with a process but no node), or its node's id, cluster, leader and members.
std::string DescribeMachines(const sim::Cluster& cluster, const NodeAt& node_at,
                             const std::function<std::string(sim::NodeId)>& waiting);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_NODE_HARNESS_H_
