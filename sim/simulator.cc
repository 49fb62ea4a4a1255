// Copyright e2d authors.

#include "sim/simulator.h"

#include <algorithm>

#include "env/check.h"

namespace e2d::sim {

Simulator::Simulator(uint64_t seed)
    : seed_(seed), root_random_(seed), digest_(env::HashCombine(0x5eed, seed)) {
  nodes_.emplace_back();  // kNoNode: never crashes or pauses
}

NodeId Simulator::AddNode() {
  nodes_.emplace_back();
  return static_cast<NodeId>(nodes_.size() - 1);
}

const Simulator::NodeState& Simulator::node_state(NodeId node) const {
  E2D_CHECK(node < nodes_.size(), "unknown node %u", node);
  return nodes_[node];
}

Simulator::NodeState& Simulator::node_state(NodeId node) {
  E2D_CHECK(node < nodes_.size(), "unknown node %u", node);
  return nodes_[node];
}

void Simulator::Insert(int64_t at_ns, Event event) {
  const QueueKey key(at_ns, next_seq_++);
  const EventId id = event.id;
  const bool fresh = key_of_.emplace(id, key).second;
  E2D_CHECK(fresh, "event %llu queued twice", static_cast<unsigned long long>(id));
  queue_.emplace(key, std::move(event));
}

EventId Simulator::Schedule(int64_t at_ns, NodeId node, std::string_view kind, uint64_t detail,
                            std::function<void()> fn) {
  const NodeState& state = node_state(node);
  const EventId id = next_id_++;
  Insert(std::max(at_ns, now_ns_), Event{id, node, state.incarnation, kind, detail, std::move(fn)});
  return id;
}

bool Simulator::Cancel(EventId id) {
  if (auto d = deferred_owner_.find(id); d != deferred_owner_.end()) {
    auto& deferred = node_state(d->second).deferred;
    const size_t erased =
        std::erase_if(deferred, [id](const Event& event) { return event.id == id; });
    E2D_CHECK(erased == 1, "deferred event %llu indexed but not held",
              static_cast<unsigned long long>(id));
    deferred_owner_.erase(d);
    return true;
  }
  auto it = key_of_.find(id);
  if (it == key_of_.end()) return false;
  const size_t erased = queue_.erase(it->second);
  E2D_CHECK(erased == 1, "event %llu indexed but not queued", static_cast<unsigned long long>(id));
  key_of_.erase(it);
  return true;
}

void Simulator::Fold(int64_t time_ns, NodeId node, std::string_view kind, uint64_t detail) {
  uint64_t h = env::HashCombine(digest_, static_cast<uint64_t>(time_ns));
  h = env::HashCombine(h, node);
  h = env::HashCombine(h, env::StableHash(kind));
  digest_ = env::HashCombine(h, detail);
  if (trace_ != nullptr) {
    trace_->push_back(TraceEntry{time_ns, node, std::string(kind), detail, digest_});
  }
}

void Simulator::Record(NodeId node, std::string_view kind, uint64_t detail) {
  Fold(now_ns_, node, kind, detail);
}

bool Simulator::Step() {
  while (!queue_.empty()) {
    auto it = queue_.begin();
    const int64_t at_ns = it->first.first;
    Event event = std::move(it->second);
    const EventId id = event.id;
    queue_.erase(it);
    key_of_.erase(id);
    E2D_CHECK(at_ns >= now_ns_, "time went backwards: %lld < %lld", static_cast<long long>(at_ns),
              static_cast<long long>(now_ns_));
    now_ns_ = at_ns;
    NodeState& state = node_state(event.node);
    if (event.incarnation != state.incarnation) continue;  // owner crashed since scheduling
    if (state.paused) {
      deferred_owner_.emplace(id, event.node);
      state.deferred.push_back(std::move(event));
      continue;
    }
    ++events_run_;
    Fold(now_ns_, event.node, event.kind, event.detail);
    event.fn();
    return true;
  }
  return false;
}

void Simulator::RunUntil(int64_t until_ns) {
  while (!queue_.empty() && queue_.begin()->first.first <= until_ns) Step();
  now_ns_ = std::max(now_ns_, until_ns);
}

bool Simulator::RunUntilTrue(const std::function<bool()>& pred, int64_t deadline_ns) {
  if (pred()) return true;
  while (!queue_.empty() && queue_.begin()->first.first <= deadline_ns) {
    if (Step() && pred()) return true;
  }
  now_ns_ = std::max(now_ns_, deadline_ns);
  return pred();
}

void Simulator::Crash(NodeId node) {
  E2D_CHECK(node != kNoNode, "the simulator itself cannot crash");
  NodeState& state = node_state(node);
  ++state.incarnation;  // queued events of the old incarnation are skipped when they come up
  state.paused = false;
  for (const Event& event : state.deferred) deferred_owner_.erase(event.id);
  state.deferred.clear();
  Record(node, "crash", state.incarnation);
}

void Simulator::Pause(NodeId node) {
  E2D_CHECK(node != kNoNode, "the simulator itself cannot pause");
  node_state(node).paused = true;
  Record(node, "pause", 0);
}

void Simulator::Resume(NodeId node) {
  NodeState& state = node_state(node);
  if (!state.paused) return;
  state.paused = false;
  Record(node, "resume", state.deferred.size());
  std::vector<Event> deferred = std::move(state.deferred);
  state.deferred.clear();
  // Same ids (timers and others can still cancel them), new queue positions in due order.
  for (Event& event : deferred) {
    deferred_owner_.erase(event.id);
    Insert(now_ns_, std::move(event));
  }
}

}  // namespace e2d::sim
