// Copyright e2d authors.
//
// Recovery from the loss of a majority, case by case: when a survivor waits, whom it votes for,
// when it forces, and when it steps aside.

#include "node/recovery.h"

#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

using Kind = RecoveryDecision::Kind;
constexpr int64_t kSecond = 1'000'000'000;

RecoveryView::Voter Survivor(uint64_t id, uint64_t commit, uint64_t vote = 0) {
  RecoveryView::Voter v;
  v.id = id;
  v.alive = true;
  v.lost_quorum = true;
  v.commit = commit;
  v.vote = vote;
  return v;
}
RecoveryView::Voter Lost(uint64_t id, int64_t down_since_s = 0) {
  RecoveryView::Voter v;
  v.id = id;
  v.down_since = env::Instant{down_since_s * kSecond};
  return v;
}

// Member 1 of a cluster of `required`, leaderless since t=0, now t=100 s, timeout 60 s.
RecoveryView View(int required, uint64_t commit, std::vector<RecoveryView::Voter> others,
                  int fresh = 0) {
  RecoveryView v;
  v.self = 1;
  v.required_size = required;
  v.health_timeout = absl::Seconds(60);
  v.now = env::Instant{100 * kSecond};
  v.leaderless_since = env::Instant{0};
  v.voter = true;
  v.commit = commit;
  v.others = std::move(others);
  v.fresh = fresh;
  return v;
}

TEST(RecoveryTest, TheLastSurvivorOfThreeForcesOnceTwoNodesWaitToJoin) {
  RecoveryDecision d = DecideRecovery(View(3, 10, {Lost(2), Lost(3)}, /*fresh=*/1));
  EXPECT_EQ(d.kind, Kind::kForce) << d.why;
  EXPECT_EQ(d.best, 1u);
  EXPECT_TRUE(absl::StrContains(d.why, "2 of the 3 voters lost")) << d.why;
}

TEST(RecoveryTest, ALoneMemberThatSeesTooFewNodesMayBeCutOffAndWaits) {
  RecoveryDecision d = DecideRecovery(View(3, 10, {Lost(2), Lost(3)}, /*fresh=*/0));
  EXPECT_EQ(d.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(d.why, "partition")) << d.why;
  // Of five, two survivors need one more live node.
  EXPECT_EQ(DecideRecovery(View(5, 10, {Survivor(2, 9, 1), Lost(3), Lost(4), Lost(5)}, 0)).kind,
            Kind::kNone);
  EXPECT_EQ(DecideRecovery(View(5, 10, {Survivor(2, 9, 1), Lost(3), Lost(4), Lost(5)}, 1)).kind,
            Kind::kForce);
}

TEST(RecoveryTest, NothingWhileALeaderIsKnownOrBeforeTheHealthTimeout) {
  RecoveryView v = View(3, 10, {Lost(2), Lost(3)}, 2);
  v.leaderless_since.reset();
  EXPECT_EQ(DecideRecovery(v).kind, Kind::kNone);
  v.leaderless_since = env::Instant{50 * kSecond};
  RecoveryDecision d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kNone);
  EXPECT_EQ(d.why, "");  // an election, most likely: not worth a log line
  // A voter down for less than the timeout is not lost yet.
  d = DecideRecovery(View(3, 10, {Lost(2), Lost(3, 70)}, 2));
  EXPECT_EQ(d.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(d.why, "has not been down for the health timeout")) << d.why;
}

TEST(RecoveryTest, AMajorityAliveOrAVoterNotDeclaringTheLossWaits) {
  RecoveryDecision d = DecideRecovery(View(3, 10, {Survivor(2, 10), Lost(3)}, 2));
  EXPECT_EQ(d.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(d.why, "a majority")) << d.why;
  RecoveryView::Voter quiet = Survivor(2, 10);
  quiet.lost_quorum = false;
  d = DecideRecovery(View(5, 10, {quiet, Lost(3), Lost(4), Lost(5)}, 2));
  EXPECT_EQ(d.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(d.why, "has not declared quorum lost")) << d.why;
}

