// Copyright e2d authors.
//
// Runs gossip (gossip/GossipNode, SWIM + Lifeguard) on a simulated cluster and measures it.
// A run has three phases:
//  1. join (0 .. settle_ms): every member starts and joins through the first three addresses;
//     oracle: by settle_ms every member sees every member alive.
//  2. faults (settle_ms .. duration_ms): the schedule's faults (loss, crashes that last until the
//     heal, an overloaded member that stalls again and again, partitions, mass restarts) plus a
//     workload of metadata updates. Oracles, each only where the config asks for it:
//      - detection: every member that stays up declares a crashed member dead within
//        detect_ms_max of the crash;
//      - no false positives: no member that never crashed is declared dead by anyone, except
//        the overloaded member itself (its stalls are real unresponsiveness; counted apart);
//      - propagation: a metadata update reaches every member that stays up within
//        propagate_ms_max (judged at the end of the run; the bound must cover the push-pull
//        period, the backstop for a member that every retransmission missed).
//     Measured, not bounded: how long after a partition ends, and after the last member of a
//     mass restart is back, every member again sees every member alive.
//  3. heal (duration_ms ..): every fault ends and every member is (re)started; oracle: within
//     converge_ms_max every member sees every member alive with its current metadata.
// Always on: Memberlist::CheckInvariants after every step of every member, and no member ever
// counts a dropped datagram as undecryptable or replayed (the network only duplicates, it never
// forges, so every such drop would be a bug in sealing or numbering).

#ifndef E2D_SCENARIOS_GOSSIP_HARNESS_H_
#define E2D_SCENARIOS_GOSSIP_HARNESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "sim/scenario.h"
#include "sim/swarm.h"

namespace e2d::scenarios {

struct GossipScenarioConfig {
  std::vector<int> sizes = {5};  // cluster size, one drawn per seed
  int64_t settle_ms = 15'000;
  int64_t duration_ms = 60'000;  // faults end (heal) here

  // Fault families.
  std::vector<double> loss_choices = {0.0};  // datagram loss for the fault phase, drawn per seed
  int crashes = 0;              // members crashed during the faults, down until the heal
  double overload_chance = 0;   // chance that one member stalls repeatedly (pauses of 0.2-1.5 s)
  bool partition = false;       // split in two halves, healed before the fault phase ends
  bool mass_restart = false;    // every member crashes at once, restarts staggered over 0-5 s
  bool swarm = false;           // plus a random swarm schedule (network, partitions, processes)
  sim::SwarmOptions swarm_options;
  int meta_updates = 3;         // metadata updates by random members during the faults
  bool stream_fallback = true;  // gossip::Config::stream_fallback (off only to measure its worth)

  // Oracles (0 = not checked).
  int64_t detect_ms_max = 0;
  bool no_false_dead = false;
  int64_t propagate_ms_max = 0;
  int64_t converge_ms_max = 60'000;
};

// Figures of one run, for the measurement table (tools read them from the summary line too).
struct GossipMetrics {
  int nodes = 0;
  double loss = 0;
  bool overloaded = false;
  double join_ms = -1;                  // until everyone saw everyone alive
  std::vector<double> first_suspect_ms;  // per crash: crash -> first suspicion anywhere
  std::vector<double> first_dead_ms;     // per crash: crash -> first dead declaration
  std::vector<double> all_dead_ms;       // per crash: crash -> last live member declares it dead
  std::vector<double> propagate_ms;      // per metadata update: until every live member has it
  int false_dead = 0;             // dead declarations of members that never crashed (excl. below)
  int false_dead_overloaded = 0;  // ... of the overloaded member
  double converge_ms = -1;        // heal -> everyone sees everyone alive with current metadata
  double partition_converge_ms = -1;  // a partition's end -> the same, during the faults
  double restart_converge_ms = -1;    // the last restart of a mass restart -> the same
  double sim_seconds = 0;
};

sim::FaultSchedule GenerateGossip(const std::string& name, uint64_t seed,
                                  const GossipScenarioConfig& config);

sim::ScenarioResult RunGossip(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                              const GossipScenarioConfig& config, GossipMetrics* metrics);

sim::Scenario MakeGossipScenario(std::string name, std::string description,
                                 GossipScenarioConfig config);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_GOSSIP_HARNESS_H_
