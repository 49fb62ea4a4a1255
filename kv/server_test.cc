// Copyright e2d authors.
//
// KvServer on the simulator: three replicas, each a KvServer on its own MemEngine (owned by the
// test, as a machine owns its disk), driven through the request layer. The scenarios check the
// same code in aggregate under faults; these tests pin down the request layer's own contract.

#include "kv/server.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv/mem_engine.h"
#include "kv/mvcc.h"
#include "kv/requestpb.pb.h"
#include "sim/cluster.h"

namespace e2d::kv {
namespace {

struct Proc final : sim::Process {
  std::unique_ptr<KvServer> server;
  absl::Status open_status;
  int installs = 0;
};

template <typename T>
struct Answer {
  std::optional<absl::StatusOr<T>> got;
  std::function<void(absl::StatusOr<T>)> Callback() {
    return [this](absl::StatusOr<T> r) {
      ASSERT_FALSE(got.has_value()) << "answered twice";
      got = std::move(r);
    };
  }
};

class KvServerTest : public ::testing::Test {
 protected:
  void Start(int n, std::function<void(raft::RaftNodeConfig&, KvServerOptions&)> tweak = nullptr) {
    n_ = n;
    engines_.resize(n + 1);
    for (int i = 1; i <= n; ++i) {
      addresses_.push_back(absl::StrCat("10.0.0.", i, ":2380"));
      engines_[i] = std::make_unique<MemEngine>();
      if (seed_.has_value()) {
        absl::StatusOr<int64_t> revision = KvServer::Seed(engines_[i].get(), *seed_);
        ASSERT_TRUE(revision.ok()) << revision.status();
      }
    }
    cluster_ = std::make_unique<sim::Cluster>(sim_, [this, tweak](env::Env& env, sim::NodeId id) {
      raft::RaftNodeConfig c;
      KvServerOptions o;
      o.lease.min_ttl_seconds = 1;
      if (tweak) tweak(c, o);
      c.raft.id = id;
      for (int i = 1; i <= n_; ++i) {
        c.raft.voters.push_back(i);
        if (i != static_cast<int>(id)) c.peers[i] = addresses_[i - 1];
      }
      auto p = std::make_unique<Proc>();
      Proc* raw = p.get();
      KvServerHooks h;
      h.on_install = [raw](uint64_t, int64_t) { ++raw->installs; };
      auto s = KvServer::Open(env, engines_[id].get(), std::move(c), o, std::move(h));
      if (s.ok()) {
        p->server = std::move(*s);
      } else {
        p->open_status = s.status();
      }
      return p;
    });
    for (const auto& a : addresses_) cluster_->AddNode(a);
    // Every replica knows the leader (a replica that does not refuses writes: "no leader").
    ASSERT_TRUE(sim_.RunUntilTrue(
        [&] {
          for (sim::NodeId id : cluster_->nodes()) {
            if (server(id) == nullptr || server(id)->raft_node().raft().lead() == raft::kNone) {
              return false;
            }
          }
          return Leader() != sim::kNoNode;
        },
        10'000'000'000));
  }
  Proc* proc(sim::NodeId id) { return static_cast<Proc*>(cluster_->process(id)); }
  KvServer* server(sim::NodeId id) { return proc(id) ? proc(id)->server.get() : nullptr; }
  sim::NodeId Leader() {
    for (sim::NodeId id : cluster_->nodes()) {
      if (server(id) && server(id)->raft_node().raft().role() == raft::Role::kLeader) return id;
    }
    return sim::kNoNode;
  }
  template <typename T>
  bool Wait(Answer<T>& a) {
    return sim_.RunUntilTrue([&] { return a.got.has_value(); }, sim_.now_ns() + 20'000'000'000);
  }
  absl::StatusOr<etcdserverpb::PutResponse> Put(sim::NodeId at, const std::string& k,
                                                const std::string& v, int64_t lease = 0) {
    etcdserverpb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    r.set_lease(lease);
    r.set_prev_kv(true);
    Answer<etcdserverpb::PutResponse> a;
    server(at)->Put(r, a.Callback());
    if (!Wait(a)) return absl::DeadlineExceededError("test: no answer");
    return *a.got;
  }
  absl::StatusOr<etcdserverpb::RangeResponse> Get(sim::NodeId at, const std::string& k,
                                                  bool serializable = false) {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    r.set_serializable(serializable);
    Answer<etcdserverpb::RangeResponse> a;
    server(at)->Range(r, a.Callback());
    if (!Wait(a)) return absl::DeadlineExceededError("test: no answer");
    return *a.got;
  }
  std::optional<std::string> ValueAt(sim::NodeId at, const std::string& k) {
    absl::StatusOr<etcdserverpb::RangeResponse> r = Get(at, k);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->kvs_size() == 0) return std::nullopt;
    return r->kvs(0).value();
  }

  sim::Simulator sim_{11};
  std::optional<std::string> seed_;  // every engine starts with this store (KvServer::Seed)
  int n_ = 0;
  std::vector<env::Address> addresses_;
  std::vector<std::unique_ptr<MemEngine>> engines_;
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(KvServerTest, WritesThroughAnyReplicaAreReadLinearizablyEverywhere) {
  Start(3);
  for (sim::NodeId at : {1, 2, 3}) {
    absl::StatusOr<etcdserverpb::PutResponse> r = Put(at, "k", absl::StrCat("v", at));
    ASSERT_TRUE(r.ok()) << r.status();
    if (at > 1) {
      EXPECT_EQ(r->prev_kv().value(), absl::StrCat("v", at - 1));
    }
    // Linearizable: every replica sees the write as soon as it was acknowledged.
    for (sim::NodeId reader : {1, 2, 3}) {
      EXPECT_EQ(ValueAt(reader, "k"), absl::StrCat("v", at));
    }
  }
  absl::StatusOr<etcdserverpb::RangeResponse> r = Get(2, "k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs(0).version(), 3);
  EXPECT_EQ(r->kvs(0).create_revision(), 2);  // the store starts at 1; the first write makes 2
  EXPECT_EQ(r->kvs(0).mod_revision(), 4);
}

TEST_F(KvServerTest, TxnCompareAndSwapTakesOneBranchAtOneRevision) {
  Start(3);
  ASSERT_TRUE(Put(1, "x", "1").ok());
  auto cas = [&](sim::NodeId at, const std::string& from, const std::string& to) {
    etcdserverpb::TxnRequest t;
    etcdserverpb::Compare* c = t.add_compare();
    c->set_key("x");
    c->set_target(etcdserverpb::Compare::VALUE);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_value(from);
    etcdserverpb::PutRequest* p = t.add_success()->mutable_request_put();
    p->set_key("x");
    p->set_value(to);
    Answer<etcdserverpb::TxnResponse> a;
    server(at)->Txn(t, a.Callback());
    EXPECT_TRUE(Wait(a));
    EXPECT_TRUE(a.got->ok()) << a.got->status();
    return a.got->ok() && (*a.got)->succeeded();
  };
  EXPECT_TRUE(cas(2, "1", "2"));
  EXPECT_FALSE(cas(3, "1", "3"));  // x is 2 now
  EXPECT_EQ(ValueAt(1, "x"), "2");
}

TEST_F(KvServerTest, BadRequestsAreRefusedBeforeTheLog) {
  Start(3);
  const uint64_t before = server(1)->raft_node().raft().log().last_index();
  etcdserverpb::PutRequest empty;
  Answer<etcdserverpb::PutResponse> a;
  server(1)->Put(empty, a.Callback());
  ASSERT_TRUE(a.got.has_value());  // at once
  EXPECT_EQ(a.got->status().message(), "etcdserver: key is not provided");
  EXPECT_EQ(server(1)->raft_node().raft().log().last_index(), before);
}

TEST_F(KvServerTest, AnUnansweredWriteTimesOutAsUnknownAndAMinorityReadFails) {
  Start(3, [](raft::RaftNodeConfig&, KvServerOptions& o) {
    o.request_timeout = absl::Seconds(2);
  });
  const sim::NodeId leader = Leader();
  // The leader alone: it accepts the proposal, but nothing can commit.
  cluster_->network().Isolate(leader);
  etcdserverpb::PutRequest p;
  p.set_key("k");
  p.set_value("v");
  Answer<etcdserverpb::PutResponse> a;
  server(leader)->Put(p, a.Callback());
  ASSERT_TRUE(Wait(a));
  EXPECT_EQ(a.got->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(a.got->status().message(), kErrTimeout);
  EXPECT_EQ(server(leader)->pending(), 0u);
  // A linearizable read on the cut-off leader cannot be confirmed: it fails, never stale.
  absl::StatusOr<etcdserverpb::RangeResponse> r = Get(leader, "k");
  EXPECT_FALSE(r.ok());
}

TEST_F(KvServerTest, AKeepAliveThroughAFollowerRenewsTheLeadersLeaseThroughTheLog) {
  Start(3);
  const sim::NodeId leader = Leader();
  const sim::NodeId follower = leader == 1 ? 2 : 1;
  Answer<requestpb::LeaseGrant> g;
  server(follower)->LeaseGrant(0, 2, g.Callback());
  ASSERT_TRUE(Wait(g));
  ASSERT_TRUE(g.got->ok()) << g.got->status();
  const int64_t id = (*g.got)->id();
  ASSERT_TRUE(Put(follower, "owned", "v", id).ok());
  for (int i = 0; i < 5; ++i) {  // kept alive through the follower for 5 s past its TTL
    sim_.RunUntil(sim_.now_ns() + 1'000'000'000);
    Answer<int64_t> k;
    server(follower)->LeaseRenew(id, k.Callback());
    ASSERT_TRUE(Wait(k));
    ASSERT_TRUE(k.got->ok()) << k.got->status();
    EXPECT_EQ(**k.got, 2);
  }
  EXPECT_EQ(ValueAt(leader, "owned"), "v");
  // An unknown lease: "not found", from the follower's apply.
  Answer<int64_t> unknown;
  server(follower)->LeaseRenew(id + 1, unknown.Callback());
  ASSERT_TRUE(Wait(unknown));
  EXPECT_EQ(unknown.got->status().code(), absl::StatusCode::kNotFound);
  // Left alone, it expires: the renewals did reach the leader's lessor, and nothing else does.
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return server(leader)->LeaseList().empty(); },
                                sim_.now_ns() + 10'000'000'000));
  EXPECT_EQ(ValueAt(follower, "owned"), std::nullopt);
}

TEST_F(KvServerTest, LeasesExpireOnTheLeaderAndDeleteTheirKeysEverywhere) {
  Start(3);
  Answer<requestpb::LeaseGrant> g;
  server(2)->LeaseGrant(0, 2, g.Callback());
  ASSERT_TRUE(Wait(g));
  ASSERT_TRUE(g.got->ok()) << g.got->status();
  const int64_t id = (*g.got)->id();
  EXPECT_GT(id, 0);
  EXPECT_EQ((*g.got)->ttl(), 2);
  ASSERT_TRUE(Put(3, "owned", "v", id).ok());
  // Keep-alives go to the leader only.
  const sim::NodeId leader = Leader();
  const sim::NodeId follower = leader == 1 ? 2 : 1;
  EXPECT_EQ(server(follower)->LeaseKeepAlive(id).status().message(),
            "etcdserver: not a primary lessor");
  for (int i = 0; i < 5; ++i) {  // kept alive for 5 s past its TTL
    sim_.RunUntil(sim_.now_ns() + 1'000'000'000);
    ASSERT_EQ(*server(Leader())->LeaseKeepAlive(id), 2);
  }
  EXPECT_EQ(ValueAt(1, "owned"), "v");
  // Then left alone: the leader revokes it through the log; every replica drops the key.
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        for (sim::NodeId n : {1, 2, 3}) {
          if (!server(n)->LeaseList().empty()) return false;
        }
        return true;
      },
      sim_.now_ns() + 10'000'000'000));
  for (sim::NodeId n : {1, 2, 3}) {
    EXPECT_EQ(ValueAt(n, "owned"), std::nullopt) << "n" << n;
    EXPECT_EQ(server(n)->LeaseTimeToLive(id).ttl_seconds, -1);
  }
}

TEST_F(KvServerTest, ARestartedReplicaRecoversFromItsEngineAndTheWal) {
  Start(3);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(1, absl::StrCat("k", i), absl::StrCat(i)).ok());
  const int64_t revision = server(3)->store().revision();
  // The crash keeps a random prefix of the engine's unsynced batches; here, none of them.
  cluster_->Crash(3);
  engines_[3]->Crash(0);
  cluster_->Restart(3);
  ASSERT_NE(server(3), nullptr) << proc(3)->open_status;
  EXPECT_EQ(server(3)->store().revision(), revision);  // replayed from the WAL
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<etcdserverpb::RangeResponse> r = Get(3, absl::StrCat("k", i), true);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->kvs_size(), 1);
    EXPECT_EQ(r->kvs(0).value(), absl::StrCat(i));
  }
}

TEST_F(KvServerTest, ALaggingReplicaCatchesUpThroughASnapshotOfTheEngine) {
  Start(3, [](raft::RaftNodeConfig& c, KvServerOptions&) {
    c.snapshot_entries = 10;
    c.snapshot_chunk_bytes = 256;
  });
  const sim::NodeId leader = Leader();
  const sim::NodeId lagging = leader == 3 ? 2 : 3;
  cluster_->Crash(lagging);
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Put(leader, absl::StrCat("k", i % 7), absl::StrCat(i)).ok());
  }
  cluster_->Restart(lagging);
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        return server(lagging) != nullptr &&
               server(lagging)->store().revision() == server(leader)->store().revision();
      },
      sim_.now_ns() + 30'000'000'000));
  EXPECT_GE(proc(lagging)->installs, 1);
  for (int k = 0; k < 7; ++k) {
    absl::StatusOr<etcdserverpb::RangeResponse> a = Get(lagging, absl::StrCat("k", k), true);
    absl::StatusOr<etcdserverpb::RangeResponse> b = Get(leader, absl::StrCat("k", k), true);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
  }
}

TEST_F(KvServerTest, WatchesSeeCommittedWritesOnEveryReplica) {
  Start(3);
  std::vector<kvpb::Event> seen;
  WatchRequest w;
  w.key = "a";
  w.range_end = "b";
  ASSERT_TRUE(server(3)->Watch(w, [&](const WatchResponse& r) {
    for (const auto& e : r.events) seen.push_back(e);
  }).ok());
  ASSERT_TRUE(Put(1, "a1", "x").ok());
  ASSERT_TRUE(Put(1, "zz", "ignored").ok());
  ASSERT_TRUE(Put(2, "a2", "y").ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return seen.size() == 2; }, sim_.now_ns() + 5'000'000'000));
  EXPECT_EQ(seen[0].kv().key(), "a1");
  EXPECT_EQ(seen[1].kv().key(), "a2");
}

TEST_F(KvServerTest, PastTheQuotaEveryReplicaRaisesNoSpaceAndStillServesReadsAndDeletes) {
  Start(3, [](raft::RaftNodeConfig&, KvServerOptions& o) { o.limits.quota_bytes = 6000; });
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 20 && refused.ok(); ++i) {
    absl::StatusOr<etcdserverpb::PutResponse> r =
        Put(1 + i % 3, absl::StrCat("big", i), std::string(700, 'v'));
    if (r.ok()) {
      ++accepted;
    } else {
      refused = r.status();
    }
  }
  EXPECT_GT(accepted, 2);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(), kErrNoSpace);
  // The alarm is replicated state: every replica refuses even a tiny put now.
  for (sim::NodeId n : {1, 2, 3}) {
    EXPECT_EQ(Put(n, "tiny", "1").status().message(), kErrNoSpace) << "n" << n;
  }
  EXPECT_EQ(ValueAt(2, "big0"), std::string(700, 'v'));  // reads work
  etcdserverpb::DeleteRangeRequest d;
  d.set_key("big0");
  Answer<etcdserverpb::DeleteRangeResponse> del;
  server(3)->DeleteRange(d, del.Callback());
  ASSERT_TRUE(Wait(del));
  ASSERT_TRUE(del.got->ok()) << del.got->status();  // deletes work
  // GET through the log lists the quota's alarm; DEACTIVATE lets small writes through again.
  etcdserverpb::AlarmRequest get;
  get.set_action(etcdserverpb::AlarmRequest::GET);
  Answer<etcdserverpb::AlarmResponse> alarms;
  server(2)->Alarm(get, alarms.Callback());
  ASSERT_TRUE(Wait(alarms));
  ASSERT_TRUE(alarms.got->ok());
  ASSERT_EQ((*alarms.got)->alarms_size(), 1);
  EXPECT_EQ((*alarms.got)->alarms(0).alarm(), etcdserverpb::NOSPACE);
  etcdserverpb::AlarmRequest disarm;
  disarm.set_action(etcdserverpb::AlarmRequest::DEACTIVATE);
  disarm.set_alarm(etcdserverpb::NOSPACE);
  disarm.set_memberid((*alarms.got)->alarms(0).memberid());
  Answer<etcdserverpb::AlarmResponse> cleared;
  server(1)->Alarm(disarm, cleared.Callback());
  ASSERT_TRUE(Wait(cleared));
  ASSERT_TRUE(cleared.got->ok());
  EXPECT_TRUE(Put(1, "tiny", "1").ok());
}


