// Copyright e2d authors.
//
// The mutation self-test: with one Raft safety rule broken on purpose, the scenario checkers
// must report a violation within the default seed budget. Proves the checkers can fail.

#include <string>

#include "gtest/gtest.h"
#include "scenarios/registry.h"

namespace e2d::scenarios {
namespace {

constexpr uint64_t kSeedBudget = 100;

// The first seed (1..kSeedBudget) on which `base` with `mutation` fails, or 0.
uint64_t FirstFailingSeed(const std::string& name, RaftScenarioConfig config,
                          raft::Mutation mutation, std::string* failure) {
  for (uint64_t seed = 1; seed <= kSeedBudget; ++seed) {
    // The scenario's own schedules and config; only the rule is broken.
    RaftScenarioConfig c = config;
    c.mutation = mutation;
    sim::ScenarioResult r =
        RunRaft(sim::GenerateSwarm(name, seed, c.swarm), sim::RunOptions{}, c);
    if (!r.pass) {
      *failure = r.failure;
      return seed;
    }
  }
  return 0;
}

TEST(RaftMutationTest, VotesWithoutTheUpToDateCheckAreCaught) {
  std::string failure;
  const uint64_t seed =
      FirstFailingSeed("raft_crashes", RaftCrashesConfig(),
                       raft::Mutation::kVoteWithoutLogCheck, &failure);
  EXPECT_NE(seed, 0u) << "no seed in " << kSeedBudget << " caught the broken §5.4.1 rule";
  std::printf("vote without log check: caught at raft_crashes seed %llu: %s\n",
              static_cast<unsigned long long>(seed), failure.c_str());
}

TEST(RaftMutationTest, CommittingOldTermEntriesByCountingIsCaught) {
  std::string failure;
  const uint64_t seed =
      FirstFailingSeed("raft_figure8", RaftFigure8Config(),
                       raft::Mutation::kCommitOldTermByCounting, &failure);
  EXPECT_NE(seed, 0u) << "no seed in " << kSeedBudget << " caught the broken §5.4.2 rule";
  std::printf("commit old term by counting: caught at raft_figure8 seed %llu: %s\n",
              static_cast<unsigned long long>(seed), failure.c_str());
}

TEST(RaftMutationTest, ReadsWithoutConfirmingLeadershipAreCaught) {
  std::string failure;
  const uint64_t seed = FirstFailingSeed("raft_partitions", RaftPartitionsConfig(),
                                         raft::Mutation::kReadWithoutQuorum, &failure);
  EXPECT_NE(seed, 0u) << "no seed in " << kSeedBudget << " caught reads without a quorum check";
  std::printf("read without quorum: caught at raft_partitions seed %llu: %s\n",
              static_cast<unsigned long long>(seed), failure.c_str());
}

}  // namespace
}  // namespace e2d::scenarios
