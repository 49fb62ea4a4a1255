// Copyright e2d authors.
//
// The seam between e2d's logic and the world. A core (raft driver, gossip, kv, node) receives
// one Env& and reaches time, network, disk and randomness only through it, so the same code runs
// in the real node (Asio runtime) and in the deterministic simulator (sim::SimEnv).

#ifndef E2D_ENV_ENV_H_
#define E2D_ENV_ENV_H_

#include <string_view>

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

  // A line for the node's log. The simulator prefixes virtual time and node; the runtime, wall
  // time. Logging must not influence behaviour.
  virtual void Log(std::string_view line) = 0;
};

}  // namespace e2d::env

#endif  // E2D_ENV_ENV_H_
