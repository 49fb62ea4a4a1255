// Copyright e2d authors.

#include "node/runtime/etcd_service.h"

#include <openssl/sha.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "node/runtime/asio_env.h"

namespace e2d::node {

namespace asio = boost::asio;
namespace pb = ::etcdserverpb;

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  std::string message(s.message());
  // The store's own errors lack the prefix etcd's server adds.
  if (absl::StartsWith(message, "mvcc: ")) message = "etcdserver: " + message;
  grpc::StatusCode code = static_cast<grpc::StatusCode>(static_cast<int>(s.code()));
  // etcd's request timeouts are Unavailable (a client may retry a read), not DeadlineExceeded.
  if (s.code() == absl::StatusCode::kDeadlineExceeded && absl::StartsWith(message, "etcdserver:")) {
    code = grpc::StatusCode::UNAVAILABLE;
  }
  return grpc::Status(code, message);
}

namespace {

bool WantsLeader(const grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("hasleader");
  return it != md.end() && std::string(it->second.data(), it->second.size()) == "true";
}

}  // namespace

// Shared by the services and the calls in flight; `node` is touched only on the io thread.
class EtcdService::Impl {
 public:
  Impl(asio::io_context& io, Node* node) : io(io), node(node) {}

  // Runs `fn` on the io thread and finishes the call with what it reports. `fn` gets a `done`
  // it must call exactly once.
  template <typename Resp, typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, Resp* resp, Fn fn) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    const bool wants_leader = WantsLeader(ctx);
    asio::post(io, [this, reactor, resp, wants_leader, fn = std::move(fn)]() mutable {
      if (wants_leader && node->Status().leader == 0) {
        reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"));
        return;
      }
      fn([this, reactor, resp](absl::StatusOr<Resp> r) {
        if (!r.ok()) return reactor->Finish(ToGrpcStatus(r.status()));
        *resp = std::move(*r);
        FillHeader(resp->mutable_header());
        reactor->Finish(grpc::Status::OK);
      });
    });
    return reactor;
  }

  // Keeps a revision already set (the one a write produced).
  void FillHeader(pb::ResponseHeader* h) const {
    pb::ResponseHeader now = node->Header();
    if (h->revision() != 0) now.set_revision(h->revision());
    *h = now;
  }

  asio::io_context& io;
  Node* const node;
};

namespace {

using Impl = EtcdService::Impl;
template <typename T>
using Done = std::function<void(absl::StatusOr<T>)>;

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, grpc::StatusCode code,
                                 const std::string& message) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status(code, message));
  return reactor;
}

// ---------------------------------------------------------------------------------------------
// Streams: a bidi reactor whose writes are queued from the io thread and drained by gRPC.

template <typename Req, typename Resp>
class BidiStream : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  BidiStream(std::shared_ptr<Impl> impl, bool wants_leader)
      : impl_(std::move(impl)), wants_leader_(wants_leader) {}

  void Begin() { this->StartRead(&request_); }

  // From the io thread: queue one response (or end the stream if the client is too slow).
  void Send(Resp r) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (finished_) return;
    if (queue_.size() >= kStreamResponsesMax) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: stream is too slow"));
      return;
    }
    queue_.push_back(std::move(r));
    if (!writing_) WriteLocked();
  }

  void End(grpc::Status status) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    FinishLocked(std::move(status));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed or went away
      std::lock_guard<std::recursive_mutex> lock(mu_);
      reading_done_ = true;
      if (queue_.empty() && !writing_) FinishLocked(grpc::Status::OK);
      return;
    }
    Req req = request_;
    std::shared_ptr<Impl> impl = impl_;
    asio::post(impl->io, [this, req = std::move(req)] {
      if (wants_leader_ && impl_->node->Status().leader == 0) {
        return End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"));
      }
      Handle(req);
      {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        if (finished_) return;
      }
      this->StartRead(&request_);
    });
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    writing_ = false;
    if (finished_) return;  // ended while this write was out: no write may follow Finish
    if (!ok) return FinishLocked(grpc::Status::CANCELLED);
    queue_.pop_front();
    if (!queue_.empty()) return WriteLocked();
    if (reading_done_) FinishLocked(grpc::Status::OK);
  }

  void OnDone() override {
    // gRPC is done with this reactor. Work posted for it may still be queued on the io
    // thread, so the release happens there, after that work.
    asio::post(impl_->io, [this] {
      Release();
      delete this;
    });
  }

 protected:
  // On the io thread, for each request read.
  virtual void Handle(const Req& req) = 0;
  // On the io thread, once, after the stream ended.
  virtual void Release() {}
  Impl& impl() { return *impl_; }

 private:
  void WriteLocked() {
    writing_ = true;
    this->StartWrite(&queue_.front());
  }
  void FinishLocked(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    this->Finish(std::move(status));
  }

  std::shared_ptr<Impl> impl_;
  const bool wants_leader_;
  Req request_;
  std::recursive_mutex mu_;  // gRPC may run a reaction inline, inside StartWrite
  std::deque<Resp> queue_;  // the front is being written while writing_
  bool writing_ = false;
  bool reading_done_ = false;
  bool finished_ = false;
};

