// Copyright e2d authors.
//
// Node: one e2d member as both worlds run it. It owns the replicated store (a KvServer over the
// given engine, with its RaftNode) and the member's identity, and answers what the etcd API
// needs beyond the store: the response header, the member list, this member's status. The real
// runtime hands it an AsioEnv; a simulator hands it a SimEnv.
//
// Identity. A member's id is derived from its name and a cluster's id from its initial member
// list (both FNV-1a, stable across machines and builds), so every member of a statically
// configured cluster computes the same ids without talking. On first start the node records
// (cluster id, member id, name) in the file "member" under the env's file system root; every
// later start must match it, so a data directory never silently joins another cluster: a
// mismatch is FailedPrecondition naming both. A Raft log without an identity (a crash during the
// first start) gets the configured identity recorded. (Self-managed bootstrap through gossip replaces
// static configuration in the self-management issue; the identity check stays.)
//
// Threading: single-threaded on the env's thread, like KvServer.

#ifndef E2D_NODE_NODE_H_
#define E2D_NODE_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "env/env.h"
#include "kv/engine.h"
#include "kv/etcdserverpb.pb.h"
#include "kv/server.h"
#include "node/metrics.h"

namespace e2d::node {

struct Member {
  uint64_t id = 0;
  std::string name;
  env::Address peer_address;  // host:port of its Raft transport
  std::string client_url;     // https://host:port (or http:// for a plaintext listener)
  bool learner = false;
};

struct NodeConfig {
  std::string name = "default";
  // The members a new cluster starts with, this node included (its name must be among them).
  std::vector<Member> initial_cluster;
  absl::Duration tick = absl::Milliseconds(100);
  int election_ticks = 10;
  uint64_t snapshot_entries = 100000;  // etcd's --snapshot-count default
  kv::KvServerOptions kv;
};

// Stable, non-zero ids.
uint64_t MemberIdFor(const std::string& name);
uint64_t ClusterIdFor(const std::vector<Member>& initial_cluster);

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
  ~Node();

  kv::KvServer& kv() { return *kv_; }
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

  // Prometheus text exposition of this member's state and counters (e2d_* metrics).
  std::string MetricsText() const;

  // The current Raft membership, in id order, named from the initial cluster where known.
  std::vector<Member> Members() const;
  NodeStatus Status() const;

 private:
  Node(env::Env& env, NodeConfig config, uint64_t id, uint64_t cluster_id);
  absl::Status CheckIdentity();

  void OnRaftState(const raft::Raft& raft);
  void PollTransfer(uint64_t target, env::Instant deadline, std::function<void(absl::Status)> done);

  env::Env& env_;
  const NodeConfig config_;
  Histogram wal_sync_;
  Histogram apply_;
  uint64_t last_leader_ = 0;
  uint64_t leader_changes_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  const uint64_t id_;
  const uint64_t cluster_id_;
  std::unique_ptr<kv::KvServer> kv_;
};

}  // namespace e2d::node

#endif  // E2D_NODE_NODE_H_
