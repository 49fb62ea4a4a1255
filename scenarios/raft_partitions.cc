// Copyright e2d authors.
//
// raft_partitions: a 5-node Raft cluster under network faults, all on in every run: latency,
// jitter and tails, loss, duplication, clogging, stream breaks, and isolate / split /
// asymmetric one-way / bridge partitions (minority and majority sides), with client load.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftPartitionsConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 30'000;
  c.swarm.processes = false;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  return c;
}

sim::Scenario RaftPartitions() {
  return MakeRaftScenario("raft_partitions", "raft, network faults and partitions",
                          RaftPartitionsConfig());
}

}  // namespace e2d::scenarios
