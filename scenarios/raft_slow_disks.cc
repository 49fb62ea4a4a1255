// Copyright e2d authors.
//
// raft_slow_disks: sync latencies of tens of milliseconds with spikes and stalls of seconds on
// every node, the leader's included, with crashes tearing what was not synced. A leader that
// cannot persist stops heartbeating and loses its role; the others must keep committing.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftSlowDisksConfig() {
  RaftScenarioConfig c;
  c.swarm.duration_ms = 30'000;
  c.swarm.nodes = 3;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  return c;
}

sim::Scenario RaftSlowDisks() {
  return MakeRaftScenario("raft_slow_disks", "raft, slow, spiking and stalled disks",
                          RaftSlowDisksConfig());
}

}  // namespace e2d::scenarios
