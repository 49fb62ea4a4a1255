// Copyright e2d authors.
//
// Fuzz target for the memberlist's decoder and state transitions. The first input byte picks
// how the rest reaches a member that already knows two peers:
//   0: as raw datagram bytes (nearly always unauthenticated): must be dropped and change
//      nothing but the drop counters;
//   1: as the plaintext of a datagram sealed with the cluster key by peer n2 (so mutations reach
//      the protobuf decoder, the validation and every state transition);
//   2: the same as a stream request (push-pull or stream ping), whose reply must open;
//   3: the same as the reply to a pending push-pull.
// After every input the member's invariants must hold and time must still move it.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "env/check.h"
#include "gossip/crypto.h"
#include "gossip/gossippb.pb.h"
#include "gossip/memberlist.h"
#include "tools/fuzz/fuzz.h"

namespace e2d::gossip {
namespace {

Keyring ClusterKeyring() {
  Key key;
  key.fill(0x5a);
  return Keyring(key);
}

Config MemberConfig(const std::string& name) {
  Config c;
  c.name = name;
  c.addr = name + ":7980";
  c.session = 1000;
  return c;
}

// Seals `plain` as peer n2 would, with its own numbering (session 77, rising seq).
std::string SealFrom(const Keyring& ring, Channel channel, std::string_view plain, uint64_t seq) {
  Nonce nonce{};
  for (size_t i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(seq >> (8 * i));
  nonce[8] = static_cast<uint8_t>(channel);
  return ring.Seal(channel, plain, nonce);
}

// Re-numbers an arbitrary plaintext as coming from n2 with `seq` when it parses; otherwise the
// bytes go in as they are (the decoder must refuse them).
std::string Renumber(std::string_view plain, uint64_t seq) {
  gossippb::Envelope envelope;
  if (!envelope.ParseFromString(std::string(plain))) return std::string(plain);
  envelope.set_sender("n2");
  envelope.set_session(77);
  envelope.set_seq(seq);
  return envelope.SerializeAsString();
}

std::string PushPullFrom(const std::vector<std::string>& names) {
  gossippb::Envelope envelope;
  for (const std::string& name : names) {
    gossippb::MemberState* s = envelope.mutable_push_pull()->add_members();
    s->set_node(name);
    s->set_addr(name + ":7980");
    s->set_incarnation(3);
    s->set_meta("state=running");
  }
  return envelope.SerializeAsString();
}

struct Snapshot {
  std::vector<std::string> members;
  uint64_t incarnation;
  int awareness;
  size_t broadcasts;
  int64_t deadline_ns;
  bool operator==(const Snapshot&) const = default;
};

Snapshot Take(const Memberlist& ml) {
  Snapshot s;
  for (const Member& m : ml.Members()) {
    s.members.push_back(m.name + "/" + m.addr + "/" + MemberStateName(m.state) + "/" +
                        std::to_string(m.incarnation) + "/" + m.meta);
  }
  s.incarnation = ml.incarnation();
  s.awareness = ml.awareness();
  s.broadcasts = ml.broadcast_queue_size();
  s.deadline_ns = ml.NextDeadline().ns;
  return s;
}

void RunOne(std::string_view input) {
  const Keyring ring = ClusterKeyring();
  env::Instant now{1'000'000'000};
  Memberlist ml(MemberConfig("n1"), ring, env::Random(1), now);
  // Learn n2 and n3 the way a join does.
  std::optional<std::string> reply = ml.HandleStreamRequest(
      now, "n2:7980", SealFrom(ring, Channel::kStream, Renumber(PushPullFrom({"n2", "n3"}), 1), 1));
  E2D_CHECK(reply.has_value() && ml.live_members() == 3, "fixture join failed");
  (void)ml.TakeDatagrams();
  (void)ml.TakeEvents();
  if (input.empty()) return;
  const uint8_t mode = static_cast<uint8_t>(input[0]) % 4;
  const std::string_view rest = input.substr(1);
  now = now + absl::Milliseconds(10);
  switch (mode) {
    case 0: {
      const Snapshot before = Take(ml);
      const Stats stats = ml.stats();
      ml.HandleDatagram(now, "n2:7980", rest);
      const Stats& after = ml.stats();
      uint64_t drops_before = stats.dropped_undecryptable + stats.dropped_malformed +
                              stats.dropped_replayed + stats.dropped_misdirected;
      uint64_t drops_after = after.dropped_undecryptable + after.dropped_malformed +
                             after.dropped_replayed + after.dropped_misdirected;
      if (drops_after == drops_before + 1) {
        E2D_CHECK(Take(ml) == before, "a dropped datagram changed the member's state");
        E2D_CHECK(ml.TakeDatagrams().empty() && ml.TakeStreamRequests().empty() &&
                      ml.TakeEvents().empty(),
                  "a dropped datagram produced output");
      }
      break;
    }
    case 1:
      ml.HandleDatagram(now, "n2:7980", SealFrom(ring, Channel::kDatagram, Renumber(rest, 2), 2));
      break;
    case 2: {
      std::optional<std::string> r = ml.HandleStreamRequest(
          now, "n2:7980", SealFrom(ring, Channel::kStream, Renumber(rest, 2), 2));
      if (r) E2D_CHECK(ring.Open(Channel::kStream, *r).ok(), "our own reply does not open");
      break;
    }
    case 3: {
      // Run until a push-pull request is pending, then answer it with the input.
      uint64_t id = 0;
      for (int i = 0; i < 200 && id == 0; ++i) {
        now = ml.NextDeadline();
        ml.Tick(now);
        for (const StreamRequest& r : ml.TakeStreamRequests()) {
          if (id == 0) id = r.id;
        }
      }
      ml.HandleStreamReply(now, id, SealFrom(ring, Channel::kStream, Renumber(rest, 2), 2));
      break;
    }
  }
  ml.CheckInvariants();
  // Time still moves it: a few rounds of ticks run without breaking an invariant.
  for (int i = 0; i < 20; ++i) {
    now = ml.NextDeadline();
    ml.Tick(now);
    (void)ml.TakeDatagrams();
    (void)ml.TakeStreamRequests();
    ml.CheckInvariants();
  }
}

}  // namespace
}  // namespace e2d::gossip

std::vector<std::string> e2d::fuzz::Seeds() {
  using e2d::gossippb::Envelope;
  std::vector<std::string> seeds;
  auto add = [&](char mode, const Envelope& e) { seeds.push_back(mode + e.SerializeAsString()); };
  Envelope ping;
  ping.mutable_ping()->set_seq(9);
  ping.mutable_ping()->set_target("n1");
  add(1, ping);
  add(2, ping);
  Envelope indirect;
  indirect.mutable_indirect_ping()->set_seq(4);
  indirect.mutable_indirect_ping()->set_target("n3");
  indirect.mutable_indirect_ping()->set_target_addr("n3:7980");
  indirect.mutable_indirect_ping()->set_nack(true);
  add(1, indirect);
  Envelope updates;
  updates.mutable_ack()->set_seq(1);
  auto* alive = updates.add_updates()->mutable_alive();
  alive->set_node("n4");
  alive->set_addr("n4:7980");
  alive->set_incarnation(2);
  auto* suspect = updates.add_updates()->mutable_suspect();
  suspect->set_node("n1");
  suspect->set_incarnation(0);
  suspect->set_from("n2");
  auto* dead = updates.add_updates()->mutable_dead();
  dead->set_node("n3");
  dead->set_incarnation(3);
  dead->set_from("n2");
  add(1, updates);
  Envelope push_pull;
  auto* m = push_pull.mutable_push_pull()->add_members();
  m->set_node("n5");
  m->set_addr("n5:7980");
  m->set_state(e2d::gossippb::DEAD);
  add(2, push_pull);
  add(3, push_pull);
  seeds.push_back(std::string(1, 0) + "garbage that does not authenticate");
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  e2d::gossip::RunOne(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
