// Copyright e2d authors.

#include "raft/raft_node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"

namespace e2d::raft {

absl::StatusOr<std::unique_ptr<RaftNode>> RaftNode::Open(env::Env& env, RaftNodeConfig config,
                                                         RaftNodeHooks hooks) {
  WalContents contents;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(env.fs(), config.wal, &contents);
  if (!wal.ok()) return wal.status();
  DurableState state;
  if (contents.hard_state) state.hard_state = *contents.hard_state;
  if (contents.snapshot) {
    return absl::UnimplementedError("raft node: snapshots are not supported yet");
  }
  state.entries = std::move(contents.entries);
  if (contents.torn_bytes_cut > 0) {
    env.Log(absl::StrCat("wal: cut a torn tail of ", contents.torn_bytes_cut, " bytes"));
  }
  config.raft.random_seed = env.random().Next();
  absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config.raft, std::move(state));
  if (!raft.ok()) return raft.status();
  std::unique_ptr<RaftNode> node(new RaftNode(env, std::move(config), std::move(hooks),
                                              std::move(*wal), std::move(*raft)));
  node->Start();
  return node;
}

RaftNode::RaftNode(env::Env& env, RaftNodeConfig config, RaftNodeHooks hooks,
                   std::unique_ptr<Wal> wal, std::unique_ptr<Raft> raft)
    : env_(env),
      config_(std::move(config)),
      hooks_(std::move(hooks)),
      wal_(std::move(wal)),
      raft_(std::move(raft)),
      addresses_(config_.peers) {}

RaftNode::~RaftNode() {
  *alive_ = false;
  env_.clock().Cancel(tick_timer_);
  env_.network().SetAcceptHandler(nullptr);
}

void RaftNode::Start() {
  env_.network().SetAcceptHandler(
      [this](std::unique_ptr<env::Stream> stream) { OnAccept(std::move(stream)); });
  last_tick_ = env_.clock().Now();
  tick_timer_ = env_.clock().After(config_.tick, [this] { OnTick(); });
  ProcessReady();  // recovered committed entries are applied again
}

absl::Status RaftNode::Propose(std::string data) {
  if (failed_) return absl::FailedPreconditionError("raft node failed");
  if (removed_) return absl::FailedPreconditionError("raft node was removed from the cluster");
  CatchUpTicks();
  absl::Status s = raft_->Propose(std::move(data));
  Observe();
  ProcessReady();
  return s;
}

void RaftNode::TransferLeadership(uint64_t to) {
  if (failed_ || removed_) return;
  raft_->TransferLeadership(to);
  Observe();
  ProcessReady();
}

void RaftNode::ReadIndex(std::function<void(absl::StatusOr<uint64_t>)> done) {
  if (failed_) return done(absl::FailedPreconditionError("raft node failed"));
  if (removed_) return done(absl::FailedPreconditionError("raft node was removed"));
  if (reads_.size() >= config_.reads_pending_max) {
    return done(absl::ResourceExhaustedError(absl::StrCat(
        "read index: ", reads_.size(), " reads pending (bound ", config_.reads_pending_max, ")")));
  }
  const uint64_t id = ++read_seq_;
  CatchUpTicks();  // a lease is judged on the time that has really passed
  absl::Status s = raft_->ReadIndex(absl::StrCat(id));
  Observe();
  if (!s.ok()) {
    done(s);
  } else {
    reads_.emplace(id, PendingRead{std::move(done), env_.clock().Now() + config_.read_timeout,
                                   std::nullopt});
  }
  ProcessReady();
}

void RaftNode::AnswerReads(const std::vector<ReadState>& states) {
  for (const ReadState& rs : states) {
    uint64_t id = 0;
    if (!absl::SimpleAtoi(rs.context, &id)) continue;
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;  // timed out already
    if (!rs.status.ok()) {
      auto done = std::move(it->second.done);
      reads_.erase(it);
      done(rs.status);
      continue;
    }
    it->second.index = rs.index;
  }
  ServeReads();
}

// Answers every read whose index this node has applied.
void RaftNode::ServeReads() {
  std::vector<std::pair<std::function<void(absl::StatusOr<uint64_t>)>, uint64_t>> ready;
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.index && *it->second.index <= raft_->log().applied()) {
      ready.emplace_back(std::move(it->second.done), *it->second.index);
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [done, index] : ready) done(index);
}

