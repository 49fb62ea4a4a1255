// Copyright e2d authors.
//
// Every scenario, by name. Each is defined in its own file in this folder; adding one means a
// new file, a line in AllScenarios() and a scenario_test() line in BUILD.bazel.

#ifndef E2D_SCENARIOS_REGISTRY_H_
#define E2D_SCENARIOS_REGISTRY_H_

#include <string_view>
#include <vector>

#include "scenarios/counter_harness.h"
#include "scenarios/gossip_harness.h"
#include "scenarios/kv_harness.h"
#include "scenarios/raft_harness.h"
#include "sim/scenario.h"

namespace e2d::scenarios {

sim::Scenario CounterSwarm();
sim::Scenario CounterPartitions();
sim::Scenario CounterCrashes();
sim::Scenario CounterDiskErrors();
sim::Scenario CounterClocks();
sim::Scenario RaftPartitions();
sim::Scenario RaftCrashes();
sim::Scenario RaftSwarm();
sim::Scenario RaftFigure8();
sim::Scenario RaftMembership();
sim::Scenario RaftReplace();
sim::Scenario RaftTwoNode();
sim::Scenario RaftSnapshots();
sim::Scenario RaftSlowDisks();
sim::Scenario RaftClocks();
sim::Scenario RaftPrevote();
sim::Scenario RaftTransfer();
sim::Scenario RaftFlapping();
sim::Scenario KvSwarm();
sim::Scenario KvPartitions();
sim::Scenario KvCrashes();
sim::Scenario GossipSwarm();
sim::Scenario GossipDetect();
sim::Scenario GossipPartitions();
sim::Scenario GossipLarge();
sim::Scenario BootstrapGossip();
sim::Scenario ManageReplace();
sim::Scenario MajorityLoss();
sim::Scenario RestoreTotalLoss();

// The Raft scenarios' configurations (the mutation self-test reruns them with a rule broken).
RaftScenarioConfig RaftPartitionsConfig();
RaftScenarioConfig RaftCrashesConfig();
RaftScenarioConfig RaftSwarmConfig();
RaftScenarioConfig RaftFigure8Config();
RaftScenarioConfig RaftMembershipConfig();
RaftScenarioConfig RaftReplaceConfig();
RaftScenarioConfig RaftTwoNodeConfig();
RaftScenarioConfig RaftSnapshotsConfig();
RaftScenarioConfig RaftSlowDisksConfig();
RaftScenarioConfig RaftClocksConfig();
RaftScenarioConfig RaftPrevoteConfig();
RaftScenarioConfig RaftTransferConfig();
RaftScenarioConfig RaftFlappingConfig();
KvScenarioConfig KvSwarmConfig();
KvScenarioConfig KvPartitionsConfig();
KvScenarioConfig KvCrashesConfig();
GossipScenarioConfig GossipDetectConfig();

// In a fixed order (the order `sim --list` prints).
std::vector<sim::Scenario> AllScenarios();

// The scenario called `name`, or false.
bool FindScenario(std::string_view name, sim::Scenario* out);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_REGISTRY_H_
