// Copyright e2d authors.
//
// A fault schedule: every fault of one simulated run, as text that can be printed, saved,
// edited and replayed without the generator that made it. Format (one item per line, '#'
// starts a comment):
//
//   scenario counter_swarm
//   seed 42               # seeds the run's own randomness (latency draws, loss coin flips...)
//   nodes 5
//   duration_ms 30000     # faults happen before this; then the harness heals everything
//   @0 link * * latency_us=200 jitter_us=100 loss=0.01
//   @1200 isolate 2
//   @5000 heal
//
// Verbs (nodes are 1-based ids; lists are comma-separated; `*` means every node; `leader` means
// the node leading when the fault applies, per Cluster::leader(), and makes the fault a no-op
// if there is none):
//   link FROM TO [latency_us= jitter_us= tail=P tail_ms= loss=P dup=P]
//   isolate N|leader | split A,B C,D | oneway FROM TO | bridge A,B C,D BRIDGE | clog FROM TO MS
//   heal | break A B                       (break: every stream between A and B)
//   crash N|leader | pause N|leader | lose N|leader | restart N|* | resume N|*
//   disk N [latency_us= jitter_us= spike=P spike_ms= eio=P syncfail=P capacity=BYTES tear=0|1]
//   stall N MS | readerr N PATH OFFSET LENGTH | bitflip N PATH OFFSET BIT
//   drift N PPM | jump N MS

#ifndef E2D_SIM_FAULT_SCHEDULE_H_
#define E2D_SIM_FAULT_SCHEDULE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::sim {

class Cluster;

struct FaultAction {
  int64_t at_ms = 0;
  std::string verb;
  std::vector<std::string> args;

  friend bool operator==(const FaultAction&, const FaultAction&) = default;
};

struct FaultSchedule {
  std::string scenario;
  uint64_t seed = 0;
  int nodes = 0;
  int64_t duration_ms = 0;
  std::vector<FaultAction> actions;  // in time order; equal times keep file order

  // Restores time order after actions were added out of order (stable: equal times keep
  // their order).
  void SortByTime();

  friend bool operator==(const FaultSchedule&, const FaultSchedule&) = default;

  // The text form above. Parse(ToText()) gives back an equal schedule.
  std::string ToText() const;

  // Parses and validates (verbs, argument counts and values, node ids within `nodes`, times in
  // [0, duration_ms], time order). Errors name the line number and what is wrong.
  static absl::StatusOr<FaultSchedule> Parse(std::string_view text);
};

// Checks one action against a cluster of `nodes` nodes without applying it.
absl::Status ValidateFault(const FaultAction& action, int nodes);

// Applies one action to `cluster` now. Errors as ValidateFault (nothing is applied then).
absl::Status ApplyFault(const FaultAction& action, Cluster& cluster);

// Schedules every action of `schedule` on the cluster's simulator at its time (as simulator
// events, logged); an action that cannot be applied is reported to `on_error`.
void ScheduleFaults(const FaultSchedule& schedule, Cluster& cluster,
                    std::function<void(const std::string& why)> on_error);

// Ends every fault, the state from which scenarios measure liveness: heals and resets every
// link, clears disk faults (keeping each disk's tear setting) and read errors, resumes paused
// nodes, and restarts every node that is down or for which `fail_stopped` is true (as a
// supervisor would restart a process that stopped itself).
void HealEverything(Cluster& cluster, const std::function<bool(uint32_t node)>& fail_stopped);

}  // namespace e2d::sim

#endif  // E2D_SIM_FAULT_SCHEDULE_H_