void RaftNode::FailReads(const absl::Status& why) {
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [id, r] : reads) r.done(why);
}

absl::Status RaftNode::ProposeConfChange(const raftpb::ConfChange& cc) {
  if (failed_) return absl::FailedPreconditionError("raft node failed");
  if (removed_) return absl::FailedPreconditionError("raft node was removed from the cluster");
  absl::Status s = raft_->ProposeConfChange(cc);
  Observe();
  ProcessReady();
  return s;
}

void RaftNode::CatchUpTicks() {
  const env::Instant now = env_.clock().Now();
  const int64_t due = (now - last_tick_) / config_.tick;
  if (due <= 0) return;
  last_tick_ = last_tick_ + config_.tick * due;
  // Beyond two election timeouts more ticks change nothing (every timeout has fired).
  const int64_t ticks = std::min<int64_t>(due, 2 * config_.raft.election_ticks + 1);
  for (int64_t i = 0; i < ticks && !failed_; ++i) raft_->Tick();
}

void RaftNode::OnTick() {
  tick_timer_ = env_.clock().After(config_.tick, [this] { OnTick(); });
  if (stopped()) return;
  const env::Instant now = env_.clock().Now();
  std::vector<std::function<void(absl::StatusOr<uint64_t>)>> expired;
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (now >= it->second.deadline) {
      expired.push_back(std::move(it->second.done));
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& done : expired) {
    done(absl::DeadlineExceededError("read index: no answer within the read timeout"));
  }
  CatchUpTicks();
  Observe();
  std::erase_if(inbound_, [](const Inbound& in) { return in.closed; });
  ProcessReady();
}

// Handles Readies until one needs the disk (its completion continues here) or none is left.
// A loop, not recursion: Readies that persist nothing complete in place, one after another.
void RaftNode::ProcessReady() {
  while (!stopped() && !ready_in_progress_ && raft_->HasReady()) {
    ready_in_progress_ = true;
    Ready ready = raft_->GetReady();
    SendAll(ready.messages);
    if (ready.entries.empty() && !ready.hard_state) {
      CompleteReady(std::move(ready), absl::OkStatus());
      continue;
    }
    const raftpb::HardState* hs = ready.hard_state ? &*ready.hard_state : nullptr;
    if (absl::Status s = wal_->Append(ready.entries, hs); !s.ok()) return Fail(s);
    ++wal_syncs_;
    std::shared_ptr<bool> alive = alive_;
    auto shared = std::make_shared<Ready>(std::move(ready));
    wal_->Sync([this, alive, shared](absl::Status s) {
      if (!*alive) return;
      CompleteReady(std::move(*shared), s);
      ProcessReady();
    });
    return;
  }
}

void RaftNode::CompleteReady(Ready ready, absl::Status persisted) {
  if (!persisted.ok()) return Fail(persisted);
  SendAll(ready.messages_after_persist);
  for (const raftpb::Entry& e : ready.committed_entries) {
    if (e.type() == raftpb::ENTRY_CONF_CHANGE) LearnAddresses(e);
    if (hooks_.on_apply) hooks_.on_apply(e, *raft_);
  }
  raft_->Advance(ready);
  ready_in_progress_ = false;
  Observe();
  AnswerReads(ready.read_states);
  const bool member = raft_->membership().IsMember(raft_->id());
  was_member_ = was_member_ || member;
  if (was_member_ && !member && raft_->role() != Role::kLeader && !removed_) {
    removed_ = true;
    env_.Log("raft node: removed from the cluster; staying passive");
    FailReads(absl::FailedPreconditionError("raft node was removed"));
    if (hooks_.on_removed) hooks_.on_removed();
  }
}

