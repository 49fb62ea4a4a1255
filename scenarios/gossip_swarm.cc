// Copyright e2d authors.
//
// gossip_swarm: 3 or 5 members under a random mix of network faults (latency, loss,
// duplication, clogging, stream breaks), partitions, crashes, restarts, pauses and clock drift.
// After the heal, every member must see every member alive with its current metadata.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario GossipSwarm() {
  GossipScenarioConfig c;
  c.sizes = {3, 5};
  c.settle_ms = 10'000;
  c.duration_ms = 50'000;
  c.swarm = true;
  c.swarm_options.disk = false;
  c.swarm_options.down_max = 2;
  c.converge_ms_max = 60'000;
  return MakeGossipScenario("gossip_swarm",
                            "3-5 members, random network/partition/process/clock faults; all "
                            "converge after the heal",
                            c);
}

}  // namespace e2d::scenarios
