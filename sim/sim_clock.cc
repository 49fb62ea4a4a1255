// Copyright e2d authors.

#include "sim/sim_clock.h"

#include <algorithm>
#include <utility>

#include "env/check.h"

namespace e2d::sim {
namespace {
constexpr int64_t kMillion = 1'000'000;
}  // namespace

SimClock::SimClock(Simulator& sim, NodeId node, int64_t start_local_ns)
    : sim_(sim), node_(node), base_virtual_ns_(sim.now_ns()), base_local_ns_(start_local_ns) {}

int64_t SimClock::LocalAt(int64_t virtual_ns) const {
  const __int128 elapsed = virtual_ns - base_virtual_ns_;
  return base_local_ns_ + static_cast<int64_t>(elapsed * (kMillion + drift_ppm_) / kMillion);
}

int64_t SimClock::VirtualFor(int64_t local_ns) const {
  if (local_ns <= base_local_ns_) return base_virtual_ns_;
  const __int128 local_elapsed = local_ns - base_local_ns_;
  const __int128 rate = kMillion + drift_ppm_;
  // Ceiling division; then nudge forward in case rounding in LocalAt lands one short.
  int64_t v = base_virtual_ns_ + static_cast<int64_t>((local_elapsed * kMillion + rate - 1) / rate);
  while (LocalAt(v) < local_ns) ++v;
  return v;
}

env::Instant SimClock::Now() { return env::Instant{LocalAt(sim_.now_ns())}; }

env::TimerId SimClock::After(absl::Duration delay, std::function<void()> callback) {
  const int64_t delay_ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(delay));
  const env::TimerId id = next_timer_id_++;
  timers_.emplace(id, Timer{Now().ns + delay_ns, 0, std::move(callback)});
  Arm(id);
  return id;
}

void SimClock::Arm(env::TimerId id) {
  Timer& timer = timers_.at(id);
  timer.event = sim_.Schedule(VirtualFor(timer.deadline_local_ns), node_, "timer", id,
                              [this, id] { Fire(id); });
}

void SimClock::Fire(env::TimerId id) {
  auto it = timers_.find(id);
  E2D_CHECK(it != timers_.end(), "timer %llu fired but is not pending",
            static_cast<unsigned long long>(id));
  if (Now().ns < it->second.deadline_local_ns) {  // the drift slowed since it was armed
    Arm(id);
    return;
  }
  std::function<void()> callback = std::move(it->second.callback);
  timers_.erase(it);
  callback();
}

bool SimClock::Cancel(env::TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  sim_.Cancel(it->second.event);
  timers_.erase(it);
  return true;
}

void SimClock::SetDrift(int64_t drift_ppm) {
  E2D_CHECK(drift_ppm >= -kDriftPpmMax && drift_ppm <= kDriftPpmMax, "drift %lld ppm",
            static_cast<long long>(drift_ppm));
  base_local_ns_ = LocalAt(sim_.now_ns());
  base_virtual_ns_ = sim_.now_ns();
  drift_ppm_ = drift_ppm;
  sim_.Record(node_, "clock.drift", static_cast<uint64_t>(drift_ppm));
  // Timers armed for the old rate may now be late (faster clock): re-arm them. A slower clock
  // is handled in Fire().
  for (auto& [id, timer] : timers_) {
    sim_.Cancel(timer.event);
    Arm(id);
  }
}

void SimClock::Jump(int64_t forward_ns) {
  E2D_CHECK(forward_ns >= 0, "a monotonic clock cannot jump back (%lld ns)",
            static_cast<long long>(forward_ns));
  base_local_ns_ = LocalAt(sim_.now_ns()) + forward_ns;
  base_virtual_ns_ = sim_.now_ns();
  sim_.Record(node_, "clock.jump", static_cast<uint64_t>(forward_ns));
  for (auto& [id, timer] : timers_) {
    sim_.Cancel(timer.event);
    Arm(id);
  }
}

}  // namespace e2d::sim
