// Copyright e2d authors.

#include "scenarios/node_harness.h"

#include <algorithm>
#include <memory>

namespace e2d::scenarios {

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
      node_at(l)->kv().Range(range, [slot](absl::StatusOr<etcdserverpb::RangeResponse> r) {
        *slot = std::move(r);
      });
      sim.RunUntilTrue([&] { return slot->has_value(); }, deadline);
      if (slot->has_value()) got = *slot;
      if (got.has_value() && got->ok()) break;
    }
    sim.RunUntil(std::min(deadline, sim.now_ns() + kRetryNs));
  }
  return got;
}

}  // namespace e2d::scenarios
