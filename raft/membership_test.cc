// Copyright e2d authors.

#include "raft/membership.h"

#include "gtest/gtest.h"

namespace e2d::raft {
namespace {

Membership Voters(std::initializer_list<uint64_t> ids) {
  Membership m;
  m.voters.insert(ids.begin(), ids.end());
  return m;
}

raftpb::ConfChange Change(std::initializer_list<std::pair<raftpb::ConfChangeType, uint64_t>> cs) {
  raftpb::ConfChange cc;
  for (auto [type, id] : cs) {
    raftpb::ConfChangeSingle* c = cc.add_changes();
    c->set_type(type);
    c->set_node_id(id);
  }
  return cc;
}

raftpb::ConfChange Leave() {
  raftpb::ConfChange cc;
  cc.set_leave_joint(true);
  return cc;
}

TEST(MembershipTest, MajorityCommitIndex) {
  Membership m = Voters({1, 2, 3});
  absl::btree_map<uint64_t, uint64_t> match = {{1, 9}, {2, 5}, {3, 7}};
  EXPECT_EQ(m.CommittedIndex([&](uint64_t id) { return match[id]; }), 7u);
}

TEST(MembershipTest, JointCommitNeedsBothMajorities) {
  Membership m = Voters({4, 5, 6});
  m.voters_outgoing = {1, 2, 3};
  absl::btree_map<uint64_t, uint64_t> match = {{1, 9}, {2, 9}, {3, 9}, {4, 2}, {5, 3}, {6, 1}};
  EXPECT_EQ(m.CommittedIndex([&](uint64_t id) { return match[id]; }), 2u);
}

TEST(MembershipTest, JointElectionNeedsBothMajorities) {
  Membership m = Voters({1, 4, 5});
  m.voters_outgoing = {1, 2, 3};
  absl::btree_map<uint64_t, bool> votes = {{1, true}, {2, true}};
  EXPECT_EQ(m.Outcome(votes), VoteResult::kPending);  // old half won, new half not yet
  votes[4] = true;
  EXPECT_EQ(m.Outcome(votes), VoteResult::kWon);
  votes = {{1, true}, {4, false}, {5, false}};
  EXPECT_EQ(m.Outcome(votes), VoteResult::kLost);
  votes = {{9, true}, {8, true}, {1, true}};  // non-voters do not count
  EXPECT_EQ(m.Outcome(votes), VoteResult::kPending);
}

TEST(MembershipTest, SingleServerChangesApplyDirectly) {
  absl::StatusOr<Membership> m =
      ApplyChange(Voters({1, 2, 3}), Change({{raftpb::CONF_CHANGE_ADD_LEARNER_NODE, 4}}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->joint());
  EXPECT_TRUE(m->IsLearner(4));
  m = ApplyChange(*m, Change({{raftpb::CONF_CHANGE_ADD_NODE, 4}}));  // promote
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->joint());
  EXPECT_TRUE(m->IsVoter(4));
  EXPECT_FALSE(m->IsLearner(4));
  m = ApplyChange(*m, Change({{raftpb::CONF_CHANGE_REMOVE_NODE, 1}}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->Voters(), (std::vector<uint64_t>{2, 3, 4}));
}

TEST(MembershipTest, MultiVoterChangeEntersAndLeavesJoint) {
  absl::StatusOr<Membership> m =
      ApplyChange(Voters({1, 2, 3}), Change({{raftpb::CONF_CHANGE_ADD_NODE, 4},
                                             {raftpb::CONF_CHANGE_REMOVE_NODE, 1}}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->joint());
  EXPECT_TRUE(m->auto_leave);
  EXPECT_EQ(m->ToString(), "voters=(2,3,4)&&(1,2,3) autoleave");
  // Nothing but leaving while joint.
  EXPECT_EQ(ApplyChange(*m, Change({{raftpb::CONF_CHANGE_ADD_NODE, 5}})).status().code(),
            absl::StatusCode::kFailedPrecondition);
  m = ApplyChange(*m, Leave());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->ToString(), "voters=(2,3,4)");
  EXPECT_EQ(ApplyChange(*m, Leave()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MembershipTest, DemotedVoterWaitsInLearnersNext) {
  absl::StatusOr<Membership> m =
      ApplyChange(Voters({1, 2, 3}), Change({{raftpb::CONF_CHANGE_ADD_LEARNER_NODE, 3},
                                             {raftpb::CONF_CHANGE_ADD_NODE, 4},
                                             {raftpb::CONF_CHANGE_ADD_NODE, 5}}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->IsVoter(3));  // still votes in the outgoing half
  EXPECT_TRUE(m->learners_next.contains(3));
  m = ApplyChange(*m, Leave());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->IsLearner(3));
  EXPECT_FALSE(m->IsVoter(3));
}

TEST(MembershipTest, RefusesLeavingNoVoter) {
  absl::StatusOr<Membership> m =
      ApplyChange(Voters({1}), Change({{raftpb::CONF_CHANGE_REMOVE_NODE, 1}}));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(m.status().message().find("no voter"), std::string::npos);
  EXPECT_EQ(ApplyChange(Voters({1}), Change({{raftpb::CONF_CHANGE_ADD_NODE, 0}})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MembershipTest, ConfStateRoundTripAndValidation) {
  Membership m = Voters({2, 3, 4});
  m.voters_outgoing = {1, 2, 3};
  m.learners = {7};
  m.learners_next = {1};
  m.auto_leave = true;
  ASSERT_TRUE(m.Validate().ok()) << m.Validate();
  absl::StatusOr<Membership> back = Membership::FromConfState(m.ToConfState());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
  raftpb::ConfState bad;
  bad.add_voters(1);
  bad.add_learners(1);
  EXPECT_EQ(Membership::FromConfState(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Membership::FromConfState(raftpb::ConfState()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace e2d::raft
