// Copyright e2d authors.
//
// The KV mutation self-test: with a rule of the request layer broken on purpose, the kv
// scenarios' oracles must report a violation within the default seed budget. Proves the
// client-history and lease oracles can fail.

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "scenarios/registry.h"

namespace e2d::scenarios {
namespace {

constexpr uint64_t kSeedBudget = 60;

// The first seed of kv_partitions on which `c` fails, or 0.
uint64_t FirstFailingSeed(const KvScenarioConfig& c, std::string* failure) {
  for (uint64_t seed = 1; seed <= kSeedBudget; ++seed) {
    sim::ScenarioResult r =
        RunKv(sim::GenerateSwarm("kv_partitions", seed, c.swarm), sim::RunOptions{}, c);
    if (!r.pass) {
      *failure = r.failure;
      return seed;
    }
  }
  return 0;
}

TEST(KvMutationTest, StaleLocalReadsAreCaughtByTheLinearizabilityChecker) {
  KvScenarioConfig c = KvPartitionsConfig();
  c.mutation_local_reads = true;
  std::string failure;
  const uint64_t seed = FirstFailingSeed(c, &failure);
  ASSERT_NE(seed, 0u) << "no seed in " << kSeedBudget << " caught stale local reads";
  EXPECT_NE(failure.find("linearizability"), std::string::npos) << failure;
  std::printf("stale local reads: caught at kv_partitions seed %llu: %s\n",
              static_cast<unsigned long long>(seed), failure.c_str());
}

TEST(KvMutationTest, KeysOutlivingTheirRevokedLeaseAreCaughtByTheLeaseOracle) {
  KvScenarioConfig c = KvPartitionsConfig();
  c.mutation_revoke_keeps_keys = true;
  std::string failure;
  const uint64_t seed = FirstFailingSeed(c, &failure);
  ASSERT_NE(seed, 0u) << "no seed in " << kSeedBudget << " caught keys outliving their lease";
  EXPECT_NE(failure.find("lease"), std::string::npos) << failure;
  std::printf("revoke keeps keys: caught at kv_partitions seed %llu: %s\n",
              static_cast<unsigned long long>(seed), failure.c_str());
}

TEST(KvMutationTest, TheUnmutatedScenarioPassesTheSameSeeds) {
  // The contrast: the same first seeds pass with reads through ReadIndex.
  KvScenarioConfig c = KvPartitionsConfig();
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    sim::ScenarioResult r =
        RunKv(sim::GenerateSwarm("kv_partitions", seed, c.swarm), sim::RunOptions{}, c);
    EXPECT_TRUE(r.pass) << "seed " << seed << ": " << r.failure;
  }
}

}  // namespace
}  // namespace e2d::scenarios
