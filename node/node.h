// Copyright e2d authors.
//
// Node: one e2d member as both worlds run it. It owns the replicated store (a KvServer over the
// given engine, with its RaftNode) and the member's identity, and answers what the etcd API
// needs beyond the store: the response header, the member list, this member's status. The real
// runtime hands it an AsioEnv; a simulator hands it a SimEnv.
//
// Identity. A member's id is derived from its peer address when it is created (bootstrap or
// MemberAdd; FNV-1a, stable across machines and builds), and a cluster's id from its initial
// member list, so every member of a statically configured cluster computes the same ids without
// talking, and a member joining a running cluster knows every id from the addresses it is given.
// A joining member learns the cluster id from the first member that reaches it (Raft messages
// carry it, and members drop messages of another cluster). On first start the node records
// (cluster id, member id, name, bootstrap or join) in the file "member" under the env's file
// system root; every later start must agree with it, so a data directory never silently
// joins another cluster: a mismatch is FailedPrecondition naming both. A Raft log without an
// identity (a crash during the first start) gets the configured identity recorded.
//
// Threading: single-threaded on the env's thread, like KvServer.

#ifndef E2D_NODE_NODE_H_
#define E2D_NODE_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "env/env.h"
#include "gossip/gossip_node.h"
#include "kv/engine.h"
#include "kv/etcdserverpb.pb.h"
#include "kv/server.h"
#include "node/backup.h"
#include "node/backup_store.h"
#include "node/metrics.h"
#include "node/recovery.h"

