// Copyright e2d authors.

#include "kv/watch.h"

#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "kv/mem_engine.h"

namespace e2d::kv {
namespace {

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = MvccStore::Open(&engine_);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    hub_ = std::make_unique<WatchHub>(store_.get(), /*events_max=*/3);
    store_->set_on_commit(
        [this](int64_t rev, const std::vector<kvpb::Event>& ev) { hub_->OnCommit(rev, ev); });
  }
  void Put(std::string k, std::string v) {
    MvccStore::Txn t = store_->Begin();
    ASSERT_TRUE(t.Put(k, v, 0).ok());
    ASSERT_TRUE(t.Commit(++index_).ok());
  }
  void Delete(std::string k, std::string end = "") {
    MvccStore::Txn t = store_->Begin();
    ASSERT_TRUE(t.DeleteRange(k, end).ok());
    ASSERT_TRUE(t.Commit(++index_).ok());
  }
  int64_t Watch(WatchRequest r, std::vector<WatchResponse>* got) {
    auto id = hub_->Watch(r, [got](const WatchResponse& w) { got->push_back(w); });
    EXPECT_TRUE(id.ok());
    return *id;
  }
  static std::vector<std::string> Keys(const std::vector<WatchResponse>& rs) {
    std::vector<std::string> out;
    for (const WatchResponse& r : rs) {
      for (const kvpb::Event& e : r.events) {
        out.push_back(absl::StrCat(e.type() == kvpb::Event::PUT ? "put " : "del ", e.kv().key(),
                                   "@", e.kv().mod_revision()));
      }
    }
    return out;
  }

  MemEngine engine_;
  std::unique_ptr<MvccStore> store_;
  std::unique_ptr<WatchHub> hub_;
  uint64_t index_ = 0;
};

TEST_F(WatchTest, SyncedWatcherSeesItsRangeInOrderWithFilters) {
  std::vector<WatchResponse> all, puts_only;
  WatchRequest r;
  r.key = "a/";
  r.range_end = "a0";
  Watch(r, &all);
  r.no_delete = true;
  Watch(r, &puts_only);
  Put("a/1", "x");
  Put("b", "y");
  Put("a/2", "z");
  Delete("a/1");
  ASSERT_TRUE(all[0].created);
  EXPECT_EQ(Keys(all), (std::vector<std::string>{"put a/1@2", "put a/2@4", "del a/1@5"}));
  EXPECT_EQ(Keys(puts_only), (std::vector<std::string>{"put a/1@2", "put a/2@4"}));
}

TEST_F(WatchTest, PrevKvOnlyWhenAsked) {
  Put("k", "old");
  std::vector<WatchResponse> with, without;
  WatchRequest r;
  r.key = "k";
  r.prev_kv = true;
  Watch(r, &with);
  r.prev_kv = false;
  Watch(r, &without);
  Put("k", "new");
  ASSERT_EQ(with.back().events.size(), 1u);
  EXPECT_EQ(with.back().events[0].prev_kv().value(), "old");
  EXPECT_FALSE(without.back().events[0].has_prev_kv());
}

TEST_F(WatchTest, AWatcherFromThePastCatchesUpInBoundedStepsThenFollows) {
  for (int i = 0; i < 7; ++i) Put("k", std::to_string(i));  // revisions 2..8
  std::vector<WatchResponse> got;
  WatchRequest r;
  r.key = "k";
  r.start_revision = 3;
  r.prev_kv = true;
  Watch(r, &got);
  EXPECT_EQ(Keys(got).size(), 0u);  // nothing before CatchUp
  EXPECT_EQ(hub_->CatchUp(), 1u);   // 3 events (the bound), still behind
  EXPECT_EQ(hub_->CatchUp(), 0u);
  Put("k", "live");
  EXPECT_EQ(Keys(got), (std::vector<std::string>{"put k@3", "put k@4", "put k@5", "put k@6",
                                                 "put k@7", "put k@8", "put k@9"}));
  EXPECT_EQ(got[1].events[0].prev_kv().value(), "0");  // history carries prev_kv too
}

TEST_F(WatchTest, ACompactedStartIsToldSoAndCancelled) {
  for (int i = 0; i < 5; ++i) Put("k", std::to_string(i));
  ASSERT_TRUE(store_->Compact(5, ++index_).ok());
  std::vector<WatchResponse> got;
  WatchRequest r;
  r.key = "k";
  r.start_revision = 2;
  Watch(r, &got);
  hub_->CatchUp();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1].compacted);
  EXPECT_TRUE(got[1].canceled);
  EXPECT_EQ(got[1].compact_revision, 5);
  EXPECT_EQ(hub_->watchers(), 0u);
}

TEST_F(WatchTest, OneRevisionStaysTogetherUnlessItExceedsTheBound) {
  MvccStore::Txn t = store_->Begin();
  for (std::string k : {"p/1", "p/2"}) ASSERT_TRUE(t.Put(k, "v", 0).ok());
  ASSERT_TRUE(t.Commit(++index_).ok());
  std::vector<WatchResponse> got;
  WatchRequest r;
  r.key = "p/";
  r.range_end = "p0";
  Watch(r, &got);
  MvccStore::Txn big = store_->Begin();
  for (std::string k : {"p/3", "p/4", "p/5", "p/6", "p/7"}) ASSERT_TRUE(big.Put(k, "v", 0).ok());
  ASSERT_TRUE(big.Commit(++index_).ok());
  Delete("p/", "p0");  // 7 deletes at one revision
  // 5 puts at revision 3: 3 + 2 (the first flagged as a fragment); 7 deletes: 3 + 3 + 1.
  ASSERT_EQ(got.size(), 1u + 2u + 3u);
  EXPECT_TRUE(got[1].fragment);
  EXPECT_FALSE(got[2].fragment);
  EXPECT_TRUE(got[3].fragment && got[4].fragment && !got[5].fragment);
  for (size_t i = 1; i < got.size(); ++i) {
    for (const kvpb::Event& e : got[i].events) {
      EXPECT_EQ(e.kv().mod_revision(), i <= 2 ? 3 : 4);
    }
  }
}

TEST_F(WatchTest, ProgressAndCancel) {
  std::vector<WatchResponse> got;
  WatchRequest r;
  r.key = "k";
  r.progress_notify = true;
  const int64_t id = Watch(r, &got);
  Put("other", "v");
  hub_->NotifyProgress();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].revision, 2);
  EXPECT_TRUE(got[1].events.empty());
  hub_->Cancel(id);
  EXPECT_TRUE(got.back().canceled);
  Put("k", "after");
  EXPECT_EQ(got.size(), 3u);
}

}  // namespace
}  // namespace e2d::kv
