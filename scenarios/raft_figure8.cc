// Copyright e2d authors.
//
// raft_figure8: the situations of the Raft paper's Figure 8 (and Figure 7's divergent logs).
// Five nodes; leaders are cut off or crash while holding entries nobody else has, new leaders
// of later terms write other entries at the same indexes, old leaders come back. Appends carry
// one entry each, so an old-term entry can reach a majority before the new leader's own entry
// does: exactly when committing by counting replicas (forbidden by §5.4.2) would go wrong.
// A nemesis drives the figure: it cuts most new leaders off the moment they are elected (so they
// hold entries nobody else has) and crashes half of the leaders the moment they advance their
// commit index (before their own entries spread). With the §5.4.2 rule broken, about one seed
// in six fails; the mutation self-test relies on that.

#include "scenarios/registry.h"

namespace e2d::scenarios {

RaftScenarioConfig RaftFigure8Config() {
  RaftScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 30'000;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.down_max = 2;
  c.swarm.swarm = false;
  c.swarm.target_leader = true;
  c.msg_bytes_max = 1;
  c.crash_leader_on_commit = 0.5;
  c.isolate_new_leader = 0.7;
  return c;
}

sim::Scenario RaftFigure8() {
  return MakeRaftScenario("raft_figure8", "raft, leaders cut off with unreplicated entries",
                          RaftFigure8Config());
}

}  // namespace e2d::scenarios
