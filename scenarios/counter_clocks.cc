// Copyright e2d authors.
//
// counter_clocks: per-node clock drift (up to +-10%), forward jumps, and pauses (a paused node's
// clock keeps running, so its overdue timers fire at once on resume), with network latency.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario CounterClocks() {
  CounterScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 20'000;
  c.swarm.partitions = false;
  c.swarm.disk = false;
  c.swarm.swarm = false;
  return MakeCounterScenario("counter_clocks", "demo counter, clock drift and jumps, pauses", c);
}

}  // namespace e2d::scenarios
