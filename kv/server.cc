// Copyright e2d authors.

#include "kv/server.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "env/status_macros.h"

namespace e2d::kv {
namespace {

// Whether an apply error means the engine failed (fail-stop) rather than the request.
// (The CORRUPT alarm's refusal is DataLoss too, but it is an answer, not a failure.)
bool EngineFailure(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInternal ||
         (s.code() == absl::StatusCode::kDataLoss && s.message() != kErrCorrupt);
}

template <typename T, typename Get>
std::function<void(absl::StatusOr<requestpb::Response>)> Unwrap(
    std::function<void(absl::StatusOr<T>)> done, Get get) {
  return [done = std::move(done), get](absl::StatusOr<requestpb::Response> r) {
    if (!r.ok()) return done(r.status());
    done(get(*r));
  };
}

}  // namespace

KvServer::KvServer(env::Env& env, KvEngine* engine, KvServerOptions options,
                   KvServerHooks hooks)
    : env_(env), engine_(engine), options_(std::move(options)), hooks_(std::move(hooks)) {}

absl::StatusOr<std::unique_ptr<KvServer>> KvServer::Open(env::Env& env, KvEngine* engine,
                                                         raft::RaftNodeConfig raft_config,
                                                         KvServerOptions options,
                                                         KvServerHooks hooks) {
  E2D_CHECK(engine != nullptr, "KvServer needs an engine");
  E2D_CHECK(options.pending_max > 0, "pending_max must be positive");
  // As etcd: no lease may be shorter than 1.5 election timeouts (rounded up to seconds), or it
  // could expire while a new leader is being elected.
  const int64_t election_ms =
      raft_config.raft.election_ticks * absl::ToInt64Milliseconds(raft_config.tick);
  options.lease.min_ttl_seconds =
      std::max(options.lease.min_ttl_seconds, (3 * election_ms / 2 + 999) / 1000);
  std::unique_ptr<KvServer> s(new KvServer(env, engine, std::move(options), std::move(hooks)));
  if (absl::Status st = s->OpenState(); !st.ok()) return st;
  s->election_ms_ = election_ms;
  // Ids: a random 64-bit start, then consecutive. Only this server waits on them, and a
  // restarted server waits on none of its earlier ones, so a collision could at worst hand a
  // caller the answer of another request with the same id proposed by another server.
  s->next_id_ = env.random().Next() | 1;

  raft::RaftNodeHooks h = s->hooks_.raft;
  KvServer* self = s.get();
  h.on_apply = [self](const raftpb::Entry& e, const raft::Raft& r) {
    self->Apply(e, r);
    if (self->hooks_.raft.on_apply) self->hooks_.raft.on_apply(e, r);
  };
  h.snapshot_data = nullptr;
  h.snapshot_job = [self] { return self->SnapshotJob(); };
  h.on_restore = [self](const raftpb::SnapshotMetadata& meta, const std::string& data) {
    self->Restore(meta, data);
    if (self->hooks_.raft.on_restore) self->hooks_.raft.on_restore(meta, data);
  };
  h.on_state = [self](const raft::Raft& r) {
    self->OnState(r);
    if (self->hooks_.raft.on_state) self->hooks_.raft.on_state(r);
  };
  absl::StatusOr<std::unique_ptr<raft::RaftNode>> node =
      raft::RaftNode::Open(env, std::move(raft_config), std::move(h));
  if (!node.ok()) return node.status();
  s->node_ = std::move(*node);
  s->next_progress_ = env.clock().Now() + s->options_.progress_notify_interval;
  s->Housekeeping();  // arms the timer
  return s;
}

KvServer::~KvServer() {
  *alive_ = false;
  if (timer_ != 0) env_.clock().Cancel(timer_);
  node_.reset();  // no more applies into the state below
}

absl::Status KvServer::OpenState() {
  hub_.reset();
  applier_.reset();
  lessor_.reset();
  absl::StatusOr<std::unique_ptr<MvccStore>> store = MvccStore::Open(engine_);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  absl::StatusOr<std::unique_ptr<Lessor>> lessor = Lessor::Open(store_.get(), options_.lease);
  if (!lessor.ok()) return lessor.status();
  lessor_ = std::move(*lessor);
  absl::StatusOr<std::unique_ptr<KvApplier>> applier =
      KvApplier::Open(store_.get(), lessor_.get(), options_.limits);
  if (!applier.ok()) return applier.status();
  applier_ = std::move(*applier);
  hub_ = std::make_unique<WatchHub>(store_.get(), options_.watch_events_max,
                                    options_.watchers_max);
  store_->set_on_commit([this](int64_t revision, const std::vector<kvpb::Event>& events) {
    hub_->OnCommit(revision, events);
    if (hooks_.on_commit) hooks_.on_commit(revision, events);
  });
  return absl::OkStatus();
}

// ---- Requests ----

void KvServer::Propose(requestpb::Request request,
                       std::function<void(absl::StatusOr<requestpb::Response>)> done) {
  if (node_->failed() || node_->removed()) {
    ++proposals_refused_;
    return done(absl::UnavailableError(kErrStopped));
  }
  if (pending_.size() >= options_.pending_max) {
    ++proposals_refused_;
    return done(absl::ResourceExhaustedError(kErrTooManyRequests));
  }
  const uint64_t id = next_id_++;
  request.set_id(id);
  std::string data = request.SerializeAsString();
  if (data.size() > options_.limits.request_bytes_max + 1024) {
    ++proposals_refused_;
    return done(absl::InvalidArgumentError("etcdserver: request is too large"));
  }
  pending_[id] = Pending{std::move(done), env_.clock().Now() + options_.request_timeout};
  absl::Status s = node_->Propose(std::move(data));
  if (!s.ok()) {
    // Not in the log: the request did not happen.
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // answered meanwhile (cannot happen; be safe)
    auto cb = std::move(it->second.done);
    pending_.erase(it);
    ++proposals_refused_;
    const bool no_leader = node_->raft().lead() == raft::kNone;
    cb(absl::UnavailableError(no_leader ? std::string(kErrNoLeader)
                                        : absl::StrCat("etcdserver: ", s.message())));
  }
}

void KvServer::Range(const etcdserverpb::RangeRequest& r,
                     Done<etcdserverpb::RangeResponse> done) {
  if (absl::Status s = ValidateRange(r, options_.limits); !s.ok()) return done(s);
  // (The mutation self-test's switch serves every read locally, as a serializable one.)
  if (r.serializable() || options_.mutation_local_reads) return done(applier_->Range(r));
  std::weak_ptr<bool> alive = alive_;
  node_->ReadIndex([this, alive, r, done = std::move(done)](absl::StatusOr<uint64_t> index) {
    if (alive.expired() || !*alive.lock()) return;
    if (!index.ok()) {
      if (index.status().code() == absl::StatusCode::kDeadlineExceeded) {
        return done(absl::DeadlineExceededError(kErrTimeout));
      }
      return done(absl::UnavailableError(absl::StrCat("etcdserver: ", index.status().message())));
    }
    done(applier_->Range(r));
  });
}

void KvServer::Put(const etcdserverpb::PutRequest& r, Done<etcdserverpb::PutResponse> done) {
  if (absl::Status s = ValidatePut(r, options_.limits); !s.ok()) return done(s);
  requestpb::Request req;
  *req.mutable_put() = r;
  Propose(std::move(req), Unwrap<etcdserverpb::PutResponse>(
                              std::move(done),
                              [](const requestpb::Response& x) { return x.put(); }));
}

void KvServer::DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                           Done<etcdserverpb::DeleteRangeResponse> done) {
  if (absl::Status s = ValidateDeleteRange(r, options_.limits); !s.ok()) return done(s);
  requestpb::Request req;
  *req.mutable_delete_range() = r;
  Propose(std::move(req),
          Unwrap<etcdserverpb::DeleteRangeResponse>(
              std::move(done), [](const requestpb::Response& x) { return x.delete_range(); }));
}