namespace e2d::node {

struct Member {
  uint64_t id = 0;
  std::string name;
  env::Address peer_address;  // host:port of its Raft transport
  std::string client_url;     // https://host:port (or http:// for a plaintext listener)
  bool learner = false;
};

// Periodic backups (the self-management issue's snapshots): the leader writes one every
// `interval` if the store's revision moved since its last one, to `store`, off the node's
// thread, and keeps of its cluster's the newest `keep` plus hourly and daily generations
// (BackupRetention).
struct BackupConfig {
  BackupStore* store = nullptr;  // null: no backups; else outlives the node
  absl::Duration interval = absl::Minutes(1);
  int keep = 10;
  int keep_hourly = 0;
  int keep_daily = 0;
  bool gzip = false;
  std::optional<BackupKeys> keys;  // set: encrypted (exclusive with gzip)
  // A fresh IV per backup (the runtime: OpenSSL's CSPRNG; the simulator: its seeded random).
  std::function<std::array<uint8_t, kBackupIvSize>()> iv;
  // Wall-clock seconds, for the record only (the simulator passes a stand-in).
  std::function<uint64_t()> unix_seconds;
};

struct NodeConfig {
  std::string name = "default";
  // This member's id; 0: MemberIdFor(its peer address). A member joining through gossip takes
  // one of its own, so that a node that replaces a lost one at the same address is never taken
  // for it (a voter that forgot what it acknowledged must not count as that voter).
  uint64_t member_id = 0;
  // The members a new cluster starts with, this node included (its name must be among them).
  std::vector<Member> initial_cluster;
  // Join a running cluster (etcd's --initial-cluster-state existing) rather than bootstrap one:
  // the member starts with no voters and learns the membership, and the cluster id, from the
  // first member that reaches it once it was added (MemberAdd).
  bool join = false;
  absl::Duration tick = absl::Milliseconds(100);
  int election_ticks = 10;
  uint64_t snapshot_entries = 100000;  // etcd's --snapshot-count default
  kv::KvServerOptions kv;
  BackupConfig backup;
  // Restore (etcd's "snapshot restore", done by the node): a new cluster starts from a backup's
  // store. Each of its initial members is given the same backup; each seeds its empty store
  // from it on its first start, and the new log goes on from the backup's revision. The
  // backup's name goes into the cluster id (members of the cluster the backup came from cannot
  // talk to the restored one) and into the recorded identity. Ignored, with a warning, by a
  // member that already has an identity: local data is never overwritten. The store is not in
  // the new log, so a restored member takes a Raft snapshot as soon as it applied an entry
  // (raft::RaftNodeConfig::seeded), and refuses to add members until then: members added later
  // start from that snapshot.
  struct Restore {
    std::string name;   // the backup's, for the logs and the cluster id
    std::string store;  // its payload (kv::KvServer::Seed's format)
    // Recovery (RecoveryDecision::kRestore): the cluster, lost with its majority, that this
    // restore starts again (0: none, an operator's restore). Recorded in the identity and
    // published, so that the lost cluster's survivors step aside and join the restored one.
    uint64_t recovers = 0;
  };
  std::optional<Restore> restore;
  // Self-management (node/membership.h): the leader keeps the cluster at `required_size`
  // members, through gossip (needs AttachGossip): it removes members down for
  // `health_timeout`, adds live nodes waiting to join as learners, promotes them in sync, and
  // removes voters beyond the size. Evaluated every `interval`; off unless enabled.
  struct Manage {
    bool enabled = false;
    int required_size = 1;
    absl::Duration interval = absl::Seconds(5);
    absl::Duration health_timeout = absl::Minutes(5);
    // Recovery from the loss of a majority (node/recovery.h): every member decides every
    // interval; the owner gets kForce (call PrepareRecovery, then open the node again on the
    // same data), kRestore (move the data directory aside, then open a new node alone, its
    // initial cluster only itself, restoring the backup named with Restore::recovers set to
    // this cluster's id) or kStepAside (move the data directory aside, then start as a new
    // node that joins the running cluster), once, on the env's thread. With backups on
    // (BackupConfig::store) the chosen survivor reads the newest backup of its cluster first. A member that was removed (it
    // applied its removal, or a leader told it, see raft/raft_node.h) gets kStepAside too, with
    // best 0: it joins again as a new node. Unset: the member decides and logs, but never
    // acts (and never votes); a removed member stays passive.
    std::function<void(const RecoveryDecision&)> on_recovery;
  };
  Manage manage;
};

// Stable, non-zero ids.
uint64_t MemberIdFor(const env::Address& peer_address);
uint64_t ClusterIdFor(const std::vector<Member>& initial_cluster,
                      absl::string_view restored_from = "");

// What a member publishes in its gossip meta, and its parse (nullopt if `meta` is not one).
// Text: "e2d2 <running|pending> <member id> <cluster id> <peer address> <client URL|-> <ack|->",
// ids in hex; ack (pending members only, see node/bootstrap.h) is
// "<epoch>/<cluster id>:<id>,<id>,..." (the epoch in decimal).
struct GossipMeta {
  bool pending = false;     // waiting for a cluster to bootstrap (node/bootstrap.h)
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;  // 0: not known yet
  env::Address peer_address;
  std::string client_url;
  uint64_t ack_epoch = 0;              // >= 1 with an ack
  uint64_t ack_cluster_id = 0;         // 0: acks nothing
  std::vector<uint64_t> ack_members;   // the acked set's member ids, sorted
  // Recovery (node/recovery.h), running members only: quorum lost for the health timeout,
  // with the commit index and the survivor voted for; and the cluster this one was started
  // again from (0: none). Encoded as an eighth field "<0|1>/<commit>/<vote>/<from>" (ids in
  // hex) when any is set.
  bool lost_quorum = false;
  uint64_t lost_commit = 0;
  uint64_t recovery_vote = 0;
  uint64_t recovered_from = 0;
};
std::string EncodeGossipMeta(const GossipMeta& meta);
std::optional<GossipMeta> DecodeGossipMeta(const std::string& meta);

// What etcd's Maintenance.Status reports.
struct NodeStatus {
  uint64_t leader = 0;
  uint64_t term = 0;
  uint64_t raft_index = 0;          // the last log index
  uint64_t raft_applied_index = 0;
  bool learner = false;
  bool failed = false;              // fail-stop after a storage error
};

class Node {
 public:
  // Checks the config (InvalidArgument: no name, the name not in initial_cluster, duplicate
  // names or ids), checks or records the identity (FailedPrecondition on a mismatch), then opens
  // the store and its Raft log (their errors as they are). `engine` must outlive the node.
  static absl::StatusOr<std::unique_ptr<Node>> Open(env::Env& env, kv::KvEngine* engine,
                                                    NodeConfig config);

  // The checks of Open that need no engine (the config, and the identity the data directory
  // records), reading only: a runtime calls it before it opens the engine, so that a data
  // directory of another cluster is refused before anything in it changes.
  static absl::Status CheckDataDir(env::Env& env, NodeConfig config);
  // Whether the env's file system root records a member identity (a member was created there).
  static absl::StatusOr<bool> HasIdentity(env::FileSystem& fs);
  // Recovery after the loss of a majority (etcd's --force-new-cluster, decided by
  // node/recovery.h or asked by an operator): records durably, in the member identity, that
  // the next Open starts the cluster again alone from this member's data, under a new cluster
  // id (raft::Config::force_new_cluster). Every Open forces until the forced start has been
  // applied, so a crash in between forces again. FailedPrecondition if the data directory
  // holds no member, or one that never heard from its cluster. `done` runs on the env's
  // thread, never inside the call; the node must not be open meanwhile.
  static void PrepareRecovery(env::Env& env, std::function<void(absl::Status)> done);
  ~Node();

