// Copyright e2d authors.
//
// raft_two_node: a two-voter cluster whose leader is removed, again and again (each time a
// spare joins as a learner and is promoted, to get back to two voters). The leader refuses to
// remove itself and hands leadership over first; the operator retries on the new leader. The
// survivor must always end up leading alone: a naive removal can strand it for good, since it
// needs the removed node's vote until it learns the removal committed, and the removed node may
// hold entries it lacks (seed 472 found that with an earlier design).

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftTwoNodeConfig() {
  RaftScenarioConfig c;
  c.swarm.nodes = 12;
  c.voters = 2;
  c.op = Operator::kRemoveLeader;
  c.swarm.duration_ms = 30'000;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.down_max = 1;
  c.swarm.swarm = false;
  return c;
}

sim::Scenario RaftTwoNode() {
  return MakeRaftScenario("raft_two_node", "raft, removing the leader of a two-node cluster",
                          RaftTwoNodeConfig());
}

}  // namespace e2d::scenarios