class WatchStream final : public BidiStream<pb::WatchRequest, pb::WatchResponse> {
 public:
  using BidiStream::BidiStream;

 protected:
  void Handle(const pb::WatchRequest& req) override {
    if (req.has_create_request()) return Create(req.create_request());
    if (req.has_cancel_request()) {
      const int64_t id = req.cancel_request().watch_id();
      if (!watches_.contains(id)) return;  // not ours: etcd ignores it too
      impl().node->kv().CancelWatch(id);  // the hub reports {canceled} through Forward
      return;
    }
    if (req.has_progress_request()) {
      pb::WatchResponse r;
      impl().FillHeader(r.mutable_header());
      r.set_watch_id(-1);
      Send(std::move(r));
    }
  }

  void Release() override {
    // Cancelling a watch may report it (Forward), which erases from watches_: iterate a copy.
    const absl::btree_set<int64_t> ids = std::move(watches_);
    watches_.clear();
    for (int64_t id : ids) impl().node->kv().CancelWatch(id);
  }

 private:
  void Create(const pb::WatchCreateRequest& c) {
    kv::WatchRequest w;
    w.key = c.key();
    w.range_end = c.range_end();
    w.start_revision = c.start_revision();
    w.prev_kv = c.prev_kv();
    w.progress_notify = c.progress_notify();
    for (int f : c.filters()) {
      if (f == pb::WatchCreateRequest::NOPUT) w.no_put = true;
      if (f == pb::WatchCreateRequest::NODELETE) w.no_delete = true;
    }
    absl::StatusOr<int64_t> id = absl::ResourceExhaustedError(
        absl::StrCat("etcdserver: more than ", kWatchesPerStreamMax, " watches on one stream"));
    if (watches_.size() < kWatchesPerStreamMax) {
      id = impl().node->kv().Watch(w, [this](const kv::WatchResponse& r) { Forward(r); });
    }
    if (!id.ok()) {
      pb::WatchResponse r;
      impl().FillHeader(r.mutable_header());
      r.set_watch_id(-1);
      r.set_created(true);
      r.set_canceled(true);
      r.set_cancel_reason(ToGrpcStatus(id.status()).error_message());
      return Send(std::move(r));
    }
    watches_.insert(*id);
  }

  void Forward(const kv::WatchResponse& w) {
    pb::WatchResponse r;
    impl().FillHeader(r.mutable_header());
    if (w.revision != 0) r.mutable_header()->set_revision(w.revision);
    r.set_watch_id(w.watch_id);
    r.set_created(w.created);
    r.set_canceled(w.canceled || w.compacted);
    r.set_fragment(w.fragment);
    if (w.compacted) {
      r.set_compact_revision(w.compact_revision);
      r.set_cancel_reason("etcdserver: mvcc: required revision has been compacted");
    }
    for (const kvpb::Event& e : w.events) *r.add_events() = e;
    if (r.canceled()) watches_.erase(w.watch_id);
    Send(std::move(r));
  }

