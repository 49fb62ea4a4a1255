// Copyright e2d authors.
//
// The test behind every scenario_test() target: runs one scenario over a range of seeds with
// every oracle on, each seed twice (the second run replays the schedule from its text form), and
// fails on any oracle violation or digest mismatch, printing how to replay the seed.
//
//   scenario_test --scenario=NAME [--seeds=N] [--first_seed=S]
// E2D_SEEDS in the environment overrides --seeds (for longer sweeps: bazel test
// --test_env=E2D_SEEDS=10000 //scenarios:...). E2D_SEEDS_DIVISOR=D runs max(1, seeds / D) seeds:
// the sanitizer configs use it (.bazelrc), since they look for memory errors and undefined
// behaviour along code paths a quarter of the seeds already reach, at 2-3 times the cost; the
// default config runs the whole budget.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "scenarios/registry.h"

namespace {

std::string g_scenario;
uint64_t g_seeds = 100;
uint64_t g_first_seed = 1;

TEST(Scenario, EverySeedPassesAndReplaysToTheSameDigest) {
  e2d::sim::Scenario scenario;
  ASSERT_TRUE(e2d::scenarios::FindScenario(g_scenario, &scenario)) << "no scenario " << g_scenario;
  uint64_t events = 0;
  int64_t sim_ns = 0;
  for (uint64_t seed = g_first_seed; seed < g_first_seed + g_seeds; ++seed) {
    const e2d::sim::FaultSchedule schedule = scenario.generate(seed);
    e2d::sim::ScenarioResult result;
    const std::string divergence = e2d::sim::CheckDeterminism(scenario, schedule, &result);
    ASSERT_EQ(divergence, "") << "nondeterminism in " << g_scenario << " seed " << seed;
    ASSERT_TRUE(result.pass) << g_scenario << " seed " << seed << ": " << result.failure
                             << "\nreplay: bazel run //sim -- --scenario=" << g_scenario
                             << " --seed=" << seed << " --verbose\n"
                             << result.log_tail;
    events += result.events;
    sim_ns += result.end_ns;
  }
  std::printf("%s: %llu seeds from %llu, %llu events, %.0f simulated seconds (each run twice)\n",
              g_scenario.c_str(), static_cast<unsigned long long>(g_seeds),
              static_cast<unsigned long long>(g_first_seed), static_cast<unsigned long long>(events),
              sim_ns / 1e9);
}

bool ParseU64Flag(const std::string& arg, const char* name, uint64_t* out) {
  const std::string prefix = std::string("--") + name + "=";
  if (!absl::StartsWith(arg, prefix)) return false;
  if (!absl::SimpleAtoi(arg.substr(prefix.size()), out)) {
    std::fprintf(stderr, "bad value in %s\n", arg.c_str());
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--scenario=")) {
      g_scenario = arg.substr(11);
    } else if (!ParseU64Flag(arg, "seeds", &g_seeds) && !ParseU64Flag(arg, "first_seed", &g_first_seed)) {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  // determinism-ok: the test runner reads its seed budget; simulated code never sees it.
  if (const char* env_seeds = std::getenv("E2D_SEEDS"); env_seeds != nullptr) {
    if (!absl::SimpleAtoi(env_seeds, &g_seeds)) {
      std::fprintf(stderr, "bad E2D_SEEDS=%s\n", env_seeds);
      return 2;
    }
  }
  // determinism-ok: as above.
  if (const char* env_divisor = std::getenv("E2D_SEEDS_DIVISOR"); env_divisor != nullptr) {
    uint64_t divisor = 0;
    if (!absl::SimpleAtoi(env_divisor, &divisor) || divisor == 0) {
      std::fprintf(stderr, "bad E2D_SEEDS_DIVISOR=%s (want a positive integer)\n", env_divisor);
      return 2;
    }
    g_seeds = std::max<uint64_t>(1, g_seeds / divisor);
  }
  return RUN_ALL_TESTS();
}
