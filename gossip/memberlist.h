// Copyright e2d authors.
//
// Memberlist: SWIM failure detection and membership dissemination with Lifeguard's refinements,
// as a pure state machine. It does no I/O and reads no clock: it is stepped with the current time
// and with what arrived (datagrams, stream requests and replies), and it leaves what it wants
// done in outboxes (datagrams to send, stream requests to make, membership events) plus one
// deadline by which it wants Tick() called again. gossip/gossip_node.h drives it through env.
//
// The protocol:
//  - Probing: every probe interval one member, round-robin over a shuffled list, is pinged. No
//    ack within the probe timeout: `indirect_checks` members ping it on our behalf (answering
//    Nack when it stays silent), and a ping goes over a stream as a fallback. No ack by the end
//    of the interval: the member is suspected.
//  - Suspicion (Lifeguard): a suspect is declared dead after a timeout that starts at
//    suspicion_max_timeout_mult times its minimum and shrinks towards the minimum as independent
//    members confirm the suspicion. A probe of a suspect carries the suspicion to it at once
//    (buddy system) so it can refute by raising its incarnation.
//  - Local health (Lifeguard): missed nacks, failed probes and refutations of our own suspicion
//    raise an awareness score that stretches our probe interval and timeout, and the suspicion
//    timeouts we start; acks lower it. A node that is itself slow thus accuses others less.
//  - Dissemination: updates ride on every ping and ack and on gossip rounds to `gossip_nodes`
//    random members, least-transmitted first, each about retransmit_mult * log10(n + 1) times,
//    in datagrams no larger than packet_size_max. Dead members still get gossip for a while.
//  - Anti-entropy: a periodic full state exchange (push-pull) over a stream with one random
//    member, on join with every seed, with a random dead member or seed that no live member
//    holds every reconnect interval so that the two sides of a healed partition (also one that
//    split the members as they started) find each other again, and with the sender of a
//    datagram from a member we do not know (at most one per probe interval).
//  - Incarnations: a member refutes any suspicion or death of itself by raising its
//    incarnation; after a restart it refutes the stale state peers hold about it the same way.
//  - Address conflicts: an alive message for a known, live name at another address is refused
//    and counted; the address of a dead (after dead_reclaim) or left member can be reclaimed.
//
// Security: every message is sealed with the keyring (AES-256-GCM) and numbered for replay
// detection. Anything that fails to open, to parse, to validate, or that is a replay is dropped
// and counted in stats() and never changes any other state.
//
// Bounds: members_max members, broadcasts_max queued updates, pending_acks_max outstanding
// acks, stream_requests_max stream requests in flight, meta_size_max bytes of metadata.

#ifndef E2D_GOSSIP_MEMBERLIST_H_
#define E2D_GOSSIP_MEMBERLIST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"  // determinism-ok: lookup-only tables
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "env/network.h"
#include "env/random.h"
#include "env/time.h"
#include "gossip/crypto.h"
#include "gossip/gossippb.pb.h"
#include "gossip/replay.h"

namespace e2d::gossip {

// Defaults follow memberlist's LAN profile.
struct Config {
  std::string name;             // unique in the cluster, 1..kNameSizeMax bytes
  env::Address addr;            // where peers reach this member (datagrams and streams)
  // A number that grows every time this member starts (the runtime uses wall-clock time at
  // start): receivers use it to refuse replays from an earlier run.
  uint64_t session = 0;

  absl::Duration probe_interval = absl::Seconds(1);
  absl::Duration probe_timeout = absl::Milliseconds(500);
  int indirect_checks = 3;
  bool stream_fallback = true;   // also ping over a stream when the direct ping times out
  int suspicion_mult = 4;
  int suspicion_max_timeout_mult = 6;
  int awareness_max = 8;         // probe interval and timeout scale by 1 + score, score < max
  int retransmit_mult = 4;
  absl::Duration gossip_interval = absl::Milliseconds(200);
  int gossip_nodes = 3;
  absl::Duration gossip_to_dead = absl::Seconds(30);
  absl::Duration push_pull_interval = absl::Seconds(30);
  absl::Duration reconnect_interval = absl::Seconds(10);
  absl::Duration join_retry_max = absl::Seconds(30);  // backoff bound for retrying seeds
  absl::Duration dead_reclaim = absl::ZeroDuration();  // a dead name's address can be reused after
  absl::Duration dead_retention = absl::Hours(24);     // dead members are forgotten after
  absl::Duration stream_timeout = absl::Seconds(10);   // a stream request's reply deadline

