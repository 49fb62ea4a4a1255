// Copyright e2d authors.
//
// gossip_partitions: 5 or 50 members split in halves for 20-40 s (long enough for each side to
// declare the other dead), then a mass restart of every member with staggered starts. After
// the heal every member must see every member alive again: dead members rejoin and nobody
// stays stuck dead.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario GossipPartitions() {
  GossipScenarioConfig c;
  c.sizes = {5, 50};
  c.settle_ms = 20'000;
  c.duration_ms = 120'000;
  c.partition = true;
  c.mass_restart = true;
  c.meta_updates = 2;
  c.converge_ms_max = 60'000;
  return MakeGossipScenario("gossip_partitions",
                            "5/50 members: halves split 20-40 s, mass restart; all converge",
                            c);
}

}  // namespace e2d::scenarios