  kv::KvServer& kv() { return *kv_; }
  env::Env& env() { return env_; }
  uint64_t id() const { return id_; }
  uint64_t cluster_id() const { return cluster_id_; }

  // etcd's ResponseHeader: cluster and member ids, the current term, and the store's current
  // revision.
  etcdserverpb::ResponseHeader Header() const;

  // etcd's MoveLeader: hands leadership to voter `target` and reports once it leads, within
  // `timeout`. Errors, with etcd's texts: FailedPrecondition "etcdserver: not leader" (this
  // member does not lead), "etcdserver: bad leader transferee" (target is not a voter), Unknown
  // "etcdserver: request timed out, leader transfer took too long". `done` runs on the env's
  // thread, never inside this call, and never after the node is destroyed.
  void MoveLeader(uint64_t target, absl::Duration timeout, std::function<void(absl::Status)> done);

  // etcd's Cluster service. Each first waits until this member applied every change committed
  // before the call (its checks never see a stale membership, even on a lagging follower), then
  // proposes one membership change (a follower forwards it to the leader) and reports once this
  // member applied it, within `timeout`; `done` runs on the env's
  // thread, never inside the call, and never after the node is destroyed. Errors, with etcd's
  // texts where etcd has one:
  //  - AddMember: a member at `peer_address` (host:port), a learner if asked, with id
  //    MemberIdFor(peer_address). FailedPrecondition "etcdserver: Peer URLs already exists".
  //  - RemoveMember: NotFound "etcdserver: member not found". Removing the leader first hands
  //    leadership to the most up-to-date voter, then removes it through the new leader.
  //  - PromoteMember: FailedPrecondition "etcdserver: can only promote a learner member", or
  //    (checked by a leader) "etcdserver: can only promote a learner member which is in sync
  //    with leader" (it has less than 90% of the leader's log).
  //  - Raft's refusals (one change at a time; a change that would lose quorum) as
  //    FailedPrecondition with Raft's reason; Unavailable "etcdserver: request timed out" when
  //    the change was not applied in time (it may still apply: list the members).
  void AddMember(const env::Address& peer_address, bool learner, absl::Duration timeout,
                 std::function<void(absl::StatusOr<Member>)> done);
  void RemoveMember(uint64_t id, absl::Duration timeout, std::function<void(absl::Status)> done);
  void PromoteMember(uint64_t id, absl::Duration timeout, std::function<void(absl::Status)> done);

  // Gossip (SWIM) among the members, run by the owner on its own address: the node publishes
  // who it is in its gossip meta (member id, cluster id, peer address, client URL), names the
  // members it did not start with from what they publish, and reports members by gossip state
  // in its metrics. `gossip` must outlive the node (or be detached with nullptr first).
  void AttachGossip(gossip::GossipNode* gossip);

  // Prometheus text exposition of this member's state and counters (e2d_* metrics).
  std::string MetricsText() const;

  // The current Raft membership, in id order, named from the initial cluster or else from
  // gossip where known.
  std::vector<Member> Members() const;
  NodeStatus Status() const;

  // A backup on demand (e2d's SIGUSR1): started now, even if the revision did not move since
  // the last one; its outcome is logged like a periodic one's. FailedPrecondition if backups
  // are off or this member is not the leader (the message names the leader, if known);
  // Unavailable while a backup is being written.
  absl::Status BackupNow();

 private:
  Node(env::Env& env, NodeConfig config, uint64_t id, uint64_t cluster_id);
  absl::Status RecordIdentity(bool joined, std::function<void(absl::Status)> done = nullptr);
  // A self-managed member that was removed steps aside (see Manage::on_recovery).
  void OnRemoved();
  // Recovery (node/recovery.h): run by Manage on every member.
  // `alive`: gossip's view by member id; `same_cluster`: the meta of live members of this
  // cluster; `fresh`: live nodes waiting to join; `recovered_by`: see RecoveryView.
  void Recover(const absl::btree_map<uint64_t, bool>& alive,
               const absl::btree_map<uint64_t, GossipMeta>& same_cluster, int fresh,
               uint64_t recovered_by);
  // Reads the newest backup of this cluster off the env's thread (see RecoveryView).
  void CheckNewestBackup();
  void OnClusterId(uint64_t cluster);
  // Backups: the timer, and one backup if this member leads and the revision moved (or
  // `forced`, on demand).
  void ScheduleBackup();
  void MaybeBackup(bool forced = false);

