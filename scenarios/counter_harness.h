// Copyright e2d authors.
//
// Runs the demo CounterNode protocol (sim/demo) on a simulated cluster under a fault schedule,
// with its oracles:
//  - durability: a node that restarts on its own disk recovers at least every value whose sync
//    completed before the crash (a lost disk resets this);
//  - no invention: nobody ever hears a value its sender never wrote;
//  - liveness: once every fault is healed (network healed and reset, paused nodes resumed, down
//    or fail-stopped nodes restarted, disk faults cleared), every node learns every other node's
//    value as of the heal within a bound of simulated time.

#ifndef E2D_SCENARIOS_COUNTER_HARNESS_H_
#define E2D_SCENARIOS_COUNTER_HARNESS_H_

#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "sim/swarm.h"

namespace e2d::scenarios {

struct CounterScenarioConfig {
  sim::SwarmOptions swarm;
  int64_t converge_ms_max = 30'000;  // liveness bound after the heal
};

sim::ScenarioResult RunCounter(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                               int64_t converge_ms_max);

// A scenario that generates swarm schedules with `config.swarm` and runs them with RunCounter.
sim::Scenario MakeCounterScenario(std::string name, std::string description,
                                  CounterScenarioConfig config);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_COUNTER_HARNESS_H_
