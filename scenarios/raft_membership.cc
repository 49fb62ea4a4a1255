// Copyright e2d authors.
//
// raft_membership: three voters and four spare machines; an operator keeps changing the
// membership through the leader (spares added as learners, learners promoted, voters and
// learners removed, voters demoted, a learner swapped for a voter in one joint-consensus
// change, the leader itself removed) while nodes crash and the network partitions. Changes
// that would lose quorum are refused; no committed entry is ever lost, and once the faults heal
// every member of the final membership applies a fresh entry.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftMembershipConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 7;
  c.voters = 3;
  c.op = Operator::kChurn;
  c.swarm.duration_ms = 30'000;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.snapshot_entries = 30;
  return c;
}

sim::Scenario RaftMembership() {
  return MakeRaftScenario("raft_membership",
                          "raft, learners, promotions, removals, joint consensus under faults",
                          RaftMembershipConfig());
}

}  // namespace e2d::scenarios
