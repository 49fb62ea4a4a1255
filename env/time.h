// Copyright e2d authors.
//
// Time and timers as every core (raft, gossip, kv, node) sees them. The real runtime backs this
// with the steady clock and Asio timers; the simulator with virtual time, per-node offset and
// drift. Nothing outside node/runtime may read a real clock.

#ifndef E2D_ENV_TIME_H_
#define E2D_ENV_TIME_H_

#include <cstdint>
#include <functional>

#include "absl/time/time.h"

namespace e2d::env {

// A point on one node's monotonic clock: nanoseconds since that node's own, arbitrary epoch.
// Instants from two different nodes are not comparable (their clocks have offset and drift).
struct Instant {
  int64_t ns = 0;

  friend Instant operator+(Instant t, absl::Duration d) {
    return Instant{t.ns + absl::ToInt64Nanoseconds(d)};
  }
  friend absl::Duration operator-(Instant a, Instant b) { return absl::Nanoseconds(a.ns - b.ns); }
  friend auto operator<=>(Instant a, Instant b) = default;
};

// Identifies a pending timer. Ids are never reused by one Clock, so cancelling a timer that
// already fired is harmless. 0 is never a valid id.
using TimerId = uint64_t;

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time on this node's monotonic clock. Never decreases between calls.
  virtual Instant Now() = 0;

  // Runs `callback` once on the node's thread when this node's clock has advanced by at least
  // `delay` (negative delays count as zero). Never runs `callback` from inside After() itself.
  // A crashed or stopped node's timers never fire.
  virtual TimerId After(absl::Duration delay, std::function<void()> callback) = 0;

  // Prevents a pending timer from firing. Returns false if it already fired, was already
  // cancelled, or was never issued by this clock.
  virtual bool Cancel(TimerId id) = 0;
};

}  // namespace e2d::env

#endif  // E2D_ENV_TIME_H_
