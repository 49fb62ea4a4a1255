// Copyright e2d authors.
//
// DecideBootstrap case by case, and the bootstrap record's checks. The agreement itself, under
// partitions and crashes, is the scenario bootstrap_gossip (scenarios/).

#include "node/bootstrap.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sim/sim_disk.h"
#include "sim/simulator.h"

namespace e2d::node {
namespace {

using Kind = BootstrapDecision::Kind;

Member M(int i) {
  Member m;
  m.name = absl::StrCat("m", i);
  m.peer_address = absl::StrCat("10.0.0.", i, ":2380");
  m.client_url = absl::StrCat("https://10.0.0.", i, ":2379");
  m.id = MemberIdFor(m.peer_address);
  return m;
}

BootstrapPeer Pending(int i, const BootstrapSet* acks = nullptr, uint64_t epoch = 1) {
  const Member m = M(i);
  BootstrapPeer p;
  p.name = m.name;
  GossipMeta meta;
  meta.pending = true;
  meta.member_id = m.id;
  meta.peer_address = m.peer_address;
  meta.client_url = m.client_url;
  if (acks != nullptr) {
    meta.ack_epoch = epoch;
    meta.ack_cluster_id = acks->cluster_id;
    for (const Member& a : acks->members) meta.ack_members.push_back(a.id);
  }
  p.meta = meta;
  return p;
}

BootstrapPeer Running(int i, uint64_t cluster) {
  BootstrapPeer p = Pending(i);
  p.meta->pending = false;
  p.meta->cluster_id = cluster;
  return p;
}

BootstrapSet SetOf(std::vector<int> which) {
  std::vector<Member> members;
  for (int i : which) members.push_back(M(i));
  return MakeBootstrapSet(members);
}

BootstrapView View(int self, int n, std::vector<BootstrapPeer> peers, bool settled = true) {
  BootstrapView v;
  v.required_size = n;
  v.self = M(self);
  v.self.id = 0;  // derived, not trusted
  v.peers = std::move(peers);
  v.settled = settled;
  return v;
}

// The members of the sets below, by id order, so that tests can name "the smallest ids".
std::vector<int> ByIdOrder(std::vector<int> which) {
  std::sort(which.begin(), which.end(), [](int a, int b) { return M(a).id < M(b).id; });
  return which;
}

TEST(DecideBootstrapTest, WaitsUntilItSeesTheRequiredSizeAndTheViewSettles) {
  EXPECT_EQ(DecideBootstrap(View(1, 3, {})).kind, Kind::kWait);  // never alone
  BootstrapDecision d = DecideBootstrap(View(1, 3, {Pending(2)}));
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.why, "sees 2 of the 3 members the cluster needs");
  d = DecideBootstrap(View(1, 3, {Pending(2), Pending(3)}, /*settled=*/false));
  EXPECT_EQ(d.kind, Kind::kWait);
  d = DecideBootstrap(View(1, 3, {Pending(2), Pending(3)}));
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set, SetOf({1, 2, 3}));
  EXPECT_EQ(d.ack.set.cluster_id, ClusterIdFor(d.ack.set.members));
  // A single-member cluster needs nobody.
  EXPECT_EQ(DecideBootstrap(View(1, 1, {})).kind, Kind::kAck);
}

TEST(DecideBootstrapTest, DeadSuspectAndRunninglessStrangersAreNotCandidates) {
  BootstrapPeer dead = Pending(3);
  dead.state = gossip::MemberState::kDead;
  BootstrapPeer suspect = Pending(4);
  suspect.state = gossip::MemberState::kSuspect;
  BootstrapPeer stranger;  // not one of ours
  stranger.name = "x";
  EXPECT_EQ(DecideBootstrap(View(1, 3, {Pending(2), dead, suspect, stranger})).kind,
            Kind::kWait);
}

TEST(DecideBootstrapTest, WithMoreThanEnoughTheSmallestIdsFormTheCluster) {
  const std::vector<int> order = ByIdOrder({1, 2, 3, 4});
  std::vector<BootstrapPeer> others;
  for (int i : order) others.push_back(Pending(i));
  for (int self : order) {
    std::vector<BootstrapPeer> peers;
    for (const BootstrapPeer& p : others) {
      if (p.name != M(self).name) peers.push_back(p);
    }
    BootstrapDecision d = DecideBootstrap(View(self, 3, peers));
    if (self == order.back()) {
      EXPECT_EQ(d.kind, Kind::kWait) << d.why;
      EXPECT_TRUE(absl::StrContains(d.why, "without this member")) << d.why;
    } else {
      ASSERT_EQ(d.kind, Kind::kAck) << d.why;
      EXPECT_EQ(d.ack.set, SetOf({order[0], order[1], order[2]}));
    }
  }
}

