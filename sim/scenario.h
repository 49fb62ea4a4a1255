// Copyright e2d authors.
//
// What a scenario is to the simulator: a name, a generator that turns a seed into a fault
// schedule, and a runner that executes a schedule with every oracle on and says pass or fail.
// Scenarios themselves live in scenarios/ (one per file) and are listed in scenarios/registry.

#ifndef E2D_SIM_SCENARIO_H_
#define E2D_SIM_SCENARIO_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sim/fault_schedule.h"
#include "sim/simulator.h"

namespace e2d::sim {

struct RunOptions {
  std::vector<TraceEntry>* trace = nullptr;  // if set, every event is recorded (determinism)
  bool echo_log = false;                     // print node logs to stderr as they happen
};

struct ScenarioResult {
  bool pass = false;
  std::string failure;      // the first oracle violation, if any
  uint64_t digest = 0;      // over every event of the run
  uint64_t events = 0;
  int64_t end_ns = 0;       // virtual time when the run ended
  std::string log_tail;     // the last node log lines, for failure reports
  std::string summary;      // a line of scenario-specific figures
};

struct Scenario {
  std::string name;
  std::string description;
  std::function<FaultSchedule(uint64_t seed)> generate;
  std::function<ScenarioResult(const FaultSchedule& schedule, const RunOptions& options)> run;
};

// The line the sim CLI prints last; tools parse it.
std::string ResultLine(const ScenarioResult& result, uint64_t seed);

// Runs `schedule` twice, the second time from its parsed text form, and compares digests. On a
// mismatch, reruns both with tracing and describes the first event where they diverge. Returns
// an empty string if the two runs agree, else the description. `first` receives the first run.
std::string CheckDeterminism(const Scenario& scenario, const FaultSchedule& schedule,
                             ScenarioResult* first);

}  // namespace e2d::sim

#endif  // E2D_SIM_SCENARIO_H_