  absl::btree_set<int64_t> watches_;
};

class KeepAliveStream final
    : public BidiStream<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse> {
 public:
  using BidiStream::BidiStream;

 protected:
  void Handle(const pb::LeaseKeepAliveRequest& req) override {
    // Any member answers: a follower renews through the log (KvServer::LeaseRenew).
    const int64_t id = req.id();
    impl().node->kv().LeaseRenew(id, [this, alive = alive_, id](absl::StatusOr<int64_t> ttl) {
      if (!*alive) return;
      pb::LeaseKeepAliveResponse r;
      impl().FillHeader(r.mutable_header());
      r.set_id(id);
      if (ttl.ok()) {
        r.set_ttl(*ttl);
      } else if (ttl.status().code() == absl::StatusCode::kNotFound) {
        r.set_ttl(0);  // etcd: the client reads TTL <= 0 as "lease not found"
      } else {
        return End(ToGrpcStatus(ttl.status()));
      }
      Send(std::move(r));
    });
  }

  void Release() override { *alive_ = false; }

 private:
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Maintenance.Snapshot as etcd's clients read it: the data padded to a multiple of 512 bytes in
// chunks with remaining_bytes, then one last message holding the SHA-256 of everything before
// (etcdctl snapshot save checks that the total size is 32 past a multiple of 512).
class SnapshotStream final : public grpc::ServerWriteReactor<pb::SnapshotResponse> {
 public:
  static constexpr size_t kChunkBytes = 32 << 10;

  // Once, from any thread.
  void Start(absl::StatusOr<std::string> data) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (!data.ok()) return Finish(ToGrpcStatus(data.status()));
    data_ = *std::move(data);
    data_.resize((data_.size() + 511) / 512 * 512, '\0');
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data_.data()), data_.size(), digest);
    digest_.assign(reinterpret_cast<const char*>(digest), sizeof(digest));
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (!ok) return Finish(grpc::Status::CANCELLED);
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (sent_ < data_.size()) {
      const size_t n = std::min(kChunkBytes, data_.size() - sent_);
      message_.Clear();
      message_.set_blob(data_.substr(sent_, n));
      sent_ += n;
      message_.set_remaining_bytes(data_.size() - sent_);
      return StartWrite(&message_);
    }
    if (!digest_sent_) {
      digest_sent_ = true;
      message_.Clear();
      message_.set_blob(digest_);
      return StartWrite(&message_);
    }
    Finish(grpc::Status::OK);
  }

  std::recursive_mutex mu_;
  std::string data_;
  std::string digest_;
  size_t sent_ = 0;
  bool digest_sent_ = false;
  pb::SnapshotResponse message_;
};

// ---------------------------------------------------------------------------------------------
// Services

class KvService final : public pb::KV::CallbackService {
 public:
  explicit KvService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx, const pb::RangeRequest* req,
                                  pb::RangeResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::RangeResponse> done) {
      impl_->node->kv().Range(*req, std::move(done));
    });
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const pb::PutRequest* req,
                                pb::PutResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::PutResponse> done) {
      impl_->node->kv().Put(*req, std::move(done));
    });
  }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* ctx,
                                        const pb::DeleteRangeRequest* req,
                                        pb::DeleteRangeResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::DeleteRangeResponse> done) {
      impl_->node->kv().DeleteRange(*req, std::move(done));
    });
  }
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx, const pb::TxnRequest* req,
                                pb::TxnResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::TxnResponse> done) {
      impl_->node->kv().Txn(*req, std::move(done));
    });
  }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* ctx,
                                    const pb::CompactionRequest* req,
                                    pb::CompactionResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::CompactionResponse> done) {
      impl_->node->kv().Compact(*req, std::move(done));
    });
  }

 private:
  std::shared_ptr<Impl> impl_;
};

class WatchService final : public pb::Watch::CallbackService {
 public:
  explicit WatchService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  grpc::ServerBidiReactor<pb::WatchRequest, pb::WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx) override {
    auto* s = new WatchStream(impl_, WantsLeader(ctx));
    s->Begin();
    return s;
  }

 private:
  std::shared_ptr<Impl> impl_;
};

