// Copyright e2d authors.

#include "gossip/memberlist.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "google/protobuf/io/coded_stream.h"

namespace e2d::gossip {
namespace {

using env::Instant;

constexpr absl::Duration kJoinBackoffMin = absl::Seconds(1);
// A datagram carries at most this many updates (far more than fit in kDatagramSizeMax anyway).
constexpr int kUpdatesPerDatagramMax = 256;

bool ValidName(const std::string& name) { return !name.empty() && name.size() <= kNameSizeMax; }
bool ValidAddr(const std::string& addr) { return !addr.empty() && addr.size() <= kAddrSizeMax; }

Instant Min(Instant a, Instant b) { return a < b ? a : b; }

// Rounds a positive fractional duration down to whole microseconds (keeps runs exact).
absl::Duration Micros(double seconds) {
  return absl::Microseconds(static_cast<int64_t>(seconds * 1e6));
}

}  // namespace

const char* MemberStateName(MemberState state) {
  switch (state) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "?";
}

const char* EventKindName(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kJoin: return "join";
    case Event::Kind::kUpdate: return "update";
    case Event::Kind::kSuspect: return "suspect";
    case Event::Kind::kDead: return "dead";
    case Event::Kind::kLeave: return "leave";
  }
  return "?";
}

absl::Status Config::Validate() const {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("gossip config: ", std::string(what)));
  };
  if (!ValidName(name)) return bad("name must be 1..128 bytes");
  if (!ValidAddr(addr)) return bad("addr must be 1..256 bytes");
  if (probe_interval <= absl::ZeroDuration()) return bad("probe_interval must be positive");
  if (probe_timeout <= absl::ZeroDuration() || probe_timeout >= probe_interval) {
    return bad("probe_timeout must be positive and below probe_interval");
  }
  if (indirect_checks < 0 || indirect_checks > 16) return bad("indirect_checks must be 0..16");
  if (suspicion_mult < 1 || suspicion_mult > 64) return bad("suspicion_mult must be 1..64");
  if (suspicion_max_timeout_mult < 1 || suspicion_max_timeout_mult > 64) {
    return bad("suspicion_max_timeout_mult must be 1..64");
  }
  if (awareness_max < 1 || awareness_max > 64) return bad("awareness_max must be 1..64");
  if (retransmit_mult < 1 || retransmit_mult > 64) return bad("retransmit_mult must be 1..64");
  if (gossip_interval <= absl::ZeroDuration()) return bad("gossip_interval must be positive");
  if (gossip_nodes < 1 || gossip_nodes > 64) return bad("gossip_nodes must be 1..64");
  if (push_pull_interval <= absl::ZeroDuration()) return bad("push_pull_interval must be positive");
  if (reconnect_interval <= absl::ZeroDuration()) return bad("reconnect_interval must be positive");
  if (join_retry_max < kJoinBackoffMin) return bad("join_retry_max must be at least 1s");
  if (dead_reclaim < absl::ZeroDuration()) return bad("dead_reclaim must not be negative");
  if (dead_retention <= gossip_to_dead) return bad("dead_retention must exceed gossip_to_dead");
  if (stream_timeout <= absl::ZeroDuration()) return bad("stream_timeout must be positive");
  if (packet_size_max < 512 || packet_size_max > env::kDatagramSizeMax) {
    return bad("packet_size_max must be 512..kDatagramSizeMax");
  }
  if (members_max < 2 || members_max > 4096) return bad("members_max must be 2..4096");
  if (broadcasts_max < 16) return bad("broadcasts_max must be at least 16");
  if (pending_acks_max < 16) return bad("pending_acks_max must be at least 16");
  if (stream_requests_max < 4) return bad("stream_requests_max must be at least 4");
  if (meta_size_max > 512) return bad("meta_size_max must be at most 512");
  return absl::OkStatus();
}

Memberlist::Memberlist(Config config, Keyring keyring, env::Random random, Instant now)
    : config_(std::move(config)),
      keyring_(std::move(keyring)),
      random_(std::move(random)),
      now_(now),
      join_backoff_(kJoinBackoffMin) {
  absl::Status valid = config_.Validate();
  E2D_CHECK(valid.ok(), "%s", valid.ToString().c_str());
  Member me;
  me.name = config_.name;
  me.addr = config_.addr;
  me.state_since = now;
  members_.emplace(me.name, me);
  // Spread the periodic work so that members started together do not act in lockstep.
  next_probe_ =
      now + Micros(random_.UniformDouble() * absl::ToDoubleSeconds(config_.probe_interval));
  next_gossip_ = now + config_.gossip_interval;
  next_push_pull_ =
      now + Micros(random_.UniformDouble() * absl::ToDoubleSeconds(config_.push_pull_interval));
  next_reconnect_ = now + config_.reconnect_interval;
  next_join_ = now;
}

const Member& Memberlist::self() const {
  auto it = members_.find(config_.name);
  E2D_CHECK(it != members_.end(), "memberlist invariant");
  return it->second;
}

Member& Memberlist::mutable_self() {
  auto it = members_.find(config_.name);
  E2D_CHECK(it != members_.end(), "memberlist invariant");
  return it->second;
}

void Memberlist::CheckTime(Instant now) {
  E2D_CHECK(now >= now_, "time went backwards: %lld < %lld", static_cast<long long>(now.ns),
            static_cast<long long>(now_.ns));
  now_ = now;
}

absl::Duration Memberlist::Scaled(absl::Duration d) const { return d * (awareness_ + 1); }

void Memberlist::ChangeAwareness(int delta) {
  awareness_ = std::clamp(awareness_ + delta, 0, config_.awareness_max - 1);
}

const Member* Memberlist::Find(std::string_view name) const {
  auto it = members_.find(std::string(name));
  return it == members_.end() ? nullptr : &it->second;
}