// A committed conf change: remember where added nodes listen, and drop streams to removed ones.
void RaftNode::LearnAddresses(const raftpb::Entry& e) {
  raftpb::ConfChange cc;
  if (!cc.ParseFromString(e.data())) return;  // the core ignores it too
  for (const raftpb::ConfChangeSingle& c : cc.changes()) {
    if (c.node_id() == raft_->id()) continue;
    if (c.type() == raftpb::CONF_CHANGE_REMOVE_NODE) {
      if (auto it = outbound_.find(c.node_id()); it != outbound_.end()) {
        if (it->second.stream != nullptr) it->second.stream->Close();
        outbound_.erase(it);
      }
      continue;
    }
    if (c.address().empty()) continue;
    auto [it, fresh] = addresses_.try_emplace(c.node_id(), c.address());
    if (!fresh && it->second != c.address()) {
      it->second = c.address();
      outbound_.erase(c.node_id());  // reconnect to the new address
    }
  }
}

void RaftNode::Observe() {
  if (hooks_.on_state) hooks_.on_state(*raft_);
}

void RaftNode::Fail(const absl::Status& why) {
  if (failed_) return;
  failed_ = true;
  env_.Log(absl::StrCat("raft node failed: ", why.ToString()));
  FailReads(absl::FailedPreconditionError(absl::StrCat("raft node failed: ", why.message())));
  if (hooks_.on_fatal) hooks_.on_fatal(why);
}

void RaftNode::SendAll(const std::vector<raftpb::Message>& messages) {
  for (const raftpb::Message& m : messages) SendTo(m);
}

void RaftNode::SendTo(const raftpb::Message& m) {
  Outbound* out = OutboundFor(m.to());
  if (out == nullptr || out->stream == nullptr ||
      !out->stream->Send(m.SerializeAsString()).ok()) {
    ++messages_dropped_;  // Raft retries by itself (heartbeats, probes, elections)
  }
}

// The stream to `peer`, (re)connecting when allowed by the backoff; nullptr if unknown peer.
RaftNode::Outbound* RaftNode::OutboundFor(uint64_t peer) {
  auto address = addresses_.find(peer);
  if (address == addresses_.end()) return nullptr;
  auto it = outbound_.find(peer);
  if (it == outbound_.end()) {
    if (outbound_.size() >= kMembersMax) return nullptr;
    it = outbound_.try_emplace(peer).first;
    it->second.backoff = config_.backoff_min;
  }
  Outbound& out = it->second;
  if (out.stream != nullptr && out.closed) out.stream.reset();
  if (out.stream != nullptr) return &out;
  const env::Instant now = env_.clock().Now();
  if (now < out.retry_at) return &out;
  out.stream = env_.network().Connect(address->second);
  out.closed = false;
  std::shared_ptr<bool> alive = alive_;
  out.stream->SetHandlers([](std::string) {},
                          [this, alive, peer](absl::Status) {
                            if (!*alive) return;
                            auto it = outbound_.find(peer);
                            if (it == outbound_.end()) return;  // dropped since
                            Outbound& o = it->second;
                            o.closed = true;
                            o.retry_at = env_.clock().Now() + o.backoff;
                            o.backoff = std::min(o.backoff * 2, config_.backoff_max);
                          });
  return &out;
}

void RaftNode::OnAccept(std::unique_ptr<env::Stream> stream) {
  if (inbound_.size() >= config_.accepted_streams_max) {
    inbound_.front().stream->Close();
    inbound_.erase(inbound_.begin());
  }
  inbound_.push_back(Inbound{std::move(stream), false});
  env::Stream* raw = inbound_.back().stream.get();
  std::shared_ptr<bool> alive = alive_;
  raw->SetHandlers(
      [this, alive](std::string bytes) {
        if (*alive) OnMessage(bytes);
      },
      [this, alive, raw](absl::Status) {
        if (!*alive) return;
        for (Inbound& in : inbound_) {
          if (in.stream.get() == raw) in.closed = true;  // swept on the next tick
        }
      });
}

void RaftNode::OnMessage(const std::string& bytes) {
  if (stopped()) return;
  raftpb::Message m;
  if (!m.ParseFromString(bytes) || m.to() != raft_->id() || !addresses_.contains(m.from())) {
    ++messages_dropped_;
    env_.Log("raft node: dropping a malformed or misaddressed message");
    return;
  }
  // Hearing from the peer proves the path works: reconnect quickly next time it breaks.
  if (auto it = outbound_.find(m.from()); it != outbound_.end()) {
    it->second.backoff = config_.backoff_min;
  }
  CatchUpTicks();
  raft_->Step(m).IgnoreError();
  Observe();
  ProcessReady();
}

}  // namespace e2d::raft