void KvServer::Txn(const etcdserverpb::TxnRequest& r, Done<etcdserverpb::TxnResponse> done) {
  if (absl::Status s = ValidateTxn(r, options_.limits); !s.ok()) return done(s);
  requestpb::Request req;
  *req.mutable_txn() = r;
  Propose(std::move(req), Unwrap<etcdserverpb::TxnResponse>(
                              std::move(done),
                              [](const requestpb::Response& x) { return x.txn(); }));
}

void KvServer::Compact(const etcdserverpb::CompactionRequest& r,
                       Done<etcdserverpb::CompactionResponse> done) {
  requestpb::Request req;
  *req.mutable_compaction() = r;
  Propose(std::move(req),
          Unwrap<etcdserverpb::CompactionResponse>(
              std::move(done), [](const requestpb::Response& x) { return x.compaction(); }));
}

void KvServer::LeaseGrant(int64_t id, int64_t ttl_seconds, Done<requestpb::LeaseGrant> done) {
  if (id < 0) return done(absl::InvalidArgumentError("etcdserver: lease id must be positive"));
  if (id == 0) id = static_cast<int64_t>(env_.random().Next() >> 1) | 1;
  requestpb::Request req;
  req.mutable_lease_grant()->set_id(id);
  req.mutable_lease_grant()->set_ttl(ttl_seconds);
  Propose(std::move(req), Unwrap<requestpb::LeaseGrant>(
                              std::move(done),
                              [](const requestpb::Response& x) { return x.lease_grant(); }));
}

