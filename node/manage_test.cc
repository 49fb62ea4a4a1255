// Copyright e2d authors.
//
// Self-management on the simulator: real Nodes with real gossip (each machine holds a Raft
// address and a gossip address), the leader keeping the cluster at its required size
// (node/membership.h). A dead member is replaced by a node waiting to join, through a learner;
// a short partition removes nobody; a leader without quorum removes nobody.

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "gtest/gtest.h"
#include "kv/mem_engine.h"
#include "node/node.h"
#include "sim/cluster.h"

namespace e2d::node {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr uint64_t kJoinerId = 0x4a4f494e4552;  // node 4's own id (it joins through gossip)
constexpr int kMachines = 5;                      // 1-3 start the cluster; 4 and 5 join

env::Address RaftAddress(sim::NodeId n) { return absl::StrCat("10.0.0.", n, ":2380"); }
env::Address GossipAddress(sim::NodeId n) { return absl::StrCat("10.0.0.", n, ":7980"); }

struct Proc final : sim::Process {
  // Destroyed in reverse: the node first, then gossip, then its env.
  std::unique_ptr<sim::SimEnv> gossip_env;
  std::unique_ptr<gossip::GossipNode> gossip;
  std::unique_ptr<Node> node;
  absl::Status open_status;
};

class ManageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<gossip::Key> key =
        gossip::DeriveKey("manage test CA key", gossip::kGossipKeyLabel);
    ASSERT_TRUE(key.ok());
    key_ = *key;
    for (sim::NodeId n = 1; n <= kMachines; ++n) {
      Member m;
      m.name = absl::StrCat("n", n);
      m.peer_address = RaftAddress(n);
      members_.push_back(m);
      engines_.push_back(std::make_unique<kv::MemEngine>());
    }
    cluster_ = std::make_unique<sim::Cluster>(sim_, [this](env::Env& env, sim::NodeId n) {
      auto p = std::make_unique<Proc>();
      p->gossip_env = std::make_unique<sim::SimEnv>(
          cluster_->clock(n), cluster_->network(n, GossipAddress(n)), env.fs(),
          env::Random(1000 + n * 7 + cluster_->starts(n)),
          [this, n](std::string_view line) { cluster_->Log(n, line); });
      gossip::Config gc;
      gc.name = members_[n - 1].name;
      gc.addr = GossipAddress(n);
      gc.session = static_cast<uint64_t>(env.clock().Now().ns) + n;
      p->gossip = std::make_unique<gossip::GossipNode>(*p->gossip_env, gc, gossip::Keyring(key_));
      std::vector<env::Address> seeds;
      for (sim::NodeId i = 1; i <= kMachines; ++i) {
        if (i != n) seeds.push_back(GossipAddress(i));
      }
      p->gossip->Join(seeds);
      NodeConfig c;
      c.name = members_[n - 1].name;
      c.initial_cluster = {members_[0], members_[1], members_[2]};
      if (n >= 4) {  // joins: the running members and itself, under an id of its own
        c.join = true;
        c.member_id = kJoinerId + (n - 4);
        c.initial_cluster.push_back(members_[n - 1]);
      }
      c.manage.enabled = true;
      c.manage.required_size = required_;  // -n, as the machine was last started with
      c.manage.interval = absl::Milliseconds(500);
      c.manage.health_timeout = absl::Seconds(8);
      absl::StatusOr<std::unique_ptr<Node>> node = Node::Open(env, engines_[n - 1].get(), c);
      if (!node.ok()) {
        p->open_status = node.status();
        return p;
      }
      p->node = std::move(*node);
      p->node->AttachGossip(p->gossip.get());
      return p;
    });
    for (sim::NodeId n = 1; n <= 3; ++n) cluster_->AddNode(RaftAddress(n));
    ASSERT_TRUE(WaitForLeader());
  }

  Node* node(sim::NodeId n) {
    auto* p = static_cast<Proc*>(cluster_->process(n));
    return p == nullptr ? nullptr : p->node.get();
  }
  sim::NodeId Leader() {
    for (sim::NodeId n : cluster_->nodes()) {
      if (node(n) != nullptr && node(n)->Status().leader == node(n)->id()) return n;
    }
    return sim::kNoNode;
  }
  bool WaitForLeader() {
    return sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; },
                             sim_.now_ns() + 20 * kSecond);
  }
  // The voters and learners as `n` applied them.
  std::vector<uint64_t> Voters(sim::NodeId n) {
    std::vector<uint64_t> out;
    for (const Member& m : node(n)->Members()) {
      if (!m.learner) out.push_back(m.id);
    }
    return out;
  }
  size_t Learners(sim::NodeId n) {
    size_t k = 0;
    for (const Member& m : node(n)->Members()) k += m.learner;
    return k;
  }
  void RunFor(int64_t seconds) { sim_.RunUntil(sim_.now_ns() + seconds * kSecond); }
  bool LogHas(std::string_view what) {
    for (const std::string& line : cluster_->log_tail()) {
      if (line.find(what) != std::string::npos) return true;
    }
    return false;
  }

  // Restarts machine n (with the current required_), then waits for a leader.
  void Restart(sim::NodeId n) {
    cluster_->Crash(n);
    cluster_->Restart(n);
    ASSERT_NE(node(n), nullptr) << static_cast<Proc*>(cluster_->process(n))->open_status;
    ASSERT_TRUE(WaitForLeader());
  }
  // A write through the leader is acknowledged.
  bool Writes() {
    const sim::NodeId l = Leader();
    if (l == sim::kNoNode) return false;
    etcdserverpb::PutRequest put;
    put.set_key("probe");
    put.set_value("1");
    std::optional<bool> ok;
    node(l)->kv().Put(put, [&ok](absl::StatusOr<etcdserverpb::PutResponse> r) { ok = r.ok(); });
    sim_.RunUntilTrue([&] { return ok.has_value(); }, sim_.now_ns() + 10 * kSecond);
    return ok.value_or(false);
  }

  int required_ = 3;
  sim::Simulator sim_{21};
  gossip::Key key_;
  std::vector<Member> members_;
  std::vector<std::unique_ptr<kv::MemEngine>> engines_;
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(ManageTest, ADeadMemberIsReplacedByANodeWaitingToJoinThroughALearner) {
  const uint64_t id3 = MemberIdFor(RaftAddress(3));
  // The joiner waits while the cluster is whole.
  cluster_->AddNode(RaftAddress(4));
  ASSERT_NE(node(4), nullptr) << static_cast<Proc*>(cluster_->process(4))->open_status;
  RunFor(20);
  sim::NodeId l = Leader();
  ASSERT_NE(l, sim::kNoNode);
  EXPECT_EQ(Voters(l).size(), 3u);
  EXPECT_EQ(Learners(l), 0u);

  // n3 dies for good: removed after the health timeout, n4 added as a learner, promoted.
  cluster_->Crash(3);
  const int64_t crashed_at = sim_.now_ns();
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        const sim::NodeId at = Leader();
        if (at == sim::kNoNode) return false;
        const std::vector<uint64_t> v = Voters(at);
        return v.size() == 3 && std::find(v.begin(), v.end(), kJoinerId) != v.end() &&
               std::find(v.begin(), v.end(), id3) == v.end();
      },
      sim_.now_ns() + 120 * kSecond))
      << "voters: " << Voters(Leader()).size();
  EXPECT_GE(sim_.now_ns() - crashed_at, 8 * kSecond) << "removed before the health timeout";
  EXPECT_TRUE(LogHas("membership: remove"));
  EXPECT_TRUE(LogHas("membership: add learner"));
  EXPECT_TRUE(LogHas("membership: promote"));
  EXPECT_EQ(node(4)->cluster_id(), node(Leader())->cluster_id());
  // n4 applies its promotion a moment after the leader.
  EXPECT_TRUE(sim_.RunUntilTrue([&] { return !node(4)->Status().learner; },
                                sim_.now_ns() + 5 * kSecond));

  // A partition shorter than the health timeout removes nobody.
  l = Leader();
  const sim::NodeId f = l == 1 ? 2 : 1;
  const std::vector<uint64_t> before = Voters(l);
  cluster_->network().Isolate(f);
  RunFor(5);
  cluster_->network().Heal();
  RunFor(30);
  ASSERT_NE(Leader(), sim::kNoNode);
  EXPECT_EQ(Voters(Leader()), before);

  // Two of three down for good: the survivor has no quorum, and removes nobody.
  l = Leader();
  for (sim::NodeId n : {sim::NodeId{1}, sim::NodeId{2}, sim::NodeId{4}}) {
    if (n != l) cluster_->Crash(n);
  }
  RunFor(60);
  EXPECT_EQ(Voters(l).size(), 3u);
}

