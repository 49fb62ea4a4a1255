// Copyright e2d authors.
//
// KvServer: the request layer. It takes etcd v3's request shapes and answers with etcd's
// response shapes, over one replica of the replicated store: an MvccStore on a KvEngine, its
// Lessor and WatchHub, and the RaftNode that orders every change. The gRPC server and the
// simulator's clients both call it; the same code runs in the node and in the simulator.
//
// Writes (Put, DeleteRange, Txn, Compact, LeaseGrant, LeaseRevoke, Alarm) are validated (a bad
// request never reaches the log), wrapped in a requestpb::Request with an id unique to this
// server, and proposed. Every replica applies the entry; the one that proposed it hands the
// result to the waiting caller. Reads: a Range with serializable=true is served from the local
// store at once; otherwise it waits for a ReadIndex (so it reflects every write acknowledged before
// it began). Txns always go through the log, read-only ones included (simple and linearizable;
// slower).
//
// Outcomes, as a client must read them:
//   - an error returned before the proposal (validation; "etcdserver: no leader" as
//     Unavailable; the pending bound as ResourceExhausted) means the request did not happen;
//   - an error from the apply (e.g. "etcdserver: requested lease not found") means it was
//     ordered and had no effect;
//   - DeadlineExceeded ("etcdserver: request timed out") means the outcome is unknown: the
//     entry may still commit. Every caller gets exactly one answer, by request_timeout at the
//     latest (or never, if the server is destroyed: a crash).
//
// Recovery: the engine holds the applied index in the same batch as the data it covers
// (MvccStore). On Open the RaftNode replays its log; entries at or below the engine's applied
// index are skipped, the rest re-applied, so the store is exactly as of the last applied entry.
// Raft snapshots carry every engine record (EngineSnapshot); installing one replaces the engine
// contents in one batch, reopens the store and lessor, and cancels every watch on this replica
// (a client resumes from the last revision it saw). Before a snapshot is taken the engine is
// synced, so the WAL segments the snapshot releases are never the only copy of what the engine
// has not made durable.
//
// Leases: the minimum TTL is raised to 1.5 election timeouts (as etcd). Expiry is decided by
// the leader's lessor (promoted when this replica becomes leader, demoted when it stops) and
// proposed as a LeaseRevoke, so every replica deletes the same keys at the same index. Keep-alives
// are answered by the leader only.
//
// Space: options.limits.quota_bytes bounds the store; past it the NOSPACE alarm refuses puts
// and lease grants (apply.h). The limits must be the same on every member.
//
// Bounds: at most pending_max proposals wait for their apply; lease revocations proposed per
// check are bounded; watches as WatchHub bounds them.
//
// Threading: single-threaded, on the env's thread, like RaftNode. Callbacks may run before the
// call that started them returns (an immediate refusal) or later.

#ifndef E2D_KV_SERVER_H_
#define E2D_KV_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "env/env.h"
#include "kv/apply.h"
#include "kv/engine.h"
#include "kv/etcdserverpb.pb.h"
#include "kv/lease.h"
#include "kv/mvcc.h"
#include "kv/requestpb.pb.h"
#include "kv/watch.h"
#include "raft/raft_node.h"