void KvServer::LeaseRevoke(int64_t id, Done<requestpb::LeaseRevoke> done) {
  requestpb::Request req;
  req.mutable_lease_revoke()->set_id(id);
  Propose(std::move(req), Unwrap<requestpb::LeaseRevoke>(
                              std::move(done),
                              [](const requestpb::Response& x) { return x.lease_revoke(); }));
}

void KvServer::Alarm(const etcdserverpb::AlarmRequest& r,
                     Done<etcdserverpb::AlarmResponse> done) {
  if (absl::Status s = ValidateAlarm(r); !s.ok()) return done(s);
  requestpb::Request req;
  *req.mutable_alarm() = r;
  Propose(std::move(req), Unwrap<etcdserverpb::AlarmResponse>(
                              std::move(done),
                              [](const requestpb::Response& x) { return x.alarm(); }));
}

void KvServer::LeaseRenew(int64_t id, Done<int64_t> done) {
  if (lessor_->primary()) return done(LeaseKeepAlive(id));
  requestpb::Request req;
  req.mutable_lease_renew()->set_id(id);
  Propose(std::move(req), Unwrap<int64_t>(std::move(done), [](const requestpb::Response& r) {
            return r.lease_renew().ttl();
          }));
}

absl::StatusOr<int64_t> KvServer::LeaseKeepAlive(int64_t id) {
  if (node_->raft().role() != raft::Role::kLeader) {
    return absl::FailedPreconditionError("etcdserver: not a primary lessor");
  }
  return lessor_->Renew(id, NowMs());
}

Lessor::TimeToLive KvServer::LeaseTimeToLive(int64_t id) { return lessor_->Ttl(id, NowMs()); }

absl::StatusOr<int64_t> KvServer::Watch(const WatchRequest& r, WatchHub::Send send) {
  return hub_->Watch(r, std::move(send));
}

// ---- Apply ----

void KvServer::Apply(const raftpb::Entry& e, const raft::Raft& raft) {
  (void)raft;
  if (e.type() != raftpb::ENTRY_NORMAL || e.data().empty()) return;
  if (e.index() <= store_->applied_index()) return;  // in the engine already (replay)
  requestpb::Request r;
  // Entries are ours, written after validation and CRC-checked by the WAL and transport: one
  // that does not parse means the log itself is broken.
  E2D_CHECK(r.ParseFromString(e.data()), "entry %llu does not hold a request",
            static_cast<unsigned long long>(e.index()));
  absl::StatusOr<requestpb::Response> res = ApplyRequest(r, e.index());
  if (!res.ok() && EngineFailure(res.status())) {
    env_.Log(absl::StrCat("kv: engine failed applying index ", e.index(), ": ",
                          res.status().ToString()));
    // Fail-stop, as etcd panics: the store cannot be trusted past this point; the process
    // restarts and recovers from the engine and the WAL.
    E2D_CHECK(false, "kv engine failure at index %llu: %s",
              static_cast<unsigned long long>(e.index()), res.status().ToString().c_str());
  }
  if (r.has_lease_revoke()) revoking_.erase(r.lease_revoke().id());
  if (r.id() == 0) return;
  auto it = pending_.find(r.id());
  if (it == pending_.end()) return;
  auto done = std::move(it->second.done);
  pending_.erase(it);
  ++proposals_applied_;
  done(std::move(res));
}

