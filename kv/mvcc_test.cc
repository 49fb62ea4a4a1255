// Copyright e2d authors.
//
// MvccStore against etcd v3's documented behaviour: revisions, versions, tombstones, ranges,
// historical reads, compaction, transactions seeing their own writes, recovery from the engine.

#include "kv/mvcc.h"

#include "gtest/gtest.h"
#include "kv/mem_engine.h"

namespace e2d::kv {
namespace {

class MvccTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    auto s = MvccStore::Open(&engine_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  int64_t Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    MvccStore::Txn t = store_->Begin();
    EXPECT_TRUE(t.Put(k, v, lease).ok());
    EXPECT_TRUE(t.Commit(++applied_).ok());
    return store_->revision();
  }
  int64_t Delete(const std::string& k, const std::string& end = "") {
    MvccStore::Txn t = store_->Begin();
    auto d = t.DeleteRange(k, end);
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE(t.Commit(++applied_).ok());
    return static_cast<int64_t>(d->size());
  }
  RangeResult Get(RangeRequest r) {
    auto res = store_->Range(r);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? *res : RangeResult{};
  }
  static RangeRequest Key(std::string k, int64_t rev = 0) {
    RangeRequest r;
    r.key = std::move(k);
    r.revision = rev;
    return r;
  }
  static RangeRequest Prefix(std::string p) {
    RangeRequest r;
    r.key = p;
    std::string end = p;
    end.back() = static_cast<char>(end.back() + 1);
    r.range_end = end;
    return r;
  }

  MemEngine engine_;
  std::unique_ptr<MvccStore> store_;
  uint64_t applied_ = 0;
};

TEST_F(MvccTest, RevisionsVersionsAndTombstonesAsEtcd) {
  EXPECT_EQ(store_->revision(), 1);  // a new store
  EXPECT_EQ(Put("foo", "a"), 2);
  EXPECT_EQ(Put("foo", "b"), 3);
  RangeResult r = Get(Key("foo"));
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value(), "b");
  EXPECT_EQ(r.kvs[0].create_revision(), 2);
  EXPECT_EQ(r.kvs[0].mod_revision(), 3);
  EXPECT_EQ(r.kvs[0].version(), 2);
  EXPECT_EQ(r.revision, 3);
  EXPECT_EQ(Delete("foo"), 1);
  EXPECT_EQ(store_->revision(), 4);
  EXPECT_TRUE(Get(Key("foo")).kvs.empty());
  EXPECT_EQ(Put("foo", "c"), 5);  // a new life: version 1, created again
  r = Get(Key("foo"));
  EXPECT_EQ(r.kvs[0].version(), 1);
  EXPECT_EQ(r.kvs[0].create_revision(), 5);
  // Deleting nothing changes nothing, not even the revision.
  EXPECT_EQ(Delete("nope"), 0);
  EXPECT_EQ(store_->revision(), 5);
}

TEST_F(MvccTest, HistoricalReadsSeeThePast) {
  Put("k", "v1");  // 2
  Put("k", "v2");  // 3
  Delete("k");     // 4
  EXPECT_EQ(Get(Key("k", 2)).kvs[0].value(), "v1");
  EXPECT_EQ(Get(Key("k", 3)).kvs[0].value(), "v2");
  EXPECT_TRUE(Get(Key("k", 4)).kvs.empty());
  EXPECT_TRUE(Get(Key("k", 1)).kvs.empty());
  auto future = store_->Range(Key("k", 9));
  EXPECT_EQ(future.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(future.status().message(), kErrFutureRev);
}

TEST_F(MvccTest, RangesPrefixFromKeyLimitCountSortFilters) {
  for (std::string k : {"a", "b/1", "b/2", "b/3", "c"}) Put(k, "v" + k);
  RangeResult r = Get(Prefix("b/"));
  ASSERT_EQ(r.kvs.size(), 3u);
  EXPECT_EQ(r.kvs[0].key(), "b/1");
  RangeRequest from = Key("b/2");
  from.range_end = std::string(1, '\0');  // every key >= b/2
  EXPECT_EQ(Get(from).kvs.size(), 3u);
  RangeRequest all = Key(std::string(1, '\0'));
  all.range_end = std::string(1, '\0');
  EXPECT_EQ(Get(all).count, 5);
  RangeRequest limited = Prefix("b/");
  limited.limit = 2;
  r = Get(limited);
  EXPECT_EQ(r.kvs.size(), 2u);
  EXPECT_TRUE(r.more);
  EXPECT_EQ(r.count, 3);
  limited.sort_order = RangeRequest::SortOrder::kDescend;
  r = Get(limited);
  EXPECT_EQ(r.kvs[0].key(), "b/3");
  RangeRequest by_mod = Prefix("b/");
  by_mod.sort_target = RangeRequest::SortTarget::kMod;  // no order given: ascending
  by_mod.min_mod_revision = 4;
  r = Get(by_mod);
  ASSERT_EQ(r.kvs.size(), 2u);
  EXPECT_EQ(r.kvs[0].key(), "b/2");
  EXPECT_EQ(r.count, 3);  // counted before the filter, as etcd
  RangeRequest counting = Prefix("b/");
  counting.count_only = true;
  r = Get(counting);
  EXPECT_TRUE(r.kvs.empty());
  EXPECT_EQ(r.count, 3);
  RangeRequest keys = Prefix("b/");
  keys.keys_only = true;
  EXPECT_EQ(Get(keys).kvs[0].value(), "");
}

TEST_F(MvccTest, TxnSeesItsOwnWritesAndCommitsAtOneRevision) {
  Put("x", "0");  // 2
  MvccStore::Txn t = store_->Begin();
  ASSERT_TRUE(t.Put("x", "1", 0).ok());
  ASSERT_TRUE(t.Put("y", "1", 7).ok());
  auto prev = t.Put("x", "2", 0);
  ASSERT_TRUE(prev.ok());
  EXPECT_EQ((*prev)->value(), "1");
  auto in = t.Range(Key("x"));
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->kvs[0].value(), "2");
  EXPECT_EQ(in->revision, 3);
  auto deleted = t.DeleteRange("y", "");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->size(), 1u);
  EXPECT_EQ(Get(Key("x")).kvs[0].value(), "0");  // not committed yet
  ASSERT_TRUE(t.Commit(++applied_).ok());
  RangeResult r = Get(Key("x"));
  EXPECT_EQ(r.kvs[0].value(), "2");
  EXPECT_EQ(r.kvs[0].mod_revision(), 3);
  EXPECT_EQ(r.kvs[0].version(), 3);
  EXPECT_TRUE(Get(Key("y")).kvs.empty());
  EXPECT_EQ(store_->revision(), 3);
  // A read-only transaction records the applied index but not a revision.
  MvccStore::Txn ro = store_->Begin();
  ASSERT_TRUE(ro.Range(Key("x")).ok());
  ASSERT_TRUE(ro.Commit(++applied_).ok());
  EXPECT_EQ(store_->revision(), 3);
  EXPECT_EQ(store_->applied_index(), applied_);
}

