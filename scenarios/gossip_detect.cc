// Copyright e2d authors.
//
// gossip_detect: 3, 5 or 50 members with 0% or 10% datagram loss; one member crashes (two in
// the 50-member cluster), and in half of the seeds another one is overloaded (stalls of
// 0.2-1.5 s again and again). Every surviving member must declare the crashed ones dead within
// the bound, nobody may declare a member that never crashed dead (the overloaded one excepted,
// counted apart), and metadata updates must reach everyone within a push-pull period and a margin.

#include "scenarios/registry.h"

namespace e2d::scenarios {

GossipScenarioConfig GossipDetectConfig() {
  GossipScenarioConfig c;
  c.sizes = {3, 5, 50};
  c.settle_ms = 20'000;
  c.duration_ms = 80'000;
  c.loss_choices = {0.0, 0.1};
  c.crashes = 2;  // at most n - 2 (a 3-member cluster loses one)
  c.overload_chance = 0.5;
  c.meta_updates = 3;
  // Suspicion lasts at most 6 x 4 x log10(n) probe intervals (41 s at 50 members); add the
  // time to be probed and a margin for the overloaded prober.
  c.detect_ms_max = 50'000;
  c.no_false_dead = true;
  // Retransmissions reach nearly everyone within a second; a member they all missed (10% loss)
  // catches up at its next push-pull: every 30 s, every 60 s at 50 members.
  c.propagate_ms_max = 75'000;
  c.converge_ms_max = 60'000;
  return c;
}

sim::Scenario GossipDetect() {
  return MakeGossipScenario("gossip_detect",
                            "3/5/50 members, 0 or 10% loss, crashes and an overloaded member: "
                            "detection, false positives, propagation bounds",
                            GossipDetectConfig());
}

}  // namespace e2d::scenarios