  size_t packet_size_max = env::kDatagramSizeMax;
  size_t members_max = 4096;
  size_t broadcasts_max = 4096;
  size_t pending_acks_max = 1024;
  size_t stream_requests_max = 32;
  size_t meta_size_max = 512;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

inline constexpr size_t kNameSizeMax = 128;
inline constexpr size_t kAddrSizeMax = 256;

enum class MemberState { kAlive, kSuspect, kDead, kLeft };
const char* MemberStateName(MemberState state);

struct Member {
  std::string name;
  env::Address addr;
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  std::string meta;
  env::Instant state_since;  // when `state` last changed (local clock)
};

struct Event {
  enum class Kind { kJoin, kUpdate, kSuspect, kDead, kLeave };
  Kind kind;
  Member member;  // as it is after the event
};
const char* EventKindName(Event::Kind kind);

struct Datagram {
  env::Address to;
  std::string bytes;  // sealed
};

// One request over a fresh stream, answered by exactly one reply message. The driver reports
// the reply with HandleStreamReply, or any failure (connect, break, deadline) with
// HandleStreamFailed, exactly once per request.
struct StreamRequest {
  uint64_t id;
  env::Address to;
  std::string bytes;  // sealed
  env::Instant deadline;
};

// Counters; every dropped input lands in exactly one drop counter.
struct Stats {
  uint64_t datagrams_received = 0;
  uint64_t datagrams_sent = 0;
  uint64_t dropped_undecryptable = 0;  // too short, unknown version, failed authentication
  uint64_t dropped_malformed = 0;      // opened but not a valid Envelope
  uint64_t dropped_replayed = 0;       // seen before, stale session, or too old
  uint64_t dropped_misdirected = 0;    // a ping for another name, a message from ourselves
  uint64_t dropped_members_full = 0;   // an update for a new member beyond members_max
  uint64_t dropped_broadcasts = 0;     // queued updates evicted beyond broadcasts_max
  uint64_t dropped_acks_full = 0;      // pings not relayed because pending acks were at the bound
  uint64_t dropped_streams_full = 0;   // stream requests not made at stream_requests_max
  uint64_t address_conflicts = 0;
  uint64_t refutes = 0;
  uint64_t probes = 0;
  uint64_t probes_failed = 0;
  uint64_t push_pulls = 0;
};

class Memberlist {
 public:
  // REQUIRES: config.Validate() is OK (crashes otherwise). The member starts alone, alive, with
  // incarnation 0; call Join to find the others.
  Memberlist(Config config, Keyring keyring, env::Random random, env::Instant now);

  Memberlist(const Memberlist&) = delete;
  Memberlist& operator=(const Memberlist&) = delete;

  // --- Inputs. `now` never decreases between calls (crashes otherwise).

  // Runs everything due at or before `now`. Afterwards NextDeadline() > now (crashes otherwise:
  // the driver would spin).
  void Tick(env::Instant now);

  // A datagram from the network.
  void HandleDatagram(env::Instant now, const env::Address& from, std::string_view bytes);

  // The first message of a stream another member opened. Returns the sealed reply, or nothing
  // if the request was dropped (the driver then closes the stream).
  std::optional<std::string> HandleStreamRequest(env::Instant now, const env::Address& from,
                                                 std::string_view bytes);

  // The reply to, or the failure of, one of our StreamRequests. Unknown ids are ignored.
  void HandleStreamReply(env::Instant now, uint64_t id, std::string_view bytes);
  void HandleStreamFailed(env::Instant now, uint64_t id);