std::vector<Member> Memberlist::Members() const {
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& [name, m] : members_) out.push_back(m);
  return out;
}

size_t Memberlist::live_members() const {
  size_t n = 0;
  for (const auto& [name, m] : members_) {
    if (m.state == MemberState::kAlive || m.state == MemberState::kSuspect) ++n;
  }
  return n;
}

bool Memberlist::leave_done() const {
  if (!leaving_) return false;
  return leave_sent_ || live_members() == 0;
}

std::vector<Datagram> Memberlist::TakeDatagrams() { return std::exchange(out_datagrams_, {}); }
std::vector<StreamRequest> Memberlist::TakeStreamRequests() {
  return std::exchange(out_streams_, {});
}
std::vector<Event> Memberlist::TakeEvents() { return std::exchange(out_events_, {}); }

Instant Memberlist::NextDeadline() const {
  Instant next = next_gossip_;
  if (!leaving_) {
    next = Min(next, Min(next_push_pull_, next_reconnect_));
    if (!joined_) next = Min(next, next_join_);
    if (!probe_.active) next = Min(next, next_probe_);
  }
  if (probe_.active) {
    next = Min(next, probe_.end);
    if (!probe_.indirect_sent) next = Min(next, probe_.direct_deadline);
  }
  for (const auto& [seq, ack] : pending_acks_) next = Min(next, ack.deadline);
  for (const auto& [id, stream] : pending_streams_) next = Min(next, stream.deadline);
  for (const auto& [name, s] : suspicions_) next = Min(next, s.deadline);
  return next;
}

// --- Sealing and opening -------------------------------------------------------------------

