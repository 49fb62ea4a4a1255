// Copyright e2d authors.
//
// etcd's backend quota and Maintenance.Alarm (apply.h) and the size accounting they rest on
// (mvcc.h "Size"), as replicated state: decided from applied entries only, persisted with the
// applied index, the same on every replica and engine, after reopening and after a crash.

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "kv/apply.h"
#include "kv/mem_engine.h"
#include "kv/rocksdb_engine.h"

namespace e2d::kv {
namespace {

using etcdserverpb::AlarmRequest;
using etcdserverpb::AlarmType;
using etcdserverpb::Compare;

// The key and value bytes of the records mvcc.h counts, read from the engine's checkpoint: an
// oracle independent of both MvccStore's counter and its own recount.
uint64_t RecordBytes(KvEngine* engine) {
  auto all = engine->Checkpoint();
  EXPECT_TRUE(all.ok()) << all.status();
  uint64_t bytes = 0;
  if (!all.ok()) return bytes;
  for (const auto& [k, v] : *all) {
    if (k.starts_with("r") || k.starts_with("x/")) bytes += k.size() + v.size();
  }
  return bytes;
}

std::string AlarmsText(const KvApplier& a) {
  std::vector<std::string> out;
  for (const etcdserverpb::AlarmMember& m : a.Alarms()) {
    out.push_back(absl::StrCat(m.memberid(), ":", AlarmType_Name(m.alarm())));
  }
  return absl::StrJoin(out, ",");
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One member's state machine over `engine`: store, lessor and applier, reopened at will. Every
// entry is applied at the next index after the store's applied one.
class Replica {
 public:
  Replica(KvEngine* engine, KvLimits limits) : engine_(engine), limits_(limits) { Reopen(); }

  void Reopen() {
    applier.reset();
    lessor.reset();
    store.reset();
    auto s = MvccStore::Open(engine_);
    ASSERT_TRUE(s.ok()) << s.status();
    store = std::move(*s);
    auto l = Lessor::Open(store.get(), LeaseConfig{});
    ASSERT_TRUE(l.ok()) << l.status();
    lessor = std::move(*l);
    auto a = KvApplier::Open(store.get(), lessor.get(), limits_);
    ASSERT_TRUE(a.ok()) << a.status();
    applier = std::move(*a);
  }
  void SetLimits(KvLimits limits) {
    limits_ = limits;
    Reopen();
  }
  uint64_t Next() const { return store->applied_index() + 1; }

  absl::Status Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    etcdserverpb::PutRequest p;
    p.set_key(k);
    p.set_value(v);
    p.set_lease(lease);
    return applier->Put(p, Next()).status();
  }
  absl::StatusOr<int64_t> Delete(const std::string& k, const std::string& end = "") {
    etcdserverpb::DeleteRangeRequest d;
    d.set_key(k);
    d.set_range_end(end);
    auto r = applier->DeleteRange(d, Next());
    if (!r.ok()) return r.status();
    return r->deleted();
  }
  absl::Status Txn(const etcdserverpb::TxnRequest& t) { return applier->Txn(t, Next()).status(); }
  absl::Status Compact(int64_t revision) {
    etcdserverpb::CompactionRequest c;
    c.set_revision(revision);
    return applier->Compact(c, Next()).status();
  }
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarm(AlarmRequest::AlarmAction action,
                                                    uint64_t member, AlarmType type) {
    AlarmRequest r;
    r.set_action(action);
    r.set_memberid(member);
    r.set_alarm(type);
    return applier->Alarm(r, Next());
  }
  bool Has(const std::string& k) {
    RangeRequest r;
    r.key = k;
    auto res = store->Range(r);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() && !res->kvs.empty();
  }

  // Entry `n` of a deterministic mix of every kind of apply; returns its outcome as text.
  std::string Apply(uint64_t n) {
    const uint64_t r = SplitMix(n);
    const std::string key = absl::StrCat("k", r % 16);
    const uint64_t kind = (r >> 8) % 100;
    const int64_t lease = static_cast<int64_t>((r >> 16) % 4 + 1);
    const std::string value((r >> 24) % 120, static_cast<char>('a' + n % 26));
    absl::Status s;
    std::string resp;
    if (kind < 50) {
      s = Put(key, value, (r >> 32) % 8 == 0 ? lease : 0);
    } else if (kind < 60) {
      s = Delete(key).status();
    } else if (kind < 70) {
      etcdserverpb::TxnRequest t;
      Compare* c = t.add_compare();
      c->set_key(key);
      c->set_target(Compare::VERSION);
      c->set_result(Compare::GREATER);
      c->set_version(0);
      auto* p = t.add_success()->mutable_request_put();
      p->set_key(key);
      p->set_value(value);
      t.add_failure()->mutable_request_delete_range()->set_key("k0");
      auto out = applier->Txn(t, Next());
      s = out.status();
      if (out.ok()) resp = out->ShortDebugString();
    } else if (kind < 75) {
      s = Compact(std::max<int64_t>(1, store->revision() - static_cast<int64_t>(r % 5)));
    } else if (kind < 80) {
      auto out = Alarm(AlarmRequest::DEACTIVATE, kQuotaAlarmMemberId, etcdserverpb::NOSPACE);
      s = out.status();
      if (out.ok()) resp = out->ShortDebugString();
    } else if (kind < 85) {
      auto out = applier->LeaseGrant(lease, 10, Next(), 0);
      s = out.status();
      if (out.ok()) resp = absl::StrCat(*out);
    } else if (kind < 90) {
      s = applier->LeaseRevoke(lease, Next());
    } else if (kind < 95) {
      s = Delete("k", "l").status();
    } else {
      auto out = Alarm(AlarmRequest::GET, 0, etcdserverpb::NONE);
      s = out.status();
      if (out.ok()) resp = out->ShortDebugString();
    }
    return absl::StrCat(s.ToString(), " | ", resp);
  }

  std::unique_ptr<MvccStore> store;
  std::unique_ptr<Lessor> lessor;
  std::unique_ptr<KvApplier> applier;

 private:
  KvEngine* engine_;
  KvLimits limits_;
};

KvLimits Quota(uint64_t bytes) {
  KvLimits l;
  l.quota_bytes = bytes;
  return l;
}

class QuotaTest : public ::testing::Test {
 protected:
  // Puts until the quota refuses one; returns how many got in (bounded).
  int FillUntilRefused(Replica& r) {
    for (int i = 0; i < 1000; ++i) {
      absl::Status s = r.Put(absl::StrCat("fill/", i), std::string(100, 'f'));
      if (!s.ok()) {
        EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        EXPECT_EQ(s.message(), kErrNoSpace);
        return i;
      }
    }
    ADD_FAILURE() << "the quota never refused a put";
    return -1;
  }
  void ExpectNoSpace(const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << what << ": " << s;
    EXPECT_EQ(s.message(), kErrNoSpace) << what;
  }

