// Copyright e2d authors.
//
// raft_replace: every member of a three-voter cluster is replaced, one at a time, the way an
// operator (or e2d's self-management) replaces machines: a new machine joins as a learner, is
// promoted once it can vote, and an original voter is removed, the leader last. Nodes crash and
// links fail meanwhile. Once the faults heal, no original may be left and every member of the
// final membership applies a fresh entry.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftReplaceConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 6;
  c.voters = 3;
  c.op = Operator::kReplaceAll;
  c.swarm.duration_ms = 30'000;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.snapshot_entries = 30;
  return c;
}

sim::Scenario RaftReplace() {
  return MakeRaftScenario("raft_replace", "raft, every member replaced one by one",
                          RaftReplaceConfig());
}

}  // namespace e2d::scenarios
