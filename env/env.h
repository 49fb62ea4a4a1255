// Copyright e2d authors.
//
// The seam between e2d's logic and the world. A core (raft driver, gossip, kv, node) receives
// one Env& and reaches time, network, disk and randomness only through it, so the same code runs
// in the real node (Asio runtime) and in the deterministic simulator (sim::SimEnv).

#ifndef E2D_ENV_ENV_H_
#define E2D_ENV_ENV_H_

#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "env/filesystem.h"
#include "env/network.h"
#include "env/random.h"
#include "env/time.h"

namespace e2d::env {

class Env {
 public:
  virtual ~Env() = default;

  virtual Clock& clock() = 0;
  virtual Network& network() = 0;
  virtual FileSystem& fs() = 0;
  // This node's own random stream.
  virtual Random& random() = 0;

  // CPU-heavy work that must not stall the node's thread (building a snapshot of a large
  // store): runs `work` elsewhere, then `done` on the node's thread, never inside this call.
  // `work` runs concurrently with the node, so it may only touch what it owns (for example an
  // engine iterator created before the call). The runtime runs it on a worker thread, one job at
  // a time, with at most kOffloadedMax waiting: beyond that the call is refused
  // (ResourceExhausted) and neither function runs. This default, which the simulator uses, runs
  // `work` at once and `done` on the next turn of the clock.
  static constexpr size_t kOffloadedMax = 8;
  virtual absl::Status Offload(std::function<void()> work, std::function<void()> done) {
    work();
    clock().After(absl::ZeroDuration(), std::move(done));
    return absl::OkStatus();
  }

  // A line for the node's log. The simulator prefixes virtual time and node; the runtime, wall
  // time. Logging must not influence behaviour.
  virtual void Log(std::string_view line) = 0;
};

}  // namespace e2d::env

#endif  // E2D_ENV_ENV_H_