  MemEngine engine_;
};

TEST_F(QuotaTest, SizeIsTheBytesOfTheCountedRecordsAfterEveryKindOfWrite) {
  Replica r(&engine_, Quota(0));
  uint64_t last = r.store->size_bytes();
  EXPECT_EQ(last, 0u);
  // Pairs the counter with the engine's content and the store's own recount; returns the change.
  auto check = [&](const std::string& step) -> int64_t {
    const uint64_t now = r.store->size_bytes();
    EXPECT_EQ(now, RecordBytes(&engine_)) << step;
    auto recount = r.store->ComputeSizeBytes();
    EXPECT_TRUE(recount.ok()) << recount.status();
    if (recount.ok()) {
      EXPECT_EQ(*recount, now) << step;
    }
    const int64_t delta = static_cast<int64_t>(now) - static_cast<int64_t>(last);
    last = now;
    return delta;
  };
  ASSERT_TRUE(r.Put("a", "1").ok());
  EXPECT_GE(check("put"), 17 + 2);  // the revision key and at least the key and value
  ASSERT_TRUE(r.Put("a", std::string(300, 'x')).ok());
  EXPECT_GE(check("overwrite"), 300);
  ASSERT_TRUE(r.Delete("a").ok());
  EXPECT_GT(check("delete writes a tombstone"), 0);
  ASSERT_TRUE(r.applier->LeaseGrant(5, 60, r.Next(), 0).ok());
  EXPECT_GT(check("lease record"), 0);
  ASSERT_TRUE(r.Put("b", "v", 5).ok());
  check("put with lease");
  ASSERT_TRUE(r.applier->LeaseRevoke(5, r.Next()).ok());
  check("revoke: aux delete and tombstone");
  ASSERT_TRUE(r.Alarm(AlarmRequest::ACTIVATE, 9, etcdserverpb::CORRUPT).ok());
  EXPECT_GT(check("alarm record"), 0);
  ASSERT_TRUE(r.Alarm(AlarmRequest::DEACTIVATE, 9, etcdserverpb::CORRUPT).ok());
  EXPECT_LT(check("alarm record deleted"), 0);
  {  // Aux records replaced in one batch and across batches.
    MvccStore::Txn t = r.store->Begin();
    t.PutAux("t", "1");
    t.PutAux("t", "333");
    t.DeleteAux("never-written");
    ASSERT_TRUE(t.Commit(r.Next()).ok());
  }
  EXPECT_EQ(check("aux put twice"), 3 + 3);  // "x/t" and "333"
  {
    MvccStore::Txn t = r.store->Begin();
    t.PutAux("t", "22");
    ASSERT_TRUE(t.Commit(r.Next()).ok());
  }
  EXPECT_EQ(check("aux replaced by a shorter value"), -1);
  {
    MvccStore::Txn t = r.store->Begin();
    t.DeleteAux("t");
    t.PutAux("u", "");
    t.DeleteAux("u");
    ASSERT_TRUE(t.Commit(r.Next()).ok());
  }
  EXPECT_EQ(check("aux deleted"), -(3 + 2));
  const uint64_t before = r.store->size_bytes();
  ASSERT_TRUE(r.Compact(r.store->revision()).ok());
  EXPECT_LT(check("compaction"), 0);
  EXPECT_LT(r.store->size_bytes(), before);
  r.Reopen();
  EXPECT_EQ(check("reopen"), 0);
}

TEST_F(QuotaTest, APutThatCrossesTheQuotaIsRefusedAndRaisesNoSpace) {
  Replica r(&engine_, Quota(0));
  ASSERT_TRUE(r.Put("a", std::string(50, 'a')).ok());
  const uint64_t cost = kKvOverheadBytes + 1 + 100;  // a put of "b" with 100 bytes
  r.SetLimits(Quota(r.store->size_bytes() + cost));
  EXPECT_TRUE(r.Put("b", std::string(100, 'b')).ok());  // size + cost == quota: it fits
  EXPECT_TRUE(r.applier->Alarms().empty());
  const int64_t revision = r.store->revision();
  const uint64_t size = r.store->size_bytes();
  const uint64_t index = r.Next();
  ExpectNoSpace(r.Put("c", "1"), "the put that crosses");
  EXPECT_FALSE(r.Has("c"));
  EXPECT_EQ(r.store->revision(), revision);
  EXPECT_EQ(r.store->applied_index(), index);  // a refused apply still records its index
  EXPECT_EQ(AlarmsText(*r.applier), "0:NOSPACE");
  EXPECT_GT(r.store->size_bytes(), size);  // the alarm record, nothing else
  EXPECT_EQ(r.store->size_bytes(), RecordBytes(&engine_));
  auto got = r.Alarm(AlarmRequest::GET, 0, etcdserverpb::NOSPACE);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->alarms_size(), 1);
  EXPECT_EQ(got->alarms(0).memberid(), kQuotaAlarmMemberId);
  EXPECT_EQ(got->alarms(0).alarm(), etcdserverpb::NOSPACE);
}

TEST_F(QuotaTest, ATxnIsChargedForThePutsOfItsChosenBranchOnly) {
  Replica r(&engine_, Quota(0));
  ASSERT_TRUE(r.Put("x", "1").ok());
  ASSERT_TRUE(r.Put("z", "1").ok());
  // Already over the quota (as after a restart with a lower one), no alarm raised yet.
  r.SetLimits(Quota(r.store->size_bytes() - 1));
  etcdserverpb::TxnRequest t;
  Compare* c = t.add_compare();
  c->set_key("x");
  c->set_target(Compare::VERSION);
  c->set_result(Compare::EQUAL);
  c->set_version(1);  // holds
  t.add_success()->mutable_request_delete_range()->set_key("x");
  t.add_failure()->mutable_request_put()->set_key("y");
  EXPECT_TRUE(r.Txn(t).ok());  // the chosen branch puts nothing
  EXPECT_FALSE(r.Has("x"));
  EXPECT_TRUE(r.applier->Alarms().empty());
  etcdserverpb::TxnRequest u;
  u.add_success()->mutable_request_delete_range()->set_key("z");
  u.add_success()->mutable_request_txn()->add_success()->mutable_request_put()->set_key("y");
  ExpectNoSpace(r.Txn(u), "a nested put over the quota");
  EXPECT_TRUE(r.Has("z"));  // refused whole: its delete is not written either
  EXPECT_FALSE(r.Has("y"));
  EXPECT_EQ(AlarmsText(*r.applier), "0:NOSPACE");
}

TEST_F(QuotaTest, WhileNoSpaceIsRaisedOnlyWritesThatAddKeysAreRefused) {
  Replica r(&engine_, Quota(4096));
  ASSERT_TRUE(r.applier->LeaseGrant(1, 60, r.Next(), 0).ok());
  ASSERT_GT(FillUntilRefused(r), 0);
  ASSERT_TRUE(r.applier->Raised(etcdserverpb::NOSPACE));
  const uint64_t index = r.Next();
  ExpectNoSpace(r.Put("tiny", ""), "a small put");
  EXPECT_EQ(r.store->applied_index(), index);
  etcdserverpb::TxnRequest put_in_failure;  // the branch taken reads only; etcd still refuses
  put_in_failure.add_success()->mutable_request_range()->set_key("fill/0");
  put_in_failure.add_failure()->mutable_request_put()->set_key("p");
  ExpectNoSpace(r.Txn(put_in_failure), "a txn holding a put");
  etcdserverpb::TxnRequest nested;
  nested.add_success()->mutable_request_txn()->add_failure()->mutable_request_put()->set_key("q");
  ExpectNoSpace(r.Txn(nested), "a nested put");
  ExpectNoSpace(r.applier->LeaseGrant(2, 60, r.Next(), 0).status(), "a lease grant");
  EXPECT_FALSE(r.lessor->Exists(2));
  // What does not add keys runs.
  EXPECT_TRUE(r.Has("fill/0"));
  EXPECT_EQ(*r.Delete("fill/0"), 1);
  etcdserverpb::TxnRequest no_put;
  no_put.add_success()->mutable_request_range()->set_key("fill/1");
  no_put.add_success()->mutable_request_delete_range()->set_key("fill/1");
  EXPECT_TRUE(r.Txn(no_put).ok());
  EXPECT_FALSE(r.Has("fill/1"));
  EXPECT_TRUE(r.Compact(r.store->revision()).ok());
  EXPECT_TRUE(r.applier->LeaseRevoke(1, r.Next()).ok());
  EXPECT_TRUE(r.applier->Raised(etcdserverpb::NOSPACE));  // only a DEACTIVATE clears it
}

TEST_F(QuotaTest, CompactionAndDeactivateLetWritesThroughDeactivateAloneDoesNot) {
  Replica r(&engine_, Quota(4096));
  ASSERT_GT(FillUntilRefused(r), 0);
  // Disarmed without making room: the next put that does not fit raises it again.
  auto off = r.Alarm(AlarmRequest::DEACTIVATE, kQuotaAlarmMemberId, etcdserverpb::NOSPACE);
  ASSERT_TRUE(off.ok()) << off.status();
  ASSERT_EQ(off->alarms_size(), 1);  // the alarm it cleared
  EXPECT_TRUE(r.applier->Alarms().empty());
  ExpectNoSpace(r.Put("big", std::string(500, 'b')), "still over the quota");
  EXPECT_EQ(AlarmsText(*r.applier), "0:NOSPACE");
  // Room made, but the alarm stays until disarmed.
  ASSERT_TRUE(r.Delete("fill/", "fill0").ok());
  ASSERT_TRUE(r.Compact(r.store->revision()).ok());
  EXPECT_LT(r.store->size_bytes() + kKvOverheadBytes + 3 + 500, 4096u);
  ExpectNoSpace(r.Put("big", std::string(500, 'b')), "room made, alarm raised");
  ASSERT_TRUE(r.Alarm(AlarmRequest::DEACTIVATE, kQuotaAlarmMemberId, etcdserverpb::NOSPACE).ok());
  EXPECT_TRUE(r.Put("big", std::string(500, 'b')).ok());
  EXPECT_TRUE(r.Has("big"));
}

TEST_F(QuotaTest, AlarmsArePerMemberAndTheApiMirrorsEtcd) {
  KvLimits limits = Quota(0);
  limits.alarms_max = 3;
  Replica r(&engine_, limits);
  auto on = r.Alarm(AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE);
  ASSERT_TRUE(on.ok()) << on.status();
  ASSERT_EQ(on->alarms_size(), 1);
  EXPECT_EQ(on->alarms(0).memberid(), 7u);
  ExpectNoSpace(r.Put("k", "v"), "NOSPACE raised by hand, no quota");
  ASSERT_EQ(r.Alarm(AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE)->alarms_size(), 1);
  ASSERT_TRUE(r.Alarm(AlarmRequest::ACTIVATE, 3, etcdserverpb::NOSPACE).ok());
  EXPECT_EQ(AlarmsText(*r.applier), "3:NOSPACE,7:NOSPACE");  // one record per member
  EXPECT_EQ(r.Alarm(AlarmRequest::GET, 0, etcdserverpb::NONE)->alarms_size(), 2);
  EXPECT_EQ(r.Alarm(AlarmRequest::GET, 0, etcdserverpb::CORRUPT)->alarms_size(), 0);
  EXPECT_EQ(r.Alarm(AlarmRequest::DEACTIVATE, 8, etcdserverpb::NOSPACE)->alarms_size(), 0);
  EXPECT_EQ(r.Alarm(AlarmRequest::DEACTIVATE, 7, etcdserverpb::NOSPACE)->alarms_size(), 1);
  ExpectNoSpace(r.Put("k", "v"), "member 3's alarm still raised");
  ASSERT_TRUE(r.Alarm(AlarmRequest::DEACTIVATE, 3, etcdserverpb::NOSPACE).ok());
  EXPECT_TRUE(r.Put("k", "v").ok());
  // ACTIVATE of NONE is a no-op, as in etcd; unknown enums are refused, the index recorded.
  EXPECT_EQ(r.Alarm(AlarmRequest::ACTIVATE, 1, etcdserverpb::NONE)->alarms_size(), 0);
  EXPECT_TRUE(r.applier->Alarms().empty());
  AlarmRequest bad;
  bad.set_action(static_cast<AlarmRequest::AlarmAction>(9));
  EXPECT_EQ(ValidateAlarm(bad).code(), absl::StatusCode::kInvalidArgument);
  const uint64_t index = r.Next();
  EXPECT_EQ(r.applier->Alarm(bad, index).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.store->applied_index(), index);
  bad.set_action(AlarmRequest::ACTIVATE);
  bad.set_alarm(static_cast<AlarmType>(7));
  EXPECT_EQ(ValidateAlarm(bad).code(), absl::StatusCode::kInvalidArgument);
  // The bound on raised alarms.
  for (uint64_t m = 1; m <= 3; ++m) {
    ASSERT_TRUE(r.Alarm(AlarmRequest::ACTIVATE, m, etcdserverpb::CORRUPT).ok());
  }
  EXPECT_EQ(r.Alarm(AlarmRequest::ACTIVATE, 4, etcdserverpb::CORRUPT).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.applier->Alarms().size(), 3u);
}

TEST_F(QuotaTest, CorruptRefusesEveryWriteButNotReads) {
  Replica r(&engine_, Quota(0));
  ASSERT_TRUE(r.Put("a", "1").ok());
  ASSERT_TRUE(r.applier->LeaseGrant(1, 60, r.Next(), 0).ok());
  ASSERT_TRUE(r.Alarm(AlarmRequest::ACTIVATE, 2, etcdserverpb::CORRUPT).ok());
  const int64_t revision = r.store->revision();
  auto corrupt = [](const absl::Status& s) {
    return s.code() == absl::StatusCode::kDataLoss && s.message() == kErrCorrupt;
  };
  EXPECT_TRUE(corrupt(r.Put("b", "1")));
  EXPECT_TRUE(corrupt(r.Delete("a").status()));
  etcdserverpb::TxnRequest read_only;
  read_only.add_success()->mutable_request_range()->set_key("a");
  EXPECT_TRUE(corrupt(r.Txn(read_only)));
  EXPECT_TRUE(corrupt(r.Compact(revision)));
  EXPECT_TRUE(corrupt(r.applier->LeaseGrant(2, 60, r.Next(), 0).status()));
  EXPECT_TRUE(corrupt(r.applier->LeaseRevoke(1, r.Next())));
  EXPECT_EQ(r.store->revision(), revision);
  EXPECT_TRUE(r.lessor->Exists(1));
  etcdserverpb::RangeRequest get;
  get.set_key("a");
  EXPECT_EQ(r.applier->Range(get)->kvs_size(), 1);
  ASSERT_TRUE(r.Alarm(AlarmRequest::DEACTIVATE, 2, etcdserverpb::CORRUPT).ok());
  EXPECT_TRUE(r.Put("b", "1").ok());
}

TEST_F(QuotaTest, AlarmAndSizeSurviveReopeningTheStore) {
  Replica r(&engine_, Quota(4096));
  ASSERT_GT(FillUntilRefused(r), 0);
  ASSERT_TRUE(r.Alarm(AlarmRequest::ACTIVATE, 5, etcdserverpb::CORRUPT).ok());
  ASSERT_TRUE(r.Alarm(AlarmRequest::DEACTIVATE, 5, etcdserverpb::CORRUPT).ok());
  const uint64_t size = r.store->size_bytes();
  const std::string alarms = AlarmsText(*r.applier);
  EXPECT_EQ(alarms, "0:NOSPACE");
  ASSERT_TRUE(engine_.Sync().ok());
  engine_.Crash(0);  // keeps what was synced: all of it
  r.Reopen();
  EXPECT_EQ(r.store->size_bytes(), size);
  EXPECT_EQ(AlarmsText(*r.applier), alarms);
  ExpectNoSpace(r.Put("small", ""), "after reopening");
  // The plain constructor loads the alarms too.
  KvApplier plain(r.store.get(), r.lessor.get(), Quota(4096));
  EXPECT_EQ(AlarmsText(plain), alarms);
}

// Every apply writes one batch, so after a crash the engine is exactly that of a replica that
// applied some prefix of the entries: the same records, size and alarms; and replaying the rest
// ends where the replica that never crashed did.
TEST_F(QuotaTest, AfterACrashTheStateIsThatOfSomeAppliedIndex) {
  const KvLimits limits = Quota(1500);
  constexpr uint64_t kEntries = 240, kSynced = 150;
  Replica a(&engine_, limits);
  int raised = 0;
  for (uint64_t i = 1; i <= kEntries; ++i) {
    const bool before = a.applier->Raised(etcdserverpb::NOSPACE);
    a.Apply(i);
    raised += !before && a.applier->Raised(etcdserverpb::NOSPACE);
    if (i == kSynced) {
      ASSERT_TRUE(engine_.Sync().ok());
    }
  }
  EXPECT_GE(raised, 2);  // the mix reaches the quota, and gets back under it
  ASSERT_EQ(engine_.unsynced_batches(), kEntries - kSynced);
  for (size_t keep = 0; keep <= kEntries - kSynced; ++keep) {
    MemEngine crashed = engine_;
    crashed.Crash(keep);
    Replica c(&crashed, limits);
    const uint64_t at = c.store->applied_index();
    ASSERT_EQ(at, kSynced + keep);
    MemEngine reference_engine;
    Replica reference(&reference_engine, limits);
    for (uint64_t i = 1; i <= at; ++i) reference.Apply(i);
    EXPECT_EQ(*crashed.Checkpoint(), *reference_engine.Checkpoint()) << "keep " << keep;
    EXPECT_EQ(c.store->size_bytes(), reference.store->size_bytes()) << "keep " << keep;
    EXPECT_EQ(AlarmsText(*c.applier), AlarmsText(*reference.applier)) << "keep " << keep;
    for (uint64_t i = at + 1; i <= kEntries; ++i) c.Apply(i);
    EXPECT_EQ(c.store->size_bytes(), a.store->size_bytes()) << "keep " << keep;
    EXPECT_EQ(AlarmsText(*c.applier), AlarmsText(*a.applier)) << "keep " << keep;
    EXPECT_EQ(*crashed.Checkpoint(), *engine_.Checkpoint()) << "keep " << keep;
  }
}

std::string TempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(base ? base : "/tmp", "/quota_", name, "_", ::getpid());
  const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

// Two members on different engines (in memory and RocksDB) fed the same entries answer alike and
// hold the same size, alarms and records after every entry, across a restart of one of them.
TEST(QuotaReplicasTest, TwoReplicasOnDifferentEnginesAgreeEntryByEntry) {
  const KvLimits limits = Quota(1500);
  const std::string dir = TempDir("replicas");
  auto rocks = RocksDbEngine::Open(dir);
  ASSERT_TRUE(rocks.ok()) << rocks.status();
  MemEngine mem;
  Replica a(&mem, limits);
  auto b = std::make_unique<Replica>(rocks->get(), limits);
  int raised = 0, cleared = 0, refused = 0;
  for (uint64_t i = 1; i <= 400; ++i) {
    const bool before = a.applier->Raised(etcdserverpb::NOSPACE);
    const std::string out_a = a.Apply(i);
    ASSERT_EQ(out_a, b->Apply(i)) << "entry " << i;
    ASSERT_EQ(a.store->size_bytes(), b->store->size_bytes()) << "entry " << i;
    ASSERT_EQ(AlarmsText(*a.applier), AlarmsText(*b->applier)) << "entry " << i;
    ASSERT_EQ(a.store->revision(), b->store->revision()) << "entry " << i;
    const bool after = a.applier->Raised(etcdserverpb::NOSPACE);
    raised += !before && after;
    cleared += before && !after;
    refused += out_a.find(kErrNoSpace) != std::string::npos;
    if (i == 200) {  // b restarts: its engine closed and opened again from the directory
      ASSERT_TRUE((*rocks)->Sync().ok());
      b.reset();
      rocks->reset();
      rocks = RocksDbEngine::Open(dir);
      ASSERT_TRUE(rocks.ok()) << rocks.status();
      b = std::make_unique<Replica>(rocks->get(), limits);
      ASSERT_EQ(b->store->applied_index(), i);
    }
  }
  EXPECT_GE(raised, 2);
  EXPECT_GE(cleared, 2);
  EXPECT_GT(refused, raised);  // puts refused while raised, not only those that raised it
  EXPECT_EQ(*mem.Checkpoint(), *(*rocks)->Checkpoint());
  EXPECT_EQ(a.store->size_bytes(), RecordBytes(&mem));
}

}  // namespace
}  // namespace e2d::kv
