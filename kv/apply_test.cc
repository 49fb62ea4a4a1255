// Copyright e2d authors.
//
// KvApplier against etcd v3's behaviour for Put, DeleteRange, Range, Txn and Compact, with
// etcd's error messages.

#include "kv/apply.h"

#include "gtest/gtest.h"
#include "kv/mem_engine.h"

namespace e2d::kv {
namespace {

using etcdserverpb::Compare;

class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = MvccStore::Open(&engine_);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    applier_ = std::make_unique<KvApplier>(store_.get());
  }
  etcdserverpb::PutResponse Put(std::string k, std::string v, bool prev = false) {
    etcdserverpb::PutRequest p;
    p.set_key(k);
    p.set_value(v);
    p.set_prev_kv(prev);
    auto r = applier_->Put(p, ++index_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : etcdserverpb::PutResponse();
  }
  std::string Value(std::string k) {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    auto res = applier_->Range(r);
    EXPECT_TRUE(res.ok());
    return res->kvs_size() ? res->kvs(0).value() : "<none>";
  }
  static Compare Cmp(std::string key, Compare::CompareTarget target, Compare::CompareResult result) {
    Compare c;
    c.set_key(key);
    c.set_target(target);
    c.set_result(result);
    return c;
  }

  MemEngine engine_;
  std::unique_ptr<MvccStore> store_;
  std::unique_ptr<KvApplier> applier_;
  uint64_t index_ = 0;
};

TEST_F(ApplyTest, PutReturnsPrevKvAndHeaderRevision) {
  EXPECT_FALSE(Put("k", "1", true).has_prev_kv());
  etcdserverpb::PutResponse r = Put("k", "2", true);
  EXPECT_EQ(r.prev_kv().value(), "1");
  EXPECT_EQ(r.header().revision(), 3);
  etcdserverpb::PutRequest keep;
  keep.set_key("k");
  keep.set_ignore_value(true);
  ASSERT_TRUE(applier_->Put(keep, ++index_).ok());
  EXPECT_EQ(Value("k"), "2");
  keep.set_key("missing");
  auto missing = applier_->Put(keep, ++index_);
  EXPECT_EQ(missing.status().message(), "etcdserver: key not found");
  EXPECT_EQ(store_->applied_index(), index_);  // a failed apply still records its index
}

TEST_F(ApplyTest, CasTxnSucceedsOnlyWhenTheCompareHolds) {
  Put("lock", "free");
  etcdserverpb::TxnRequest cas;
  Compare c = Cmp("lock", Compare::VALUE, Compare::EQUAL);
  c.set_value("free");
  *cas.add_compare() = c;
  auto* put = cas.add_success()->mutable_request_put();
  put->set_key("lock");
  put->set_value("held");
  cas.add_failure()->mutable_request_range()->set_key("lock");
  auto first = applier_->Txn(cas, ++index_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded());
  EXPECT_EQ(Value("lock"), "held");
  auto second = applier_->Txn(cas, ++index_);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded());
  EXPECT_EQ(second->responses(0).response_range().kvs(0).value(), "held");
  EXPECT_EQ(second->header().revision(), 3);  // the failure branch only read
}

TEST_F(ApplyTest, ComparesOnMissingKeysAndRanges) {
  etcdserverpb::TxnRequest create;  // "create if absent": version == 0
  *create.add_compare() = Cmp("new", Compare::VERSION, Compare::EQUAL);
  create.add_success()->mutable_request_put()->set_key("new");
  auto r = applier_->Txn(create, ++index_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded());
  r = applier_->Txn(create, ++index_);
  EXPECT_FALSE(r->succeeded());
  etcdserverpb::TxnRequest value_on_missing;
  Compare v = Cmp("absent", Compare::VALUE, Compare::NOT_EQUAL);
  v.set_value("x");
  *value_on_missing.add_compare() = v;
  EXPECT_FALSE(applier_->Txn(value_on_missing, ++index_)->succeeded());  // never matches
  Put("p/1", "a");
  Put("p/2", "b");
  etcdserverpb::TxnRequest all_created;
  Compare rc = Cmp("p/", Compare::CREATE, Compare::GREATER);
  rc.set_range_end("p0");
  rc.set_create_revision(2);
  *all_created.add_compare() = rc;
  EXPECT_TRUE(applier_->Txn(all_created, ++index_)->succeeded());
  rc.set_create_revision(3);  // p/1 was created at 3: not every key is > 3
  *all_created.mutable_compare(0) = rc;
  EXPECT_FALSE(applier_->Txn(all_created, ++index_)->succeeded());
}