class LeaseService final : public pb::Lease::CallbackService {
 public:
  explicit LeaseService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext* ctx,
                                       const pb::LeaseGrantRequest* req,
                                       pb::LeaseGrantResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::LeaseGrantResponse> done) {
      impl_->node->kv().LeaseGrant(
          req->id(), req->ttl(),
          [done = std::move(done)](absl::StatusOr<e2d::requestpb::LeaseGrant> g) {
            if (!g.ok()) return done(g.status());
            pb::LeaseGrantResponse r;
            r.set_id(g->id());
            r.set_ttl(g->ttl());
            done(std::move(r));
          });
    });
  }
  grpc::ServerUnaryReactor* LeaseRevoke(grpc::CallbackServerContext* ctx,
                                        const pb::LeaseRevokeRequest* req,
                                        pb::LeaseRevokeResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::LeaseRevokeResponse> done) {
      impl_->node->kv().LeaseRevoke(
          req->id(), [done = std::move(done)](absl::StatusOr<e2d::requestpb::LeaseRevoke> g) {
            if (!g.ok()) return done(g.status());
            done(pb::LeaseRevokeResponse());
          });
    });
  }
  grpc::ServerBidiReactor<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>* LeaseKeepAlive(
      grpc::CallbackServerContext* ctx) override {
    auto* s = new KeepAliveStream(impl_, WantsLeader(ctx));
    s->Begin();
    return s;
  }
  grpc::ServerUnaryReactor* LeaseTimeToLive(grpc::CallbackServerContext* ctx,
                                            const pb::LeaseTimeToLiveRequest* req,
                                            pb::LeaseTimeToLiveResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::LeaseTimeToLiveResponse> done) {
      const kv::Lessor::TimeToLive t = impl_->node->kv().LeaseTimeToLive(req->id());
      pb::LeaseTimeToLiveResponse r;
      r.set_id(req->id());
      r.set_ttl(t.ttl_seconds);
      r.set_grantedttl(t.granted_ttl_seconds);
      if (req->keys()) {
        for (const std::string& k : t.keys) r.add_keys(k);
      }
      done(std::move(r));
    });
  }
  grpc::ServerUnaryReactor* LeaseLeases(grpc::CallbackServerContext* ctx,
                                        const pb::LeaseLeasesRequest*,
                                        pb::LeaseLeasesResponse* resp) override {
    return impl_->Unary(ctx, resp, [this](Done<pb::LeaseLeasesResponse> done) {
      pb::LeaseLeasesResponse r;
      for (int64_t id : impl_->node->kv().LeaseList()) r.add_leases()->set_id(id);
      done(std::move(r));
    });
  }

 private:
  std::shared_ptr<Impl> impl_;
};

bool ValidHostPort(const std::string& address) {
  std::string host;
  uint16_t port = 0;
  return SplitHostPort(address, &host, &port).ok() && port != 0;
}