TEST(DecideBootstrapTest, AdoptsTheMostAckedSetThatIncludesIt) {
  const BootstrapSet s123 = SetOf({1, 2, 3});
  const BootstrapSet s134 = SetOf({1, 3, 4});
  // One ack of each: the smaller cluster id wins; adopted even before the view settles.
  BootstrapDecision d =
      DecideBootstrap(View(1, 3, {Pending(2, &s123), Pending(4, &s134), Pending(3)}, false));
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set.cluster_id, std::min(s123.cluster_id, s134.cluster_id));
  // Two acks beat one.
  const BootstrapSet s145 = SetOf({1, 4, 5});
  d = DecideBootstrap(
      View(1, 3, {Pending(2, &s123), Pending(3), Pending(4, &s145), Pending(5, &s145)}));
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set, s145);
  // A set one of whose members acks another set can never be whole: it is not adopted,
  // whatever the tie-break says.
  const BootstrapSet s234 = SetOf({2, 3, 4});
  d = DecideBootstrap(View(3, 3, {Pending(1, &s123), Pending(2, &s234), Pending(4)}));
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set, s234);
  // Every acked set dead: none is adopted; a fresh pick at the next epoch (if this member is
  // among the smallest ids).
  d = DecideBootstrap(View(3, 3, {Pending(1, &s123), Pending(2, &s234), Pending(4, &s134)}));
  const std::vector<int> order = ByIdOrder({1, 2, 3, 4});
  if (std::find(order.begin(), order.begin() + 3, 3) != order.begin() + 3) {
    ASSERT_EQ(d.kind, Kind::kAck) << d.why;
    EXPECT_TRUE(d.fresh);
    EXPECT_EQ(d.ack.epoch, 2u);
    EXPECT_EQ(d.ack.set, SetOf({order[0], order[1], order[2]}));
  } else {
    EXPECT_EQ(d.kind, Kind::kWait) << d.why;
  }
  // A set without this member: wait (it joins later, or never).
  d = DecideBootstrap(View(4, 3, {Pending(1, &s123), Pending(2, &s123), Pending(3)}));
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(absl::StrContains(d.why, "does not include this member")) << d.why;
  // A set of another size than this member was told: wait, and say so.
  const BootstrapSet s12 = SetOf({1, 2});
  d = DecideBootstrap(View(1, 3, {Pending(2, &s12), Pending(3)}));
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(absl::StrContains(d.why, "--required-cluster-size")) << d.why;
  // A set naming a member not seen: wait.
  d = DecideBootstrap(View(1, 3, {Pending(2, &s123)}));
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(absl::StrContains(d.why, "not seen yet")) << d.why;
}

// A cluster restored from a backup: the backup is part of the set (and of its cluster id), so
// members given the same backup agree, and a member given another one (or none) never acks it.
TEST(DecideBootstrapTest, TheBackupToRestoreIsPartOfTheSet) {
  BootstrapView v = View(1, 3, {Pending(2), Pending(3)});
  v.restore = "e2d-00000000000000aa-00000000000000000042.bkp";
  BootstrapDecision d = DecideBootstrap(v);
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set.restored_from, v.restore);
  EXPECT_EQ(d.ack.set.cluster_id, ClusterIdFor(d.ack.set.members, v.restore));
  EXPECT_NE(d.ack.set.cluster_id, SetOf({1, 2, 3}).cluster_id);
  const BootstrapSet restored = d.ack.set;
  // Another member given the same backup adopts it; one given none, or another, does not.
  BootstrapView same = View(2, 3, {Pending(1, &restored), Pending(3)});
  same.restore = v.restore;
  d = DecideBootstrap(same);
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_EQ(d.ack.set, restored);
  for (const std::string& other : {std::string(""), std::string("another.bkp")}) {
    BootstrapView differs = View(2, 3, {Pending(1, &restored), Pending(3)});
    differs.restore = other;
    d = DecideBootstrap(differs);
    EXPECT_EQ(d.kind, Kind::kWait) << other;
    EXPECT_TRUE(absl::StrContains(d.why, "every member must be given the same --restore-backup"))
        << d.why;
  }
}

