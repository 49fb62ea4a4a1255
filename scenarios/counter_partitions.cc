// Copyright e2d authors.
//
// counter_partitions: network faults only, all on in every run: latency with jitter and long
// tails, loss, duplication, clogging, stream breaks, and isolate / split / one-way / bridge
// partitions that heal. Shows that broken streams reconnect and gossip converges after healing.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario CounterPartitions() {
  CounterScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 20'000;
  c.swarm.processes = false;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.swarm = false;
  return MakeCounterScenario("counter_partitions", "demo counter, network faults and partitions",
                             c);
}

}  // namespace e2d::scenarios
