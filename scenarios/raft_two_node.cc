// Copyright e2d authors.
//
// raft_two_node: a two-voter cluster whose leader is removed, again and again (each time a
// spare joins as a learner and is promoted, to get back to two voters). A removed node stops as
// soon as it no longer leads, like a removed etcd member; the survivor must still learn that the
// removal committed and take over (the stranded-survivor bug of naive implementations).

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
