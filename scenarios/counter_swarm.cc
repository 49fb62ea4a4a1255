// Copyright e2d authors.
//
// counter_swarm: the demo counter protocol under every fault family at once, each seed choosing
// its own mix (swarm testing): network trouble, partitions, crashes with torn writes, pauses,
// permanent disk loss, slow and failing disks, clock drift and jumps.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario CounterSwarm() {
  CounterScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 20'000;
  c.swarm.lose = true;
  c.swarm.disk_errors = true;
  c.swarm.down_max = 2;
  return MakeCounterScenario("counter_swarm", "demo counter, every fault family, swarm mix", c);
}

}  // namespace e2d::scenarios
