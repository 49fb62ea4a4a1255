// Copyright e2d authors.

#include "scenarios/registry.h"

namespace e2d::scenarios {

std::vector<sim::Scenario> AllScenarios() {
  return {CounterSwarm(), CounterPartitions(), CounterCrashes(), CounterDiskErrors(),
          CounterClocks(), RaftPartitions(), RaftCrashes(), RaftFigure8(), RaftSwarm(),
          RaftMembership(), RaftReplace(), RaftTwoNode(), RaftSnapshots(), RaftSlowDisks(),
          RaftClocks(), RaftPrevote(), RaftTransfer(), RaftFlapping(), KvSwarm(), KvPartitions(), KvCrashes(),
          GossipSwarm(), GossipDetect(), GossipPartitions(), GossipLarge(), BootstrapGossip(),
          ManageReplace(), RestoreTotalLoss(), MajorityLoss()};
}

bool FindScenario(std::string_view name, sim::Scenario* out) {
  for (sim::Scenario& s : AllScenarios()) {
    if (s.name == name) {
      *out = std::move(s);
      return true;
    }
  }
  return false;
}

}  // namespace e2d::scenarios
