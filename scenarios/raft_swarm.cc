// Copyright e2d authors.
//
// raft_swarm: a 5-node Raft cluster under every fault family the WAL can face, each seed
// choosing its own mix: network faults, partitions, crashes and pauses (two at once), torn
// writes, slow and stalled disks, write EIO and failed fsyncs (fail-stop), clock drift and jumps.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftSwarmConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 30'000;
  c.swarm.disk_errors = true;
  c.swarm.down_max = 2;
  c.swarm.target_leader = true;
  c.lease_reads = true;
  c.snapshot_entries = 40;
  return c;
}

sim::Scenario RaftSwarm() {
  return MakeRaftScenario("raft_swarm", "raft, every fault family, swarm mix", RaftSwarmConfig());
}

}  // namespace e2d::scenarios