TEST_F(MvccTest, CompactionForgetsWhatNoLaterReadSees) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "1");  // 4
  Delete("b");    // 5
  Put("c", "1");  // 6
  ASSERT_TRUE(store_->Compact(5, ++applied_).ok());
  EXPECT_EQ(store_->Range(Key("a", 4)).status().message(), kErrCompacted);
  EXPECT_EQ(Get(Key("a", 5)).kvs[0].value(), "2");  // visible at 5: kept
  EXPECT_TRUE(Get(Key("b", 5)).kvs.empty());
  EXPECT_EQ(store_->Compact(5, ++applied_).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->Compact(99, ++applied_).code(), absl::StatusCode::kOutOfRange);
  // Only what is still visible is left in the engine: a@3, c@6, b's tombstone at 5 (revision 5
  // is readable, and its history holds the delete) and the meta records.
  auto items = engine_.Checkpoint();
  ASSERT_TRUE(items.ok());
  int records = 0;
  for (const auto& [k, v] : *items) records += k[0] == 'r';
  EXPECT_EQ(records, 3);
}

TEST_F(MvccTest, ReopenRebuildsTheSameStore) {
  Put("a", "1");
  Put("a", "2");
  Delete("a");
  Put("a", "3");
  Put("b", "x");
  ASSERT_TRUE(store_->Compact(3, ++applied_).ok());
  const RangeResult before = Get(Prefix("a"));
  Reopen();
  EXPECT_EQ(store_->revision(), 6);
  EXPECT_EQ(store_->compact_revision(), 3);
  EXPECT_EQ(store_->applied_index(), applied_);
  const RangeResult after = Get(Prefix("a"));
  ASSERT_EQ(after.kvs.size(), 1u);
  EXPECT_EQ(after.kvs[0].SerializeAsString(), before.kvs[0].SerializeAsString());
  EXPECT_EQ(Get(Key("a", 3)).kvs[0].value(), "2");
  EXPECT_EQ(Put("a", "4"), 7);
  EXPECT_EQ(Get(Key("a")).kvs[0].version(), 2);
}

TEST_F(MvccTest, ACrashKeepsAWholePrefixOfCommitsWithTheirAppliedIndex) {
  Put("a", "1");
  ASSERT_TRUE(engine_.Sync().ok());
  const uint64_t synced = applied_;
  Put("a", "2");
  Put("b", "1");
  for (size_t keep : {0, 1, 2}) {
    MemEngine copy = engine_;
    copy.Crash(keep);
    auto s = MvccStore::Open(&copy);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)->applied_index(), synced + keep);  // replay the Raft log from there
    EXPECT_EQ((*s)->revision(), 2 + static_cast<int64_t>(keep));
  }
}

TEST_F(MvccTest, ADeleteAtTheCompactRevisionStaysInItsHistoryAcrossReopen) {
  Put("k", "v1");        // revision 2
  Put("k", "v2");        // revision 3
  Delete("k");           // revision 4
  Put("j", "x");         // revision 5
  ASSERT_TRUE(store_->Compact(4, ++applied_).ok());
  for (int pass = 0; pass < 2; ++pass) {  // before and after reopening (etcd #18089, #19179)
    std::vector<kvpb::Event> events;
    absl::StatusOr<int64_t> next = store_->History(4, store_->revision(), 100, &events);
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].type(), kvpb::Event::DELETE);
    EXPECT_EQ(events[0].kv().key(), "k");
    EXPECT_EQ(events[0].kv().mod_revision(), 4);
    EXPECT_TRUE(Get(Key("k", 4)).kvs.empty());
    EXPECT_EQ(Get(Key("j")).kvs.size(), 1u);
    Reopen();
  }
  // A later put starts a new life; a later compaction drops the lone tombstone.
  Put("k", "v3");  // revision 6
  EXPECT_EQ(Get(Key("k")).kvs[0].version(), 1);
  ASSERT_TRUE(store_->Compact(6, ++applied_).ok());
  Reopen();
  std::vector<kvpb::Event> events;
  EXPECT_FALSE(store_->History(4, store_->revision(), 100, &events).ok());  // compacted
  EXPECT_EQ(Get(Key("k")).kvs[0].value(), "v3");
}

}  // namespace
}  // namespace e2d::kv
