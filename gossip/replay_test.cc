// Copyright e2d authors.

#include "gossip/replay.h"

#include "gtest/gtest.h"

namespace e2d::gossip {
namespace {

using V = ReplayWindow::Verdict;

TEST(ReplayWindowTest, AcceptsEachSeqOnceInAnyOrderWithinTheWindow) {
  ReplayWindow w;
  EXPECT_EQ(w.Check(7, 10), V::kAccept);
  EXPECT_EQ(w.Check(7, 10), V::kReplay);
  EXPECT_EQ(w.Check(7, 12), V::kAccept);
  EXPECT_EQ(w.Check(7, 11), V::kAccept);  // reordered
  EXPECT_EQ(w.Check(7, 11), V::kReplay);
  EXPECT_EQ(w.Check(7, 9), V::kAccept);   // older than the first, still inside the window
  EXPECT_EQ(w.Check(7, 9), V::kReplay);
}

TEST(ReplayWindowTest, RefusesWhatFellOutOfTheWindow) {
  ReplayWindow w;
  EXPECT_EQ(w.Check(1, 1), V::kAccept);
  EXPECT_EQ(w.Check(1, 1 + ReplayWindow::kWindow), V::kAccept);
  EXPECT_EQ(w.Check(1, 1), V::kTooOld);
  EXPECT_EQ(w.Check(1, 2), V::kAccept);  // newest - 2 < kWindow
  EXPECT_EQ(w.Check(1, 2), V::kReplay);
}

TEST(ReplayWindowTest, SlidingClearsBitsOfSeqsThatLeftTheWindow) {
  ReplayWindow w;
  for (uint64_t s = 1; s <= 3 * ReplayWindow::kWindow; ++s) ASSERT_EQ(w.Check(1, s), V::kAccept);
  // Every seq a window back aliases a bit set earlier: it must have been cleared, yet the seq
  // itself is still refused as too old.
  uint64_t newest = 3 * ReplayWindow::kWindow;
  EXPECT_EQ(w.Check(1, newest - ReplayWindow::kWindow), V::kTooOld);
  EXPECT_EQ(w.Check(1, newest + 5), V::kAccept);
  EXPECT_EQ(w.Check(1, newest + 3), V::kAccept);  // its bit was cleared by the slide
  EXPECT_EQ(w.Check(1, newest + 3), V::kReplay);
}

TEST(ReplayWindowTest, NewSessionResetsOlderSessionIsStale) {
  ReplayWindow w;
  EXPECT_EQ(w.Check(5, 100), V::kAccept);
  EXPECT_EQ(w.Check(6, 1), V::kAccept);  // the sender restarted
  EXPECT_EQ(w.Check(6, 1), V::kReplay);
  EXPECT_EQ(w.Check(5, 101), V::kStaleSession);
  EXPECT_EQ(w.session(), 6u);
}

}  // namespace
}  // namespace e2d::gossip
