// Copyright e2d authors.
//
// gossip_measure: runs the gossip harness over many seeds per cluster size and fault mix and
// prints the README's table of figures (simulated milliseconds; counts over simulated hours).
//   bazel run -c opt //scenarios:gossip_measure -- [--seeds_small=20 --seeds_50=8 --seeds_200=2]
// Every run keeps every oracle the mix allows on; a failing run is reported and makes the tool
// exit non-zero.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "scenarios/gossip_harness.h"

ABSL_FLAG(int, seeds_small, 20, "seeds per mix for 3 and 5 members");
ABSL_FLAG(int, seeds_50, 8, "seeds per mix for 50 members");
ABSL_FLAG(int, seeds_200, 2, "seeds per mix for 200 members");

namespace e2d::scenarios {
namespace {

struct Totals {
  std::vector<double> suspect, dead_first, dead_all, propagate, partition, restart;
  int false_dead = 0, false_dead_overloaded = 0;
  double member_hours = 0;
  int failures = 0;
};

std::string Ms(const std::vector<double>& v) {
  if (v.empty()) return "-";
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(s.size() - 1, i)];
  };
  return absl::StrFormat("%.1f / %.1f", at(0.5) / 1000, at(0.99) / 1000);
}

Totals RunMix(const std::string& name, const GossipScenarioConfig& config, int seeds) {
  Totals t;
  for (int seed = 1; seed <= seeds; ++seed) {
    sim::FaultSchedule schedule = GenerateGossip(name, 9000 + seed, config);
    GossipMetrics m;
    sim::ScenarioResult r = RunGossip(schedule, sim::RunOptions{}, config, &m);
    if (!r.pass) {
      ++t.failures;
      std::fprintf(stderr, "FAIL %s seed %d: %s\n", name.c_str(), 9000 + seed, r.failure.c_str());
    }
    auto append = [](std::vector<double>& to, const std::vector<double>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    append(t.suspect, m.first_suspect_ms);
    append(t.dead_first, m.first_dead_ms);
    append(t.dead_all, m.all_dead_ms);
    append(t.propagate, m.propagate_ms);
    if (m.partition_converge_ms >= 0) t.partition.push_back(m.partition_converge_ms);
    if (m.restart_converge_ms >= 0) t.restart.push_back(m.restart_converge_ms);
    t.false_dead += m.false_dead;
    t.false_dead_overloaded += m.false_dead_overloaded;
    t.member_hours +=
        static_cast<double>(config.duration_ms - config.settle_ms) / 3.6e6 * m.nodes;
  }
  return t;
}

int Main() {
  std::printf("| members | loss | suspected | dead, first | dead, everyone | update reaches all "
              "| false dead (in member-hours) |\n|---|---|---|---|---|---|---|\n");
  std::string second =
      "| members | overloaded member: false dead of others / of itself | 30% loss without "
      "the stream fallback: false dead | converge after a split heals | converge after a mass "
      "restart |\n|---|---|---|---|---|\n";
  int failures = 0;
  for (int n : {3, 5, 50, 200}) {
    const int seeds = n <= 5    ? absl::GetFlag(FLAGS_seeds_small)
                      : n == 50 ? absl::GetFlag(FLAGS_seeds_50)
                                : absl::GetFlag(FLAGS_seeds_200);
    GossipScenarioConfig base;
    base.sizes = {n};
    base.settle_ms = n >= 200 ? 30'000 : 20'000;
    base.duration_ms = base.settle_ms + 70'000;
    base.crashes = n >= 50 ? 2 : 1;
    base.meta_updates = 3;
    base.detect_ms_max = 60'000;
    const double losses[3] = {0.0, 0.1, 0.3};
    for (double loss : losses) {
      GossipScenarioConfig c = base;
      c.loss_choices = {loss};
      c.no_false_dead = loss <= 0.1;
      if (loss > 0.1) c.detect_ms_max = 0;  // 30% loss: measured, not bounded
      Totals t = RunMix(absl::StrFormat("measure_%d_loss%.0f", n, loss * 100), c, seeds);
      std::printf("| %d | %.0f%% | %s | %s | %s | %s | %d in %.1f |\n", n, loss * 100,
                  Ms(t.suspect).c_str(), Ms(t.dead_first).c_str(), Ms(t.dead_all).c_str(),
                  Ms(t.propagate).c_str(), t.false_dead, t.member_hours);
      std::fflush(stdout);
      failures += t.failures;
    }
    GossipScenarioConfig slow = base;
    slow.crashes = 0;
    slow.overload_chance = 1.0;
    Totals overloaded = RunMix(absl::StrFormat("measure_%d_overload", n), slow, seeds);
    GossipScenarioConfig bare = base;
    bare.loss_choices = {0.3};
    bare.detect_ms_max = 0;
    bare.stream_fallback = false;
    Totals no_fallback = RunMix(absl::StrFormat("measure_%d_nofallback", n), bare, seeds);
    GossipScenarioConfig split = base;
    split.crashes = 0;
    split.detect_ms_max = 0;
    split.partition = true;
    split.mass_restart = true;
    split.duration_ms = base.settle_ms + 100'000;
    Totals heal = RunMix(absl::StrFormat("measure_%d_split", n), split, seeds);
    failures += overloaded.failures + no_fallback.failures + heal.failures;
    absl::StrAppendFormat(&second, "| %d | %d / %d in %.1f | %d in %.1f | %s | %s |\n", n,
                          overloaded.false_dead, overloaded.false_dead_overloaded,
                          overloaded.member_hours, no_fallback.false_dead,
                          no_fallback.member_hours, Ms(heal.partition).c_str(),
                          Ms(heal.restart).c_str());
  }
  std::printf("\n%s", second.c_str());
  std::printf("\nSeconds of simulated time, median / p99 over every crash or update; %d, %d and "
              "%d seeds per mix for 3-5, 50 and 200 members; failed runs: %d\n",
              absl::GetFlag(FLAGS_seeds_small), absl::GetFlag(FLAGS_seeds_50),
              absl::GetFlag(FLAGS_seeds_200), failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace e2d::scenarios

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return e2d::scenarios::Main();
}
