// Copyright e2d authors.
//
// The leader's membership decisions, case by case.

#include "node/membership.h"

#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

using Kind = MembershipAction::Kind;
constexpr int64_t kSecond = 1'000'000'000;

MembershipView::RaftMember Voter(uint64_t id, bool up = true) {
  MembershipView::RaftMember m;
  m.id = id;
  m.match = 100;
  m.alive = up;
  m.recently_active = up;
  m.down_since = env::Instant{0};
  return m;
}
MembershipView::RaftMember Learner(uint64_t id, uint64_t match) {
  MembershipView::RaftMember m = Voter(id);
  m.learner = true;
  m.match = match;
  return m;
}
MembershipView::Candidate Candidate(uint64_t id) {
  return {id, "n" + std::to_string(id), "10.0.0." + std::to_string(id) + ":2380"};
}

MembershipView View(int required, std::vector<MembershipView::RaftMember> members,
                    std::vector<MembershipView::Candidate> candidates = {}) {
  MembershipView v;
  v.required_size = required;
  v.health_timeout = absl::Seconds(60);
  v.now = env::Instant{100 * kSecond};  // every member down here has been down 100 s
  v.self = 1;
  v.last_index = 100;
  v.members = std::move(members);
  v.candidates = std::move(candidates);
  return v;
}

TEST(DecideMembershipTest, AHealthyClusterOfTheRequiredSizeIsLeftAlone) {
  EXPECT_EQ(DecideMembership(View(3, {Voter(1), Voter(2), Voter(3)}, {Candidate(9)})).kind,
            Kind::kNone);
}

TEST(DecideMembershipTest, ADeadVoterIsRemovedOnlyAfterTheTimeoutAndOnlyIfRaftLostItToo) {
  MembershipView v = View(3, {Voter(1), Voter(2), Voter(3, false)});
  MembershipAction a = DecideMembership(v);
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 3u);
  EXPECT_TRUE(absl::StrContains(a.why, "health timeout")) << a.why;
  // Down for less than the timeout: kept (a short partition).
  v.members[2].down_since = env::Instant{50 * kSecond};
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
  // Gossip lost it, but Raft still hears from it: kept.
  v = View(3, {Voter(1), Voter(2), Voter(3, false)});
  v.members[2].recently_active = true;
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
  // Raft lost it, but gossip sees it alive: kept.
  v = View(3, {Voter(1), Voter(2), Voter(3, false)});
  v.members[2].alive = true;
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
  // The leader never removes itself.
  v = View(3, {Voter(1, false), Voter(2), Voter(3)});
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
}

TEST(DecideMembershipTest, NoRemovalPutsQuorumAtRisk) {
  // 5 voters, 3 down: removing one leaves 4, of which only 2 up: refused, and said why.
  MembershipAction a = DecideMembership(
      View(5, {Voter(1), Voter(2), Voter(3, false), Voter(4, false), Voter(5, false)}));
  EXPECT_EQ(a.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(a.why, "quorum is at risk")) << a.why;
  // 5 voters, 2 down: removing one leaves 4 with 3 up: fine.
  a = DecideMembership(
      View(5, {Voter(1), Voter(2), Voter(3), Voter(4, false), Voter(5, false)}));
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 4u);
  // 2 voters, 1 down: the one left is the leader itself, a majority of 1.
  a = DecideMembership(View(2, {Voter(1), Voter(2, false)}));
  EXPECT_EQ(a.kind, Kind::kRemove) << a.why;
}

TEST(DecideMembershipTest, AMissingMemberIsAddedAsALearnerOneAtATimeThenPromotedInSync) {
  // Two of three: the smallest candidate joins as a learner.
  MembershipAction a =
      DecideMembership(View(3, {Voter(1), Voter(2)}, {Candidate(8), Candidate(7), Candidate(2)}));
  ASSERT_EQ(a.kind, Kind::kAddLearner) << a.why;
  EXPECT_EQ(a.id, 7u);
  EXPECT_EQ(a.peer_address, "10.0.0.7:2380");
  // One learner catching up: no second one, even with members missing.
  a = DecideMembership(View(5, {Voter(1), Voter(2), Learner(7, 10)}, {Candidate(8)}));
  EXPECT_EQ(a.kind, Kind::kNone);
  EXPECT_TRUE(absl::StrContains(a.why, "is not in sync yet (10 of 100)")) << a.why;
  // In sync (90%): promoted.
  a = DecideMembership(View(3, {Voter(1), Voter(2), Learner(7, 90)}));
  ASSERT_EQ(a.kind, Kind::kPromote) << a.why;
  EXPECT_EQ(a.id, 7u);
  // Not in sync, or not alive: not yet.
  EXPECT_EQ(DecideMembership(View(3, {Voter(1), Voter(2), Learner(7, 89)})).kind, Kind::kNone);
  MembershipView v = View(3, {Voter(1), Voter(2), Learner(7, 100)});
  v.members[2].alive = false;
  v.members[2].down_since = v.now;
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
  // Nothing while a change is being applied.
  v = View(3, {Voter(1), Voter(2)}, {Candidate(7)});
  v.change_pending = true;
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
}

TEST(DecideMembershipTest, ADeadLearnerIsRemovedAndADeadVoterGoesBeforeAnyAdd) {
  MembershipView v = View(3, {Voter(1), Voter(2), Learner(7, 5)}, {Candidate(8)});
  v.members[2].alive = false;
  v.members[2].recently_active = false;
  MembershipAction a = DecideMembership(v);
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 7u);
  a = DecideMembership(View(3, {Voter(1), Voter(2), Voter(3, false)}, {Candidate(8)}));
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 3u);
}

// A learner added while voters were missing is not needed once the cluster has its voters
// again (-n lowered while it caught up, found by manage_replace seed 269): it is removed, so
// that the cluster does not stay with a learner that nothing will promote.
TEST(DecideMembershipTest, ALearnerNoLongerNeededIsRemoved) {
  MembershipAction a = DecideMembership(View(3, {Voter(1), Voter(2), Voter(3), Learner(4, 100)}));
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 4u);
  EXPECT_TRUE(absl::StrContains(a.why, "not needed")) << a.why;
  // With five voters and -n 3, the learner goes first, then the scale-down.
  a = DecideMembership(
      View(3, {Voter(1), Voter(2), Voter(3), Voter(5), Voter(6), Learner(4, 10)}));
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 4u);
  // Still needed while a voter is missing: promoted once in sync.
  a = DecideMembership(View(3, {Voter(1), Voter(2), Learner(4, 100)}));
  EXPECT_EQ(a.kind, Kind::kPromote) << a.why;
}

TEST(DecideMembershipTest, ScalesDownOnlyWhileEveryVoterIsUpNeverTheLeader) {
  MembershipAction a =
      DecideMembership(View(3, {Voter(1), Voter(2), Voter(3), Voter(4), Voter(5)}));
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 5u);
  MembershipView v = View(3, {Voter(1), Voter(2), Voter(3), Voter(4), Voter(5)});
  v.self = 5;
  a = DecideMembership(v);
  ASSERT_EQ(a.kind, Kind::kRemove) << a.why;
  EXPECT_EQ(a.id, 4u);
  v = View(3, {Voter(1), Voter(2), Voter(3), Voter(4), Voter(5)});
  v.members[4].recently_active = false;  // lagging: wait
  v.members[4].down_since = v.now;
  EXPECT_EQ(DecideMembership(v).kind, Kind::kNone);
}

}  // namespace
}  // namespace e2d::node