TEST_F(ApplyTest, NestedTxnSeesOuterWritesAndAllCommitsAtOneRevision) {
  etcdserverpb::TxnRequest outer;
  auto* p = outer.add_success()->mutable_request_put();
  p->set_key("a");
  p->set_value("1");
  etcdserverpb::TxnRequest* inner = outer.add_success()->mutable_request_txn();
  Compare c = Cmp("a", Compare::VALUE, Compare::EQUAL);
  c.set_value("1");
  *inner->add_compare() = c;
  auto* q = inner->add_success()->mutable_request_put();
  q->set_key("b");
  q->set_value("2");
  auto r = applier_->Txn(outer, ++index_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->responses(1).response_txn().succeeded());
  EXPECT_EQ(Value("b"), "2");
  EXPECT_EQ(store_->revision(), 2);
  EXPECT_EQ(r->responses(1).response_txn().header().revision(), 2);
}

TEST_F(ApplyTest, ValidationRefusesWhatEtcdRefuses) {
  KvLimits limits;
  etcdserverpb::TxnRequest dup;
  for (int i = 0; i < 2; ++i) dup.add_success()->mutable_request_put()->set_key("same");
  EXPECT_EQ(ValidateTxn(dup, limits).message(), "etcdserver: duplicate key given in txn request");
  etcdserverpb::TxnRequest put_then_delete;
  put_then_delete.add_success()->mutable_request_put()->set_key("k/1");
  auto* d = put_then_delete.add_success()->mutable_request_delete_range();
  d->set_key("k/");
  d->set_range_end("k0");
  EXPECT_EQ(ValidateTxn(put_then_delete, limits).code(), absl::StatusCode::kInvalidArgument);
  etcdserverpb::TxnRequest branches;  // the same key in success and failure is fine
  branches.add_success()->mutable_request_put()->set_key("k");
  branches.add_failure()->mutable_request_put()->set_key("k");
  EXPECT_TRUE(ValidateTxn(branches, limits).ok());
  etcdserverpb::TxnRequest nested;  // but not outer and nested in the same branch
  nested.add_success()->mutable_request_put()->set_key("k");
  nested.add_success()->mutable_request_txn()->add_failure()->mutable_request_put()->set_key("k");
  EXPECT_FALSE(ValidateTxn(nested, limits).ok());
  etcdserverpb::TxnRequest many;
  for (int i = 0; i < 129; ++i) many.add_success()->mutable_request_range()->set_key("r");
  EXPECT_EQ(ValidateTxn(many, limits).message(), "etcdserver: too many operations in txn request");
  etcdserverpb::PutRequest empty;
  EXPECT_EQ(ValidatePut(empty, limits).message(), "etcdserver: key is not provided");
  etcdserverpb::PutRequest big;
  big.set_key("k");
  big.set_value(std::string(2 << 20, 'x'));
  EXPECT_EQ(ValidatePut(big, limits).message(), "etcdserver: request is too large");
  etcdserverpb::PutRequest both;
  both.set_key("k");
  both.set_value("v");
  both.set_ignore_value(true);
  EXPECT_EQ(ValidatePut(both, limits).message(), "etcdserver: value is provided");
}

TEST_F(ApplyTest, CompactThenOldReadsFailWithEtcdsError) {
  Put("k", "1");
  Put("k", "2");
  etcdserverpb::CompactionRequest c;
  c.set_revision(3);
  ASSERT_TRUE(applier_->Compact(c, ++index_).ok());
  etcdserverpb::RangeRequest old;
  old.set_key("k");
  old.set_revision(2);
  auto r = applier_->Range(old);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r.status().message(), "mvcc: required revision has been compacted");
  EXPECT_EQ(applier_->Compact(c, ++index_).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->applied_index(), index_);
}

}  // namespace
}  // namespace e2d::kv
