// Copyright e2d authors.

#include "kv/lease.h"

#include "gtest/gtest.h"
#include "kv/apply.h"
#include "kv/mem_engine.h"

namespace e2d::kv {
namespace {

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    auto s = MvccStore::Open(&engine_);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    auto l = Lessor::Open(store_.get(), LeaseConfig{.min_ttl_seconds = 5});
    ASSERT_TRUE(l.ok()) << l.status();
    lessor_ = std::move(*l);
    applier_ = std::make_unique<KvApplier>(store_.get(), lessor_.get());
  }
  absl::Status Put(std::string k, int64_t lease) {
    etcdserverpb::PutRequest p;
    p.set_key(k);
    p.set_value("v");
    p.set_lease(lease);
    return applier_->Put(p, ++index_).status();
  }
  bool Has(std::string k) {
    RangeRequest r;
    r.key = k;
    return !store_->Range(r)->kvs.empty();
  }

  MemEngine engine_;
  std::unique_ptr<MvccStore> store_;
  std::unique_ptr<Lessor> lessor_;
  std::unique_ptr<KvApplier> applier_;
  uint64_t index_ = 0;
};

TEST_F(LeaseTest, GrantAttachRevokeDeletesTheKeysAtOneRevision) {
  EXPECT_EQ(Put("k", 7).message(), kErrLeaseNotFoundMsg);  // no such lease yet
  ASSERT_EQ(*lessor_->Grant(7, 1, ++index_, 0), 5);  // raised to the minimum TTL
  EXPECT_EQ(lessor_->Grant(7, 60, ++index_, 0).status().message(),
            "etcdserver: lease already exists");
  ASSERT_TRUE(Put("a", 7).ok());
  ASSERT_TRUE(Put("b", 7).ok());
  ASSERT_TRUE(Put("c", 0).ok());
  ASSERT_TRUE(Put("b", 0).ok());  // moved off the lease
  EXPECT_EQ(lessor_->Ttl(7, 0).keys, (std::vector<std::string>{"a"}));
  const int64_t before = store_->revision();
  ASSERT_TRUE(lessor_->Revoke(7, ++index_).ok());
  EXPECT_FALSE(Has("a"));
  EXPECT_TRUE(Has("b"));
  EXPECT_EQ(store_->revision(), before + 1);
  EXPECT_FALSE(lessor_->Exists(7));
  EXPECT_EQ(lessor_->Revoke(7, ++index_).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->applied_index(), index_);
}

TEST_F(LeaseTest, LeasesAndAttachmentsSurviveAReopen) {
  ASSERT_TRUE(lessor_->Grant(3, 30, ++index_, 0).ok());
  ASSERT_TRUE(Put("x", 3).ok());
  Reopen();
  EXPECT_TRUE(lessor_->Exists(3));
  EXPECT_EQ(lessor_->Ttl(3, 0).granted_ttl_seconds, 30);
  EXPECT_EQ(lessor_->Ttl(3, 0).keys, (std::vector<std::string>{"x"}));
  ASSERT_TRUE(lessor_->Revoke(3, ++index_).ok());
  EXPECT_FALSE(Has("x"));
}

TEST_F(LeaseTest, OnlyThePrimaryTimesLeasesAndANewOneExtendsThem) {
  ASSERT_TRUE(lessor_->Grant(1, 10, ++index_, 0).ok());
  EXPECT_EQ(lessor_->Renew(1, 0).status().message(), "etcdserver: not a primary lessor");
  EXPECT_TRUE(lessor_->Expired(1'000'000, 10).empty());  // followers expire nothing
  lessor_->Promote(/*now_ms=*/100'000, /*extend_ms=*/3'000);
  EXPECT_TRUE(lessor_->Expired(112'999, 10).empty());
  EXPECT_EQ(lessor_->Expired(113'000, 10), (std::vector<int64_t>{1}));
  ASSERT_EQ(*lessor_->Renew(1, 105'000), 10);  // now due at 115,000
  EXPECT_TRUE(lessor_->Expired(114'999, 10).empty());
  EXPECT_EQ(lessor_->Ttl(1, 110'000).ttl_seconds, 5);
  lessor_->Demote();
  lessor_->Promote(200'000, 3'000);  // a leader change: full TTL plus the election's time again
  EXPECT_TRUE(lessor_->Expired(212'999, 10).empty());
  EXPECT_EQ(lessor_->Renew(99, 200'000).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace e2d::kv
