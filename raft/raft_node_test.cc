// Copyright e2d authors.
//
// RaftNode on the simulator: the driver's own behaviour under faults that the scenarios only
// see in aggregate — a stalled leader disk, bad bytes from the network, a corrupt WAL.

#include "raft/raft_node.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sim/cluster.h"

namespace e2d::raft {
namespace {

struct Proc final : sim::Process {
  std::unique_ptr<RaftNode> node;
  absl::Status open_status;
  std::vector<std::string> applied;
  int restores = 0;
  uint64_t cluster_id_reported = 0;
  int removed_reports = 0;
};

class RaftNodeTest : public ::testing::Test {
 protected:
  void Start(int n, std::function<void(RaftNodeConfig&)> tweak = nullptr) {
    for (int i = 1; i <= n; ++i) addresses_.push_back(absl::StrCat("10.0.0.", i, ":2380"));
    cluster_ = std::make_unique<sim::Cluster>(sim_, [this, n, tweak](env::Env& env,
                                                                      sim::NodeId id) {
      RaftNodeConfig c;
      c.raft.id = id;
      for (int i = 1; i <= n; ++i) {
        c.raft.voters.push_back(i);
        if (i != static_cast<int>(id)) c.peers[i] = addresses_[i - 1];
      }
      if (tweak) tweak(c);
      if (per_node_) per_node_(c, id);
      auto p = std::make_unique<Proc>();
      Proc* raw = p.get();
      RaftNodeHooks h;
      h.on_apply = [raw](const raftpb::Entry& e, const Raft&) { raw->applied.push_back(e.data()); };
      // A state machine with a large snapshot (the applied data is not kept in it).
      h.snapshot_data = [raw] { return absl::StrCat(raw->applied.size(), std::string(20000, 'f')); };
      h.on_cluster_id = [raw](uint64_t id) { raw->cluster_id_reported = id; };
      h.on_removed = [raw] { ++raw->removed_reports; };
      h.on_restore = [raw](const raftpb::SnapshotMetadata&, const std::string&) {
        raw->applied.clear();
        ++raw->restores;
      };
      auto node = RaftNode::Open(env, std::move(c), std::move(h));
      if (node.ok()) {
        p->node = std::move(*node);
      } else {
        p->open_status = node.status();
      }
      return p;
    });
    for (const auto& a : addresses_) cluster_->AddNode(a);
  }
  Proc* proc(sim::NodeId id) { return static_cast<Proc*>(cluster_->process(id)); }
  RaftNode* node(sim::NodeId id) { return proc(id) ? proc(id)->node.get() : nullptr; }
  sim::NodeId Leader() {
    for (sim::NodeId id : cluster_->nodes()) {
      if (node(id) && node(id)->raft().role() == Role::kLeader) return id;
    }
    return sim::kNoNode;
  }
  // Three nodes; the leader removes a follower it cannot reach (the victim), and the leader and
  // the other follower apply the removal and an entry after it. The victim stays cut off.
  void RemoveACutOffNode(sim::NodeId* leader_out, sim::NodeId* victim_out,
                         sim::NodeId* other_out) {
    Start(3);
    ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
    const sim::NodeId leader = Leader();
    const sim::NodeId victim = leader == 3 ? 2 : 3;
    const sim::NodeId other = 6 - leader - victim;
    cluster_->network().Isolate(victim);
    raftpb::ConfChange cc;
    raftpb::ConfChangeSingle* c = cc.add_changes();
    c->set_type(raftpb::CONF_CHANGE_REMOVE_NODE);
    c->set_node_id(victim);
    // Proposed once the leader no longer counts the victim as recently active.
    ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(leader)->ProposeConfChange(cc).ok(); },
                                  sim_.now_ns() + 10'000'000'000));
    ASSERT_TRUE(node(leader)->Propose("after removal").ok());
    ASSERT_TRUE(sim_.RunUntilTrue(
        [&] { return AppliedEverywhere("after removal", {leader, other}); },
        sim_.now_ns() + 5'000'000'000));
    *leader_out = leader;
    *victim_out = victim;
    *other_out = other;
  }

  bool AppliedEverywhere(const std::string& data, std::vector<sim::NodeId> ids) {
    for (sim::NodeId id : ids) {
      const auto& a = proc(id)->applied;
      if (std::find(a.begin(), a.end(), data) == a.end()) return false;
    }
    return true;
  }

  sim::Simulator sim_{7};
  std::function<void(RaftNodeConfig&, sim::NodeId)> per_node_;  // after tweak
  std::vector<env::Address> addresses_;
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(RaftNodeTest, ABrokenSnapshotTransferResumesWhereItStopped) {
  Start(3, [](RaftNodeConfig& c) {
    c.snapshot_entries = 10;
    c.snapshot_chunk_bytes = 64;
    c.snapshot_chunks_in_flight = 4;
  });
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  const sim::NodeId leader = Leader();
  const sim::NodeId lagging = leader == 3 ? 2 : 3;
  cluster_->network().Isolate(lagging);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(node(leader)->Propose(absl::StrCat("e", i)).ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(leader)->raft().snapshot().index() >= 30; },
                                sim_.now_ns() + 5'000'000'000));
  cluster_->network().Heal();
  // About 313 chunks of 64 bytes. A third of the way in, the stream breaks.
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(leader)->snapshot_chunks_sent() >= 100; },
                                sim_.now_ns() + 10'000'000'000));
  ASSERT_GT(cluster_->network().BreakStreams(leader, lagging), 0);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(lagging)->snapshots_installed() == 1; },
                                sim_.now_ns() + 30'000'000'000));
  const uint64_t chunks = (std::to_string(30).size() + 20000 + 63) / 64;
  EXPECT_LT(node(leader)->snapshot_chunks_sent(), chunks + 20)
      << "the second attempt started over instead of resuming";
  EXPECT_EQ(node(lagging)->raft().snapshot().index(), node(leader)->raft().snapshot().index());
  // And the follower then replicates normally.
  ASSERT_TRUE(node(leader)->Propose("after").ok());
  EXPECT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("after", {1, 2, 3}); },
                                sim_.now_ns() + 5'000'000'000));
  EXPECT_EQ(proc(lagging)->restores, 1);
}

TEST_F(RaftNodeTest, ADamagedSnapshotRefusesToStartNamingTheFile) {
  Start(3, [](RaftNodeConfig& c) { c.snapshot_entries = 5; });
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  const sim::NodeId leader = Leader();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(node(leader)->Propose(absl::StrCat("e", i)).ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(leader)->raft().snapshot().index() >= 5; },
                                sim_.now_ns() + 5'000'000'000));
  sim_.RunUntil(sim_.now_ns() + 1'000'000'000);  // the marker is durable
  const raftpb::SnapshotMetadata meta = node(leader)->raft().snapshot();
  cluster_->Crash(leader);
  const std::string path = "snap/" + SnapshotStore::FileName(meta.index(), meta.term());
  auto f = cluster_->disk(leader).fs().Open(path, env::OpenOptions());
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->WriteAt(100, "garbage").ok());
  cluster_->Restart(leader);
  ASSERT_EQ(node(leader), nullptr);
  EXPECT_EQ(proc(leader)->open_status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(proc(leader)->open_status.message().find(path), std::string::npos)
      << proc(leader)->open_status;
}

TEST_F(RaftNodeTest, ElectsALeaderAndReplicates) {
  Start(3);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  ASSERT_TRUE(node(Leader())->Propose("hello").ok());
  EXPECT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("hello", {1, 2, 3}); },
                                sim_.now_ns() + 5'000'000'000));
}

// Cluster ids: a member configured for another cluster (same CA, an address this cluster knows)
// never gets a message stepped, in either direction; the two of the right cluster still elect
// a leader and commit.
TEST_F(RaftNodeTest, MessagesOfAnotherClusterAreDropped) {
  per_node_ = [](RaftNodeConfig& c, sim::NodeId id) { c.cluster_id = id == 3 ? 0xbad : 0xc1; };
  Start(3);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() == 1 || Leader() == 2; }, 10'000'000'000));
  ASSERT_TRUE(node(Leader())->Propose("ours").ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("ours", {1, 2}); },
                                sim_.now_ns() + 5'000'000'000));
  sim_.RunUntil(sim_.now_ns() + 3'000'000'000);
  EXPECT_FALSE(AppliedEverywhere("ours", {3}));
  EXPECT_EQ(node(3)->raft().log().committed(), 1u);  // its bootstrap entry only
  EXPECT_GT(node(3)->foreign_messages(), 0u);
  EXPECT_GT(node(1)->foreign_messages() + node(2)->foreign_messages(), 0u);
  EXPECT_EQ(node(3)->cluster_id(), 0xbadu);
}

// A node joining with no cluster id adopts the id of the first member that reaches it, reports
// it, and stamps it from then on (the members would drop its answers otherwise).
TEST_F(RaftNodeTest, AJoiningNodeAdoptsTheClusterIdOfItsLeader) {
  per_node_ = [](RaftNodeConfig& c, sim::NodeId id) {
    c.cluster_id = 0xc1;
    c.raft.voters = {1, 2};  // 1 and 2 bootstrap; 3 joins later
    c.peers.erase(3);
    if (id == 3) {  // no voters, no id; knows where the members are
      c.raft.voters.clear();
      c.cluster_id = 0;
    }
  };
  Start(3);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  ASSERT_NE(Leader(), 3u);
  EXPECT_EQ(node(3)->cluster_id(), 0u);
  raftpb::ConfChange cc;
  raftpb::ConfChangeSingle* c = cc.add_changes();
  c->set_type(raftpb::CONF_CHANGE_ADD_LEARNER_NODE);
  c->set_node_id(3);
  c->set_address(addresses_[2]);
  ASSERT_TRUE(node(Leader())->Propose("before join").ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("before join", {1, 2}); },
                                sim_.now_ns() + 5'000'000'000));
  absl::Status proposed = node(Leader())->ProposeConfChange(cc);
  ASSERT_TRUE(proposed.ok()) << proposed;
  ASSERT_TRUE(node(Leader())->Propose("after join").ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("after join", {1, 2, 3}); },
                                sim_.now_ns() + 10'000'000'000));
  EXPECT_EQ(node(3)->cluster_id(), 0xc1u);
  EXPECT_EQ(proc(3)->cluster_id_reported, 0xc1u);
  EXPECT_EQ(node(3)->foreign_messages(), 0u);
  EXPECT_EQ(node(1)->foreign_messages() + node(2)->foreign_messages(), 0u);
}

// A node removed while it was cut off never receives its removal (the leader sends nothing to
// non-members); once it can talk again, the leader answers it that it is not a member, and it
// goes passive and reports it, as if it had applied its removal.
TEST_F(RaftNodeTest, ANodeRemovedWhileCutOffIsToldByTheLeader) {
  sim::NodeId leader = sim::kNoNode, victim = sim::kNoNode, other = sim::kNoNode;
  ASSERT_NO_FATAL_FAILURE(RemoveACutOffNode(&leader, &victim, &other));
  ASSERT_FALSE(node(leader)->raft().membership().IsMember(victim));
  EXPECT_FALSE(node(victim)->removed());
  cluster_->network().Heal();
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return node(victim)->removed(); },
                                sim_.now_ns() + 10'000'000'000));
  EXPECT_EQ(proc(victim)->removed_reports, 1);
  // It never applied its removal: its own view still holds it; it refuses proposals.
  EXPECT_TRUE(node(victim)->raft().membership().IsMember(victim));
  EXPECT_FALSE(node(victim)->Propose("x").ok());
  sim_.RunUntil(sim_.now_ns() + 3'000'000'000);
  EXPECT_EQ(proc(victim)->removed_reports, 1);
  EXPECT_EQ(Leader(), leader);
  EXPECT_FALSE(node(leader)->removed());
  EXPECT_FALSE(node(other)->removed());
}

// A removed node that never speaks first (a learner; here a voter whose own messages are all
// lost) draws no answer; TellNotMember, which its owner calls on seeing it in gossip, reaches
// it. Only a current leader tells, and never a member.
TEST_F(RaftNodeTest, TellNotMemberReachesARemovedNodeThatDoesNotSpeak) {
  sim::NodeId leader = sim::kNoNode, victim = sim::kNoNode, other = sim::kNoNode;
  ASSERT_NO_FATAL_FAILURE(RemoveACutOffNode(&leader, &victim, &other));
  cluster_->network().Heal();
  // What it sends is held for 20 s: nothing it says draws an answer meanwhile.
  const int64_t held_until = sim_.now_ns() + 20'000'000'000;
  cluster_->network().Clog(victim, leader, held_until);
  cluster_->network().Clog(victim, other, held_until);
  sim_.RunUntil(sim_.now_ns() + 5'000'000'000);
  ASSERT_FALSE(node(victim)->removed());
  node(other)->TellNotMember(victim);  // not the leader: nothing
  node(leader)->TellNotMember(other);  // a member: nothing
  sim_.RunUntil(sim_.now_ns() + 1'000'000'000);
  ASSERT_FALSE(node(victim)->removed());
  EXPECT_FALSE(node(other)->removed());
  node(leader)->TellNotMember(victim);
  EXPECT_TRUE(sim_.RunUntilTrue([&] { return node(victim)->removed(); },
                                sim_.now_ns() + 5'000'000'000));
  EXPECT_LT(sim_.now_ns(), held_until);
  EXPECT_EQ(proc(victim)->removed_reports, 1);
}

// A leader whose disk stalls cannot persist a Ready, so it stops heartbeating: the others elect
// a new leader and keep committing while the stall lasts (no cluster-wide hang).
TEST_F(RaftNodeTest, StalledLeaderDiskDoesNotStallTheCluster) {
  Start(3);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  const sim::NodeId stalled = Leader();
  cluster_->disk(stalled).faults().stall_until_ns = sim_.now_ns() + 60'000'000'000;
  ASSERT_TRUE(node(stalled)->Propose("during-stall-1").ok());  // cannot become durable there
  std::vector<sim::NodeId> others;
  for (sim::NodeId id : cluster_->nodes()) {
    if (id != stalled) others.push_back(id);
  }
  const bool moved = sim_.RunUntilTrue(
      [&] {
        for (sim::NodeId id : others) {
          if (node(id)->raft().role() == Role::kLeader) return true;
        }
        return false;
      },
      sim_.now_ns() + 5'000'000'000);
  ASSERT_TRUE(moved) << "no new leader while the old leader's disk stalls";
  sim::NodeId fresh = sim::kNoNode;
  for (sim::NodeId id : others) {
    if (node(id)->raft().role() == Role::kLeader) fresh = id;
  }
  ASSERT_TRUE(node(fresh)->Propose("during-stall-2").ok());
  EXPECT_TRUE(sim_.RunUntilTrue([&] { return AppliedEverywhere("during-stall-2", others); },
                                sim_.now_ns() + 5'000'000'000));
  EXPECT_LT(sim_.now_ns(), cluster_->disk(stalled).faults().stall_until_ns);
}

TEST_F(RaftNodeTest, GarbageFromTheNetworkIsDroppedNotFatal) {
  Start(3);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  const sim::NodeId target = Leader();
  // A rogue client connects to the leader's Raft port and sends junk and a misaddressed message.
  env::Network& rogue = cluster_->network().Attach(sim_.AddNode(), "10.9.9.9:1");
  std::unique_ptr<env::Stream> s = rogue.Connect(addresses_[target - 1]);
  s->SetHandlers([](std::string) {}, [](absl::Status) {});
  ASSERT_TRUE(s->Send("\xff\xfe not a protobuf").ok());
  raftpb::Message wrong;
  wrong.set_type(raftpb::MSG_VOTE);
  wrong.set_from(99);
  wrong.set_to(target);
  wrong.set_term(1000);
  ASSERT_TRUE(s->Send(wrong.SerializeAsString()).ok());
  const uint64_t term = node(target)->raft().term();
  sim_.RunUntil(sim_.now_ns() + 1'000'000'000);
  EXPECT_EQ(node(target)->raft().term(), term);  // the stranger's vote request changed nothing
  EXPECT_GE(node(target)->messages_dropped(), 2u);
  EXPECT_FALSE(node(target)->failed());
}

TEST_F(RaftNodeTest, CorruptWalBeforeTheTailRefusesToStartNamingFileAndOffset) {
  Start(1);
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return Leader() != sim::kNoNode; }, 10'000'000'000));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(node(1)->Propose(absl::StrCat("v", i)).ok());
  ASSERT_TRUE(sim_.RunUntilTrue([&] { return proc(1)->applied.size() >= 21; },
                                sim_.now_ns() + 5'000'000'000));
  cluster_->Crash(1);
  auto files = cluster_->disk(1).fs().List("wal");
  ASSERT_TRUE(files.ok() && !files->empty());
  const std::string segment = "wal/" + files->front();
  ASSERT_TRUE(cluster_->disk(1).FlipBit(segment, 100, 3).ok());  // early, durable record
  cluster_->Restart(1);
  ASSERT_EQ(node(1), nullptr);
  const absl::Status s = proc(1)->open_status;
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find(files->front()), std::string::npos) << s;
  EXPECT_NE(s.message().find("offset"), std::string::npos) << s;
}

}  // namespace
}  // namespace e2d::raft
