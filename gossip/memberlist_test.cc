// Copyright e2d authors.
//
// Memberlist unit tests. A tiny bus steps several memberlists on one virtual clock and delivers
// their datagrams and stream requests instantly, except to members it has cut off. Names follow
// the SWIM paper (Das et al. 2002) and Lifeguard (Dadgar et al. 2018).

#include "gossip/memberlist.h"

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace e2d::gossip {
namespace {

Keyring KeyringOf(uint8_t byte) {
  Key key;
  key.fill(byte);
  return Keyring(key);
}

class Bus {
 public:
  explicit Bus(int n, uint8_t key_byte = 1) {
    for (int i = 1; i <= n; ++i) Add(i, key_byte);
  }

  void Add(int i, uint8_t key_byte = 1, std::string addr = "") {
    Config c;
    c.name = "n" + std::to_string(i);
    c.addr = addr.empty() ? c.name + ":7980" : addr;
    c.session = static_cast<uint64_t>(now_.ns) + 1;
    members_[c.addr] = std::make_unique<Memberlist>(c, KeyringOf(key_byte), env::Random(i), now_);
  }
  Memberlist& at(int i) { return *members_.at("n" + std::to_string(i) + ":7980"); }
  Memberlist& addr(const std::string& a) { return *members_.at(a); }
  void Cut(const std::string& addr) { cut_.insert(addr); }
  void Uncut(const std::string& addr) { cut_.erase(addr); }
  size_t max_datagram() const { return max_datagram_; }
  std::vector<Event>& events() { return events_; }

  // Runs until `until` (virtual), delivering everything instantly.
  void RunFor(absl::Duration d) {
    env::Instant until = now_ + d;
    while (true) {
      Deliver();
      env::Instant next = until;
      for (auto& [a, m] : members_) {
        if (!cut_.contains(a) && m->NextDeadline() < next) next = m->NextDeadline();
      }
      if (next >= until) break;
      if (next > now_) now_ = next;  // an uncut member may be overdue
      for (auto& [a, m] : members_) {
        if (!cut_.contains(a)) m->Tick(now_);
      }
    }
    now_ = until;
  }
  env::Instant now() const { return now_; }

 private:
  void Deliver() {
    for (int round = 0; round < 1000; ++round) {
      bool any = false;
      for (auto& [from, m] : members_) {
        for (Datagram& d : m->TakeDatagrams()) {
          any = true;
          max_datagram_ = std::max(max_datagram_, d.bytes.size());
          if (cut_.contains(from) || cut_.contains(d.to) || !members_.contains(d.to)) continue;
          members_.at(d.to)->HandleDatagram(now_, from, d.bytes);
        }
        for (StreamRequest& r : m->TakeStreamRequests()) {
          any = true;
          if (cut_.contains(from) || cut_.contains(r.to) || !members_.contains(r.to)) {
            m->HandleStreamFailed(now_, r.id);
            continue;
          }
          std::optional<std::string> reply =
              members_.at(r.to)->HandleStreamRequest(now_, from, r.bytes);
          if (reply) {
            m->HandleStreamReply(now_, r.id, *reply);
          } else {
            m->HandleStreamFailed(now_, r.id);
          }
        }
        for (Event& e : m->TakeEvents()) events_.push_back(e);
        m->CheckInvariants();
      }
      if (!any) return;
    }
  }

  env::Instant now_{1'000'000'000};
  std::map<std::string, std::unique_ptr<Memberlist>> members_;
  std::set<std::string> cut_;
  std::vector<Event> events_;
  size_t max_datagram_ = 0;
};

void JoinAllThrough(Bus& bus, int n, const std::string& seed = "n1:7980") {
  for (int i = 1; i <= n; ++i) bus.at(i).Join(bus.now(), {seed});
}

MemberState StateOf(Memberlist& m, const std::string& name) {
  const Member* member = m.Find(name);
  EXPECT_NE(member, nullptr) << name;
  return member == nullptr ? MemberState::kDead : member->state;
}

TEST(MemberlistTest, JoinThroughOneSeedReachesEveryone) {
  Bus bus(4);
  JoinAllThrough(bus, 4);
  bus.RunFor(absl::Seconds(5));
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(bus.at(i).live_members(), 4u) << i;
  }
}

// Members that start split join only their own side; once the split is gone, a member that
// holds a seed no live member answers for tries it again, and the sides merge.
TEST(MemberlistTest, SidesThatStartedSplitMergeThroughTheSeeds) {
  Bus bus(4);
  bus.Cut("n3:7980");
  bus.Cut("n4:7980");
  const std::vector<env::Address> all = {"n1:7980", "n2:7980", "n3:7980", "n4:7980"};
  bus.at(1).Join(bus.now(), all);
  bus.at(2).Join(bus.now(), all);
  bus.RunFor(absl::Seconds(5));
  bus.Uncut("n3:7980");
  bus.Uncut("n4:7980");
  bus.at(3).Join(bus.now(), {"n4:7980"});
  bus.at(4).Join(bus.now(), {"n3:7980"});
  bus.RunFor(absl::Seconds(2));
  ASSERT_EQ(bus.at(1).live_members(), 2u);  // two sides, each whole
  ASSERT_EQ(bus.at(3).live_members(), 2u);
  bus.RunFor(absl::Seconds(30));
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(bus.at(i).live_members(), 4u) << i;
}

// Peer discovery may find nobody at first (DNS records not there yet): the member runs alone,
// and joins as soon as a later lookup gives it seeds. An empty lookup changes nothing, and a
// joined member only takes the new seeds for its reconnect round.
TEST(MemberlistTest, SeedsFoundLaterJoinAMemberThatRanAlone) {
  Bus bus(3);
  bus.at(1).Join(bus.now(), {});
  bus.at(2).Join(bus.now(), {"n1:7980"});
  bus.at(3).Join(bus.now(), {});
  bus.RunFor(absl::Seconds(5));
  ASSERT_EQ(bus.at(1).live_members(), 2u);
  ASSERT_EQ(bus.at(3).live_members(), 1u);
  bus.at(3).UpdateSeeds(bus.now(), {});
  bus.at(3).UpdateSeeds(bus.now(), {"n3:7980"});  // only itself: nothing to join
  bus.RunFor(absl::Seconds(60));
  ASSERT_EQ(bus.at(3).live_members(), 1u);
  bus.at(3).UpdateSeeds(bus.now(), {"n2:7980", "n3:7980"});
  bus.RunFor(absl::Seconds(5));
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(bus.at(i).live_members(), 3u) << i;
}

// A joined member given seeds of members it does not know (another side that started apart)
// reaches them through its reconnect round.
TEST(MemberlistTest, NewSeedsOfAJoinedMemberReachTheOtherSide) {
  Bus bus(4);
  bus.at(1).Join(bus.now(), {"n2:7980"});
  bus.at(2).Join(bus.now(), {"n1:7980"});
  bus.at(3).Join(bus.now(), {"n4:7980"});
  bus.at(4).Join(bus.now(), {"n3:7980"});
  bus.RunFor(absl::Seconds(60));
  ASSERT_EQ(bus.at(1).live_members(), 2u);
  ASSERT_EQ(bus.at(3).live_members(), 2u);
  bus.at(1).UpdateSeeds(bus.now(), {"n2:7980", "n3:7980"});
  bus.RunFor(absl::Seconds(60));
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(bus.at(i).live_members(), 4u) << i;
}

TEST(MemberlistTest, Swim42_CrashedMemberIsSuspectedThenDeclaredDead) {
  Bus bus(4);
  JoinAllThrough(bus, 4);
  bus.RunFor(absl::Seconds(5));
  bus.Cut("n4:7980");
  bus.RunFor(absl::Seconds(3));
  bool suspected = false;
  for (const Event& e : bus.events()) {
    suspected |= e.kind == Event::Kind::kSuspect && e.member.name == "n4";
  }
  EXPECT_TRUE(suspected);
  // n = 4: the suspicion timeout is 4 probe intervals with no confirmations expected.
  bus.RunFor(absl::Seconds(10));
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(StateOf(bus.at(i), "n4"), MemberState::kDead) << i;
}

TEST(MemberlistTest, Swim43_SuspectedMemberRefutesWithAHigherIncarnation) {
  Bus bus(3);
  JoinAllThrough(bus, 3);
  bus.RunFor(absl::Seconds(3));
  uint64_t before = bus.at(3).incarnation();
  // Cut n3 only long enough to be suspected (n = 3: dead after 4 probe intervals).
  bus.Cut("n3:7980");
  bus.RunFor(absl::Seconds(2));
  EXPECT_TRUE(StateOf(bus.at(1), "n3") == MemberState::kSuspect ||
              StateOf(bus.at(2), "n3") == MemberState::kSuspect);
  bus.Uncut("n3:7980");
  bus.RunFor(absl::Seconds(3));
  // The buddy system told n3 it was suspected; it raised its incarnation and both believe it.
  EXPECT_GT(bus.at(3).incarnation(), before);
  EXPECT_GT(bus.at(3).stats().refutes, 0u);
  EXPECT_EQ(StateOf(bus.at(1), "n3"), MemberState::kAlive);
  EXPECT_EQ(StateOf(bus.at(2), "n3"), MemberState::kAlive);
}

TEST(MemberlistTest, DroppedInputsChangeNothing) {
  Bus bus(2);
  JoinAllThrough(bus, 2);
  bus.RunFor(absl::Seconds(2));
  Memberlist& m = bus.at(1);
  std::vector<Member> before = m.Members();
  uint64_t inc = m.incarnation();
  m.HandleDatagram(bus.now(), "n2:7980", "");
  m.HandleDatagram(bus.now(), "n2:7980", std::string(100, 'x'));
  EXPECT_EQ(m.stats().dropped_undecryptable, 2u);
  EXPECT_TRUE(m.TakeDatagrams().empty());
  EXPECT_EQ(m.Members().size(), before.size());
  EXPECT_EQ(m.incarnation(), inc);
}

TEST(MemberlistTest, ForeignKeyMembersNeverJoin) {
  Bus bus(2);
  bus.Add(3, /*key_byte=*/9);
  JoinAllThrough(bus, 3);
  bus.RunFor(absl::Seconds(5));
  EXPECT_EQ(bus.at(1).Find("n3"), nullptr);
  EXPECT_EQ(bus.at(3).live_members(), 1u);
  EXPECT_GT(bus.at(1).stats().dropped_undecryptable, 0u);
}

TEST(MemberlistTest, ReplayedDatagramIsDropped) {
  Bus bus(2);
  JoinAllThrough(bus, 2);
  bus.RunFor(absl::Seconds(2));
  // Capture one datagram from n2 and deliver it twice.
  Memberlist& n2 = bus.at(2);
  ASSERT_TRUE(n2.SetMeta(bus.now(), "state=running").ok());
  std::vector<Datagram> out;
  for (int i = 0; i < 50 && out.empty(); ++i) {
    n2.Tick(n2.NextDeadline());
    out = n2.TakeDatagrams();
  }
  ASSERT_FALSE(out.empty());
  Memberlist& n1 = bus.at(1);
  n1.HandleDatagram(n2.NextDeadline(), "n2:7980", out[0].bytes);
  uint64_t replays = n1.stats().dropped_replayed;
  (void)n1.TakeDatagrams();
  n1.HandleDatagram(n2.NextDeadline(), "n2:7980", out[0].bytes);
  EXPECT_EQ(n1.stats().dropped_replayed, replays + 1);
  EXPECT_TRUE(n1.TakeDatagrams().empty());
}

TEST(MemberlistTest, AddressConflictRefusedWhileAliveReclaimedOnceDead) {
  Bus bus(3);
  JoinAllThrough(bus, 3);
  bus.RunFor(absl::Seconds(3));
  // A second "n3" at another address while the first is alive: refused.
  bus.Add(3, 1, "other:7980");
  bus.addr("other:7980").Join(bus.now(), {"n1:7980"});
  bus.RunFor(absl::Seconds(2));
  EXPECT_GT(bus.at(1).stats().address_conflicts, 0u);
  EXPECT_EQ(bus.at(1).Find("n3")->addr, "n3:7980");
  // The original dies; its name moves to the new address.
  bus.Cut("n3:7980");
  bus.RunFor(absl::Seconds(30));
  EXPECT_EQ(bus.at(1).Find("n3")->addr, "other:7980");
  EXPECT_EQ(StateOf(bus.at(1), "n3"), MemberState::kAlive);
}

TEST(MemberlistTest, LeaveIsSeenAsLeftNotDead) {
  Bus bus(3);
  JoinAllThrough(bus, 3);
  bus.RunFor(absl::Seconds(3));
  bus.at(3).Leave(bus.now());
  bus.RunFor(absl::Milliseconds(500));
  EXPECT_TRUE(bus.at(3).leave_done());
  bus.Cut("n3:7980");
  bus.RunFor(absl::Seconds(20));
  EXPECT_EQ(StateOf(bus.at(1), "n3"), MemberState::kLeft);
  EXPECT_EQ(StateOf(bus.at(2), "n3"), MemberState::kLeft);
}

TEST(MemberlistTest, DatagramsStayWithinTheSafeUdpSize) {
  Bus bus(40);
  JoinAllThrough(bus, 40);
  for (int i = 1; i <= 40; ++i) {
    ASSERT_TRUE(bus.at(i).SetMeta(bus.now(), std::string(400, 'm')).ok());
  }
  bus.RunFor(absl::Seconds(10));
  EXPECT_LE(bus.max_datagram(), env::kDatagramSizeMax);
  EXPECT_GT(bus.max_datagram(), env::kDatagramSizeMax / 2);  // the bound was actually reached
  for (int i = 1; i <= 40; ++i) EXPECT_EQ(bus.at(i).live_members(), 40u) << i;
}

TEST(MemberlistTest, Lifeguard_MissingNacksRaiseAwarenessAcksLowerIt) {
  Bus bus(5);
  JoinAllThrough(bus, 5);
  bus.RunFor(absl::Seconds(3));
  // n1 loses all its peers at once: probes fail and relays never answer with nacks.
  for (int i = 2; i <= 5; ++i) bus.Cut("n" + std::to_string(i) + ":7980");
  bus.RunFor(absl::Seconds(4));
  EXPECT_GT(bus.at(1).awareness(), 0);
}

TEST(MemberlistTest, MetadataBoundIsEnforced) {
  Bus bus(1);
  absl::Status s = bus.at(1).SetMeta(bus.now(), std::string(513, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  Config bad;
  EXPECT_FALSE(bad.Validate().ok());  // no name
}

}  // namespace
}  // namespace e2d::gossip