class ClusterService final : public pb::Cluster::CallbackService {
 public:
  explicit ClusterService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* ctx,
                                       const pb::MemberListRequest*,
                                       pb::MemberListResponse* resp) override {
    return impl_->Unary(ctx, resp, [this](Done<pb::MemberListResponse> done) {
      pb::MemberListResponse r;
      for (const Member& m : impl_->node->Members()) Fill(m, r.add_members());
      done(std::move(r));
    });
  }
  grpc::ServerUnaryReactor* MemberAdd(grpc::CallbackServerContext* ctx,
                                      const pb::MemberAddRequest* req,
                                      pb::MemberAddResponse* resp) override {
    // Peers speak TLS only, at one address each.
    constexpr absl::string_view kScheme = "https://";
    if (req->peerurls_size() != 1 || !absl::StartsWith(req->peerurls(0), kScheme) ||
        !ValidHostPort(std::string(req->peerurls(0).substr(kScheme.size())))) {
      return Refuse(ctx, grpc::StatusCode::INVALID_ARGUMENT,
                    "e2d: a member is added with exactly one peer URL https://host:port");
    }
    const std::string address(req->peerurls(0).substr(kScheme.size()));
    return impl_->Unary(ctx, resp, [this, address,
                                    learner = req->islearner()](Done<pb::MemberAddResponse> done) {
      impl_->node->AddMember(address, learner, kMembershipTimeout,
                             [this, done = std::move(done)](absl::StatusOr<Member> m) {
                               if (!m.ok()) return done(m.status());
                               pb::MemberAddResponse r;
                               Fill(*m, r.mutable_member());
                               for (const Member& each : impl_->node->Members()) {
                                 Fill(each, r.add_members());
                               }
                               done(std::move(r));
                             });
    });
  }
  grpc::ServerUnaryReactor* MemberRemove(grpc::CallbackServerContext* ctx,
                                         const pb::MemberRemoveRequest* req,
                                         pb::MemberRemoveResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, id = req->id()](Done<pb::MemberRemoveResponse> done) {
      impl_->node->RemoveMember(id, kMembershipTimeout, WithMembers(std::move(done)));
    });
  }
  grpc::ServerUnaryReactor* MemberUpdate(grpc::CallbackServerContext* ctx,
                                         const pb::MemberUpdateRequest*,
                                         pb::MemberUpdateResponse*) override {
    return NotYet(ctx, "MemberUpdate");
  }
  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext* ctx,
                                          const pb::MemberPromoteRequest* req,
                                          pb::MemberPromoteResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, id = req->id()](Done<pb::MemberPromoteResponse> done) {
      impl_->node->PromoteMember(id, kMembershipTimeout, WithMembers(std::move(done)));
    });
  }

 private:
  // Answers `done` with the members once the change `s` reports is applied, or with its error.
  template <typename Response>
  std::function<void(absl::Status)> WithMembers(Done<Response> done) {
    return [this, done = std::move(done)](absl::Status s) {
      if (!s.ok()) return done(s);
      Response r;
      for (const Member& m : impl_->node->Members()) Fill(m, r.add_members());
      done(std::move(r));
    };
  }
  // etcd waits up to its request timeout (5 s plus election time) for a membership change.
  static constexpr absl::Duration kMembershipTimeout = absl::Seconds(7);
  static void Fill(const Member& m, pb::Member* out) {
    out->set_id(m.id);
    out->set_name(m.name);
    if (!m.peer_address.empty()) out->add_peerurls("https://" + m.peer_address);
    if (!m.client_url.empty()) out->add_clienturls(m.client_url);
    out->set_islearner(m.learner);
  }
  static grpc::ServerUnaryReactor* NotYet(grpc::CallbackServerContext* ctx, const char* what) {
    return Refuse(ctx, grpc::StatusCode::UNIMPLEMENTED,
                  absl::StrCat("e2d: ", what, " is not served yet (membership is managed by e2d)"));
  }
  std::shared_ptr<Impl> impl_;
};