TEST(DecideBootstrapTest, AnAckedMemberBootstrapsOnlyOnceEveryOtherMemberAcks) {
  const BootstrapSet s = SetOf({1, 2, 3});
  BootstrapView v = View(1, 3, {Pending(2, &s), Pending(3)});
  v.acked = BootstrapAck{1, s};
  BootstrapDecision d = DecideBootstrap(v);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.why, absl::StrCat("acked cluster ", absl::Hex(s.cluster_id, absl::kZeroPad16),
                                " at epoch 1; waiting for m3 to ack it"));
  // A member of the set acks another set at the same epoch: the ack is dead. The other set
  // lacks this member: it waits, and leaves that set alone.
  const BootstrapSet other = SetOf({2, 3, 4});
  v.peers = {Pending(2, &other), Pending(3, &other), Pending(4, &other)};
  d = DecideBootstrap(v);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(absl::StrContains(d.why, "can no longer form")) << d.why;
  EXPECT_TRUE(absl::StrContains(d.why, "does not include this member")) << d.why;
  // Every other member acks (one of them is dead now: its last ack still counts, since it may
  // have bootstrapped on it), or runs the cluster.
  BootstrapPeer dead = Pending(3, &s);
  dead.state = gossip::MemberState::kDead;
  v.peers = {Pending(2, &s), dead};
  d = DecideBootstrap(v);
  ASSERT_EQ(d.kind, Kind::kBootstrap) << d.why;
  EXPECT_EQ(d.ack.set, s);
  v.peers = {Running(2, s.cluster_id), Pending(3, &s)};
  EXPECT_EQ(DecideBootstrap(v).kind, Kind::kBootstrap);
  v.peers = {Running(2, s.cluster_id + 1), Pending(3, &s)};
  EXPECT_EQ(DecideBootstrap(v).kind, Kind::kWait);
}

TEST(DecideBootstrapTest, AnAckAtALaterEpochKillsTheEarlierOneAndIsAdopted) {
  const BootstrapSet s = SetOf({1, 2, 3});
  BootstrapView v = View(1, 3, {Pending(2, &s, 2), Pending(3, &s, 2)});
  v.acked = BootstrapAck{1, s};
  BootstrapDecision d = DecideBootstrap(v);
  ASSERT_EQ(d.kind, Kind::kAck) << d.why;
  EXPECT_FALSE(d.fresh);
  EXPECT_EQ(d.ack.epoch, 2u);
  EXPECT_EQ(d.ack.set, s);
  v.acked = d.ack;
  EXPECT_EQ(DecideBootstrap(v).kind, Kind::kBootstrap);
}

TEST(DecideBootstrapTest, ASetIncludingThisMemberAtAnEpochItPassedIsNotAdopted) {
  const BootstrapSet s123 = SetOf({1, 2, 3});
  const BootstrapSet s124 = SetOf({1, 2, 4});
  BootstrapView v = View(1, 3, {Pending(2, &s123), Pending(3, &s123)});
  v.acked = BootstrapAck{2, s124};
  BootstrapDecision d = DecideBootstrap(v);
  EXPECT_EQ(d.kind, Kind::kWait) << d.why;
  EXPECT_TRUE(absl::StrContains(d.why, "acked cluster")) << d.why;
  EXPECT_TRUE(absl::StrContains(d.why, "at epoch 2; waiting for")) << d.why;
}

TEST(DecideBootstrapTest, ARunningClusterItDidNotAckIsNotJoinedByBootstrap) {
  BootstrapDecision d = DecideBootstrap(View(1, 3, {Running(2, 77), Pending(3), Pending(4)}));
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(absl::StrContains(d.why, "--initial-cluster-state existing")) << d.why;
  // A dead running member does not block (its cluster is gone from view).
  BootstrapPeer gone = Running(2, 77);
  gone.state = gossip::MemberState::kDead;
  EXPECT_EQ(DecideBootstrap(View(1, 3, {gone, Pending(3), Pending(4)})).kind, Kind::kAck);
}

class RecordTest : public ::testing::Test {
 protected:
  sim::Simulator sim_{1};
  sim::SimDisk disk_{sim_, sim_.AddNode(), env::Random(1)};

  void Put(const std::string& text) {
    auto f = disk_.fs().Open(Bootstrapper::kRecordFile, {.create = true, .truncate = true});
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(text).ok());
  }
};

