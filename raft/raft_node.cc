// Copyright e2d authors.

#include "raft/raft_node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "env/crc32c.h"

namespace e2d::raft {
namespace {

constexpr char kChunk[] = "chunk";
constexpr char kChunkAck[] = "chunk-ack";

}  // namespace

absl::StatusOr<std::unique_ptr<RaftNode>> RaftNode::Open(env::Env& env, RaftNodeConfig config,
                                                         RaftNodeHooks hooks) {
  WalContents contents;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(env.fs(), config.wal, &contents);
  if (!wal.ok()) return wal.status();
  auto store = std::make_unique<SnapshotStore>(env.fs(), config.snapshot_dir,
                                                config.snapshot_bytes_max);
  if (absl::Status s = store->Open(); !s.ok()) return s;
  DurableState state;
  if (contents.hard_state) state.hard_state = *contents.hard_state;
  std::optional<StoredSnapshot> snapshot;
  if (contents.snapshot && contents.snapshot->index > 0) {
    absl::StatusOr<StoredSnapshot> loaded =
        store->Load(contents.snapshot->index, contents.snapshot->term);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("raft node: the snapshot the WAL names (index ",
                                       contents.snapshot->index, ", term ",
                                       contents.snapshot->term, "): ", loaded.status().message()));
    }
    state.snapshot_index = loaded->metadata.index();
    state.snapshot_term = loaded->metadata.term();
    state.conf_state = loaded->metadata.conf_state();
    if (hooks.on_restore) hooks.on_restore(loaded->metadata, loaded->data);
    snapshot = std::move(*loaded);
  }
  for (raftpb::Entry& e : contents.entries) {
    if (e.index() > state.snapshot_index) state.entries.push_back(std::move(e));
  }
  if (contents.torn_bytes_cut > 0) {
    env.Log(absl::StrCat("wal: cut a torn tail of ", contents.torn_bytes_cut, " bytes"));
  }
  config.raft.random_seed = env.random().Next();
  absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config.raft, std::move(state));
  if (!raft.ok()) return raft.status();
  std::unique_ptr<RaftNode> node(new RaftNode(env, std::move(config), std::move(hooks),
                                              std::move(*wal), std::move(*raft), std::move(store),
                                              std::move(snapshot)));
  node->Start();
  return node;
}

RaftNode::RaftNode(env::Env& env, RaftNodeConfig config, RaftNodeHooks hooks,
                   std::unique_ptr<Wal> wal, std::unique_ptr<Raft> raft,
                   std::unique_ptr<SnapshotStore> store, std::optional<StoredSnapshot> snapshot)
    : env_(env),
      config_(std::move(config)),
      hooks_(std::move(hooks)),
      wal_(std::move(wal)),
      raft_(std::move(raft)),
      store_(std::move(store)),
      snapshot_(std::move(snapshot)),
      addresses_(config_.peers),
      cluster_id_(config_.cluster_id) {
  if (snapshot_) sm_applied_ = snapshot_->metadata.index();
}

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
    // The state machine's index, not the core's: the core counts a snapshot as applied as soon
    // as it accepts it, long before the state machine has it (the install must persist first).
    if (it->second.index && *it->second.index <= sm_applied_) {
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
    if (ready.entries.empty() && !ready.hard_state && !ready.snapshot) {
      CompleteReady(std::move(ready), absl::OkStatus());
      continue;
    }
    if (ready.snapshot) {  // installed from the leader: its data is durable, now the marker
      absl::Status s = wal_->AppendSnapshotMarker({ready.snapshot->index(), ready.snapshot->term()});
      if (!s.ok()) return Fail(s);
    }
    const raftpb::HardState* hs = ready.hard_state ? &*ready.hard_state : nullptr;
    if (absl::Status s = wal_->Append(ready.entries, hs); !s.ok()) return Fail(s);
    ++wal_syncs_;
    std::shared_ptr<bool> alive = alive_;
    auto shared = std::make_shared<Ready>(std::move(ready));
    const env::Instant sync_started = env_.clock().Now();
    wal_->Sync([this, alive, shared, sync_started](absl::Status s) {
      if (!*alive) return;
      if (hooks_.on_wal_synced) hooks_.on_wal_synced(env_.clock().Now() - sync_started);
      CompleteReady(std::move(*shared), s);
      ProcessReady();
    });
    return;
  }
}