namespace e2d::kv {

inline constexpr char kErrNoLeader[] = "etcdserver: no leader";
inline constexpr char kErrTimeout[] = "etcdserver: request timed out";
inline constexpr char kErrTooManyRequests[] = "etcdserver: too many requests";
inline constexpr char kErrStopped[] = "etcdserver: server stopped";

struct KvServerOptions {
  KvLimits limits;
  LeaseConfig lease;
  absl::Duration request_timeout = absl::Seconds(5);
  size_t pending_max = 4096;
  absl::Duration housekeeping = absl::Milliseconds(100);  // timeouts, watch catch-up, expiry
  size_t revokes_per_round_max = 16;  // lease expiries proposed per housekeeping round
  // Progress notifications to the watches that asked for them (etcd: every 10 minutes).
  absl::Duration progress_notify_interval = absl::Minutes(10);
  size_t watch_events_max = 1000;
  size_t watchers_max = 10000;
  // Test-only (the scenarios' mutation self-test): serve linearizable reads from the local
  // store without ReadIndex, which lets a stale replica answer. Never set it elsewhere.
  bool mutation_local_reads = false;
  // Test-only: a lease revocation is acknowledged but deletes nothing (keys outlive the lease).
  bool mutation_revoke_keeps_keys = false;
};

struct KvServerHooks {
  // Passed to the RaftNode: on_state, on_fatal and on_removed as they are; on_apply and
  // on_restore are called after the server's own handling (for checkers); the server provides
  // the snapshot itself (snapshot_data and snapshot_job are ignored).
  raft::RaftNodeHooks raft;
  // Every MVCC commit on this replica, in revision order.
  MvccStore::CommitListener on_commit;
  // The engine was replaced by a snapshot's contents at this Raft index.
  std::function<void(uint64_t index, int64_t revision)> on_install;
};

class KvServer {
 public:
  // Opens the store on `engine` (which must outlive the server), then the RaftNode, which
  // replays its log into it. Errors: the engine's, the store's (DataLoss) and the RaftNode's.
  static absl::StatusOr<std::unique_ptr<KvServer>> Open(env::Env& env, KvEngine* engine,
                                                        raft::RaftNodeConfig raft_config,
                                                        KvServerOptions options,
                                                        KvServerHooks hooks);
  // Fills an empty `engine` with a store in the state-machine snapshot format (what Backup
  // returns), made current to no Raft index, so that a new cluster's log applies on top of it:
  // how a cluster is restored from a backup. Returns the store's revision. Errors:
  // FailedPrecondition if the engine holds anything; DataLoss if `snapshot` does not parse or
  // the store it holds does not open (nothing is left in the engine then); the engine's.
  static absl::StatusOr<int64_t> Seed(KvEngine* engine, const std::string& snapshot);
  ~KvServer();
  KvServer(const KvServer&) = delete;
  KvServer& operator=(const KvServer&) = delete;

  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  void Range(const etcdserverpb::RangeRequest& r, Done<etcdserverpb::RangeResponse> done);
  void Put(const etcdserverpb::PutRequest& r, Done<etcdserverpb::PutResponse> done);
  void DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                   Done<etcdserverpb::DeleteRangeResponse> done);
  void Txn(const etcdserverpb::TxnRequest& r, Done<etcdserverpb::TxnResponse> done);
  void Compact(const etcdserverpb::CompactionRequest& r,
               Done<etcdserverpb::CompactionResponse> done);
  // Maintenance.Alarm (GET, ACTIVATE, DEACTIVATE), through the log (see apply.h).
  void Alarm(const etcdserverpb::AlarmRequest& r, Done<etcdserverpb::AlarmResponse> done);
  // id 0: the server picks one. The answer holds the id and the TTL granted.
  void LeaseGrant(int64_t id, int64_t ttl_seconds, Done<requestpb::LeaseGrant> done);
  void LeaseRevoke(int64_t id, Done<requestpb::LeaseRevoke> done);
  // Leader only ("etcdserver: not a primary lessor" elsewhere): the lease's TTL.
  absl::StatusOr<int64_t> LeaseKeepAlive(int64_t id);
  // A keep-alive on any replica. The leader renews at once (LeaseKeepAlive); a follower
  // proposes the renewal (requestpb::LeaseRenew), which the leader carries out when it applies
  // it, and answers with the lease's TTL once it applied the entry itself. Errors: NotFound
  // "etcdserver: requested lease not found" (unknown or, on the leader, expired), and those of
  // any proposal (no leader, timeout). `done` may run before this returns.
  void LeaseRenew(int64_t id, Done<int64_t> done);
  Lessor::TimeToLive LeaseTimeToLive(int64_t id);
  std::vector<int64_t> LeaseList() const { return lessor_->List(); }

  // Watches on this replica (see WatchHub). The created response is sent at once.
  absl::StatusOr<int64_t> Watch(const WatchRequest& r, WatchHub::Send send);
  void CancelWatch(int64_t id) { hub_->Cancel(id); }

  // The whole store as of the last entry applied on this replica, in the state-machine snapshot
  // format (requestpb::EngineSnapshot, serialized): what etcd's Maintenance.Snapshot streams.
  // Errors: the engine's. BackupJob takes the view at the call and returns the work that
  // serializes it, which may run on another thread (env::Env::Offload) while this server goes on
  // applying; it must run before the engine is destroyed.
  absl::StatusOr<std::string> Backup() const { return BackupJob()(); }
  std::function<absl::StatusOr<std::string>()> BackupJob() const;

  raft::RaftNode& raft_node() { return *node_; }
  const MvccStore& store() const { return *store_; }
  size_t pending() const { return pending_.size(); }
  uint64_t timeouts() const { return timeouts_; }
  // This server's own proposals: answered by their apply (whatever its result), and refused
  // before reaching the log (stopped, too many pending, too large, no leader).
  uint64_t proposals_applied() const { return proposals_applied_; }
  uint64_t proposals_refused() const { return proposals_refused_; }

 private:
  struct Pending {
    std::function<void(absl::StatusOr<requestpb::Response>)> done;
    env::Instant deadline;
  };

  KvServer(env::Env& env, KvEngine* engine, KvServerOptions options, KvServerHooks hooks);
  absl::Status OpenState();  // store, lessor, applier, hub over the engine
  void Propose(requestpb::Request request,
               std::function<void(absl::StatusOr<requestpb::Response>)> done);
  void Apply(const raftpb::Entry& entry, const raft::Raft& raft);
  absl::StatusOr<requestpb::Response> ApplyRequest(const requestpb::Request& r, uint64_t index);
  std::function<std::string()> SnapshotJob();  // RaftNodeHooks::snapshot_job
  void Restore(const raftpb::SnapshotMetadata& meta, const std::string& data);
  void OnState(const raft::Raft& raft);
  void Housekeeping();
  int64_t NowMs() { return env_.clock().Now().ns / 1'000'000; }

  env::Env& env_;
  KvEngine* engine_;
  const KvServerOptions options_;
  const KvServerHooks hooks_;
  std::unique_ptr<MvccStore> store_;
  std::unique_ptr<Lessor> lessor_;
  std::unique_ptr<KvApplier> applier_;
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<raft::RaftNode> node_;
  uint64_t next_id_ = 0;
  absl::btree_map<uint64_t, Pending> pending_;
  // Lease expiries proposed and not yet applied, with when to propose again if lost.
  absl::btree_map<int64_t, env::Instant> revoking_;
  int64_t election_ms_ = 0;
  env::TimerId timer_ = 0;
  env::Instant next_progress_;
  uint64_t timeouts_ = 0;
  uint64_t proposals_applied_ = 0;
  uint64_t proposals_refused_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace e2d::kv

#endif  // E2D_KV_SERVER_H_
