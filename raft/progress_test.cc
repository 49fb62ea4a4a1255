// Copyright e2d authors.

#include "raft/progress.h"

#include "gtest/gtest.h"

namespace e2d::raft {
namespace {

TEST(InflightsTest, BoundedByCountAndBytes) {
  Inflights by_count(2, 1 << 20);
  by_count.Add(1, 10);
  EXPECT_FALSE(by_count.full());
  by_count.Add(2, 10);
  EXPECT_TRUE(by_count.full());
  by_count.FreeLE(1);
  EXPECT_FALSE(by_count.full());
  EXPECT_EQ(by_count.bytes(), 10u);
  Inflights by_bytes(100, 25);
  by_bytes.Add(1, 20);
  EXPECT_FALSE(by_bytes.full());
  by_bytes.Add(2, 20);
  EXPECT_TRUE(by_bytes.full());
  by_bytes.FreeFirstOne();
  EXPECT_EQ(by_bytes.count(), 1u);
}

TEST(ProgressTest, ProbeSendsOneAppendUntilAnswered) {
  Progress pr(5, 4, 1 << 20);
  EXPECT_FALSE(pr.paused());
  pr.SentEntries(7, 100);
  EXPECT_TRUE(pr.paused());
  EXPECT_TRUE(pr.MaybeUpdate(7));
  EXPECT_FALSE(pr.paused());
  EXPECT_EQ(pr.next, 8u);
}

TEST(ProgressTest, ReplicatePipelinesWithinTheWindow) {
  Progress pr(1, 2, 1 << 20);
  pr.BecomeReplicate();
  pr.SentEntries(3, 10);
  pr.SentEntries(6, 10);
  EXPECT_TRUE(pr.paused());  // two appends in flight: the window is full
  EXPECT_EQ(pr.next, 7u);
  EXPECT_TRUE(pr.MaybeUpdate(3));
  pr.inflights.FreeLE(3);
  EXPECT_FALSE(pr.paused());
}

TEST(ProgressTest, MaybeDecrToIgnoresStaleRejections) {
  Progress pr(10, 4, 1 << 20);  // probe, next 10: the append sent had prev index 9
  EXPECT_FALSE(pr.MaybeDecrTo(5, 3));  // not the append we sent
  EXPECT_TRUE(pr.MaybeDecrTo(9, 3));
  EXPECT_EQ(pr.next, 4u);  // the follower's hint
  pr.match = 4;
  pr.BecomeReplicate();
  EXPECT_FALSE(pr.MaybeDecrTo(4, 0));  // at or below match: stale
  EXPECT_TRUE(pr.MaybeDecrTo(8, 0));
  EXPECT_EQ(pr.next, 5u);
}

TEST(ProgressTest, SnapshotPausesAndProbeResumesAfterIt) {
  Progress pr(3, 4, 1 << 20);
  pr.BecomeSnapshot(50);
  EXPECT_TRUE(pr.paused());
  pr.BecomeProbe();
  EXPECT_EQ(pr.next, 51u);
}

}  // namespace
}  // namespace e2d::raft