absl::StatusOr<requestpb::Response> KvServer::ApplyRequest(const requestpb::Request& r,
                                                           uint64_t index) {
  requestpb::Response out;
  switch (r.op_case()) {
    case requestpb::Request::kPut: {
      absl::StatusOr<etcdserverpb::PutResponse> x = applier_->Put(r.put(), index);
      if (!x.ok()) return x.status();
      *out.mutable_put() = std::move(*x);
      break;
    }
    case requestpb::Request::kDeleteRange: {
      absl::StatusOr<etcdserverpb::DeleteRangeResponse> x =
          applier_->DeleteRange(r.delete_range(), index);
      if (!x.ok()) return x.status();
      *out.mutable_delete_range() = std::move(*x);
      break;
    }
    case requestpb::Request::kTxn: {
      absl::StatusOr<etcdserverpb::TxnResponse> x = applier_->Txn(r.txn(), index);
      if (!x.ok()) return x.status();
      *out.mutable_txn() = std::move(*x);
      break;
    }
    case requestpb::Request::kCompaction: {
      absl::StatusOr<etcdserverpb::CompactionResponse> x =
          applier_->Compact(r.compaction(), index);
      if (!x.ok()) return x.status();
      *out.mutable_compaction() = std::move(*x);
      break;
    }
    case requestpb::Request::kLeaseGrant: {
      absl::StatusOr<int64_t> ttl =
          applier_->LeaseGrant(r.lease_grant().id(), r.lease_grant().ttl(), index, NowMs());
      if (!ttl.ok()) return ttl.status();
      out.mutable_lease_grant()->set_id(r.lease_grant().id());
      out.mutable_lease_grant()->set_ttl(*ttl);
      break;
    }
    case requestpb::Request::kLeaseRevoke: {
      if (options_.mutation_revoke_keeps_keys) {  // test-only: the broken rule
        out.mutable_lease_revoke()->set_id(r.lease_revoke().id());
        break;
      }
      if (absl::Status s = applier_->LeaseRevoke(r.lease_revoke().id(), index); !s.ok()) {
        return s;
      }
      out.mutable_lease_revoke()->set_id(r.lease_revoke().id());
      break;
    }
    case requestpb::Request::kAlarm: {
      absl::StatusOr<etcdserverpb::AlarmResponse> x = applier_->Alarm(r.alarm(), index);
      if (!x.ok()) return x.status();
      *out.mutable_alarm() = std::move(*x);
      break;
    }
    case requestpb::Request::kLeaseRenew: {
      // Only the primary lessor (the leader's) tracks deadlines; the replicated state does not
      // change, but the index is applied like any other.
      MvccStore::Txn t = store_->Begin();
      if (absl::Status s = t.Commit(index); !s.ok()) return s;
      const int64_t id = r.lease_renew().id();
      absl::StatusOr<int64_t> ttl = absl::NotFoundError(kErrLeaseNotFoundMsg);
      if (lessor_->primary()) {
        ttl = lessor_->Renew(id, NowMs());
      } else if (lessor_->Exists(id)) {
        ttl = lessor_->Ttl(id, NowMs()).granted_ttl_seconds;
      }
      if (!ttl.ok()) return ttl.status();
      out.mutable_lease_renew()->set_id(id);
      out.mutable_lease_renew()->set_ttl(*ttl);
      break;
    }
    case requestpb::Request::OP_NOT_SET: {
      // Nothing to do, but the index is applied.
      MvccStore::Txn t = store_->Begin();
      if (absl::Status s = t.Commit(index); !s.ok()) return s;
      break;
    }
  }
  out.set_revision(store_->revision());
  return out;
}

// ---- Snapshots ----

std::function<std::string()> KvServer::SnapshotJob() {
  // Durable first: the snapshot lets the WAL drop entries the engine may not have synced.
  absl::Status synced = engine_->Sync();
  E2D_CHECK(synced.ok(), "kv engine sync failed before a snapshot: %s",
            synced.ToString().c_str());
  return [job = BackupJob()] {
    absl::StatusOr<std::string> data = job();
    E2D_CHECK(data.ok(), "kv engine checkpoint failed: %s", data.status().ToString().c_str());
    return *std::move(data);
  };
}

std::function<absl::StatusOr<std::string>()> KvServer::BackupJob() const {
  // The iterator is the point-in-time view (engine.h); it is read wherever the job runs.
  std::shared_ptr<KvIterator> it = engine_->Scan("", "");
  return [it, applied = store_->applied_index()]() -> absl::StatusOr<std::string> {
    requestpb::EngineSnapshot snap;
    snap.set_applied_index(applied);
    for (; it->Valid(); it->Next()) {
      requestpb::EngineSnapshot::Record* rec = snap.add_records();
      rec->set_key(std::string(it->key()));
      rec->set_value(std::string(it->value()));
    }
    if (absl::Status s = it->status(); !s.ok()) return s;
    return snap.SerializeAsString();
  };
}