void RaftNode::CompleteReady(Ready ready, absl::Status persisted) {
  if (!persisted.ok()) return Fail(persisted);
  if (ready.snapshot) {
    auto it = installing_.find(ready.snapshot->index());
    E2D_CHECK(it != installing_.end(), "installed snapshot %llu without its data",
              static_cast<unsigned long long>(ready.snapshot->index()));
    snapshot_ = std::move(it->second);
    snapshot_crc_.reset();
    installing_.erase(installing_.begin(), std::next(it));  // and any older ones it overtook
    ++snapshots_installed_;
    env_.Log(absl::StrCat("raft node: installed snapshot ", ready.snapshot->index(), " (term ",
                          ready.snapshot->term(), ") from the leader"));
    if (hooks_.on_restore) hooks_.on_restore(*ready.snapshot, snapshot_->data);
    sm_applied_ = ready.snapshot->index();
    AfterSnapshotDurable(ready.snapshot->index(), ready.snapshot->term());
  }
  SendAll(ready.messages_after_persist);
  const env::Instant apply_started = env_.clock().Now();
  for (const raftpb::Entry& e : ready.committed_entries) {
    if (e.type() == raftpb::ENTRY_CONF_CHANGE) LearnAddresses(e);
    if (e.index() <= sm_applied_) continue;  // covered by a snapshot installed meanwhile
    if (hooks_.on_apply) hooks_.on_apply(e, *raft_);
    sm_applied_ = e.index();
  }
  if (hooks_.on_applied && !ready.committed_entries.empty()) {
    hooks_.on_applied(ready.committed_entries.size(), env_.clock().Now() - apply_started);
  }
  raft_->Advance(ready);
  ready_in_progress_ = false;
  Observe();
  AnswerReads(ready.read_states);
  MaybeSaveSnapshot();
  const bool member = raft_->membership().IsMember(raft_->id());
  was_member_ = was_member_ || member;
  if (was_member_ && !member && raft_->role() != Role::kLeader && !removed_) {
    removed_ = true;
    env_.Log("raft node: removed from the cluster; staying passive");
    FailReads(absl::FailedPreconditionError("raft node was removed"));
    if (hooks_.on_removed) hooks_.on_removed();
  }
}

// A leader that is current (it has committed an entry of its term and applied everything it
// knows committed, so its membership holds every change committed before its term and in it)
// tells a node outside that membership that it is not a member, at most once a second each.
void RaftNode::MaybeTellNotMember(const raftpb::Message& m) { TellNotMember(m.from()); }

void RaftNode::TellNotMember(uint64_t id) {
  const Raft& r = *raft_;
  if (id == kNone || id == r.id() || r.role() != Role::kLeader || r.membership().IsMember(id) ||
      r.log().TermOr0(r.log().committed()) != r.term() || r.log().applied() < r.log().committed()) {
    return;
  }
  const env::Instant now = env_.clock().Now();
  auto [it, fresh] = told_not_member_.try_emplace(id, now);
  if (!fresh && now - it->second < absl::Seconds(1)) return;
  it->second = now;
  if (told_not_member_.size() > kMembersMax * 2) told_not_member_.erase(told_not_member_.begin());
  raftpb::Message out;
  out.set_type(raftpb::MSG_NOT_MEMBER);
  out.set_from(r.id());
  out.set_to(id);
  out.set_term(r.term());
  if (!Deliver(out)) ++messages_dropped_;
}