  void OnRaftState(const raft::Raft& raft);
  void PublishGossipMeta();
  // Proposes `cc` and polls until `applied` holds (or the deadline).
  void ChangeMembership(const raftpb::ConfChange& cc, std::function<bool()> applied,
                        absl::Duration timeout, std::function<void(absl::Status)> done);
  // Checks `holds` every 20 ms: `done` gets OK once it holds, `timed_out` past the deadline.
  // Runs `then` once this member applied every change committed before the call (a ReadIndex),
  // so that the checks of a membership request see every change acknowledged before it, also
  // on a follower that lags; or, at `deadline`, with the error that prevented it (no leader,
  // timed out).
  void Current(env::Instant deadline, std::function<void(absl::Status)> then);
  absl::Duration Left(env::Instant deadline);  // time to `deadline`, at least 1 ms
  // `id` 0: MemberIdFor(peer_address).
  void AddCurrentMember(const env::Address& peer_address, bool learner, absl::Duration timeout,
                        std::function<void(absl::StatusOr<Member>)> done, uint64_t id = 0);
  void RemoveCurrentMember(uint64_t id, absl::Duration timeout,
                           std::function<void(absl::Status)> done);
  void PromoteCurrentMember(uint64_t id, absl::Duration timeout,
                            std::function<void(absl::Status)> done);
  // Self-management: every config_.manage.interval, on the leader (see NodeConfig::Manage).
  void ScheduleManage();
  void Manage();
  void PollUntil(std::function<bool()> holds, env::Instant deadline, absl::Status timed_out,
                 std::function<void(absl::Status)> done);
  // Runs `f` on the env's thread, never inside the caller, never after the node is gone.
  void Later(std::function<void()> f);

  env::Env& env_;
  const NodeConfig config_;
  Histogram wal_sync_;
  Histogram apply_;
  uint64_t last_leader_ = 0;
  raft::Membership last_membership_;  // as last logged
  uint64_t snapshot_index_ = 0;       // the log's snapshot index, as last seen
  env::Instant snapshot_since_;       // when it was first seen (or the start)
  uint64_t leader_changes_ = 0;
  bool backup_running_ = false;
  bool manage_running_ = false;  // a change decided by Manage is in flight
  std::string manage_last_why_;  // the last decision logged (each is logged once)
  // Members this member has seen not alive in gossip, and since when (watched on every member).
  absl::btree_map<uint64_t, env::Instant> down_since_;
  int64_t last_backup_revision_ = -1;
  env::Instant last_backup_at_;
  uint64_t backups_ok_ = 0, backups_failed_ = 0, backups_skipped_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  const uint64_t id_;
  uint64_t cluster_id_;  // 0 while a joining member has not heard from its cluster
  std::string restored_from_;  // the backup this member's cluster was restored from, if any
  uint64_t recovered_from_ = 0;  // the cluster this member started again from, if any
  bool forcing_ = false;         // a forced start not yet applied (see PrepareRecovery)
  uint64_t forced_index_ = 0;    // forcing_: the forced log's last index (0: not known yet)
  // The identity recording the forced start as complete is durable: membership changes may
  // go on (until then a crash forces again, which would undo them).
  bool recovery_recorded_ = true;
  bool joined_ = false;
  // Recovery: since when this member has known no leader (nullopt: it knows one), what it
  // publishes (quorum lost, its vote), and whether the owner was asked to act.
  std::optional<env::Instant> leaderless_since_;
  bool lost_quorum_ = false;
  uint64_t recovery_vote_ = 0;
  bool recovery_requested_ = false;
  std::string recovery_last_why_;
  // Recovery's read of the newest backup of this cluster (see RecoveryView): not started,
  // running off the env's thread, or done (when, and with what).
  enum class BackupCheck { kNone, kRunning, kDone };
  BackupCheck backup_check_ = BackupCheck::kNone;
  env::Instant backup_checked_at_;
  std::string backup_check_error_;
  std::optional<RecoveryView::Backup> newest_backup_;
  std::unique_ptr<kv::KvServer> kv_;
  gossip::GossipNode* gossip_ = nullptr;
};


}  // namespace e2d::node

#endif  // E2D_NODE_NODE_H_
