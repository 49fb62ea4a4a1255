// Copyright e2d authors.
//
// raft_crashes: a 3-node Raft cluster whose nodes crash (leader or follower, up to two at once:
// majority loss), restart, pause, with torn WAL writes on crash, slow syncs, latency spikes and
// stalls. Every recovery must succeed and lose no committed entry.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftCrashesConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 30'000;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.down_max = 2;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.snapshot_entries = 25;
  return c;
}

sim::Scenario RaftCrashes() {
  return MakeRaftScenario("raft_crashes", "raft, crashes, torn WAL writes, slow disks",
                          RaftCrashesConfig());
}

}  // namespace e2d::scenarios