// A node that was a member, told by a leader of its term or a later one that it is not: it
// was removed while it could not hear of it (a removal is never sent to the removed node).
void RaftNode::OnNotMember(const raftpb::Message& m) {
  const Raft& r = *raft_;
  if (removed_ || !was_member_ || m.term() < r.term() || r.role() == Role::kLeader) return;
  removed_ = true;
  env_.Log(absl::StrCat("raft node: leader ", absl::Hex(m.from()), " of term ", m.term(),
                        " says this node is not a member: removed; staying passive"));
  FailReads(absl::FailedPreconditionError("raft node was removed"));
  if (hooks_.on_removed) hooks_.on_removed();
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

bool RaftNode::LearnAddress(uint64_t id, const env::Address& address) {
  if (id == raft_->id() || id == kNone || address.empty() || addresses_.contains(id) ||
      addresses_.size() >= kMembersMax * 2) {
    return false;
  }
  addresses_.emplace(id, address);
  return true;
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
  if (m.type() == raftpb::MSG_SNAP && m.context().empty()) return StartTransfer(m);
  raftpb::Message stamped = m;
  if (!Deliver(stamped)) ++messages_dropped_;  // Raft retries by itself (heartbeats, probes, ...)
}

bool RaftNode::Deliver(raftpb::Message& m) {
  m.set_cluster_id(cluster_id_);
  Outbound* out = OutboundFor(m.to());
  return out != nullptr && out->stream != nullptr && out->stream->Send(m.SerializeAsString()).ok();
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
                            if (transfers_.contains(peer)) AbortTransfer(peer);
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
  if (cluster_id_ == 0 && m.cluster_id() != 0) {
    cluster_id_ = m.cluster_id();
    env_.Log(absl::StrCat("raft node: joined cluster ", absl::Hex(cluster_id_), " (heard from ",
                          absl::Hex(m.from()), ")"));
    if (hooks_.on_cluster_id) hooks_.on_cluster_id(cluster_id_);
  } else if (m.cluster_id() != cluster_id_) {
    // A member of another cluster at an address this cluster knows: never step it.
    if (foreign_messages_++ % 1000 == 0) {
      env_.Log(absl::StrCat("raft node: dropping a message from cluster ",
                            absl::Hex(m.cluster_id()), " (this is ", absl::Hex(cluster_id_),
                            "), sender ", absl::Hex(m.from())));
    }
    return;
  }
  // Hearing from the peer proves the path works: reconnect quickly next time it breaks.
  if (auto it = outbound_.find(m.from()); it != outbound_.end()) {
    it->second.backoff = config_.backoff_min;
  }
  if (m.type() == raftpb::MSG_NOT_MEMBER) return OnNotMember(m);
  MaybeTellNotMember(m);
  // Snapshot transfers are the drivers' business; the core only ever sees a whole snapshot,
  // stepped in by OnChunk once its data is durable.
  if (m.type() == raftpb::MSG_SNAP || m.type() == raftpb::MSG_SNAP_STATUS) {
    CatchUpTicks();
    if (m.type() == raftpb::MSG_SNAP && m.context() == kChunk) {
      OnChunk(m);
    } else if (m.type() == raftpb::MSG_SNAP_STATUS && m.context() == kChunkAck) {
      OnChunkAck(m);
    } else {
      ++messages_dropped_;
    }
    Observe();
    ProcessReady();
    return;
  }
  CatchUpTicks();
  raft_->Step(m).IgnoreError();
  Observe();
  ProcessReady();
}

// ---- Snapshots ---------------------------------------------------------------------------------

void RaftNode::MaybeSaveSnapshot() {
  const bool seeded_first = config_.seeded && raft_->snapshot().index() == 0;
  const uint64_t every = seeded_first ? 1 : config_.snapshot_entries;
  if (every == 0 || snapshot_saving_ || failed_ ||
      (!hooks_.snapshot_data && !hooks_.snapshot_job)) {
    return;
  }
  // The state machine must be exactly at the core's applied index (not behind an install that
  // is still persisting), or the data would not match the metadata.
  if (!installing_.empty() || sm_applied_ != raft_->log().applied()) return;
  const uint64_t from = std::max(raft_->snapshot().index(), snapshot_retry_from_);
  if (raft_->log().applied() < from + every) return;
  const raftpb::SnapshotMetadata meta = raft_->SnapshotMetadataNow();
  snapshot_saving_ = true;
  auto data = std::make_shared<std::string>();
  if (hooks_.snapshot_job) {
    // The view is taken now, at the applied index `meta` names; serializing it runs off the
    // node's thread while the node goes on applying.
    auto job = std::make_shared<std::function<std::string()>>(hooks_.snapshot_job());
    absl::Status offloaded = env_.Offload(
        [job, data] {
          *data = (*job)();
          *job = nullptr;  // the view is released where it was read
        },
        [this, alive = alive_, meta, data] {
          if (*alive) SaveSnapshot(meta, data);
        });
    if (offloaded.ok()) return;
    // The worker is busy with other jobs: build it here rather than not at all.
    *data = (*job)();
    *job = nullptr;
    return SaveSnapshot(meta, data);
  }
  *data = hooks_.snapshot_data();
  SaveSnapshot(meta, data);
}

void RaftNode::SaveSnapshot(const raftpb::SnapshotMetadata& meta,
                            std::shared_ptr<std::string> data) {
  if (failed_) {
    snapshot_saving_ = false;
    return;
  }
  std::shared_ptr<bool> alive = alive_;
  store_->Save(meta, *data, [this, alive, meta, data](absl::Status s) {
    if (!*alive) return;
    if (!s.ok()) {
      // Not fatal: nothing refers to the file yet. Try again snapshot_entries entries later
      // (a full disk may have room by then; the WAL's own errors are what stop the node).
      env_.Log(absl::StrCat("raft node: saving snapshot ", meta.index(), " failed: ",
                            s.ToString()));
      snapshot_retry_from_ = meta.index();
      snapshot_saving_ = false;
      return;
    }
    if (absl::Status c = raft_->Compact(meta); !c.ok()) {
      // Overtaken, e.g. by a snapshot installed from the leader meanwhile.
      env_.Log(absl::StrCat("raft node: snapshot not used: ", c.message()));
      snapshot_saving_ = false;
      return;
    }
    ++snapshots_saved_;
    snapshot_ = StoredSnapshot{meta, std::move(*data)};
    snapshot_crc_.reset();
    if (absl::Status m = wal_->AppendSnapshotMarker({meta.index(), meta.term()}); !m.ok()) {
      return Fail(m);
    }
    wal_->Sync([this, alive, meta](absl::Status s) {
      if (!*alive) return;
      if (!s.ok()) return Fail(s);
      AfterSnapshotDurable(meta.index(), meta.term());
      snapshot_saving_ = false;
    });
  });
}

// The WAL's marker for snapshot `index` is durable: older segments and snapshots can go.
void RaftNode::AfterSnapshotDurable(uint64_t index, uint64_t term) {
  if (absl::Status s = wal_->ReleaseTo(index); !s.ok()) return Fail(s);
  if (absl::Status s = store_->RemoveBelow(index); !s.ok()) {
    env_.Log(absl::StrCat("raft node: removing old snapshots: ", s.ToString()));
  }
}

void RaftNode::StartTransfer(const raftpb::Message& m) {
  const uint64_t peer = m.to();
  if (!snapshot_ || snapshot_->metadata.index() != m.snapshot().metadata().index()) {
    raft_->ReportSnapshotFailure(peer);  // cannot happen: the core offers what we saved
    return;
  }
  transfers_[peer] = Transfer{snapshot_->metadata, 0, 0};
  SendChunks(peer);
}

void RaftNode::SendChunks(uint64_t peer) {
  auto it = transfers_.find(peer);
  if (it == transfers_.end()) return;
  Transfer& t = it->second;
  if (!snapshot_ || snapshot_->metadata.index() != t.meta.index()) return AbortTransfer(peer);
  const std::string& data = snapshot_->data;
  const uint64_t window = config_.snapshot_chunk_bytes * config_.snapshot_chunks_in_flight;
  if (!snapshot_crc_.has_value()) snapshot_crc_ = env::Crc32c(data);  // once per snapshot
  const uint32_t crc = *snapshot_crc_;
  do {
    if (t.next > t.acked && t.next - t.acked >= window) break;
    if (t.next > 0 && t.next >= data.size()) break;
    const uint64_t len = std::min<uint64_t>(config_.snapshot_chunk_bytes, data.size() - t.next);
    raftpb::Message chunk;
    chunk.set_type(raftpb::MSG_SNAP);
    chunk.set_to(peer);
    chunk.set_from(raft_->id());
    chunk.set_term(raft_->term());
    chunk.set_context(kChunk);
    *chunk.mutable_snapshot()->mutable_metadata() = t.meta;
    chunk.mutable_snapshot()->set_data(data.substr(t.next, len));
    chunk.set_index(t.next);
    chunk.set_commit(data.size());
    chunk.set_reject_hint(crc);
    if (!Deliver(chunk)) return AbortTransfer(peer);
    ++snapshot_chunks_sent_;
    t.next += len;
  } while (t.next < data.size());
}

void RaftNode::AbortTransfer(uint64_t peer) {
  transfers_.erase(peer);
  raft_->ReportSnapshotFailure(peer);
}

void RaftNode::OnChunkAck(const raftpb::Message& m) {
  auto it = transfers_.find(m.from());
  if (it == transfers_.end()) return;
  Transfer& t = it->second;
  if (m.index() != t.meta.index() || m.log_term() != t.meta.term()) return;  // an older transfer's
  if (m.reject()) return AbortTransfer(m.from());
  t.acked = std::max(t.acked, m.commit());
  t.next = std::max(t.next, t.acked);
  if (snapshot_ && t.acked >= snapshot_->data.size()) {
    transfers_.erase(it);  // delivered; the follower's core acknowledges it to ours
    return;
  }
  SendChunks(m.from());
}

void RaftNode::AckChunk(uint64_t to, const raftpb::SnapshotMetadata& meta, uint64_t next,
                        bool reject) {
  raftpb::Message ack;
  ack.set_type(raftpb::MSG_SNAP_STATUS);
  ack.set_to(to);
  ack.set_from(raft_->id());
  ack.set_term(raft_->term());
  ack.set_context(kChunkAck);
  ack.set_index(meta.index());
  ack.set_log_term(meta.term());
  ack.set_commit(next);
  ack.set_reject(reject);
  if (!Deliver(ack)) ++messages_dropped_;
}

// Received snapshots waiting for the Ready that installs them to be durable.
constexpr size_t kInstallsInFlightMax = 4;

void RaftNode::OnChunk(const raftpb::Message& m) {
  const raftpb::SnapshotMetadata& meta = m.snapshot().metadata();
  const uint64_t total = m.commit();
  if (m.term() < raft_->term()) return;  // from a deposed leader
  if (meta.index() <= raft_->log().committed()) {
    // Not needed: let the core say so (it answers with its commit index), and stop the sender.
    raftpb::Message snap;
    snap.set_type(raftpb::MSG_SNAP);
    snap.set_from(m.from());
    snap.set_to(raft_->id());
    snap.set_term(m.term());
    *snap.mutable_snapshot()->mutable_metadata() = meta;
    raft_->Step(snap).IgnoreError();
    return AckChunk(m.from(), meta, total, false);
  }
  if (total > config_.snapshot_bytes_max) return AckChunk(m.from(), meta, 0, true);
  const uint32_t crc = static_cast<uint32_t>(m.reject_hint());
  if (!receive_ || receive_->meta.index() != meta.index() ||
      receive_->meta.term() != meta.term() || receive_->total != total || receive_->crc != crc) {
    if (receive_ && receive_->saving) return;  // one at a time
    receive_ = Receive{meta, total, crc, "", false};
  }
  Receive& r = *receive_;
  if (r.saving) return;
  const std::string& chunk = m.snapshot().data();
  const uint64_t offset = m.index();
  if (offset <= r.data.size() && offset + chunk.size() > r.data.size()) {
    r.data.append(chunk, r.data.size() - offset, std::string::npos);
  }
  if (r.data.size() > total) {
    receive_.reset();
    return AckChunk(m.from(), meta, 0, true);
  }
  if (r.data.size() < total) return AckChunk(m.from(), meta, r.data.size(), false);
  if (env::Crc32c(r.data) != r.crc) {
    env_.Log(absl::StrCat("raft node: snapshot ", meta.index(), " from n", m.from(),
                          " fails its checksum; refused"));
    receive_.reset();
    return AckChunk(m.from(), meta, 0, true);
  }
  r.saving = true;
  std::shared_ptr<bool> alive = alive_;
  const uint64_t leader = m.from();
  const uint64_t term = m.term();
  store_->Save(meta, r.data, [this, alive, leader, term](absl::Status s) {
    if (!*alive) return;
    if (!s.ok()) {  // refuse it: the leader will offer it again later
      env_.Log(absl::StrCat("raft node: saving a snapshot from n", leader, " failed: ",
                            s.ToString()));
      const Receive failed = std::move(*receive_);
      receive_.reset();
      return AckChunk(leader, failed.meta, 0, true);
    }
    Receive done = std::move(*receive_);
    receive_.reset();
    raftpb::Message snap;
    snap.set_type(raftpb::MSG_SNAP);
    snap.set_from(leader);
    snap.set_to(raft_->id());
    snap.set_term(term);
    *snap.mutable_snapshot()->mutable_metadata() = done.meta;
    // Kept aside until the Ready that installs it is durable: an earlier install may still be
    // persisting, and snapshot_ is what this node offers others meanwhile.
    const uint64_t index = done.meta.index();
    if (installing_.size() >= kInstallsInFlightMax) {  // the disk is far behind: later
      return AckChunk(leader, done.meta, 0, true);
    }
    installing_[index] = StoredSnapshot{done.meta, std::move(done.data)};
    CatchUpTicks();
    raft_->Step(snap).IgnoreError();
    if (raft_->snapshot().index() != index) installing_.erase(index);  // the core declined
    Observe();
    AckChunk(leader, done.meta, done.total, false);
    ProcessReady();
  });
}

}  // namespace e2d::raft