  // Joins through `seeds` (addresses; our own is skipped): a push-pull with each, retried with
  // backoff until some member answers. An empty list leaves the member alone, as a cluster of
  // one. Replaces earlier seeds.
  void Join(env::Instant now, std::vector<env::Address> seeds);

  // New seeds from peer discovery, which may change while the member runs. An empty list
  // changes nothing (a lookup that found nobody never leaves a member alone). A member that is
  // still joining, or that knows no other live member, joins through the new seeds at once;
  // otherwise they only replace the seeds the reconnect round tries.
  void UpdateSeeds(env::Instant now, std::vector<env::Address> seeds);

  // Replaces our metadata and announces it. InvalidArgument beyond meta_size_max.
  absl::Status SetMeta(env::Instant now, std::string meta);

  // Announces a graceful leave; afterwards the member no longer probes, refutes or joins.
  void Leave(env::Instant now);
  // True once the leave was sent to some member, or there is nobody to tell.
  bool leave_done() const;

  // --- Outputs, taken (moved out) by the driver.
  std::vector<Datagram> TakeDatagrams();
  std::vector<StreamRequest> TakeStreamRequests();
  std::vector<Event> TakeEvents();

  // When Tick wants to run next.
  env::Instant NextDeadline() const;

  // --- Queries.
  const Config& config() const { return config_; }
  const Keyring& keyring() const { return keyring_; }
  Keyring& keyring() { return keyring_; }
  uint64_t incarnation() const { return self().incarnation; }
  int awareness() const { return awareness_; }
  const Stats& stats() const { return stats_; }
  // Every known member, self included, in name order.
  std::vector<Member> Members() const;
  // The member called `name`, or nullptr.
  const Member* Find(std::string_view name) const;
  // Alive and suspect members, self included (the "n" of the timeouts).
  size_t live_members() const;
  size_t broadcast_queue_size() const { return broadcasts_.size(); }

  // Checks the internal invariants; crashes on a violation. Cheap enough to run after every
  // step in the simulator.
  void CheckInvariants() const;

 private:
  struct Suspicion {
    uint64_t incarnation = 0;
    env::Instant start;
    int confirmations_wanted = 0;  // k
    std::vector<std::string> confirmers;  // bounded by k + 1
    absl::Duration min;
    absl::Duration max;
    env::Instant deadline;
  };
  struct Broadcast {
    std::string node;     // newer updates about the same node replace older ones
    std::string bytes;    // serialized gossippb::Update
    int transmits = 0;
    uint64_t order = 0;   // insertion order; newer first among equals
  };
  enum class AckKind { kProbe, kRelay };
  struct PendingAck {
    AckKind kind;
    env::Instant deadline;
    env::Address origin;      // kRelay: who asked
    uint32_t origin_seq = 0;  // kRelay: their seq
    bool nack = false;        // kRelay: answer Nack on timeout
  };
  enum class StreamKind { kPushPull, kJoin, kPing };
  struct PendingStream {
    StreamKind kind;
    env::Address to;
    env::Instant deadline;
    uint32_t ping_seq = 0;
  };
  struct Probe {
    bool active = false;
    std::string target;
    uint32_t seq = 0;
    env::Instant direct_deadline;
    env::Instant end;
    bool indirect_sent = false;
    int nacks_expected = 0;
    int nacks = 0;
  };

  const Member& self() const;
  Member& mutable_self();
  void CheckTime(env::Instant now);
  absl::Duration Scaled(absl::Duration d) const;

  // Sealing and opening.
  std::string Seal(Channel channel, gossippb::Envelope& envelope);
  std::optional<gossippb::Envelope> Open(Channel channel, std::string_view bytes);
  bool ValidEnvelope(const gossippb::Envelope& envelope) const;
  bool ValidUpdate(const gossippb::Update& update) const;
  bool ValidState(const gossippb::MemberState& state) const;

  // Sending.
  void SendPacket(const env::Address& to, gossippb::Envelope envelope,
                  const gossippb::Update* first = nullptr);
  void RequestStream(StreamKind kind, const env::Address& to, gossippb::Envelope envelope,
                     uint32_t ping_seq = 0);

