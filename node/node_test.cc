// Copyright e2d authors.
//
// Node on the simulator: three members named a, b and c, each on its own MemEngine, checked for
// what the node adds to the store: ids, the identity of the data directory, the header, the
// member list, MoveLeader with etcd's errors, and the metrics text.

#include "node/node.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

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
  absl::Status MoveLeader(sim::NodeId at, uint64_t target) {
    std::optional<absl::Status> got;
    node(at)->MoveLeader(target, absl::Seconds(5), [&](absl::Status s) { got = s; });
    EXPECT_FALSE(got.has_value()) << "answered inside the call";
    if (!sim_.RunUntilTrue([&] { return got.has_value(); }, sim_.now_ns() + 20'000'000'000)) {
      return absl::DeadlineExceededError("test: no answer");
    }
    return *got;
  }

  sim::Simulator sim_{7};
  std::vector<Member> members_;
  std::vector<std::unique_ptr<kv::MemEngine>> engines_;
  std::optional<std::string> name_override_;
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(NodeTest, MembersAgreeOnIdsAndTheHeaderNamesClusterMemberAndTerm) {
  const uint64_t cluster = node(1)->cluster_id();
  for (sim::NodeId id : cluster_->nodes()) {
    EXPECT_EQ(node(id)->cluster_id(), cluster);
    EXPECT_EQ(node(id)->id(), MemberIdFor(members_[id - 1].name));
    const etcdserverpb::ResponseHeader h = node(id)->Header();
    EXPECT_EQ(h.cluster_id(), cluster);
    EXPECT_EQ(h.member_id(), node(id)->id());
    EXPECT_GE(h.raft_term(), 1u);
    std::vector<Member> list = node(id)->Members();
    ASSERT_EQ(list.size(), 3u);
    for (const Member& m : list) {
      EXPECT_FALSE(m.name.empty());
      EXPECT_EQ(m.id, MemberIdFor(m.name));
      EXPECT_FALSE(m.learner);
    }
  }
  EXPECT_NE(MemberIdFor("a"), MemberIdFor("b"));
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
