// Copyright e2d authors.

#include "sim/scenario.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::sim {
namespace {

std::string Describe(const TraceEntry& e) {
  return absl::StrFormat("t=%dns node=%u kind=%s detail=%016x", e.time_ns, e.node, e.kind,
                         e.detail);
}

std::string FirstDivergence(const std::vector<TraceEntry>& a, const std::vector<TraceEntry>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i].digest_after != b[i].digest_after) {
      return absl::StrFormat("first divergence at event #%d:\n  run 1: %s\n  run 2: %s\n%s", i,
                             Describe(a[i]), Describe(b[i]),
                             i > 0 ? "  previous: " + Describe(a[i - 1]) : "");
    }
  }
  return absl::StrFormat("one run is a prefix of the other (%d vs %d events)", a.size(), b.size());
}

}  // namespace

std::string ResultLine(const ScenarioResult& result, uint64_t seed) {
  return absl::StrFormat("digest=%016x seed=%d result=%s", result.digest, seed,
                         result.pass ? "pass" : "fail");
}

std::string CheckDeterminism(const Scenario& scenario, const FaultSchedule& schedule,
                             ScenarioResult* first) {
  *first = scenario.run(schedule, RunOptions{});
  // The second run goes through the text form, so it also proves the schedule replays from it.
  absl::StatusOr<FaultSchedule> reparsed = FaultSchedule::Parse(schedule.ToText());
  if (!reparsed.ok()) return "schedule does not reparse: " + reparsed.status().ToString();
  if (!(*reparsed == schedule)) return "schedule changes through its text form";
  const ScenarioResult second = scenario.run(*reparsed, RunOptions{});
  if (first->digest == second.digest && first->events == second.events) return "";
  std::vector<TraceEntry> trace_a, trace_b;
  RunOptions a, b;
  a.trace = &trace_a;
  b.trace = &trace_b;
  scenario.run(schedule, a);
  scenario.run(*reparsed, b);
  return absl::StrFormat("digests differ (%016x vs %016x); %s", first->digest, second.digest,
                         FirstDivergence(trace_a, trace_b));
}

}  // namespace e2d::sim