// A store that another cluster's log brought to applied index 40, in the snapshot format.
std::string StoreAtIndex40(int64_t* revision) {
  MemEngine engine;
  std::unique_ptr<MvccStore> store = *MvccStore::Open(&engine);
  for (int i = 0; i < 5; ++i) {
    MvccStore::Txn t = store->Begin();
    EXPECT_TRUE(t.Put(absl::StrCat("k", i), absl::StrCat("v", i), 0).ok());
    EXPECT_TRUE(t.Commit(36 + i).ok());
  }
  *revision = store->revision();
  requestpb::EngineSnapshot snap;
  snap.set_applied_index(store->applied_index());
  for (std::unique_ptr<KvIterator> it = engine.Scan("", ""); it->Valid(); it->Next()) {
    requestpb::EngineSnapshot::Record* rec = snap.add_records();
    rec->set_key(std::string(it->key()));
    rec->set_value(std::string(it->value()));
  }
  return snap.SerializeAsString();
}

// A restore: every member of a new cluster starts from the same backup. Its new log applies
// from its first entry (the old cluster's index 40 means nothing to it), and revisions go on
// from the backup's: they never go back.
TEST_F(KvServerTest, ASeededClusterServesTheStoreAndItsRevisionsGoOn) {
  int64_t revision = 0;
  seed_ = StoreAtIndex40(&revision);
  ASSERT_EQ(revision, 6);
  Start(3);
  for (sim::NodeId id : cluster_->nodes()) {
    EXPECT_EQ(ValueAt(id, "k3"), "v3");
    EXPECT_EQ(server(id)->store().revision(), revision);
  }
  absl::StatusOr<etcdserverpb::PutResponse> put = Put(Leader(), "after", "x");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->header().revision(), revision + 1);
  for (sim::NodeId id : cluster_->nodes()) EXPECT_EQ(ValueAt(id, "after"), "x");
}

TEST(KvSeedTest, RefusesAnEngineInUseAndAStoreThatDoesNotParseOrOpen) {
  int64_t revision = 0;
  const std::string store = StoreAtIndex40(&revision);
  MemEngine used;
  WriteBatch b;
  b.Put("x", "y");
  ASSERT_TRUE(used.Write(b).ok());
  EXPECT_EQ(KvServer::Seed(&used, store).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(**used.Get("x"), "y");  // left alone

  MemEngine empty;
  EXPECT_EQ(KvServer::Seed(&empty, "\xff\xff not a store").status().code(),
            absl::StatusCode::kDataLoss);
  requestpb::EngineSnapshot damaged;
  requestpb::EngineSnapshot::Record* rec = damaged.add_records();
  rec->set_key("m/revision");
  rec->set_value("not a number");
  EXPECT_EQ(KvServer::Seed(&empty, damaged.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(empty.Scan("", "")->Valid()) << "a refused store left records behind";
  absl::StatusOr<int64_t> seeded = KvServer::Seed(&empty, store);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  EXPECT_EQ(*seeded, revision);
  EXPECT_EQ((*MvccStore::Open(&empty))->applied_index(), 0u);
}

}  // namespace
}  // namespace e2d::kv