// Scale 3 -> 5 -> 3: every machine restarted with -n 5 (one at a time, as an operator would),
// the two waiting nodes join as learners one at a time and are promoted; restarted with -n 3,
// the leader removes the voters beyond three, never itself. A write goes through at each step.
TEST_F(ManageTest, ScalesUpThroughLearnersAndDownWhileAllAreUp) {
  cluster_->AddNode(RaftAddress(4));
  cluster_->AddNode(RaftAddress(5));
  RunFor(10);
  ASSERT_EQ(Voters(Leader()).size(), 3u);
  required_ = 5;
  for (sim::NodeId n = 1; n <= kMachines; ++n) Restart(n);
  size_t most_learners = 0;
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        const sim::NodeId l = Leader();
        if (l == sim::kNoNode) return false;
        most_learners = std::max(most_learners, Learners(l));
        return Voters(l).size() == 5 && Learners(l) == 0;
      },
      sim_.now_ns() + 120 * kSecond));
  EXPECT_EQ(most_learners, 1u) << "more than one learner at a time";
  EXPECT_TRUE(Writes());

  required_ = 3;
  for (sim::NodeId n = 1; n <= kMachines; ++n) Restart(n);
  ASSERT_TRUE(sim_.RunUntilTrue(
      [&] {
        const sim::NodeId l = Leader();
        return l != sim::kNoNode && Voters(l).size() == 3 && Learners(l) == 0;
      },
      sim_.now_ns() + 120 * kSecond));
  const sim::NodeId l = Leader();
  const std::vector<uint64_t> left = Voters(l);
  EXPECT_NE(std::find(left.begin(), left.end(), node(l)->id()), left.end());
  EXPECT_TRUE(LogHas("requires 3"));
  EXPECT_TRUE(Writes());
}

}  // namespace
}  // namespace e2d::node
