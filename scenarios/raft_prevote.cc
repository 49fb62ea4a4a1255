// Copyright e2d authors.
//
// raft_prevote: the partial partitions that make pre-vote and check-quorum misbehave in the
// wild: one-way links (a node hears the leader but is not heard), bridges (two halves that only
// a single node connects) and isolations that leave a node with a higher term, across five
// nodes, many times per run. Safety throughout; once faults heal a leader must emerge (no node
// may stay stuck with a term nobody accepts).

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftPrevoteConfig() {
  RaftScenarioConfig c;
  c.swarm.duration_ms = 30'000;
  c.swarm.nodes = 5;
  c.swarm.processes = false;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.swarm = false;
  c.swarm.partition_gap_ms_min = 500;
  c.swarm.partition_gap_ms_max = 3000;
  return c;
}

sim::Scenario RaftPrevote() {
  return MakeRaftScenario("raft_prevote", "raft, one-way and bridge partitions against pre-vote and check-quorum",
                          RaftPrevoteConfig());
}

}  // namespace e2d::scenarios