// A member that joined a running cluster records it (state=joined, epoch 0, its own id, the
// members it saw running with the ids they published), and restarts into it.
TEST_F(RecordTest, AJoinedMemberRecordsItsOwnIdAndTheMembersItSaw) {
  Member other = M(1);
  other.id = 0x1234;  // a member that joined itself: an id of its own
  const std::string members = absl::StrCat("member=", absl::Hex(other.id), " ", other.peer_address,
                                           " ", other.client_url, " ", other.name, "\n");
  Put(absl::StrCat("e2d-bootstrap v1\nstate=joined\nepoch=0\ncluster_id=abc\nself=77\n", members));
  absl::StatusOr<std::optional<Bootstrapper::Record>> r = Bootstrapper::Read(disk_.fs());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  const BootstrapSet& s = (*r)->ack.set;
  EXPECT_TRUE((*r)->committed);
  EXPECT_TRUE(s.join);
  EXPECT_EQ(s.join_id, 0x77u);
  EXPECT_EQ(s.cluster_id, 0xabcu);
  ASSERT_EQ(s.members.size(), 1u);
  EXPECT_EQ(s.members[0].id, 0x1234u);
  for (const std::string& bad :
       {absl::StrCat("e2d-bootstrap v1\nstate=joined\nepoch=1\ncluster_id=abc\nself=77\n", members),
        absl::StrCat("e2d-bootstrap v1\nstate=joined\nepoch=0\ncluster_id=abc\n", members),
        absl::StrCat("e2d-bootstrap v1\nstate=joined\nepoch=0\ncluster_id=abc\nself=0\n", members),
        absl::StrCat("e2d-bootstrap v1\nstate=committed\nepoch=0\ncluster_id=abc\nself=77\n",
                     members)}) {
    Put(bad);
    EXPECT_EQ(Bootstrapper::Read(disk_.fs()).status().code(), absl::StatusCode::kDataLoss) << bad;
  }
}

TEST_F(RecordTest, NoneIsNotAnError) {
  absl::StatusOr<std::optional<Bootstrapper::Record>> r = Bootstrapper::Read(disk_.fs());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
}

TEST_F(RecordTest, DamagedRecordsAreRefusedNamingTheFile) {
  Member spaced = M(2);
  spaced.name = "name with spaces";
  spaced.client_url = "";
  const BootstrapSet s = MakeBootstrapSet({M(1), spaced});
  std::string good = absl::StrCat("e2d-bootstrap v1\nstate=committed\nepoch=3\ncluster_id=",
                                  absl::Hex(s.cluster_id), "\n");
  for (const Member& m : s.members) {
    absl::StrAppend(&good, "member=", absl::Hex(m.id), " ", m.peer_address, " ",
                    m.client_url.empty() ? "-" : m.client_url, " ", m.name, "\n");
  }
  Put(good);
  absl::StatusOr<std::optional<Bootstrapper::Record>> r = Bootstrapper::Read(disk_.fs());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE((*r)->committed);
  EXPECT_EQ((*r)->ack.epoch, 3u);
  EXPECT_EQ((*r)->ack.set, s);

  const std::string m1 = absl::StrCat("member=", absl::Hex(MemberIdFor("a:1")), " a:1 - n\n");
  const std::string id1 = absl::StrCat(
      "cluster_id=", absl::Hex(MakeBootstrapSet({[] {
                                 Member m;
                                 m.name = "n";
                                 m.peer_address = "a:1";
                                 return m;
                               }()}).cluster_id),
      "\n");
  // A set restored from a backup records it.
  const BootstrapSet rs = MakeBootstrapSet({M(1), spaced}, "b.bkp");
  std::string restored = absl::StrCat("e2d-bootstrap v1\nstate=committed\nepoch=3\ncluster_id=",
                                      absl::Hex(rs.cluster_id), "\nrestore=b.bkp\n");
  for (const Member& m : rs.members) {
    absl::StrAppend(&restored, "member=", absl::Hex(m.id), " ", m.peer_address, " ",
                    m.client_url.empty() ? "-" : m.client_url, " ", m.name, "\n");
  }
  Put(restored);
  r = Bootstrapper::Read(disk_.fs());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->ack.set, rs);
  EXPECT_EQ((*r)->ack.set.restored_from, "b.bkp");
  // ... and the cluster id must agree with it.
  std::string mismatched = restored;
  mismatched.replace(mismatched.find("restore=b.bkp"), 13, "restore=c.bkp");
  Put(mismatched);
  EXPECT_EQ(Bootstrapper::Read(disk_.fs()).status().code(), absl::StatusCode::kDataLoss);

  Put(absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\n", id1, m1));
  ASSERT_TRUE(Bootstrapper::Read(disk_.fs()).ok());  // the base the bad ones below break
  for (const std::string& bad :
       {std::string(""), std::string("e2d-bootstrap v2\n"),
        absl::StrCat("e2d-bootstrap v1\nstate=maybe\nepoch=1\n", id1, m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=0\n", id1, m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=x\n", id1, m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\n", id1, m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\ncluster_id=zz\n", m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\n", id1, "member=1 a:1 -\n"),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\n", id1, "restore=\n", m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\ncluster_id=1\n", m1),
        absl::StrCat("e2d-bootstrap v1\nstate=acked\nepoch=1\n", id1, "member=5 a:1 - n\n")}) {
    Put(bad);
    r = Bootstrapper::Read(disk_.fs());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(r.status().message(), "\"bootstrap\" is damaged")) << bad;
  }
}

}  // namespace
}  // namespace e2d::node
