// Copyright e2d authors.
//
// The simulator's command line:
//   sim --list                                   every scenario's name, one per line
//   sim --scenario=NAME --seed=N [--verbose] [--print-schedule] [--save-schedule=FILE]
//   sim --schedule=FILE [--verbose]              replay a saved schedule (its own seed)
// The last line printed is always `digest=<hex> seed=<N> result=<pass|fail>`; the exit code is
// 0 for pass, 1 for fail, 2 for bad usage or a bad schedule file.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "scenarios/registry.h"
#include "sim/fault_schedule.h"
#include "sim/scenario.h"

namespace {

struct Flags {
  bool list = false;
  bool verbose = false;
  bool print_schedule = false;
  std::string scenario;
  std::string schedule_file;
  std::string save_schedule_file;
  bool have_seed = false;
  uint64_t seed = 0;
};

int Usage(const std::string& why) {
  std::fprintf(stderr,
               "sim: %s\nusage: sim --list | sim --scenario=NAME --seed=N [--verbose] "
               "[--print-schedule] [--save-schedule=FILE] | sim --schedule=FILE [--verbose]\n",
               why.c_str());
  return 2;
}

bool ParseFlags(int argc, char** argv, Flags* f, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* prefix) { return arg.substr(std::string(prefix).size()); };
    if (arg == "--list") {
      f->list = true;
    } else if (arg == "--verbose") {
      f->verbose = true;
    } else if (arg == "--print-schedule") {
      f->print_schedule = true;
    } else if (absl::StartsWith(arg, "--scenario=")) {
      f->scenario = value("--scenario=");
    } else if (absl::StartsWith(arg, "--schedule=")) {
      f->schedule_file = value("--schedule=");
    } else if (absl::StartsWith(arg, "--save-schedule=")) {
      f->save_schedule_file = value("--save-schedule=");
    } else if (absl::StartsWith(arg, "--seed=")) {
      f->have_seed = absl::SimpleAtoi(value("--seed="), &f->seed);
      if (!f->have_seed) {
        *error = "--seed takes an unsigned integer, got '" + value("--seed=") + "'";
        return false;
      }
    } else {
      *error = "unknown argument '" + arg + "'";
      return false;
    }
  }
  return true;
}

int Run(const e2d::sim::Scenario& scenario, const e2d::sim::FaultSchedule& schedule,
        const Flags& flags) {
  if (flags.print_schedule) std::printf("%s", schedule.ToText().c_str());
  if (!flags.save_schedule_file.empty()) {
    std::ofstream out(flags.save_schedule_file);
    out << schedule.ToText();
    if (!out.good()) return Usage("cannot write " + flags.save_schedule_file);
  }
  e2d::sim::RunOptions options;
  options.echo_log = flags.verbose;
  const e2d::sim::ScenarioResult result = scenario.run(schedule, options);
  std::printf("scenario=%s %s\n", scenario.name.c_str(), result.summary.c_str());
  if (!result.pass) {
    std::printf("FAILURE: %s\n", result.failure.c_str());
    if (!flags.verbose) std::printf("last log lines:\n%s\n", result.log_tail.c_str());
  }
  std::printf("%s\n", e2d::sim::ResultLine(result, schedule.seed).c_str());
  return result.pass ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) return Usage(error);
  if (flags.list) {
    for (const e2d::sim::Scenario& s : e2d::scenarios::AllScenarios()) std::printf("%s\n", s.name.c_str());
    return 0;
  }
  e2d::sim::FaultSchedule schedule;
  if (!flags.schedule_file.empty()) {
    std::ifstream in(flags.schedule_file);
    if (!in) return Usage("cannot read " + flags.schedule_file);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<e2d::sim::FaultSchedule> parsed = e2d::sim::FaultSchedule::Parse(text.str());
    if (!parsed.ok()) return Usage(flags.schedule_file + ": " + std::string(parsed.status().message()));
    schedule = *parsed;
    if (!flags.scenario.empty() && flags.scenario != schedule.scenario) {
      return Usage("--scenario=" + flags.scenario + " but the schedule is for " + schedule.scenario);
    }
    if (flags.have_seed) schedule.seed = flags.seed;
  } else if (flags.scenario.empty() || !flags.have_seed) {
    return Usage("need --scenario and --seed, --schedule, or --list");
  }
  e2d::sim::Scenario scenario;
  const std::string name = flags.schedule_file.empty() ? flags.scenario : schedule.scenario;
  if (!e2d::scenarios::FindScenario(name, &scenario)) {
    return Usage("no scenario '" + name + "' (see --list)");
  }
  if (flags.schedule_file.empty()) schedule = scenario.generate(flags.seed);
  return Run(scenario, schedule, flags);
}