class MaintenanceService final : public pb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* ctx, const pb::AlarmRequest* req,
                                  pb::AlarmResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::AlarmResponse> done) {
      impl_->node->kv().Alarm(*req, std::move(done));
    });
  }
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const pb::StatusRequest*,
                                   pb::StatusResponse* resp) override {
    return impl_->Unary(ctx, resp, [this](Done<pb::StatusResponse> done) {
      const NodeStatus s = impl_->node->Status();
      pb::StatusResponse r;
      r.set_version(kServerVersion);
      const int64_t size = static_cast<int64_t>(impl_->node->kv().store().size_bytes());
      r.set_dbsize(size);
      r.set_dbsizeinuse(size);
      r.set_leader(s.leader);
      r.set_raftindex(s.raft_index);
      r.set_raftterm(s.term);
      r.set_raftappliedindex(s.raft_applied_index);
      r.set_islearner(s.learner);
      if (s.leader == 0) r.add_errors("etcdserver: no leader");
      if (s.failed) r.add_errors("e2d: storage failed; this member stopped (fail-stop)");
      done(std::move(r));
    });
  }
  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext* ctx,
                                       const pb::DefragmentRequest*,
                                       pb::DefragmentResponse* resp) override {
    // RocksDB reclaims space by its own compactions: there is nothing to defragment.
    return impl_->Unary(ctx, resp, [](Done<pb::DefragmentResponse> done) {
      done(pb::DefragmentResponse());
    });
  }
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* ctx, const pb::HashRequest*,
                                 pb::HashResponse*) override {
    return Refuse(ctx, grpc::StatusCode::UNIMPLEMENTED, "e2d: Hash is not served yet");
  }
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* ctx, const pb::HashKVRequest*,
                                   pb::HashKVResponse*) override {
    return Refuse(ctx, grpc::StatusCode::UNIMPLEMENTED, "e2d: HashKV is not served yet");
  }
  grpc::ServerWriteReactor<pb::SnapshotResponse>* Snapshot(grpc::CallbackServerContext* ctx,
                                                          const pb::SnapshotRequest*) override {
    auto* s = new SnapshotStream();
    asio::post(impl_->io, [impl = impl_, s] {
      // The view is taken here; reading and hashing a large store happen off the io thread.
      auto job = std::make_shared<std::function<absl::StatusOr<std::string>()>>(
          impl->node->kv().BackupJob());
      absl::Status offloaded = impl->node->env().Offload(
          [job, s] {
            s->Start((*job)());
            *job = nullptr;
          },
          [] {});
      if (!offloaded.ok()) s->Start(absl::ResourceExhaustedError(absl::StrCat(
          "e2d: too many snapshots in progress: ", offloaded.message())));
    });
    return s;
  }
  grpc::ServerUnaryReactor* MoveLeader(grpc::CallbackServerContext* ctx,
                                       const pb::MoveLeaderRequest* req,
                                       pb::MoveLeaderResponse* resp) override {
    return impl_->Unary(ctx, resp, [this, req](Done<pb::MoveLeaderResponse> done) {
      impl_->node->MoveLeader(req->targetid(), absl::Seconds(5),
                              [done = std::move(done)](absl::Status s) {
                                if (!s.ok()) return done(s);
                                done(pb::MoveLeaderResponse());
                              });
    });
  }

 private:
  std::shared_ptr<Impl> impl_;
};

class AuthService final : public pb::Auth::CallbackService {
 public:
  grpc::ServerUnaryReactor* AuthEnable(grpc::CallbackServerContext* ctx,
                                       const pb::AuthEnableRequest*,
                                       pb::AuthEnableResponse*) override {
    return Refuse(ctx, grpc::StatusCode::FAILED_PRECONDITION,
                  "etcdserver: e2d authenticates clients by certificate; user authentication "
                  "cannot be enabled");
  }
  grpc::ServerUnaryReactor* AuthDisable(grpc::CallbackServerContext* ctx,
                                        const pb::AuthDisableRequest*,
                                        pb::AuthDisableResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);  // it is disabled
    return reactor;
  }
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* ctx,
                                         const pb::AuthenticateRequest*,
                                         pb::AuthenticateResponse*) override {
    return Refuse(ctx, grpc::StatusCode::FAILED_PRECONDITION,
                  "etcdserver: authentication is not enabled");
  }
};

}  // namespace

EtcdService::EtcdService(asio::io_context& io, Node* node)
    : impl_(std::make_shared<Impl>(io, node)),
      kv_(std::make_unique<KvService>(impl_)),
      watch_(std::make_unique<WatchService>(impl_)),
      lease_(std::make_unique<LeaseService>(impl_)),
      cluster_(std::make_unique<ClusterService>(impl_)),
      maintenance_(std::make_unique<MaintenanceService>(impl_)),
      auth_(std::make_unique<AuthService>()) {}

EtcdService::~EtcdService() = default;

std::vector<grpc::Service*> EtcdService::services() {
  return {kv_.get(), watch_.get(), lease_.get(), cluster_.get(), maintenance_.get(), auth_.get()};
}

}  // namespace e2d::node