absl::StatusOr<int64_t> KvServer::Seed(KvEngine* engine, const std::string& snapshot) {
  {
    std::unique_ptr<KvIterator> it = engine->Scan("", "");
    if (it->Valid()) {
      return absl::FailedPreconditionError("kv: a store is seeded only into an empty engine");
    }
    if (absl::Status s = it->status(); !s.ok()) return s;
  }
  requestpb::EngineSnapshot snap;
  if (!snap.ParseFromString(snapshot)) {
    return absl::DataLossError("kv: the store to seed from does not parse");
  }
  WriteBatch batch;
  for (const auto& rec : snap.records()) batch.Put(rec.key(), rec.value());
  MvccStore::ForgetAppliedIndex(&batch);
  E2D_RETURN_IF_ERROR(engine->Write(batch));
  absl::StatusOr<std::unique_ptr<MvccStore>> store = MvccStore::Open(engine);
  if (store.ok()) {
    absl::StatusOr<std::unique_ptr<Lessor>> lessor = Lessor::Open(store->get(), LeaseConfig());
    if (lessor.ok()) {
      E2D_RETURN_IF_ERROR(engine->Sync());
      return (*store)->revision();
    }
    store = lessor.status();
  }
  // Leave the engine empty again.
  WriteBatch undo;
  std::unique_ptr<KvIterator> it = engine->Scan("", "");
  for (; it->Valid(); it->Next()) undo.Delete(it->key());
  E2D_RETURN_IF_ERROR(it->status());
  E2D_RETURN_IF_ERROR(engine->Write(undo));
  return absl::DataLossError(
      absl::StrCat("kv: the store to seed from does not open: ", store.status().message()));
}

void KvServer::Restore(const raftpb::SnapshotMetadata& meta, const std::string& data) {
  // At recovery the engine may already be newer than the snapshot: keep it.
  if (store_->applied_index() >= meta.index()) return;
  requestpb::EngineSnapshot snap;
  // RaftNode checked the snapshot's CRC: data that does not parse is a broken invariant.
  E2D_CHECK(snap.ParseFromString(data), "snapshot at index %llu does not parse",
            static_cast<unsigned long long>(meta.index()));
  WriteBatch batch;
  std::unique_ptr<KvIterator> it = engine_->Scan("", "");
  for (; it->Valid(); it->Next()) batch.Delete(it->key());
  E2D_CHECK(it->status().ok(), "kv engine scan failed: %s", it->status().ToString().c_str());
  for (const auto& rec : snap.records()) batch.Put(rec.key(), rec.value());
  absl::Status s = engine_->Write(batch);
  if (s.ok()) s = engine_->Sync();
  E2D_CHECK(s.ok(), "kv engine failed installing a snapshot: %s", s.ToString().c_str());
  // Every watch on this replica missed what the snapshot skips: cancel them.
  if (hub_ != nullptr) hub_->CancelAll();
  s = OpenState();
  E2D_CHECK(s.ok(), "kv store does not open from a snapshot: %s", s.ToString().c_str());
  if (lessor_ != nullptr && node_ != nullptr && node_->raft().role() == raft::Role::kLeader) {
    lessor_->Promote(NowMs(), election_ms_);
  }
  revoking_.clear();
  env_.Log(absl::StrCat("kv: installed snapshot at index ", meta.index(), ", revision ",
                        store_->revision()));
  if (hooks_.on_install) hooks_.on_install(meta.index(), store_->revision());
}

// ---- Leadership and housekeeping ----

void KvServer::OnState(const raft::Raft& raft) {
  const bool leader = raft.role() == raft::Role::kLeader;
  if (leader && !lessor_->primary()) {
    lessor_->Promote(NowMs(), election_ms_);
  } else if (!leader && lessor_->primary()) {
    lessor_->Demote();
    revoking_.clear();
  }
}

void KvServer::Housekeeping() {
  const env::Instant now = env_.clock().Now();
  // Requests whose answer did not come in time: outcome unknown.
  std::vector<uint64_t> expired;
  for (const auto& [id, p] : pending_) {
    if (p.deadline <= now) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    auto it = pending_.find(id);
    auto done = std::move(it->second.done);
    pending_.erase(it);
    ++timeouts_;
    done(absl::DeadlineExceededError(kErrTimeout));
  }
  hub_->CatchUp();
  if (now >= next_progress_) {
    hub_->NotifyProgress();
    next_progress_ = now + options_.progress_notify_interval;
  }
  if (lessor_->primary() && node_ != nullptr && !node_->failed()) {
    for (int64_t id : lessor_->Expired(NowMs(), options_.revokes_per_round_max)) {
      auto it = revoking_.find(id);
      if (it != revoking_.end() && it->second > now) continue;  // proposed, not applied yet
      revoking_[id] = now + options_.request_timeout;
      requestpb::Request req;
      req.mutable_lease_revoke()->set_id(id);
      node_->Propose(req.SerializeAsString()).IgnoreError();  // retried next round if lost
    }
  }
  std::weak_ptr<bool> alive = alive_;
  timer_ = env_.clock().After(options_.housekeeping, [this, alive] {
    if (alive.expired() || !*alive.lock()) return;
    timer_ = 0;
    Housekeeping();
  });
}

}  // namespace e2d::kv
