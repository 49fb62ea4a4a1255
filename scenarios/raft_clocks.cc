// Copyright e2d authors.
//
// raft_clocks: every node's clock drifts (up to 10% for some) and jumps forward, and processes
// pause (a stopped leader whose clock keeps running), with lease reads on: a lease read must
// never be stale even then (raft_swarm seed 135 caught a paused leader serving one before the
// driver caught its ticks up with the clock).

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftClocksConfig() {
  RaftScenarioConfig c;
  c.swarm.duration_ms = 30'000;
  c.swarm.nodes = 3;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.disk = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.lease_reads = true;
  return c;
}

sim::Scenario RaftClocks() {
  return MakeRaftScenario("raft_clocks", "raft, clock drift, clock jumps and pauses with lease reads",
                          RaftClocksConfig());
}

}  // namespace e2d::scenarios
