// Copyright e2d authors.
//
// raft_snapshots: every node compacts its log every 20 entries, so a follower that falls
// behind (cut off, crashed, paused) can only catch up from a snapshot. Snapshots travel in
// 512-byte chunks, two in flight; links break and nodes crash mid-transfer (either end), disks
// tear unsynced writes. Checked besides the Raft invariants: a restored snapshot is exactly the
// state some node reached by applying the log up to its index; no node goes back; recovery from
// snapshot + WAL never fails; a follower is never left paused (liveness once faults heal).

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftSnapshotsConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 30'000;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.snapshot_entries = 20;
  return c;
}

sim::Scenario RaftSnapshots() {
  return MakeRaftScenario("raft_snapshots", "raft, compaction and chunked snapshot install",
                          RaftSnapshotsConfig());
}

}  // namespace e2d::scenarios