  // Datagram handlers.
  void OnPing(env::Instant now, const env::Address& from, const gossippb::Ping& ping);
  void OnIndirectPing(env::Instant now, const env::Address& from, const gossippb::IndirectPing& p);
  void OnAck(env::Instant now, uint32_t seq);
  void OnNack(uint32_t seq);

  // Timers.
  void TickOnce(env::Instant now);
  void StartProbe(env::Instant now);
  void ProbeDirectTimeout(env::Instant now);
  void ProbeEnd(env::Instant now);
  void GossipRound(env::Instant now);
  void PushPullRound(env::Instant now);
  void ReconnectRound(env::Instant now);
  void JoinRound(env::Instant now);
  void ExpireAcks(env::Instant now);
  void ExpireStreams(env::Instant now);
  void ExpireSuspicions(env::Instant now);
  void ForgetDead(env::Instant now);

  // State transitions (SWIM + memberlist's rules).
  void ApplyUpdate(env::Instant now, const gossippb::Update& update);
  void OnAlive(env::Instant now, const gossippb::Alive& alive);
  void OnSuspect(env::Instant now, const gossippb::Suspect& suspect);
  void OnDead(env::Instant now, const gossippb::Dead& dead);
  void Refute(env::Instant now, uint64_t accused_incarnation);
  void MergeState(env::Instant now, const gossippb::PushPull& push_pull, const std::string& from);
  gossippb::PushPull LocalState(bool join) const;
  void SetState(env::Instant now, Member& member, MemberState state);
  void Emit(Event::Kind kind, const Member& member);
  void StartSuspicion(env::Instant now, const Member& member, const std::string& from);
  void ChangeAwareness(int delta);

  // Broadcast queue.
  void QueueBroadcast(const std::string& node, const gossippb::Update& update);
  int RetransmitLimit() const;
  // Appends queued updates to `envelope` while the sealed datagram stays within the size bound
  // of `budget` bytes already used; counts their transmissions.
  void Piggyback(gossippb::Envelope& envelope, size_t used);

  // Member selection.
  std::vector<const Member*> RandomMembers(size_t k, const std::vector<std::string>& exclude,
                                           bool include_recently_dead, env::Instant now);
  gossippb::Alive SelfAlive() const;

  Config config_;
  Keyring keyring_;
  env::Random random_;
  env::Instant now_;
  Stats stats_;

  absl::btree_map<std::string, Member> members_;  // self included
  absl::btree_map<std::string, Suspicion> suspicions_;
  // determinism-ok: lookups, and an erase_if whose result does not depend on order.
  absl::flat_hash_map<std::string, ReplayWindow> replay_datagram_;  // determinism-ok: lookups
  absl::flat_hash_map<std::string, ReplayWindow> replay_stream_;  // determinism-ok: lookups
  std::vector<Broadcast> broadcasts_;
  uint64_t broadcast_order_ = 0;
  absl::btree_map<uint32_t, PendingAck> pending_acks_;
  absl::btree_map<uint64_t, PendingStream> pending_streams_;
  uint64_t next_stream_id_ = 1;
  uint32_t next_ping_seq_ = 1;
  uint64_t next_datagram_seq_ = 1;
  uint64_t next_stream_seq_ = 1;

  std::vector<std::string> probe_order_;
  size_t probe_index_ = 0;
  Probe probe_;
  int awareness_ = 0;

  env::Instant next_probe_;
  env::Instant next_gossip_;
  env::Instant next_push_pull_;
  env::Instant next_reconnect_;
  env::Instant next_discovery_;  // push-pull with an unknown sender not before this
  std::vector<env::Address> seeds_;
  bool joined_ = true;  // false while seeds have not answered yet
  env::Instant next_join_;
  absl::Duration join_backoff_;

  bool leaving_ = false;
  bool leave_sent_ = false;

  std::vector<Datagram> out_datagrams_;
  std::vector<StreamRequest> out_streams_;
  std::vector<Event> out_events_;
};

}  // namespace e2d::gossip

#endif  // E2D_GOSSIP_MEMBERLIST_H_
