// Copyright e2d authors.

#include "raft/raft_log.h"

#include <vector>

#include "gtest/gtest.h"

namespace e2d::raft {
namespace {

raftpb::Entry E(uint64_t index, uint64_t term) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  return e;
}

std::vector<raftpb::Entry> Terms(uint64_t first, std::vector<uint64_t> terms) {
  std::vector<raftpb::Entry> out;
  for (uint64_t t : terms) out.push_back(E(first++, t));
  return out;
}

TEST(RaftLogTest, TermsAndBounds) {
  RaftLog log(0, 0, Terms(1, {1, 1, 2}), 0);
  EXPECT_EQ(log.first_index(), 1u);
  EXPECT_EQ(log.last_index(), 3u);
  EXPECT_EQ(log.last_term(), 2u);
  EXPECT_EQ(log.TermOr0(0), 0u);
  EXPECT_EQ(log.TermOr0(3), 2u);
  EXPECT_EQ(log.TermOr0(4), 0u);
  EXPECT_TRUE(log.MatchTerm(2, 1));
  EXPECT_FALSE(log.MatchTerm(2, 2));
  EXPECT_EQ(log.stable_index(), 3u);  // recovered entries are durable
}

// §5.4.1: compare last terms first, then lengths.
TEST(RaftLogTest, Sec5_4_1_IsUpToDate) {
  RaftLog log(0, 0, Terms(1, {1, 2, 2}), 0);
  EXPECT_TRUE(log.IsUpToDate(1, 3));   // higher last term wins even if shorter
  EXPECT_FALSE(log.IsUpToDate(9, 1));  // lower last term loses even if longer
  EXPECT_TRUE(log.IsUpToDate(3, 2));   // equal
  EXPECT_FALSE(log.IsUpToDate(2, 2));  // same term, shorter
}

// §5.3: append after a matching entry, skip what we have, truncate from the first conflict.
TEST(RaftLogTest, Sec5_3_MaybeAppendMatchesSkipsAndTruncates) {
  RaftLog log(0, 0, Terms(1, {1, 1, 2, 2}), 1);
  EXPECT_FALSE(log.MaybeAppend(4, 3, 0, {}).has_value());  // prev (4, 3) does not match
  auto last = log.MaybeAppend(2, 1, 3, Terms(3, {2, 3, 3}));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, 5u);
  EXPECT_EQ(log.last_index(), 5u);
  EXPECT_EQ(log.TermOr0(4), 3u);  // the conflicting (4, 2) was replaced
  EXPECT_EQ(log.committed(), 3u);  // min(leader commit, last new index)
  EXPECT_EQ(log.stable_index(), 3u);  // the overwritten suffix is no longer durable
}

TEST(RaftLogTest, TakeUnpersistedAndStableToSurviveAnOverwrite) {
  RaftLog log(0, 0, {}, 0);
  log.Append(Terms(1, {1, 1, 1}));
  std::vector<raftpb::Entry> first = log.TakeUnpersisted();
  EXPECT_EQ(first.size(), 3u);
  EXPECT_FALSE(log.HasUnpersisted());
  // Before that persist completes, entries 2-3 are replaced by a new leader's.
  log.Append(Terms(2, {2}));
  log.StableTo(first);  // only entry 1 of that batch is still in the log
  EXPECT_EQ(log.stable_index(), 1u);
  std::vector<raftpb::Entry> second = log.TakeUnpersisted();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].term(), 2u);
  log.StableTo(second);
  EXPECT_EQ(log.stable_index(), 2u);
}

TEST(RaftLogTest, FindConflictByTermSkipsWholeTerms) {
  RaftLog log(0, 0, Terms(1, {1, 1, 3, 3, 3, 5, 5}), 0);
  EXPECT_EQ(log.FindConflictByTerm(7, 4), std::make_pair(uint64_t{5}, uint64_t{3}));
  EXPECT_EQ(log.FindConflictByTerm(7, 2), std::make_pair(uint64_t{2}, uint64_t{1}));
  EXPECT_EQ(log.FindConflictByTerm(7, 0), std::make_pair(uint64_t{0}, uint64_t{0}));
  EXPECT_EQ(log.FindConflictByTerm(99, 9), std::make_pair(uint64_t{7}, uint64_t{5}));
}

// §5.4.2 at the log level: MaybeCommit needs the entry to carry the given term.
TEST(RaftLogTest, Sec5_4_2_MaybeCommitOnlyForTheGivenTerm) {
  RaftLog log(0, 0, Terms(1, {1, 2, 3}), 0);
  EXPECT_FALSE(log.MaybeCommit(2, 3));
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_TRUE(log.MaybeCommit(3, 3));
  EXPECT_EQ(log.committed(), 3u);
  EXPECT_FALSE(log.MaybeCommit(2, 2));  // never backwards
}

TEST(RaftLogTest, SliceRespectsTheByteBoundButReturnsAtLeastOne) {
  RaftLog log(0, 0, Terms(1, {1, 1, 1, 1}), 0);
  EXPECT_EQ(log.Slice(1, 5, 1).size(), 1u);
  EXPECT_EQ(log.Slice(1, 5, 1 << 20).size(), 4u);
  EXPECT_EQ(log.Slice(3, 3, 1 << 20).size(), 0u);
}

TEST(RaftLogTest, FindConfChangeLooksOnlyAfterTheIndexAndAtConfChanges) {
  std::vector<raftpb::Entry> entries = Terms(1, {1, 1, 1, 1, 1});
  entries[1].set_type(raftpb::ENTRY_CONF_CHANGE);
  entries[1].set_data("change");
  entries[2].set_data("change");  // a normal entry with the same bytes does not count
  entries[3].set_type(raftpb::ENTRY_CONF_CHANGE);
  entries[3].set_data("other");
  RaftLog log(0, 0, entries, 0);
  EXPECT_EQ(log.FindConfChange(0, "change"), 2u);
  EXPECT_EQ(log.FindConfChange(2, "change"), 0u);
  EXPECT_EQ(log.FindConfChange(0, "other"), 4u);
  EXPECT_EQ(log.FindConfChange(4, "other"), 0u);
  EXPECT_EQ(log.FindConfChange(99, "change"), 0u);
}

TEST(RaftLogDeathTest, BrokenInvariantsCrashLoudly) {
  RaftLog log(0, 0, Terms(1, {1, 1}), 2);
  EXPECT_DEATH(log.Append(Terms(2, {2})), "append at 2: committed 2");  // overwrite committed
  EXPECT_DEATH(log.Append(Terms(5, {1})), "append at 5");               // gap
  EXPECT_DEATH(log.CommitTo(9), "commit 9 past last index 2");
  EXPECT_DEATH(log.AppliedTo(3), "applied 3 outside");
}

}  // namespace
}  // namespace e2d::raft
