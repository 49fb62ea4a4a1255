// Copyright e2d authors.
//
// The deterministic discrete-event loop every simulated component runs on. One thread, virtual
// nanosecond time, events ordered by (time, insertion sequence): the same seed replays the same
// run, event for event, on any machine. Every event that runs is folded into a digest; two runs
// of one seed must end with the same digest (see DeterminismTrace).

#ifndef E2D_SIM_SIMULATOR_H_
#define E2D_SIM_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "env/random.h"

namespace e2d::sim {

// Index of a simulated node, 1-based. kNoNode owns simulator-wide events (faults, checks).
using NodeId = uint32_t;
inline constexpr NodeId kNoNode = 0;

using EventId = uint64_t;

// One line per executed event, recorded only when tracing is on: enough to find the first event
// where two runs of the same seed diverge.
struct TraceEntry {
  int64_t time_ns;
  NodeId node;
  std::string kind;
  uint64_t detail;
  uint64_t digest_after;
};

class Simulator {
 public:
  explicit Simulator(uint64_t seed);
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  uint64_t seed() const { return seed_; }
  int64_t now_ns() const { return now_ns_; }

  // An independent random stream for a named component (e.g. "net", "disk/3"). Stable: adding a
  // stream elsewhere does not change this one.
  env::Random ForkRandom(std::string_view name) const { return root_random_.Fork(name); }

  // Registers a node; its events run only while it is up in the incarnation they were made for.
  NodeId AddNode();
  size_t node_count() const { return nodes_.size(); }

  // Schedules `fn` at virtual time `at_ns` (clamped to now) on behalf of `node`'s current
  // incarnation. `kind` (a short static label) and `detail` (a stable hash of the event's
  // content, e.g. a message payload) go into the digest. Events of a node that crashed
  // (incarnation bumped) are dropped; events of a paused node wait for Resume().
  EventId Schedule(int64_t at_ns, NodeId node, std::string_view kind, uint64_t detail,
                   std::function<void()> fn);

  // Removes a pending event (queued, or deferred by a pause). False if it already ran, was
  // cancelled, or was dropped.
  bool Cancel(EventId id);

  // Runs the earliest event. False if none is pending.
  bool Step();

  // Runs every event due at or before `until_ns`, then sets the time to `until_ns`.
  void RunUntil(int64_t until_ns);

  // Runs until `pred()` holds (checked after every event) or `deadline_ns` passes. Returns
  // whether `pred()` held.
  bool RunUntilTrue(const std::function<bool()>& pred, int64_t deadline_ns);

  // Process lifecycle, as far as event ownership is concerned. Crash drops every pending and
  // deferred event of the node; Pause holds them (and new ones) until Resume, which reschedules
  // them at the current time in their original order.
  void Crash(NodeId node);
  void Pause(NodeId node);
  void Resume(NodeId node);
  bool paused(NodeId node) const { return node_state(node).paused; }
  uint64_t incarnation(NodeId node) const { return node_state(node).incarnation; }

  // Mixes an observation that is not an event (e.g. a disk write's content) into the digest.
  void Record(NodeId node, std::string_view kind, uint64_t detail);

  uint64_t digest() const { return digest_; }
  uint64_t events_run() const { return events_run_; }
  size_t pending() const { return queue_.size(); }

  // When set, every executed event and Record() appends an entry (for divergence reports).
  // The vector must outlive the simulator or be reset to nullptr.
  void set_trace(std::vector<TraceEntry>* trace) { trace_ = trace; }

 private:
  using QueueKey = std::pair<int64_t, uint64_t>;  // (time, sequence)
  struct Event {
    EventId id;  // stable for the event's life; its queue position may change (Resume)
    NodeId node;
    uint64_t incarnation;
    std::string_view kind;  // points at a string literal
    uint64_t detail;
    std::function<void()> fn;
  };
  struct NodeState {
    uint64_t incarnation = 1;
    bool paused = false;
    std::vector<Event> deferred;  // events held while paused, in the order they came due
  };

  const NodeState& node_state(NodeId node) const;
  NodeState& node_state(NodeId node);
  void Fold(int64_t time_ns, NodeId node, std::string_view kind, uint64_t detail);
  // Queues `event` at `at_ns` behind everything already queued for that time.
  void Insert(int64_t at_ns, Event event);

  const uint64_t seed_;
  const env::Random root_random_;
  int64_t now_ns_ = 0;
  uint64_t next_seq_ = 1;  // queue order among events of equal time
  EventId next_id_ = 1;
  uint64_t digest_;
  uint64_t events_run_ = 0;
  // Iteration order is the execution order.
  absl::btree_map<QueueKey, Event> queue_;
  absl::btree_map<EventId, QueueKey> key_of_;      // queued event id -> its queue key, for Cancel
  absl::btree_map<EventId, NodeId> deferred_owner_;  // deferred event id -> its paused node
  std::vector<NodeState> nodes_;               // index 0 is kNoNode
  std::vector<TraceEntry>* trace_ = nullptr;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_SIMULATOR_H_
