// Copyright e2d authors.
//
// raft_transfer: leadership transfer (thesis §3.10) as a routine operation: a fifth of the
// client's actions move leadership to a random node (learner, follower, itself, the leader)
// while leaders crash and links fail. Transfers must never break safety, and a transfer that
// cannot complete is abandoned within an election timeout (liveness after the heal).

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftTransferConfig() {
  RaftScenarioConfig c;
  c.swarm.duration_ms = 30'000;
  c.swarm.nodes = 3;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.transfer_percent = 20;
  return c;
}

sim::Scenario RaftTransfer() {
  return MakeRaftScenario("raft_transfer", "raft, frequent leadership transfers under faults",
                          RaftTransferConfig());
}

}  // namespace e2d::scenarios
