// Copyright e2d authors.
//
// raft_flapping: five nodes whose links flap: partitions of every shape (isolation, one-way,
// split, bridge) start and heal every few hundred milliseconds, on top of loss, duplication,
// latency spikes and broken streams. Elections must settle and no fault may break safety.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftFlappingConfig() {
  RaftScenarioConfig c;
  c.swarm.duration_ms = 30'000;
  c.swarm.nodes = 5;
  c.swarm.processes = false;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.swarm = false;
  c.swarm.partition_gap_ms_min = 100;
  c.swarm.partition_gap_ms_max = 600;
  return c;
}

sim::Scenario RaftFlapping() {
  return MakeRaftScenario("raft_flapping", "raft, links that fail and heal every few hundred milliseconds",
                          RaftFlappingConfig());
}

}  // namespace e2d::scenarios
