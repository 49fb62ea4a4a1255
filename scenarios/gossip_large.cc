// Copyright e2d authors.
//
// gossip_large: 200 members with 10% datagram loss; two crash. Detection, zero false
// positives, propagation and convergence bounds as gossip_detect, at scale.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario GossipLarge() {
  GossipScenarioConfig c;
  c.sizes = {200};
  c.settle_ms = 30'000;
  c.duration_ms = 90'000;
  c.loss_choices = {0.1};
  c.crashes = 2;
  c.meta_updates = 2;
  c.detect_ms_max = 55'000;
  c.no_false_dead = true;
  c.propagate_ms_max = 135'000;  // the push-pull period at 200 members is 120 s
  c.converge_ms_max = 60'000;
  return MakeGossipScenario("gossip_large",
                            "200 members, 10% loss, two crashes: the bounds at scale", c);
}

}  // namespace e2d::scenarios