std::string Memberlist::Seal(Channel channel, gossippb::Envelope& envelope) {
  envelope.set_sender(config_.name);
  envelope.set_session(config_.session);
  envelope.set_seq(channel == Channel::kDatagram ? next_datagram_seq_++ : next_stream_seq_++);
  std::string plain;
  E2D_CHECK(envelope.SerializeToString(&plain), "memberlist invariant");
  std::array<uint8_t, kNonceSize> nonce;
  uint64_t a = random_.Next(), b = random_.Next();
  for (size_t i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(a >> (8 * i));
  for (size_t i = 0; i < 4; ++i) nonce[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  return keyring_.Seal(channel, plain, nonce);
}

bool Memberlist::ValidUpdate(const gossippb::Update& update) const {
  switch (update.kind_case()) {
    case gossippb::Update::kAlive:
      return ValidName(update.alive().node()) && ValidAddr(update.alive().addr()) &&
             update.alive().meta().size() <= config_.meta_size_max;
    case gossippb::Update::kSuspect:
      return ValidName(update.suspect().node()) && ValidName(update.suspect().from());
    case gossippb::Update::kDead:
      return ValidName(update.dead().node()) && ValidName(update.dead().from());
    case gossippb::Update::KIND_NOT_SET:
      return false;
  }
  return false;
}

bool Memberlist::ValidState(const gossippb::MemberState& state) const {
  return ValidName(state.node()) && ValidAddr(state.addr()) &&
         state.meta().size() <= config_.meta_size_max && gossippb::State_IsValid(state.state());
}

bool Memberlist::ValidEnvelope(const gossippb::Envelope& envelope) const {
  if (!ValidName(envelope.sender())) return false;
  if (envelope.updates_size() > kUpdatesPerDatagramMax) return false;
  for (const auto& update : envelope.updates()) {
    if (!ValidUpdate(update)) return false;
  }
  switch (envelope.body_case()) {
    case gossippb::Envelope::kPing:
      return envelope.ping().target().size() <= kNameSizeMax;
    case gossippb::Envelope::kIndirectPing:
      return ValidName(envelope.indirect_ping().target()) &&
             ValidAddr(envelope.indirect_ping().target_addr());
    case gossippb::Envelope::kPushPull:
      if (static_cast<size_t>(envelope.push_pull().members_size()) > config_.members_max) {
        return false;
      }
      for (const auto& state : envelope.push_pull().members()) {
        if (!ValidState(state)) return false;
      }
      return true;
    case gossippb::Envelope::kAck:
    case gossippb::Envelope::kNack:
    case gossippb::Envelope::BODY_NOT_SET:
      return true;
  }
  return false;
}

std::optional<gossippb::Envelope> Memberlist::Open(Channel channel, std::string_view bytes) {
  absl::StatusOr<std::string> plain = keyring_.Open(channel, bytes);
  if (!plain.ok()) {
    ++stats_.dropped_undecryptable;
    return std::nullopt;
  }
  gossippb::Envelope envelope;
  if (!envelope.ParseFromString(*plain) || !ValidEnvelope(envelope)) {
    ++stats_.dropped_malformed;
    return std::nullopt;
  }
  if (envelope.sender() == config_.name) {
    ++stats_.dropped_misdirected;
    return std::nullopt;
  }
  auto& windows = channel == Channel::kDatagram ? replay_datagram_ : replay_stream_;
  if (windows.size() >= config_.members_max + 64 && !windows.contains(envelope.sender())) {
    // Forget the windows of senders that are no longer members (the result does not depend on
    // the table's iteration order: exactly the non-members go).
    absl::erase_if(windows, [&](const auto& entry) { return !members_.contains(entry.first); });
    if (windows.size() >= config_.members_max + 64) {
      ++stats_.dropped_replayed;  // cannot track it, so cannot accept it
      return std::nullopt;
    }
  }
  // Check on a copy so that a refused message leaves no trace.
  ReplayWindow window = windows[envelope.sender()];
  if (window.Check(envelope.session(), envelope.seq()) != ReplayWindow::Verdict::kAccept) {
    ++stats_.dropped_replayed;
    if (window.session() == 0 && window.newest_seq() == 0) windows.erase(envelope.sender());
    return std::nullopt;
  }
  windows[envelope.sender()] = window;
  return envelope;
}

// --- Sending ---------------------------------------------------------------------------------

int Memberlist::RetransmitLimit() const {
  double n = static_cast<double>(members_.size());
  return config_.retransmit_mult * static_cast<int>(std::ceil(std::log10(n + 1)));
}

void Memberlist::QueueBroadcast(const std::string& node, const gossippb::Update& update) {
  std::erase_if(broadcasts_, [&](const Broadcast& b) { return b.node == node; });
  Broadcast b;
  b.node = node;
  E2D_CHECK(update.SerializeToString(&b.bytes), "memberlist invariant");
  b.order = ++broadcast_order_;
  broadcasts_.push_back(std::move(b));
  if (broadcasts_.size() > config_.broadcasts_max) {
    // Evict the most transmitted, oldest first among equals: it has done most of its work.
    auto fewer_sends = [](const Broadcast& x, const Broadcast& y) {
      if (x.transmits != y.transmits) return x.transmits < y.transmits;
      return x.order > y.order;
    };
    auto victim = std::max_element(broadcasts_.begin(), broadcasts_.end(), fewer_sends);
    broadcasts_.erase(victim);
    ++stats_.dropped_broadcasts;
  }
  E2D_CHECK(broadcasts_.size() <= config_.broadcasts_max, "memberlist invariant");
}

void Memberlist::Piggyback(gossippb::Envelope& envelope, size_t used) {
  if (broadcasts_.empty()) return;
  // Least transmitted first; newest first among equals.
  std::vector<size_t> order(broadcasts_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    const Broadcast& a = broadcasts_[x];
    const Broadcast& b = broadcasts_[y];
    if (a.transmits != b.transmits) return a.transmits < b.transmits;
    return a.order > b.order;
  });
  const int limit = RetransmitLimit();
  std::vector<bool> done(broadcasts_.size(), false);
  for (size_t i : order) {
    if (envelope.updates_size() >= kUpdatesPerDatagramMax) break;
    Broadcast& b = broadcasts_[i];
    size_t cost = 1 + google::protobuf::io::CodedOutputStream::VarintSize32(
                          static_cast<uint32_t>(b.bytes.size())) + b.bytes.size();
    if (used + cost > config_.packet_size_max) continue;  // a smaller one may still fit
    gossippb::Update* update = envelope.add_updates();
    E2D_CHECK(update->ParseFromString(b.bytes), "memberlist invariant");
    used += cost;
    ++b.transmits;
    if (leaving_ && b.node == config_.name) leave_sent_ = true;
    if (b.transmits >= limit) done[i] = true;
  }
  size_t kept = 0;
  for (size_t i = 0; i < broadcasts_.size(); ++i) {
    if (done[i]) continue;
    if (kept != i) broadcasts_[kept] = std::move(broadcasts_[i]);  // never self-move
    ++kept;
  }
  broadcasts_.resize(kept);
}

void Memberlist::SendPacket(const env::Address& to, gossippb::Envelope envelope,
                            const gossippb::Update* first) {
  envelope.set_sender(config_.name);
  envelope.set_session(config_.session);
  envelope.set_seq(UINT64_MAX);  // reserve the largest encoding of the real seq
  if (first != nullptr) *envelope.add_updates() = *first;
  size_t used = envelope.ByteSizeLong() + kSealOverhead;
  E2D_CHECK(used <= config_.packet_size_max, "packet head of %zu bytes", used);
  Piggyback(envelope, used);
  std::string sealed = Seal(Channel::kDatagram, envelope);
  E2D_CHECK(sealed.size() <= config_.packet_size_max, "sealed %zu bytes", sealed.size());
  ++stats_.datagrams_sent;
  out_datagrams_.push_back(Datagram{to, std::move(sealed)});
}

void Memberlist::RequestStream(StreamKind kind, const env::Address& to,
                               gossippb::Envelope envelope, uint32_t ping_seq) {
  if (pending_streams_.size() >= config_.stream_requests_max) {
    ++stats_.dropped_streams_full;
    return;
  }
  uint64_t id = next_stream_id_++;
  Instant deadline = now_ + config_.stream_timeout;
  if (kind == StreamKind::kPing) deadline = probe_.end;
  pending_streams_.emplace(id, PendingStream{kind, to, deadline, ping_seq});
  out_streams_.push_back(StreamRequest{id, to, Seal(Channel::kStream, envelope), deadline});
}

gossippb::Alive Memberlist::SelfAlive() const {
  const Member& me = self();
  gossippb::Alive alive;
  alive.set_node(me.name);
  alive.set_incarnation(me.incarnation);
  alive.set_addr(me.addr);
  alive.set_meta(me.meta);
  return alive;
}

// --- Inputs ----------------------------------------------------------------------------------

void Memberlist::HandleDatagram(Instant now, const env::Address& from, std::string_view bytes) {
  CheckTime(now);
  ++stats_.datagrams_received;
  std::optional<gossippb::Envelope> envelope = Open(Channel::kDatagram, bytes);
  if (!envelope) return;
  if (envelope->body_case() == gossippb::Envelope::kPushPull) {
    ++stats_.dropped_malformed;  // full state travels over streams only
    return;
  }
  // A member that knows us but that we do not know: its alive update missed us (every
  // retransmission lost, or it joined through others). Ask it for the full state now rather
  // than at the next push-pull, at most once per probe interval.
  if (!members_.contains(envelope->sender()) && !leaving_ && now >= next_discovery_) {
    next_discovery_ = now + config_.probe_interval;
    gossippb::Envelope request;
    *request.mutable_push_pull() = LocalState(false);
    RequestStream(StreamKind::kPushPull, from, std::move(request));
  }
  for (const auto& update : envelope->updates()) ApplyUpdate(now, update);
  switch (envelope->body_case()) {
    case gossippb::Envelope::kPing: OnPing(now, from, envelope->ping()); break;
    case gossippb::Envelope::kIndirectPing:
      OnIndirectPing(now, from, envelope->indirect_ping());
      break;
    case gossippb::Envelope::kAck: OnAck(now, envelope->ack().seq()); break;
    case gossippb::Envelope::kNack: OnNack(envelope->nack().seq()); break;
    default: break;
  }
}

std::optional<std::string> Memberlist::HandleStreamRequest(Instant now, const env::Address& from,
                                                           std::string_view bytes) {
  CheckTime(now);
  std::optional<gossippb::Envelope> envelope = Open(Channel::kStream, bytes);
  if (!envelope) return std::nullopt;
  gossippb::Envelope reply;
  switch (envelope->body_case()) {
    case gossippb::Envelope::kPing:
      if (!envelope->ping().target().empty() && envelope->ping().target() != config_.name) {
        ++stats_.dropped_misdirected;
        return std::nullopt;
      }
      reply.mutable_ack()->set_seq(envelope->ping().seq());
      break;
    case gossippb::Envelope::kPushPull:
      // Merge first, so that the reply already carries any refutation of what they believed.
      MergeState(now, envelope->push_pull(), envelope->sender());
      ++stats_.push_pulls;
      *reply.mutable_push_pull() = LocalState(false);
      break;
    default:
      ++stats_.dropped_malformed;
      return std::nullopt;
  }
  return Seal(Channel::kStream, reply);
}

void Memberlist::HandleStreamReply(Instant now, uint64_t id, std::string_view bytes) {
  CheckTime(now);
  auto it = pending_streams_.find(id);
  if (it == pending_streams_.end()) return;
  PendingStream pending = it->second;
  pending_streams_.erase(it);
  std::optional<gossippb::Envelope> envelope = Open(Channel::kStream, bytes);
  if (!envelope) {
    if (pending.kind == StreamKind::kJoin) HandleStreamFailed(now, 0);
    return;
  }
  switch (pending.kind) {
    case StreamKind::kPing:
      if (envelope->has_ack() && envelope->ack().seq() == pending.ping_seq) {
        OnAck(now, pending.ping_seq);
      }
      break;
    case StreamKind::kJoin:
    case StreamKind::kPushPull:
      if (!envelope->has_push_pull()) {
        ++stats_.dropped_malformed;
        return;
      }
      MergeState(now, envelope->push_pull(), envelope->sender());
      ++stats_.push_pulls;
      if (pending.kind == StreamKind::kJoin && !joined_) {
        joined_ = true;
        join_backoff_ = kJoinBackoffMin;
      }
      break;
  }
}

void Memberlist::HandleStreamFailed(Instant now, uint64_t id) {
  CheckTime(now);
  auto it = pending_streams_.find(id);
  if (it != pending_streams_.end()) pending_streams_.erase(it);
  // A join attempt ends when its last request failed: retry the seeds after a backoff.
  if (joined_) return;
  for (const auto& [other, stream] : pending_streams_) {
    if (stream.kind == StreamKind::kJoin) return;
  }
  next_join_ = now + join_backoff_;
  join_backoff_ = std::min(join_backoff_ * 2, config_.join_retry_max);
}

void Memberlist::Join(Instant now, std::vector<env::Address> seeds) {
  CheckTime(now);
  std::erase(seeds, config_.addr);
  seeds_ = std::move(seeds);
  joined_ = seeds_.empty();
  join_backoff_ = kJoinBackoffMin;
  next_join_ = now;
  if (!joined_ && !leaving_) JoinRound(now);
}

void Memberlist::UpdateSeeds(Instant now, std::vector<env::Address> seeds) {
  CheckTime(now);
  std::erase(seeds, config_.addr);
  if (seeds.empty() || leaving_) return;
  if (!joined_ || live_members() <= 1) return Join(now, std::move(seeds));
  seeds_ = std::move(seeds);
}

absl::Status Memberlist::SetMeta(Instant now, std::string meta) {
  CheckTime(now);
  if (meta.size() > config_.meta_size_max) {
    return absl::InvalidArgumentError(absl::StrCat("gossip metadata of ", meta.size(),
                                                   " bytes exceeds the bound of ",
                                                   config_.meta_size_max));
  }
  if (leaving_) return absl::FailedPreconditionError("gossip: member is leaving");
  Member& me = mutable_self();
  me.meta = std::move(meta);
  ++me.incarnation;
  gossippb::Update update;
  *update.mutable_alive() = SelfAlive();
  QueueBroadcast(config_.name, update);
  return absl::OkStatus();
}

void Memberlist::Leave(Instant now) {
  CheckTime(now);
  if (leaving_) return;
  leaving_ = true;
  probe_.active = false;
  gossippb::Dead dead;
  dead.set_node(config_.name);
  dead.set_incarnation(self().incarnation);
  dead.set_from(config_.name);
  OnDead(now, dead);
  E2D_CHECK(self().state == MemberState::kLeft, "memberlist invariant");
}

// --- Probing ---------------------------------------------------------------------------------

void Memberlist::OnPing(Instant now, const env::Address& from, const gossippb::Ping& ping) {
  if (!ping.target().empty() && ping.target() != config_.name) {
    ++stats_.dropped_misdirected;
    return;
  }
  gossippb::Envelope reply;
  reply.mutable_ack()->set_seq(ping.seq());
  SendPacket(from, std::move(reply));
}

void Memberlist::OnIndirectPing(Instant now, const env::Address& from,
                                const gossippb::IndirectPing& request) {
  if (pending_acks_.size() >= config_.pending_acks_max) {
    ++stats_.dropped_acks_full;
    return;
  }
  uint32_t seq = next_ping_seq_++;
  if (pending_acks_.contains(seq)) return;  // wrapped onto a live probe: let this one go
  PendingAck pending{AckKind::kRelay, now + config_.probe_timeout, from, request.seq(),
                     request.nack()};
  pending_acks_.emplace(seq, pending);
  gossippb::Envelope ping;
  ping.mutable_ping()->set_seq(seq);
  ping.mutable_ping()->set_target(request.target());
  SendPacket(request.target_addr(), std::move(ping));
}

void Memberlist::OnAck(Instant now, uint32_t seq) {
  auto it = pending_acks_.find(seq);
  if (it == pending_acks_.end()) return;  // late or duplicate
  PendingAck pending = it->second;
  pending_acks_.erase(it);
  if (pending.kind == AckKind::kRelay) {
    gossippb::Envelope ack;
    ack.mutable_ack()->set_seq(pending.origin_seq);
    SendPacket(pending.origin, std::move(ack));
    return;
  }
  if (probe_.active && probe_.seq == seq) {
    probe_.active = false;
    ChangeAwareness(-1);
  }
}

void Memberlist::OnNack(uint32_t seq) {
  if (probe_.active && probe_.seq == seq) ++probe_.nacks;
}

void Memberlist::StartProbe(Instant now) {
  next_probe_ = now + Scaled(config_.probe_interval);
  const Member* target = nullptr;
  for (size_t tries = 0; tries <= probe_order_.size() && target == nullptr; ++tries) {
    if (probe_index_ >= probe_order_.size()) {
      ForgetDead(now);
      probe_order_.clear();
      for (const auto& [name, m] : members_) {
        if (name != config_.name) probe_order_.push_back(name);
      }
      for (size_t i = probe_order_.size(); i > 1; --i) {
        std::swap(probe_order_[i - 1], probe_order_[random_.Uniform(i)]);
      }
      probe_index_ = 0;
      if (probe_order_.empty()) return;
    }
    const Member* m = Find(probe_order_[probe_index_++]);
    if (m != nullptr && (m->state == MemberState::kAlive || m->state == MemberState::kSuspect)) {
      target = m;
    }
  }
  if (target == nullptr) return;
  if (pending_acks_.size() >= config_.pending_acks_max) {
    ++stats_.dropped_acks_full;
    return;
  }
  uint32_t seq = next_ping_seq_++;
  if (pending_acks_.contains(seq)) return;
  ++stats_.probes;
  probe_ = Probe{};
  probe_.active = true;
  probe_.target = target->name;
  probe_.seq = seq;
  probe_.direct_deadline = now + Scaled(config_.probe_timeout);
  probe_.end = next_probe_;
  pending_acks_.emplace(seq, PendingAck{AckKind::kProbe, probe_.end, {}, 0, false});
  gossippb::Envelope ping;
  ping.mutable_ping()->set_seq(seq);
  ping.mutable_ping()->set_target(target->name);
  if (target->state == MemberState::kSuspect) {
    // Buddy system: tell the suspect first, so it can refute before it is declared dead.
    gossippb::Update suspect;
    suspect.mutable_suspect()->set_node(target->name);
    suspect.mutable_suspect()->set_incarnation(target->incarnation);
    suspect.mutable_suspect()->set_from(config_.name);
    SendPacket(target->addr, std::move(ping), &suspect);
  } else {
    SendPacket(target->addr, std::move(ping));
  }
}

void Memberlist::ProbeDirectTimeout(Instant now) {
  probe_.indirect_sent = true;
  const Member* target = Find(probe_.target);
  if (target == nullptr) return;
  std::vector<const Member*> relays =
      RandomMembers(config_.indirect_checks, {probe_.target}, false, now);
  for (const Member* relay : relays) {
    if (relay->state != MemberState::kAlive) continue;
    gossippb::Envelope request;
    request.mutable_indirect_ping()->set_seq(probe_.seq);
    request.mutable_indirect_ping()->set_target(target->name);
    request.mutable_indirect_ping()->set_target_addr(target->addr);
    request.mutable_indirect_ping()->set_nack(true);
    SendPacket(relay->addr, std::move(request));
    ++probe_.nacks_expected;
  }
  if (config_.stream_fallback) {
    gossippb::Envelope ping;
    ping.mutable_ping()->set_seq(probe_.seq);
    ping.mutable_ping()->set_target(target->name);
    RequestStream(StreamKind::kPing, target->addr, std::move(ping), probe_.seq);
  }
}

void Memberlist::ProbeEnd(Instant now) {
  probe_.active = false;
  pending_acks_.erase(probe_.seq);
  // Tick ran a whole interval late: this process was stalled, so silence proves nothing about
  // the target. Count it against our own health instead.
  if (now - probe_.end > Scaled(config_.probe_interval)) {
    ChangeAwareness(1);
    return;
  }
  ++stats_.probes_failed;
  ChangeAwareness(probe_.nacks_expected > 0 ? probe_.nacks_expected - probe_.nacks : 1);
  const Member* target = Find(probe_.target);
  if (target == nullptr) return;
  if (target->state != MemberState::kAlive && target->state != MemberState::kSuspect) return;
  gossippb::Suspect suspect;
  suspect.set_node(target->name);
  suspect.set_incarnation(target->incarnation);
  suspect.set_from(config_.name);
  OnSuspect(now, suspect);
}

std::vector<const Member*> Memberlist::RandomMembers(size_t k,
                                                     const std::vector<std::string>& exclude,
                                                     bool include_recently_dead, Instant now) {
  std::vector<const Member*> candidates;
  for (const auto& [name, m] : members_) {
    if (name == config_.name) continue;
    if (std::find(exclude.begin(), exclude.end(), name) != exclude.end()) continue;
    bool live = m.state == MemberState::kAlive || m.state == MemberState::kSuspect;
    bool recently_dead =
        include_recently_dead && !live && now - m.state_since < config_.gossip_to_dead;
    if (live || recently_dead) candidates.push_back(&m);
  }
  size_t take = std::min(k, candidates.size());
  for (size_t i = 0; i < take; ++i) {
    std::swap(candidates[i], candidates[i + random_.Uniform(candidates.size() - i)]);
  }
  candidates.resize(take);
  return candidates;
}

// --- Periodic work ---------------------------------------------------------------------------

void Memberlist::Tick(Instant now) {
  CheckTime(now);
  // Work done in one pass can set deadlines that are already due (a confirmation shortening a
  // suspicion that began long ago): a second pass runs them.
  for (int pass = 0; pass < 3; ++pass) {
    TickOnce(now);
    if (NextDeadline() > now) return;
  }
  E2D_CHECK(NextDeadline() > now, "a deadline did not advance past %lld",
            static_cast<long long>(now.ns));
}

void Memberlist::TickOnce(Instant now) {
  ExpireAcks(now);
  ExpireStreams(now);
  ExpireSuspicions(now);
  if (probe_.active && now >= probe_.end) {
    ProbeEnd(now);  // also when Tick comes so late that the indirect stage would be pointless
  } else if (probe_.active && !probe_.indirect_sent && now >= probe_.direct_deadline) {
    ProbeDirectTimeout(now);
  }
  if (!leaving_ && !probe_.active && now >= next_probe_) StartProbe(now);
  if (now >= next_gossip_) {
    GossipRound(now);
    next_gossip_ = now + config_.gossip_interval;
  }
  if (!leaving_ && now >= next_push_pull_) PushPullRound(now);
  if (!leaving_ && now >= next_reconnect_) ReconnectRound(now);
  if (!leaving_ && !joined_ && now >= next_join_) JoinRound(now);
}

void Memberlist::GossipRound(Instant now) {
  if (broadcasts_.empty()) return;
  for (const Member* m : RandomMembers(config_.gossip_nodes, {}, true, now)) {
    if (broadcasts_.empty()) break;
    gossippb::Envelope envelope;
    SendPacket(m->addr, std::move(envelope));
  }
}

void Memberlist::PushPullRound(Instant now) {
  double n = static_cast<double>(members_.size());
  double scale = n <= 32 ? 1.0 : std::ceil(std::log2(n) - std::log2(32.0)) + 1.0;
  next_push_pull_ = now + config_.push_pull_interval * scale;
  std::vector<const Member*> peer = RandomMembers(1, {}, false, now);
  if (peer.empty() || peer[0]->state != MemberState::kAlive) return;
  gossippb::Envelope envelope;
  *envelope.mutable_push_pull() = LocalState(false);
  RequestStream(StreamKind::kPushPull, peer[0]->addr, std::move(envelope));
}

void Memberlist::ReconnectRound(Instant now) {
  next_reconnect_ = now + config_.reconnect_interval;
  // A member we hold dead may only be on the other side of a healed partition: a full state
  // exchange with it lets both sides refute. So may a seed that no live member holds (members
  // that started split join only their own side): try one of either kind.
  std::vector<const env::Address*> targets;
  absl::btree_set<std::string_view> live;
  for (const auto& [name, m] : members_) {
    if (m.state == MemberState::kDead) targets.push_back(&m.addr);
    if (m.state == MemberState::kAlive || m.state == MemberState::kSuspect) live.insert(m.addr);
  }
  for (const env::Address& seed : seeds_) {
    if (!live.contains(seed)) targets.push_back(&seed);
  }
  if (targets.empty()) return;
  const env::Address to = *targets[random_.Uniform(targets.size())];
  gossippb::Envelope envelope;
  *envelope.mutable_push_pull() = LocalState(false);
  RequestStream(StreamKind::kPushPull, to, std::move(envelope));
}

void Memberlist::JoinRound(Instant now) {
  next_join_ = now + join_backoff_;
  for (const auto& [id, stream] : pending_streams_) {
    if (stream.kind == StreamKind::kJoin) return;  // an attempt is in flight
  }
  for (const env::Address& seed : seeds_) {
    gossippb::Envelope envelope;
    *envelope.mutable_push_pull() = LocalState(true);
    RequestStream(StreamKind::kJoin, seed, std::move(envelope));
  }
}

void Memberlist::ExpireAcks(Instant now) {
  std::vector<uint32_t> due;
  for (const auto& [seq, ack] : pending_acks_) {
    if (ack.deadline <= now) due.push_back(seq);
  }
  for (uint32_t seq : due) {
    PendingAck pending = pending_acks_[seq];
    const bool live_probe = probe_.active && probe_.seq == seq;
    if (pending.kind == AckKind::kProbe && live_probe) continue;  // ProbeEnd owns it
    pending_acks_.erase(seq);
    if (pending.kind == AckKind::kProbe) continue;  // left over by Leave
    if (pending.nack) {
      gossippb::Envelope nack;
      nack.mutable_nack()->set_seq(pending.origin_seq);
      SendPacket(pending.origin, std::move(nack));
    }
  }
}

void Memberlist::ExpireStreams(Instant now) {
  std::vector<uint64_t> due;
  for (const auto& [id, stream] : pending_streams_) {
    if (stream.deadline <= now) due.push_back(id);
  }
  for (uint64_t id : due) HandleStreamFailed(now, id);
}

void Memberlist::ExpireSuspicions(Instant now) {
  std::vector<std::string> due;
  for (const auto& [name, s] : suspicions_) {
    if (s.deadline <= now) due.push_back(name);
  }
  for (const std::string& name : due) {
    uint64_t incarnation = suspicions_[name].incarnation;
    suspicions_.erase(name);
    const Member* m = Find(name);
    if (m == nullptr || m->state != MemberState::kSuspect) continue;
    if (m->incarnation != incarnation) continue;
    gossippb::Dead dead;
    dead.set_node(name);
    dead.set_incarnation(incarnation);
    dead.set_from(config_.name);
    OnDead(now, dead);
  }
}

void Memberlist::ForgetDead(Instant now) {
  absl::erase_if(members_, [&](const auto& entry) {
    const Member& m = entry.second;
    return entry.first != config_.name &&
           (m.state == MemberState::kDead || m.state == MemberState::kLeft) &&
           now - m.state_since >= config_.dead_retention;
  });
}

// --- State transitions -----------------------------------------------------------------------

void Memberlist::Emit(Event::Kind kind, const Member& member) {
  out_events_.push_back(Event{kind, member});
}

void Memberlist::SetState(Instant now, Member& member, MemberState state) {
  if (member.state != state) member.state_since = now;
  member.state = state;
}

void Memberlist::ApplyUpdate(Instant now, const gossippb::Update& update) {
  switch (update.kind_case()) {
    case gossippb::Update::kAlive: OnAlive(now, update.alive()); break;
    case gossippb::Update::kSuspect: OnSuspect(now, update.suspect()); break;
    case gossippb::Update::kDead: OnDead(now, update.dead()); break;
    case gossippb::Update::KIND_NOT_SET: break;
  }
}

void Memberlist::Refute(Instant now, uint64_t accused_incarnation) {
  Member& me = mutable_self();
  me.incarnation = std::max(me.incarnation, accused_incarnation) + 1;
  ++stats_.refutes;
  ChangeAwareness(1);
  gossippb::Update update;
  *update.mutable_alive() = SelfAlive();
  QueueBroadcast(config_.name, update);
}

void Memberlist::OnAlive(Instant now, const gossippb::Alive& alive) {
  if (alive.node() == config_.name) {
    if (leaving_) return;
    const Member& me = self();
    if (alive.incarnation() < me.incarnation) return;
    bool same = alive.addr() == me.addr && alive.meta() == me.meta;
    if (alive.incarnation() == me.incarnation && same) return;  // our own news, echoed
    // Someone holds a newer (or conflicting) claim about us: from our previous run, or an
    // impostor at another address. Outbid it.
    if (alive.addr() != me.addr) ++stats_.address_conflicts;
    Refute(now, alive.incarnation());
    return;
  }
  auto it = members_.find(alive.node());
  gossippb::Update update;
  *update.mutable_alive() = alive;
  if (it == members_.end()) {
    if (members_.size() >= config_.members_max) {
      ++stats_.dropped_members_full;
      return;
    }
    Member m;
    m.name = alive.node();
    m.addr = alive.addr();
    m.incarnation = alive.incarnation();
    m.meta = alive.meta();
    m.state_since = now;
    Emit(Event::Kind::kJoin, members_.emplace(m.name, m).first->second);
    QueueBroadcast(alive.node(), update);
    return;
  }
  Member& m = it->second;
  bool reclaim = false;
  if (alive.addr() != m.addr) {
    reclaim = m.state == MemberState::kLeft ||
              (m.state == MemberState::kDead && now - m.state_since >= config_.dead_reclaim);
    if (!reclaim) {
      ++stats_.address_conflicts;
      return;
    }
  }
  if (!reclaim && alive.incarnation() <= m.incarnation) return;  // stale
  MemberState was = m.state;
  bool changed = m.meta != alive.meta() || m.addr != alive.addr();
  m.addr = alive.addr();
  m.incarnation = alive.incarnation();
  m.meta = alive.meta();
  suspicions_.erase(m.name);
  SetState(now, m, MemberState::kAlive);
  if (was == MemberState::kDead || was == MemberState::kLeft) {
    Emit(Event::Kind::kJoin, m);
  } else if (changed || was == MemberState::kSuspect) {
    Emit(Event::Kind::kUpdate, m);
  }
  QueueBroadcast(alive.node(), update);
}

void Memberlist::StartSuspicion(Instant now, const Member& member, const std::string& from) {
  double n = static_cast<double>(live_members());
  double node_scale = std::max(1.0, std::log10(std::max(1.0, n)));
  double interval_s = absl::ToDoubleSeconds(config_.probe_interval);
  Suspicion s;
  s.incarnation = member.incarnation;
  s.start = now;
  // Lifeguard scales probing by local health; we scale our suspicion timeouts the same way, so
  // a member that knows it is slow (and so hears refutations late) waits longer before it
  // declares anyone dead.
  s.min = Micros(config_.suspicion_mult * node_scale * interval_s * (awareness_ + 1));
  s.max = s.min * config_.suspicion_max_timeout_mult;
  // Independent confirmations we hope for before the minimum; none in very small clusters.
  s.confirmations_wanted = std::max(0, config_.suspicion_mult - 2);
  if (n - 2 < s.confirmations_wanted) s.confirmations_wanted = 0;
  s.confirmers.push_back(from);
  s.deadline = now + (s.confirmations_wanted == 0 ? s.min : s.max);
  suspicions_[member.name] = std::move(s);
}

void Memberlist::OnSuspect(Instant now, const gossippb::Suspect& suspect) {
  auto it = members_.find(suspect.node());
  if (it == members_.end()) return;
  Member& m = it->second;
  if (suspect.incarnation() < m.incarnation) return;
  gossippb::Update update;
  *update.mutable_suspect() = suspect;
  auto sit = suspicions_.find(suspect.node());
  if (sit != suspicions_.end() && suspect.incarnation() == sit->second.incarnation) {
    Suspicion& s = sit->second;
    // Lifeguard: each independent confirmation shortens the timeout, logarithmically.
    bool known = std::find(s.confirmers.begin(), s.confirmers.end(), suspect.from()) !=
                 s.confirmers.end();
    if (known || s.confirmations_wanted == 0 ||
        static_cast<int>(s.confirmers.size()) > s.confirmations_wanted) {
      return;
    }
    s.confirmers.push_back(suspect.from());
    double c = static_cast<double>(s.confirmers.size() - 1);
    double fraction = std::log(c + 1) / std::log(s.confirmations_wanted + 1.0);
    absl::Duration timeout =
        std::max(s.min, s.max - Micros(fraction * absl::ToDoubleSeconds(s.max - s.min)));
    s.deadline = s.start + timeout;
    QueueBroadcast(suspect.node(), update);
    return;
  }
  if (m.state != MemberState::kAlive && m.state != MemberState::kSuspect) return;
  if (suspect.node() == config_.name) {
    if (!leaving_) Refute(now, suspect.incarnation());
    return;
  }
  if (m.state == MemberState::kSuspect && suspect.incarnation() == m.incarnation) return;
  m.incarnation = suspect.incarnation();
  SetState(now, m, MemberState::kSuspect);
  StartSuspicion(now, m, suspect.from());
  QueueBroadcast(suspect.node(), update);
  Emit(Event::Kind::kSuspect, m);
}

void Memberlist::OnDead(Instant now, const gossippb::Dead& dead) {
  auto it = members_.find(dead.node());
  if (it == members_.end()) return;
  Member& m = it->second;
  if (dead.incarnation() < m.incarnation) return;
  if (m.state == MemberState::kDead || m.state == MemberState::kLeft) return;
  if (dead.node() == config_.name && !leaving_) {
    Refute(now, dead.incarnation());
    return;
  }
  suspicions_.erase(m.name);
  m.incarnation = dead.incarnation();
  bool left = dead.from() == dead.node();
  SetState(now, m, left ? MemberState::kLeft : MemberState::kDead);
  gossippb::Update update;
  *update.mutable_dead() = dead;
  QueueBroadcast(dead.node(), update);
  Emit(left ? Event::Kind::kLeave : Event::Kind::kDead, m);
}

gossippb::PushPull Memberlist::LocalState(bool join) const {
  gossippb::PushPull state;
  state.set_join(join);
  for (const auto& [name, m] : members_) {
    gossippb::MemberState* s = state.add_members();
    s->set_node(m.name);
    s->set_addr(m.addr);
    s->set_incarnation(m.incarnation);
    s->set_meta(m.meta);
    switch (m.state) {
      case MemberState::kAlive: s->set_state(gossippb::ALIVE); break;
      case MemberState::kSuspect: s->set_state(gossippb::SUSPECT); break;
      case MemberState::kDead: s->set_state(gossippb::DEAD); break;
      case MemberState::kLeft: s->set_state(gossippb::LEFT); break;
    }
  }
  return state;
}

void Memberlist::MergeState(Instant now, const gossippb::PushPull& push_pull,
                            const std::string& from) {
  for (const gossippb::MemberState& s : push_pull.members()) {
    switch (s.state()) {
      case gossippb::ALIVE: {
        gossippb::Alive alive;
        alive.set_node(s.node());
        alive.set_incarnation(s.incarnation());
        alive.set_addr(s.addr());
        alive.set_meta(s.meta());
        OnAlive(now, alive);
        break;
      }
      case gossippb::LEFT: {
        gossippb::Dead dead;
        dead.set_node(s.node());
        dead.set_incarnation(s.incarnation());
        dead.set_from(s.node());
        OnDead(now, dead);
        break;
      }
      default: {
        // Their dead is only our suspicion: we give the member its chance to refute.
        gossippb::Suspect suspect;
        suspect.set_node(s.node());
        suspect.set_incarnation(s.incarnation());
        suspect.set_from(from);
        OnSuspect(now, suspect);
        break;
      }
    }
  }
}

// --- Invariants ------------------------------------------------------------------------------

void Memberlist::CheckInvariants() const {
  const Member& me = self();
  E2D_CHECK(me.name == config_.name && me.addr == config_.addr, "memberlist invariant");
  E2D_CHECK(me.state == (leaving_ ? MemberState::kLeft : MemberState::kAlive), "self is %s",
            MemberStateName(me.state));
  E2D_CHECK(members_.size() <= config_.members_max, "memberlist invariant");
  E2D_CHECK(broadcasts_.size() <= config_.broadcasts_max, "memberlist invariant");
  E2D_CHECK(pending_acks_.size() <= config_.pending_acks_max + 1, "memberlist invariant");
  E2D_CHECK(pending_streams_.size() <= config_.stream_requests_max, "memberlist invariant");
  E2D_CHECK(awareness_ >= 0 && awareness_ < config_.awareness_max, "memberlist invariant");
  for (const auto& [name, m] : members_) {
    E2D_CHECK(name == m.name, "memberlist invariant");
    E2D_CHECK(m.meta.size() <= config_.meta_size_max, "memberlist invariant");
    if (name == config_.name) continue;
    auto sit = suspicions_.find(name);
    if (m.state == MemberState::kSuspect) {
      E2D_CHECK(sit != suspicions_.end(), "suspect %s without a suspicion timer", name.c_str());
      E2D_CHECK(sit->second.incarnation == m.incarnation, "memberlist invariant");
      E2D_CHECK(sit->second.deadline >= sit->second.start + sit->second.min,
                "memberlist invariant");
      E2D_CHECK(sit->second.deadline <= sit->second.start + sit->second.max,
                "memberlist invariant");
    } else {
      E2D_CHECK(sit == suspicions_.end(), "%s is %s with a suspicion timer", name.c_str(),
                MemberStateName(m.state));
    }
  }
  E2D_CHECK(suspicions_.size() <= members_.size(), "memberlist invariant");
  
}

}  // namespace e2d::gossip
