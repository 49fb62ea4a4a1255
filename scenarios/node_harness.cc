// Copyright e2d authors.

#include "scenarios/node_harness.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace e2d::scenarios {

node::Member MemberOf(sim::NodeId n) {
  node::Member m;
  m.name = absl::StrCat("m", n);
  m.peer_address = absl::StrCat("10.0.0.", n, ":2380");
  m.client_url = absl::StrCat("https://10.0.0.", n, ":2379");
  return m;
}

env::Address GossipAddress(sim::NodeId n) { return absl::StrCat("10.0.0.", n, ":7980"); }

MachineGossip StartMachineGossip(sim::Cluster& cluster, env::Env& env, sim::NodeId n,
                                 const gossip::Key& key, int machines) {
  MachineGossip g;
  g.env = std::make_unique<sim::SimEnv>(
      cluster.clock(n), cluster.network(n, GossipAddress(n)), env.fs(), env.random().Fork("gossip"),
      [&cluster, n](std::string_view line) { cluster.Log(n, line); });
  gossip::Config gc;
  gc.name = MemberOf(n).name;
  gc.addr = GossipAddress(n);
  gc.session = static_cast<uint64_t>(env.clock().Now().ns);
  g.node = std::make_unique<gossip::GossipNode>(*g.env, gc, gossip::Keyring(key));
  g.node->set_check_invariants(true);
  std::vector<env::Address> seeds;
  for (int i = 1; i <= machines; ++i) seeds.push_back(GossipAddress(i));
  g.node->Join(seeds);
  return g;
}

kv::KvEngine* MachineDisks::Engine(sim::NodeId n, uint64_t losses) {
  auto& slot = engines_[n];
  if (slot.second == nullptr || slot.first != losses) {
    slot = {losses, std::make_unique<kv::MemEngine>()};
  }
  return slot.second.get();
}

sim::NodeId FindLeader(const sim::Cluster& cluster, const NodeAt& node_at) {
  for (sim::NodeId n : cluster.nodes()) {
    node::Node* node = node_at(n);
    if (node != nullptr && !cluster.paused(n) && node->Status().leader == node->id()) return n;
  }
  return sim::kNoNode;
}

std::optional<absl::StatusOr<etcdserverpb::RangeResponse>> ReadThroughLeader(
    sim::Simulator& sim, const std::function<sim::NodeId()>& leader, const NodeAt& node_at,
    const etcdserverpb::RangeRequest& range, int64_t timeout_ns) {
  constexpr int64_t kRetryNs = 200'000'000;
  using Answer = std::optional<absl::StatusOr<etcdserverpb::RangeResponse>>;
  Answer got;
  const int64_t deadline = sim.now_ns() + timeout_ns;
  while (sim.now_ns() < deadline) {
    const sim::NodeId l = leader();
    if (l != sim::kNoNode) {
      // Each attempt has a slot of its own: an answer that comes after we gave up on it (or
      // after this returns) lands there, not in a later attempt or a dead frame.
      auto slot = std::make_shared<Answer>();
      node_at(l)->kv().Range(
          range, [slot](absl::StatusOr<etcdserverpb::RangeResponse> r) { *slot = std::move(r); });
      sim.RunUntilTrue([&] { return slot->has_value(); }, deadline);
      if (slot->has_value()) got = *slot;
      if (got.has_value() && got->ok()) break;
    }
    sim.RunUntil(std::min(deadline, sim.now_ns() + kRetryNs));
  }
  return got;
}

bool ClusterConverged(const sim::Cluster& cluster, const NodeAt& node_at, int size) {
  const sim::NodeId l = FindLeader(cluster, node_at);
  if (l == sim::kNoNode) return false;
  const uint64_t cluster_id = node_at(l)->cluster_id();
  const std::vector<node::Member> members = node_at(l)->Members();
  if (static_cast<int>(members.size()) != size) return false;
  for (const node::Member& m : members) {
    if (m.learner) return false;
    bool running = false;
    for (sim::NodeId n : cluster.nodes()) {
      node::Node* node = node_at(n);
      if (node == nullptr || node->id() != m.id || node->cluster_id() != cluster_id) continue;
      std::vector<node::Member> theirs = node->Members();
      if (theirs.size() != members.size()) return false;
      for (size_t i = 0; i < theirs.size(); ++i) {
        if (theirs[i].id != members[i].id || theirs[i].learner) return false;
      }
      running = true;
    }
    if (!running) return false;
  }
  return true;
}

std::string DescribeMachines(const sim::Cluster& cluster, const NodeAt& node_at,
                             const std::function<std::string(sim::NodeId)>& waiting) {
  std::vector<std::string> out;
  for (sim::NodeId n : cluster.nodes()) {
    node::Node* node = node_at(n);
    if (!cluster.up(n)) {
      out.push_back(absl::StrCat("m", n, ": down"));
    } else if (node == nullptr) {
      out.push_back(absl::StrCat("m", n, ": ", waiting(n)));
    } else {
      std::vector<std::string> ms;
      for (const node::Member& m : node->Members()) {
        ms.push_back(absl::StrCat(absl::Hex(m.id), m.learner ? "(learner)" : ""));
      }
      out.push_back(absl::StrCat(
          "m", n, " id ", absl::Hex(node->id()), " cluster ", absl::Hex(node->cluster_id()),
          " leader ", absl::Hex(node->Status().leader), " members ", absl::StrJoin(ms, ",")));
    }
  }
  return absl::StrJoin(out, "; ");
}

}  // namespace e2d::scenarios