TEST(RecoveryTest, TheSurvivorWithTheMostDataIsChosenAndForcesOnlyOnceEveryoneAgrees) {
  // Member 2 has more: 1 votes for it.
  RecoveryDecision d = DecideRecovery(View(5, 10, {Survivor(2, 12), Lost(3), Lost(4), Lost(5)}, 1));
  EXPECT_EQ(d.kind, Kind::kVote);
  EXPECT_EQ(d.best, 2u);
  // Equal data: the smaller id, 1; it waits for 2's vote, then forces.
  d = DecideRecovery(View(5, 10, {Survivor(2, 10, 0), Lost(3), Lost(4), Lost(5)}, 1));
  EXPECT_EQ(d.kind, Kind::kVote);
  EXPECT_EQ(d.best, 1u);
  EXPECT_TRUE(absl::StrContains(d.why, "waiting for survivor")) << d.why;
  d = DecideRecovery(View(5, 10, {Survivor(2, 10, 2), Lost(3), Lost(4), Lost(5)}, 1));
  EXPECT_EQ(d.kind, Kind::kVote);  // 2 still votes for itself: no force
  d = DecideRecovery(View(5, 10, {Survivor(2, 10, 1), Lost(3), Lost(4), Lost(5)}, 1));
  EXPECT_EQ(d.kind, Kind::kForce);
}

TEST(RecoveryTest, ALearnerNeverForcesAndEveryoneElseStepsAsideForTheRecoveredCluster) {
  RecoveryView v = View(3, 10, {Lost(2), Lost(3)}, 2);
  v.voter = false;
  EXPECT_EQ(DecideRecovery(v).kind, Kind::kNone);
  v.recovered_by = 7;
  RecoveryDecision d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kStepAside);
  EXPECT_EQ(d.best, 7u);
  // Not while it knows a leader (its old cluster's majority came back): it keeps that one.
  v.leaderless_since.reset();
  EXPECT_EQ(DecideRecovery(v).kind, Kind::kNone);
  v.leaderless_since = env::Instant{0};
  v.recovered_by = v.self;  // its own recovered cluster: nothing
  EXPECT_EQ(DecideRecovery(v).kind, Kind::kNone);
}

TEST(RecoveryTest, WithBackupsTheChosenSurvivorReadsTheNewestFirstAndRestoresItIfItHoldsMore) {
  // Member 1 is chosen (commit 10, member 2 agrees); backups are on.
  RecoveryView v = View(5, 10, {Survivor(2, 9, 1), Lost(3), Lost(4), Lost(5)}, 1);
  v.backups = true;
  // Not read yet: it keeps its vote and asks for the read; it never acts before.
  RecoveryDecision d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kVote) << d.why;
  EXPECT_EQ(d.best, 1u);
  EXPECT_TRUE(d.needs_backup);
  // The store could not be read: it waits and says why (and asks again).
  v.backup_checked = true;
  v.backup_error = "connection refused";
  d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kVote);
  EXPECT_TRUE(d.needs_backup);
  EXPECT_TRUE(absl::StrContains(d.why, "connection refused")) << d.why;
  // No backup of the cluster checks out: it forces from its own data.
  v.backup_error.clear();
  d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kForce) << d.why;
  EXPECT_FALSE(d.needs_backup);
  // A backup taken at the commit index holds no more: force.
  v.newest_backup = RecoveryView::Backup{"e2d-b", 10, 7};
  d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kForce) << d.why;
  EXPECT_TRUE(absl::StrContains(d.why, "holds no more")) << d.why;
  // One taken past it (the lost majority went on): restore it.
  v.newest_backup = RecoveryView::Backup{"e2d-b", 11, 8};
  d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kRestore) << d.why;
  EXPECT_EQ(d.best, 1u);
  EXPECT_EQ(d.backup, "e2d-b");
  // A survivor that is not chosen never reads the store: it votes for the chosen one.
  d = DecideRecovery(View(5, 10, {Survivor(2, 12), Lost(3), Lost(4), Lost(5)}, 1));
  EXPECT_EQ(d.kind, Kind::kVote);
  EXPECT_FALSE(d.needs_backup);
  // Nor does the chosen one before every survivor agrees.
  v.others[0].vote = 0;
  v.backup_checked = false;
  d = DecideRecovery(v);
  EXPECT_EQ(d.kind, Kind::kVote);
  EXPECT_FALSE(d.needs_backup);
}

}  // namespace
}  // namespace e2d::node
