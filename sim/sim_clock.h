// Copyright e2d authors.
//
// SimClock: one node's monotonic clock in the simulator. Its reading is
//   local = base_local + (virtual_now - base_virtual) * (1e6 + drift_ppm) / 1e6
// so nodes disagree by an offset (each clock starts at its own epoch) and drift apart at their
// own rates. Drift changes keep the reading continuous; Jump() steps it forward (a monotonic
// clock never steps back). Timers fire when the local reading reaches their deadline, even if
// the drift changed after they were set. The machine's clock outlives process crashes; timers
// do not (they are events of the node's incarnation).

#ifndef E2D_SIM_SIM_CLOCK_H_
#define E2D_SIM_SIM_CLOCK_H_

#include <cstdint>
#include <functional>

#include "absl/container/btree_map.h"
#include "env/time.h"
#include "sim/simulator.h"

namespace e2d::sim {

// Bound on |drift|: a clock running 50% fast or slow is already far beyond real hardware.
inline constexpr int64_t kDriftPpmMax = 500'000;

class SimClock final : public env::Clock {
 public:
  SimClock(Simulator& sim, NodeId node, int64_t start_local_ns);

  env::Instant Now() override;
  env::TimerId After(absl::Duration delay, std::function<void()> callback) override;
  bool Cancel(env::TimerId id) override;

  // Changes the rate from now on. REQUIRES: |drift_ppm| <= kDriftPpmMax (crashes otherwise).
  void SetDrift(int64_t drift_ppm);
  int64_t drift_ppm() const { return drift_ppm_; }

  // Steps the reading forward by `forward_ns` >= 0. Due timers fire at once.
  void Jump(int64_t forward_ns);

  // The process crashed: forget its timers (their events are dropped by the simulator anyway).
  void ForgetTimers() { timers_.clear(); }
  size_t pending_timers() const { return timers_.size(); }

 private:
  struct Timer {
    int64_t deadline_local_ns;
    EventId event;
    std::function<void()> callback;
  };
  int64_t LocalAt(int64_t virtual_ns) const;
  // The first virtual time at which the local reading is >= `local_ns`.
  int64_t VirtualFor(int64_t local_ns) const;
  void Arm(env::TimerId id);
  void Fire(env::TimerId id);

  Simulator& sim_;
  const NodeId node_;
  int64_t base_virtual_ns_;
  int64_t base_local_ns_;
  int64_t drift_ppm_ = 0;
  env::TimerId next_timer_id_ = 1;
  absl::btree_map<env::TimerId, Timer> timers_;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_SIM_CLOCK_H_
