// Copyright e2d authors.

#include "kv/key_index.h"

#include "gtest/gtest.h"

namespace e2d::kv {
namespace {

TEST(KeyIndexTest, GenerationsAndVisibility) {
  KeyIndex k;
  k.Put({2, 0});
  k.Put({4, 0});
  k.Tombstone({6, 0});
  k.Put({8, 1});
  EXPECT_FALSE(k.Get(1));
  EXPECT_EQ(k.Get(2), (Revision{2, 0}));
  EXPECT_EQ(k.Get(5), (Revision{4, 0}));
  EXPECT_FALSE(k.Get(6));  // deleted at 6
  EXPECT_FALSE(k.Get(7));
  EXPECT_EQ(k.Get(9), (Revision{8, 1}));
  EXPECT_TRUE(k.live());
  EXPECT_EQ(k.NextPut(10).create_revision, 8);
  EXPECT_EQ(k.NextPut(10).version, 2);
}

TEST(KeyIndexTest, CompactionKeepsWhatReadsAtOrAfterItCanSee) {
  KeyIndex k;
  k.Put({2, 0});
  k.Put({4, 0});
  k.Tombstone({6, 0});
  k.Put({8, 0});
  k.Put({9, 0});
  std::vector<Revision> dropped;
  EXPECT_FALSE(k.Compact(5, &dropped));
  EXPECT_EQ(dropped, (std::vector<Revision>{{2, 0}}));  // 4 stays: visible at 5
  EXPECT_EQ(k.Get(5), (Revision{4, 0}));
  dropped.clear();
  EXPECT_FALSE(k.Compact(8, &dropped));  // the first generation ended at 6: all of it goes
  EXPECT_EQ(dropped, (std::vector<Revision>{{4, 0}, {6, 0}}));
  EXPECT_EQ(k.Get(8), (Revision{8, 0}));
  k.Tombstone({10, 0});
  dropped.clear();
  // Deleted at the compact revision itself: the tombstone stays (revision 10's history).
  EXPECT_FALSE(k.Compact(10, &dropped));
  EXPECT_EQ(dropped, (std::vector<Revision>{{8, 0}, {9, 0}}));
  EXPECT_EQ(k.Get(10), std::nullopt);
  dropped.clear();
  EXPECT_TRUE(k.Compact(11, &dropped));
  EXPECT_EQ(dropped, (std::vector<Revision>{{10, 0}}));
}

TEST(KeyIndexDeathTest, RevisionsMustIncrease) {
  KeyIndex k;
  k.Put({5, 0});
  EXPECT_DEATH(k.Put({5, 0}), "revision");
  EXPECT_DEATH(KeyIndex().Tombstone({1, 0}), "does not exist");
}

}  // namespace
}  // namespace e2d::kv
