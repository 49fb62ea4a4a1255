// Copyright e2d authors.
//
// Node on the simulator: three members named a, b and c, each on its own MemEngine, checked for
// what the node adds to the store: ids, the identity of the data directory, the header, the
// member list, MoveLeader with etcd's errors, and the metrics text.

#include "node/node.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv/mem_engine.h"
#include "sim/cluster.h"

namespace e2d::node {
namespace {

struct Proc final : sim::Process {
  std::unique_ptr<Node> node;
  absl::Status open_status;
};

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 3; ++i) {
      Member m;
      m.name = std::string(1, static_cast<char>('a' + i - 1));
      m.peer_address = absl::StrCat("10.0.0.", i, ":2380");
      members_.push_back(m);
      engines_.push_back(std::make_unique<kv::MemEngine>());
    }
    cluster_ = std::make_unique<sim::Cluster>(sim_, [this](env::Env& env, sim::NodeId id) {
      NodeConfig c;
      c.name = name_override_.has_value() && id == 1 ? *name_override_ : members_[id - 1].name;
      c.initial_cluster = members_;
      c.join = joining_.contains(id);
      c.snapshot_entries = snapshot_entries_;
      c.restore = restore_;
      c.backup = backup_;
      c.backup.iv = [&env] {
        std::array<uint8_t, kBackupIvSize> iv;
        for (uint8_t& b : iv) b = static_cast<uint8_t>(env.random().Next());
        return iv;
      };
      c.backup.unix_seconds = [&env] { return static_cast<uint64_t>(env.clock().Now().ns / 1'000'000'000); };
      auto p = std::make_unique<Proc>();
      absl::StatusOr<std::unique_ptr<Node>> n = Node::Open(env, engines_[id - 1].get(), c);
      if (n.ok()) {
        p->node = std::move(*n);
      } else {
        p->open_status = n.status();
      }
      return p;
    });
    for (const Member& m : members_) cluster_->AddNode(m.peer_address);
    ASSERT_TRUE(WaitForLeader());
  }

  Node* node(sim::NodeId id) {
    auto* p = static_cast<Proc*>(cluster_->process(id));
    return p == nullptr ? nullptr : p->node.get();
  }
  sim::NodeId Leader() {
    for (sim::NodeId id : cluster_->nodes()) {
      if (node(id) && node(id)->Status().leader == node(id)->id()) return id;
    }
    return sim::kNoNode;
  }
  bool WaitForLeader() {
    return sim_.RunUntilTrue(
        [&] {
          sim::NodeId l = Leader();
          if (l == sim::kNoNode) return false;
          for (sim::NodeId id : cluster_->nodes()) {
            if (node(id) == nullptr || node(id)->Status().leader != node(l)->id()) return false;
          }
          return true;
        },
        sim_.now_ns() + 20'000'000'000);
  }
  template <typename T>
  T Await(std::function<void(std::function<void(T)>)> call) {
    std::optional<T> got;
    call([&](T v) { got = std::move(v); });
    EXPECT_FALSE(got.has_value()) << "answered inside the call";
    if (!sim_.RunUntilTrue([&] { return got.has_value(); }, sim_.now_ns() + 30'000'000'000)) {
      return T(absl::DeadlineExceededError("test: no answer"));
    }
    return *std::move(got);
  }
  absl::StatusOr<Member> Add(sim::NodeId at, const std::string& address, bool learner) {
    return Await<absl::StatusOr<Member>>([&](auto done) {
      node(at)->AddMember(address, learner, absl::Seconds(7), std::move(done));
    });
  }
  absl::Status Remove(sim::NodeId at, uint64_t id) {
    return Await<absl::Status>(
        [&](auto done) { node(at)->RemoveMember(id, absl::Seconds(7), std::move(done)); });
  }
  absl::Status Promote(sim::NodeId at, uint64_t id) {
    return Await<absl::Status>(
        [&](auto done) { node(at)->PromoteMember(id, absl::Seconds(7), std::move(done)); });
  }
  absl::StatusOr<etcdserverpb::PutResponse> Put(sim::NodeId at, const std::string& key,
                                                const std::string& value) {
    etcdserverpb::PutRequest put;
    put.set_key(key);
    put.set_value(value);
    return Await<absl::StatusOr<etcdserverpb::PutResponse>>(
        [&](auto done) { node(at)->kv().Put(put, std::move(done)); });
  }
  // A linearizable read (KvServer may answer it inside the call).
  std::optional<std::string> Get(sim::NodeId at, const std::string& key) {
    etcdserverpb::RangeRequest range;
    range.set_key(key);
    std::optional<absl::StatusOr<etcdserverpb::RangeResponse>> r;
    node(at)->kv().Range(range, [&](absl::StatusOr<etcdserverpb::RangeResponse> got) { r = got; });
    EXPECT_TRUE(sim_.RunUntilTrue([&] { return r.has_value(); }, sim_.now_ns() + 30'000'000'000));
    if (!r.has_value()) return std::nullopt;
    EXPECT_TRUE(r->ok()) << r->status();
    if (!r->ok() || (*r)->kvs_size() == 0) return std::nullopt;
    return (*r)->kvs(0).value();
  }
  absl::Status MoveLeader(sim::NodeId at, uint64_t target) {
    std::optional<absl::Status> got;
    node(at)->MoveLeader(target, absl::Seconds(5), [&](absl::Status s) { got = s; });
    EXPECT_FALSE(got.has_value()) << "answered inside the call";
    if (!sim_.RunUntilTrue([&] { return got.has_value(); }, sim_.now_ns() + 20'000'000'000)) {
      return absl::DeadlineExceededError("test: no answer");
    }
    return *got;
  }

  // Member d, for machine 4 (not added yet): it joins the running cluster once started.
  Member FourthMachine() {
    Member d;
    d.name = "d";
    d.peer_address = "10.0.0.4:2380";
    members_.push_back(d);
    engines_.push_back(std::make_unique<kv::MemEngine>());
    joining_.insert(4);
    return d;
  }

  sim::Simulator sim_{7};
  std::vector<Member> members_;
  std::vector<std::unique_ptr<kv::MemEngine>> engines_;
  std::optional<std::string> name_override_;
  absl::flat_hash_set<sim::NodeId> joining_;
  uint64_t snapshot_entries_ = 100000;
  BackupConfig backup_;
  std::optional<NodeConfig::Restore> restore_;
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(NodeTest, MembersAgreeOnIdsAndTheHeaderNamesClusterMemberAndTerm) {
  const uint64_t cluster = node(1)->cluster_id();
  for (sim::NodeId id : cluster_->nodes()) {
    EXPECT_EQ(node(id)->cluster_id(), cluster);
    EXPECT_EQ(node(id)->id(), MemberIdFor(members_[id - 1].peer_address));
    const etcdserverpb::ResponseHeader h = node(id)->Header();
    EXPECT_EQ(h.cluster_id(), cluster);
    EXPECT_EQ(h.member_id(), node(id)->id());
    EXPECT_GE(h.raft_term(), 1u);
    std::vector<Member> list = node(id)->Members();
    ASSERT_EQ(list.size(), 3u);
    for (const Member& m : list) {
      EXPECT_FALSE(m.name.empty());
      EXPECT_EQ(m.id, MemberIdFor(m.peer_address));
      EXPECT_FALSE(m.learner);
    }
  }
  EXPECT_NE(MemberIdFor("10.0.0.1:2380"), MemberIdFor("10.0.0.2:2380"));
  std::vector<Member> other = members_;
  other[0].peer_address = "10.9.9.9:2380";
  EXPECT_NE(ClusterIdFor(other), cluster);
}

TEST_F(NodeTest, MoveLeaderHandsOverAndRefusesAsEtcdDoes) {
  const sim::NodeId l = Leader();
  const sim::NodeId f = l % 3 + 1;
  const sim::NodeId g = f % 3 + 1;
  absl::Status s = MoveLeader(f, node(g)->id());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "etcdserver: not leader");
  s = MoveLeader(l, 12345);
  EXPECT_EQ(s.message(), "etcdserver: bad leader transferee");
  ASSERT_TRUE(MoveLeader(l, node(f)->id()).ok());
  EXPECT_EQ(node(f)->Status().leader, node(f)->id());
  EXPECT_EQ(Leader(), f);
}

// The snapshot age grows with the clock and starts again at each new snapshot.
class NodeSnapshotTest : public NodeTest {
 protected:
  void SetUp() override {
    snapshot_entries_ = 100;
    NodeTest::SetUp();
  }
  static double Metric(const std::string& text, const std::string& name) {
    const size_t at = text.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name;
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
  }
};

TEST_F(NodeSnapshotTest, MetricsReportTheSnapshotIndexAndAge) {
  const sim::NodeId l = Leader();
  std::string text = node(l)->MetricsText();
  EXPECT_EQ(Metric(text, "e2d_snapshot_index"), 0);
  const double age0 = Metric(text, "e2d_snapshot_age_seconds");
  sim_.RunUntil(sim_.now_ns() + 5'000'000'000);
  text = node(l)->MetricsText();
  EXPECT_NEAR(Metric(text, "e2d_snapshot_age_seconds") - age0, 5, 0.5);
  int acked = 0;
  for (int i = 0; i < 150; ++i) {
    etcdserverpb::PutRequest put;
    put.set_key(absl::StrCat("k", i));
    node(l)->kv().Put(put, [&](absl::StatusOr<etcdserverpb::PutResponse> r) { acked += r.ok(); });
  }
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] { return acked == 150 && node(l)->Status().raft_index > 0 &&
                   Metric(node(l)->MetricsText(), "e2d_snapshot_index") > 0; },
      sim_.now_ns() + 20'000'000'000));
  text = node(l)->MetricsText();
  EXPECT_LT(Metric(text, "e2d_snapshot_age_seconds"), 0.5) << text;
  sim_.RunUntil(sim_.now_ns() + 1'000'000'000);  // counted from the new snapshot now
  EXPECT_NEAR(Metric(node(l)->MetricsText(), "e2d_snapshot_age_seconds"), 1, 0.3);
}

// Periodic backups: the leader alone writes one per interval when the revision moved, keeps the
// newest `keep`, and each verifies and restores to the store's content.
class NodeBackupTest : public NodeTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    backup_.store = &store_;
    backup_.interval = absl::Seconds(1);
    backup_.keep = 3;
    backup_.keep_hourly = 2;  // with every backup in one hour, no more than `keep`
    if (GetParam()) backup_.keys = *DeriveBackupKeys("test CA key");
    NodeTest::SetUp();
  }
  void Put(sim::NodeId at, const std::string& key, const std::string& value) {
    etcdserverpb::PutRequest put;
    put.set_key(key);
    put.set_value(value);
    bool done = false;
    node(at)->kv().Put(put, [&](absl::StatusOr<etcdserverpb::PutResponse> r) {
      EXPECT_TRUE(r.ok()) << r.status();
      done = true;
    });
    ASSERT_TRUE(sim_.RunUntilTrue([&] { return done; }, sim_.now_ns() + 10'000'000'000));
  }
  std::vector<std::string> Names() {
    std::vector<std::string> names = *store_.List();
    std::sort(names.begin(), names.end());
    return names;
  }
  int64_t store_time_ = 0;  // what the store stamps each backup with (offloaded work runs
                            // inline on the simulator's thread)
  MemBackupStore store_{[this] { return store_time_; }};
};

TEST_P(NodeBackupTest, TheLeaderWritesVerifiableBackupsKeepsTheNewestAndSkipsIdleRounds) {
  const sim::NodeId l = Leader();
  Put(l, "backed", "up-value");
  sim_.RunUntil(sim_.now_ns() + 1'500'000'000);
  std::vector<std::string> names = Names();
  ASSERT_EQ(names.size(), 1u);
  const int64_t revision = node(l)->kv().store().revision();
  EXPECT_EQ(names[0], BackupName(node(l)->cluster_id(), static_cast<uint64_t>(revision)));
  const std::string file = *store_.Get(names[0]);
  EXPECT_EQ(absl::StrContains(file, "up-value"), !GetParam());  // encrypted: not readable
  std::string payload;
  absl::StatusOr<BackupMeta> meta = RestoreBackup(
      [&](uint64_t offset, size_t n) -> absl::StatusOr<std::string> {
        return offset >= file.size() ? std::string() : file.substr(offset, n);
      },
      file.size(), backup_.keys, [&](std::string_view b) {
        payload.append(b);
        return absl::OkStatus();
      });
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->cluster_id, node(l)->cluster_id());
  EXPECT_EQ(meta->revision, static_cast<uint64_t>(revision));
  EXPECT_EQ(meta->members.size(), 3u);
  EXPECT_TRUE(payload == *node(l)->kv().Backup()) << "the payload is the store as of the backup";

  // Idle rounds write nothing.
  sim_.RunUntil(sim_.now_ns() + 3'000'000'000);
  EXPECT_EQ(Names().size(), 1u);
  EXPECT_TRUE(absl::StrContains(node(l)->MetricsText(), "\ne2d_backups_total 1\n"));
  EXPECT_FALSE(absl::StrContains(node(l)->MetricsText(), "\ne2d_backups_skipped_total 0\n"));
  // Followers never write one.
  for (sim::NodeId id : cluster_->nodes()) {
    if (id != l) {
      EXPECT_TRUE(absl::StrContains(node(id)->MetricsText(), "\ne2d_backups_total 0\n"));
    }
  }
  // Retention: after five more revisions backed up, the newest three remain.
  std::vector<std::string> written;
  for (int i = 0; i < 5; ++i) {
    Put(l, absl::StrCat("k", i), "v");
    sim_.RunUntil(sim_.now_ns() + 1'100'000'000);
    written.push_back(BackupName(node(l)->cluster_id(),
                                 static_cast<uint64_t>(node(l)->kv().store().revision())));
  }
  EXPECT_EQ(Names(), std::vector<std::string>(written.end() - 3, written.end()));
}

// Hourly generations: beyond the newest `keep`, the newest backup of each of the last
// `keep_hourly` hours that have one stays; older ones go.
TEST_P(NodeBackupTest, RetentionKeepsTheNewestOfEachOfTheLastHours) {
  const sim::NodeId l = Leader();
  std::vector<std::string> written;
  for (const int64_t hour : {0, 1, 1, 2, 2, 2}) {
    store_time_ = hour * 3600 + 60;
    Put(l, absl::StrCat("h", written.size()), "v");
    sim_.RunUntil(sim_.now_ns() + 1'100'000'000);  // one backup interval
    written.push_back(BackupName(node(l)->cluster_id(),
                                 static_cast<uint64_t>(node(l)->kv().store().revision())));
  }
  // The newest three (all of hour 2) by `keep`; hour 1's newest by `keep_hourly`; hour 0's
  // and hour 1's older one are gone.
  EXPECT_EQ(Names(), (std::vector<std::string>{written[2], written[3], written[4], written[5]}));
}

// A backup on demand: written by the leader at once, even with nothing changed since the last;
// refused by a follower (naming the leader) and while one is being written.
TEST_P(NodeBackupTest, OnDemandTheLeaderWritesOneAtOnceAndFollowersSayWhoLeads) {
  const sim::NodeId l = Leader();
  Put(l, "backed", "up-value");
  sim_.RunUntil(sim_.now_ns() + 1'500'000'000);
  ASSERT_TRUE(absl::StrContains(node(l)->MetricsText(), "\ne2d_backups_total 1\n"));
  // Nothing changed: the periodic round would skip; on demand it writes.
  ASSERT_TRUE(node(l)->BackupNow().ok());
  EXPECT_EQ(node(l)->BackupNow().code(), absl::StatusCode::kUnavailable);  // one at a time
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] { return absl::StrContains(node(l)->MetricsText(), "\ne2d_backups_total 2\n"); },
      sim_.now_ns() + 5'000'000'000));
  EXPECT_EQ(Names().size(), 1u);  // the same revision: the same name, written again
  for (sim::NodeId id : cluster_->nodes()) {
    if (id == l) continue;
    const absl::Status s = node(id)->BackupNow();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat(absl::Hex(node(l)->id(),
                                                                      absl::kZeroPad16))))
        << s;
  }
}

INSTANTIATE_TEST_SUITE_P(PlainAndEncrypted, NodeBackupTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "encrypted" : "plain"; });

TEST_F(NodeTest, MetricsReportTheLeaderAndTheDiskHistograms) {
  const sim::NodeId l = Leader();
  const std::string text = node(l)->MetricsText();
  EXPECT_TRUE(absl::StrContains(text, "\ne2d_raft_is_leader 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE e2d_wal_fsync_duration_seconds histogram"));
  // The bootstrap entry and the leader's empty entry were synced: the histogram counted them.
  EXPECT_FALSE(absl::StrContains(text, "e2d_wal_fsync_duration_seconds_count 0\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "e2d_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"));
  const sim::NodeId f = l % 3 + 1;
  EXPECT_TRUE(absl::StrContains(node(f)->MetricsText(), "\ne2d_raft_is_leader 0\n"));
}

// etcd's member add / promote / remove, as an operator replaces a member: a new member is added
// as a learner, starts with --initial-cluster-state existing, learns the cluster id and the
// data, is promoted (through a follower, which forwards), and the leader itself is removed.
TEST_F(NodeTest, AMemberJoinsAsALearnerIsPromotedAndTheLeaderIsRemoved) {
  const Member d = FourthMachine();
  const sim::NodeId l = Leader();
  const sim::NodeId f = l % 3 + 1;
  const uint64_t d_id = MemberIdFor(d.peer_address);

  EXPECT_EQ(Add(l, members_[0].peer_address, true).status().message(),
            "etcdserver: Peer URLs already exists");
  EXPECT_EQ(Promote(l, 999).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Promote(l, node(f)->id()).message(), "etcdserver: can only promote a learner member");
  EXPECT_EQ(Remove(l, 999).message(), "etcdserver: member not found");

  absl::StatusOr<Member> added = Add(l, d.peer_address, /*learner=*/true);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->id, d_id);
  EXPECT_TRUE(added->learner);
  std::vector<Member> list = node(f)->Members();
  ASSERT_EQ(list.size(), 4u);
  // Until it runs and catches up, a leader refuses to promote it.
  EXPECT_EQ(Promote(l, d_id).message(),
            "etcdserver: can only promote a learner member which is in sync with leader");

  cluster_->AddNode(d.peer_address);
  ASSERT_NE(node(4), nullptr) << static_cast<Proc*>(cluster_->process(4))->open_status;
  EXPECT_EQ(node(4)->id(), d_id);
  EXPECT_EQ(node(4)->cluster_id(), 0u);  // not heard from its cluster yet
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        return node(4)->cluster_id() == node(l)->cluster_id() &&
               node(4)->Status().raft_applied_index >= node(l)->Status().raft_applied_index;
      },
      sim_.now_ns() + 20'000'000'000));
  EXPECT_TRUE(node(4)->Status().learner);

  ASSERT_TRUE(Promote(f, d_id).ok());  // forwarded to the leader
  EXPECT_FALSE(node(4)->Status().learner);

  // The leader removes itself: it hands over, and the new leader applies the removal.
  const uint64_t old_leader = node(l)->id();
  ASSERT_TRUE(Remove(l, old_leader).ok());
  list = node(f)->Members();
  ASSERT_EQ(list.size(), 3u);
  for (const Member& m : list) EXPECT_NE(m.id, old_leader);
  EXPECT_TRUE(std::any_of(list.begin(), list.end(), [&](const Member& m) {
    return m.id == d_id && m.peer_address == d.peer_address && !m.learner;
  }));

  // The joined member restarts with the cluster id it recorded.
  const uint64_t cluster = node(f)->cluster_id();
  cluster_->Crash(4);
  cluster_->Restart(4);
  ASSERT_NE(node(4), nullptr) << static_cast<Proc*>(cluster_->process(4))->open_status;
  EXPECT_EQ(node(4)->cluster_id(), cluster);
}

// A follower forwards a change to the leader, which drops it while its own previous change is
// not applied yet (Raft allows one at a time). The follower notices that the change never
// reached its log and proposes it again: the operator's request is not lost to a timeout.
TEST_F(NodeTest, AChangeForwardedWhileAnotherIsPendingIsProposedAgain) {
  const sim::NodeId l = Leader();
  const sim::NodeId f = l % 3 + 1;
  const sim::NodeId g = f % 3 + 1;
  const uint64_t g_id = node(g)->id();
  const std::string d_address = "10.0.0.4:2380";
  std::optional<absl::Status> removed;
  std::optional<absl::StatusOr<Member>> added;
  node(l)->RemoveMember(g_id, absl::Seconds(7), [&](absl::Status s) { removed = s; });
  node(f)->AddMember(d_address, /*learner=*/true, absl::Seconds(7),
                     [&](absl::StatusOr<Member> m) { added = std::move(m); });
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return removed.has_value() && added.has_value(); },
                                sim_.now_ns() + 30'000'000'000));
  EXPECT_TRUE(removed->ok()) << *removed;
  ASSERT_TRUE(added->ok()) << added->status();
  for (sim::NodeId at : {l, f}) {
    std::vector<Member> list = node(at)->Members();
    EXPECT_EQ(list.size(), 3u);
    EXPECT_TRUE(std::none_of(list.begin(), list.end(), [&](const Member& m) { return m.id == g_id; }));
    EXPECT_TRUE(std::any_of(list.begin(), list.end(), [&](const Member& m) {
      return m.id == MemberIdFor(d_address) && m.learner;
    }));
  }
}

// A change is acknowledged once the leader applied it; a follower learns of the commit a
// moment later. A request made to that follower before it did must see the change all the same:
// the second add of the same member is refused, not proposed again as a new one.
TEST_F(NodeTest, AFollowerChecksARequestAgainstEveryAcknowledgedChange) {
  const sim::NodeId l = Leader();
  const sim::NodeId f = l % 3 + 1;
  const std::string d_address = "10.0.0.4:2380";
  cluster_->network().Block(l, f);  // f hears nothing from the leader for a moment
  ASSERT_TRUE(Add(l, d_address, /*learner=*/true).ok());
  ASSERT_EQ(node(f)->Members().size(), 3u) << "the test needs f to lag behind the leader";
  std::optional<absl::StatusOr<Member>> second;
  node(f)->AddMember(d_address, /*learner=*/true, absl::Seconds(7),
                     [&](absl::StatusOr<Member> m) { second = std::move(m); });
  sim_.RunUntil(sim_.now_ns() + 300'000'000);
  cluster_->network().Heal();
  ASSERT_TRUE(
      sim_.RunUntilTrue([&] { return second.has_value(); }, sim_.now_ns() + 30'000'000'000));
  EXPECT_EQ(second->status().message(), "etcdserver: Peer URLs already exists");
  EXPECT_EQ(node(f)->Members().size(), 4u);

  // A follower with no leader to ask refuses, in time, instead of checking a stale membership.
  cluster_->network().Isolate(f);
  sim_.RunUntil(sim_.now_ns() + 5'000'000'000);
  const absl::Status cut = Remove(f, MemberIdFor(d_address));
  EXPECT_EQ(cut.code(), absl::StatusCode::kUnavailable) << cut;
  cluster_->network().Heal();
}

// Total loss: every member's disk is gone, and a new cluster of the same members starts from
// the old one's backup, each member given the same one. It is a new cluster (its id names the
// backup), it serves the backup's data, and its revisions go on from the backup's: a client
// never sees them go back. A restored member restarts from its own data, whether or not it is
// given the backup again; and a backup never overwrites a member that has data.
TEST_F(NodeTest, AfterTotalLossANewClusterStartsFromTheBackupAndKeepsItsRevisions) {
  const sim::NodeId l = Leader();
  int64_t revision = 0;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<etcdserverpb::PutResponse> put = Put(l, absl::StrCat("k", i), "old");
    ASSERT_TRUE(put.ok()) << put.status();
    revision = put->header().revision();
  }
  absl::StatusOr<std::string> store = node(l)->kv().Backup();
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(Put(l, "after-backup", "lost").ok());  // not in the backup: lost with the disks
  const uint64_t old_cluster = node(l)->cluster_id();

  restore_ = NodeConfig::Restore{"e2d-test-backup", *store};
  for (sim::NodeId id : {1, 2, 3}) {
    cluster_->Lose(id);
    engines_[id - 1] = std::make_unique<kv::MemEngine>();
  }
  for (sim::NodeId id : {1, 2, 3}) cluster_->Restart(id);
  for (sim::NodeId id : {1, 2, 3}) {
    ASSERT_NE(node(id), nullptr) << static_cast<Proc*>(cluster_->process(id))->open_status;
  }
  ASSERT_TRUE(WaitForLeader());
  const sim::NodeId nl = Leader();
  EXPECT_NE(node(nl)->cluster_id(), old_cluster);
  EXPECT_EQ(node(nl)->cluster_id(), ClusterIdFor(members_, "e2d-test-backup"));
  for (sim::NodeId id : {1, 2, 3}) EXPECT_EQ(node(id)->Header().revision(), revision);
  absl::StatusOr<etcdserverpb::PutResponse> put = Put(nl, "new", "1");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->header().revision(), revision + 1);
  for (sim::NodeId id : {1, 2, 3}) {
    EXPECT_EQ(Get(id, "k9"), "old");
    EXPECT_EQ(Get(id, "after-backup"), std::nullopt);
  }

  // Restarts: with the restore flag still given (the data dir wins) and without it.
  const uint64_t restored = node(nl)->cluster_id();
  const sim::NodeId f = nl % 3 + 1;
  cluster_->Crash(f);
  cluster_->Restart(f);
  ASSERT_NE(node(f), nullptr) << static_cast<Proc*>(cluster_->process(f))->open_status;
  restore_.reset();
  cluster_->Crash(nl);
  cluster_->Restart(nl);
  ASSERT_NE(node(nl), nullptr) << static_cast<Proc*>(cluster_->process(nl))->open_status;
  ASSERT_TRUE(WaitForLeader());
  ASSERT_TRUE(Put(Leader(), "after-restarts", "1").ok());
  for (sim::NodeId id : {1, 2, 3}) {
    EXPECT_EQ(node(id)->cluster_id(), restored);
    EXPECT_EQ(Get(id, "new"), "1");
  }
  EXPECT_TRUE(std::any_of(cluster_->log_tail().begin(), cluster_->log_tail().end(),
                          [](const std::string& line) {
                            return line.find("the backup is not restored") != std::string::npos;
                          }));

  // A member added later has the backup's data too: the restored store is not in the log, so
  // it starts from the snapshot the restored members took.
  const Member d = FourthMachine();
  const sim::NodeId l2 = Leader();
  EXPECT_GT(node(l2)->kv().raft_node().raft().log().snapshot_index(), 0u);
  absl::StatusOr<Member> added = Add(l2, d.peer_address, /*learner=*/true);
  ASSERT_TRUE(added.ok()) << added.status();
  cluster_->AddNode(d.peer_address);
  ASSERT_NE(node(4), nullptr) << static_cast<Proc*>(cluster_->process(4))->open_status;
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        return node(4)->cluster_id() == restored &&
               node(4)->Status().raft_applied_index >= node(l2)->Status().raft_applied_index;
      },
      sim_.now_ns() + 20'000'000'000));
  ASSERT_TRUE(Promote(l2, added->id).ok());
  EXPECT_EQ(node(4)->Header().revision(), node(l2)->Header().revision());
  EXPECT_EQ(Get(4, "k9"), "old");
  EXPECT_EQ(Get(4, "new"), "1");
}

TEST(GossipMetaTest, RoundTripsAndRefusesWhatIsNotOne) {
  GossipMeta m;
  m.member_id = 0x0123456789abcdefull;
  m.cluster_id = 0xfedcba9876543210ull;
  m.peer_address = "10.0.0.1:2380";
  m.client_url = "https://10.0.0.1:2379";
  std::optional<GossipMeta> back = DecodeGossipMeta(EncodeGossipMeta(m));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->member_id, m.member_id);
  EXPECT_EQ(back->cluster_id, m.cluster_id);
  EXPECT_EQ(back->peer_address, m.peer_address);
  EXPECT_EQ(back->client_url, m.client_url);
  m.client_url.clear();
  m.cluster_id = 0;
  back = DecodeGossipMeta(EncodeGossipMeta(m));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->client_url, "");
  EXPECT_EQ(back->cluster_id, 0u);
  EXPECT_FALSE(back->pending);
  m.pending = true;
  m.ack_epoch = 12;
  m.ack_cluster_id = 0x77;
  m.ack_members = {1, 0x20, 0x300};
  back = DecodeGossipMeta(EncodeGossipMeta(m));
  ASSERT_TRUE(back.has_value()) << EncodeGossipMeta(m);
  EXPECT_TRUE(back->pending);
  EXPECT_EQ(back->ack_epoch, 12u);
  EXPECT_EQ(back->ack_cluster_id, 0x77u);
  EXPECT_EQ(back->ack_members, m.ack_members);
  for (const char* bad :
       {"", "e2d2", "e2d1 1 2 a:1 -", "e2d2 running 1 2 a:1 -", "e2d2 running xyz 2 a:1 - -",
        "e2d2 running 1 2  - -", "e2d2 running 1 2 a:1 - - extra", "e2d2 idle 1 2 a:1 - -",
        "e2d2 running 1 2 a:1 - 1/7:1,2", "e2d2 pending 1 0 a:1 - 1/7:2,1",
        "e2d2 pending 1 0 a:1 - 1/7:1,1", "e2d2 pending 1 0 a:1 - 1/0:1",
        "e2d2 pending 1 0 a:1 - 1/7", "e2d2 pending 1 0 a:1 - 1/7:1,x",
        "e2d2 pending 1 0 a:1 - 7:1,2", "e2d2 pending 1 0 a:1 - 0/7:1,2",
        "e2d2 pending 1 0 a:1 - 7:1/2", "e2d2 pending 1 0 a:1 - x/7:1",
        "e2d2 running 1 2 a:1 - - 2/5/1/0", "e2d2 running 1 2 a:1 - - 1/5/1",
        "e2d2 running 1 2 a:1 - - 1/x/1/0", "e2d2 running 1 2 a:1 - - 1/5/1/0/0",
        "e2d2 pending 1 0 a:1 - - 1/5/1/0"}) {
    EXPECT_FALSE(DecodeGossipMeta(bad).has_value()) << bad;
  }
}

TEST(GossipMetaTest, RecoveryFieldsRoundTripAndOldPeersStillParse) {
  GossipMeta m;
  m.member_id = 0x11;
  m.cluster_id = 0x22;
  m.peer_address = "10.0.0.1:2380";
  // Nothing about recovery: the seven fields older members publish.
  EXPECT_EQ(EncodeGossipMeta(m), "e2d2 running 0000000000000011 0000000000000022 10.0.0.1:2380 - -");
  m.lost_quorum = true;
  m.lost_commit = 1234;
  m.recovery_vote = 0x33;
  std::optional<GossipMeta> back = DecodeGossipMeta(EncodeGossipMeta(m));
  ASSERT_TRUE(back.has_value()) << EncodeGossipMeta(m);
  EXPECT_TRUE(back->lost_quorum);
  EXPECT_EQ(back->lost_commit, 1234u);
  EXPECT_EQ(back->recovery_vote, 0x33u);
  EXPECT_EQ(back->recovered_from, 0u);
  m = GossipMeta();
  m.member_id = 0x11;
  m.cluster_id = 0x44;
  m.peer_address = "10.0.0.1:2380";
  m.recovered_from = 0x22;
  back = DecodeGossipMeta(EncodeGossipMeta(m));
  ASSERT_TRUE(back.has_value()) << EncodeGossipMeta(m);
  EXPECT_FALSE(back->lost_quorum);
  EXPECT_EQ(back->recovered_from, 0x22u);
}

TEST(NodeRecoveryTest, PrepareRecoveryNeedsAMemberWithData) {
  sim::Simulator sim(1);
  sim::Cluster cluster(sim, [](env::Env& env, sim::NodeId) -> std::unique_ptr<sim::Process> {
    auto p = std::make_unique<Proc>();
    Node::PrepareRecovery(env, [p = p.get()](absl::Status s) { p->open_status = s; });
    p->open_status = absl::UnknownError("pending");
    return p;
  });
  const sim::NodeId n = cluster.AddNode("10.0.0.1:2380");
  sim.RunUntilTrue([&] { return false; }, 1'000'000'000);
  auto* p = static_cast<Proc*>(cluster.process(n));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->open_status.code(), absl::StatusCode::kFailedPrecondition) << p->open_status;
  EXPECT_TRUE(absl::StrContains(p->open_status.message(), "holds no member")) << p->open_status;
}

TEST_F(NodeTest, ADataDirectoryOfAnotherMemberIsRefusedAndLeftAlone) {
  cluster_->Crash(1);
  // Member 1's disk now holds member a's identity; starting as b on it must fail.
  name_override_ = "b";
  cluster_->Restart(1);
  auto* p = static_cast<Proc*>(cluster_->process(1));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->node, nullptr);
  EXPECT_EQ(p->open_status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(p->open_status.message(), "belongs to another cluster or member"))
      << p->open_status;
  // As itself it starts again and rejoins.
  cluster_->Crash(1);
  name_override_.reset();
  cluster_->Restart(1);
  ASSERT_NE(node(1), nullptr) << static_cast<Proc*>(cluster_->process(1))->open_status;
  EXPECT_TRUE(WaitForLeader());
}

}  // namespace
}  // namespace e2d::node
