// Copyright e2d authors.
//
// Bootstrap through gossip: how `e2d run -n N --bootstrap-addrs ...` members that know nothing
// but each other's gossip addresses agree on the members a new cluster starts with.
//
// Every member starts pending and publishes, in its gossip meta, its member id, peer address and
// client URL. Agreement is by acks, numbered by epoch:
//  - ack: a pending member picks a set S of exactly N pending members (itself among them) and an
//    epoch e, records (e, S) durably, and only then publishes "I ack S at e". A member acks at
//    most one set per epoch, and its epochs only grow: the record survives restarts.
//  - commit: a member bootstraps with S once every other member of S is seen acking S at the
//    same epoch (or running S's cluster, which it does only after the same observation).
//  - moving on: S at e is dead once some member of S is seen acking another set at e, or at a
//    later epoch. That member never acks S at e, so nobody can ever commit S at e; its members
//    may then ack again at a later epoch.
// Safety: if different sets S (at e) and S' (at e') were both committed and shared a member M,
// M acked both; not at one epoch, so say e < e'. M left e only after seeing S at e dead, which
// means some member of S never acks S at e, so S could not have been committed at e. Hence with
// fewer than 2N pending members (no two disjoint sets) at most one cluster forms, and every
// member that bootstraps, bootstraps that one.
// Choosing S: a member adopts the live set (not dead) of the highest epoch that others ack and
// that includes it (then the most acks; then the smaller cluster id). With none around, it
// waits until it sees at least N pending members and that view has been still for the settle
// time, then picks the N with the smallest member ids, at an epoch above every epoch it has
// seen; after a first epoch died, only after a random part of the settle time more, so that
// one member's pick is likely adopted by the others rather than raced. With exactly N members
// started (the normal case) there is only one possible set. With more, members with different
// views may ack different overlapping sets; the sets then die and the members try again.
// A member that sees a running cluster it did not ack cannot be part of a new one: it joins the
// running one (its leader adds it once a member is missing, node/membership.h), or, without
// join_running, waits and says to add it with etcdctl member add. An empty peer list never
// bootstraps a cluster of N > 1.
//
// DecideBootstrap is pure (tested alone); Bootstrapper runs it against a GossipNode and the
// env's file system, on the env's thread, in the node and in the simulator alike.

#ifndef E2D_NODE_BOOTSTRAP_H_
#define E2D_NODE_BOOTSTRAP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "env/env.h"
#include "gossip/gossip_node.h"
#include "node/node.h"

namespace e2d::node {

// The members a new cluster starts with, sorted by id, the backup it restores (if any), and its
// id (ClusterIdFor(members, restored_from)).
struct BootstrapSet {
  uint64_t cluster_id = 0;
  std::vector<Member> members;
  std::string restored_from;
  // Not a new cluster: join the running cluster `cluster_id`, whose members (those seen running
  // it) are `members`; its leader adds this member as a learner once the cluster lacks one
  // (node/membership.h).
  bool join = false;
  uint64_t join_id = 0;  // join: the id this member takes (random, never its address's)
  bool operator==(const BootstrapSet& o) const;
};
// Builds the set of `members` (sorting them, computing ids and the cluster id).
BootstrapSet MakeBootstrapSet(std::vector<Member> members, const std::string& restored_from = "");

// What a member sees of another over gossip.
struct BootstrapPeer {
  std::string name;
  gossip::MemberState state = gossip::MemberState::kAlive;
  std::optional<GossipMeta> meta;  // nullopt: none, or not one of ours
};

// A set acked at an epoch.
struct BootstrapAck {
  uint64_t epoch = 0;  // >= 1
  BootstrapSet set;
};

struct BootstrapView {
  int required_size = 1;
  Member self;                        // name, peer address, client URL; id is derived
  // The backup this member would start a new cluster from (NodeConfig::restore), or empty. It
  // is part of the set's cluster id, so members given different backups never agree.
  std::string restore;
  // A member that finds a cluster running joins it (kJoin) rather than wait for an operator.
  bool join_running = false;
  std::optional<BootstrapAck> acked;  // as recorded
  std::vector<BootstrapPeer> peers;   // every member gossip knows, self excluded
  bool settled = false;               // the alive pending members have not changed lately
};

struct BootstrapDecision {
  enum class Kind { kWait, kAck, kBootstrap, kJoin };
  Kind kind = Kind::kWait;
  BootstrapAck ack;    // kAck: the new ack; kBootstrap: the ack whose set to bootstrap; kJoin:
                       // the running cluster to join (epoch 0, set.join)
  bool fresh = false;  // kAck: a set picked here, not adopted from others
  std::string why;     // for the log: what it waits for, or why this set
};
BootstrapDecision DecideBootstrap(const BootstrapView& view);

struct BootstrapperConfig {
  int required_size = 1;
  Member self;  // name, peer address, client URL
  std::string restore;  // see BootstrapView::restore
  bool join_running = false;  // see BootstrapView::join_running
  absl::Duration poll = absl::Milliseconds(200);
  absl::Duration settle = absl::Seconds(3);
};

class Bootstrapper {
 public:
  // The file, under the env's file system root, that records the set this member acked or
  // bootstrapped with.
  static constexpr char kRecordFile[] = "bootstrap";

  // `done` runs once, on the env's thread: the set to bootstrap with (recorded as committed
  // before), or the storage error that stopped it. `gossip` must outlive this object.
  Bootstrapper(env::Env& env, gossip::GossipNode* gossip, BootstrapperConfig config,
               std::function<void(absl::StatusOr<BootstrapSet>)> done);
  ~Bootstrapper();
  Bootstrapper(const Bootstrapper&) = delete;
  Bootstrapper& operator=(const Bootstrapper&) = delete;

  // Reads the record, publishes this member's pending meta and starts polling.
  void Start();

  // What the last decision said (for tests and the log).
  const std::string& why() const { return why_; }

  // The recorded set: nullopt if none; `committed` says whether it was bootstrapped with (the
  // member restarts into that cluster) or only acked. DataLoss if the record is damaged.
  struct Record {
    bool committed = false;
    BootstrapAck ack;
  };
  static absl::StatusOr<std::optional<Record>> Read(env::FileSystem& fs);
  // Writes `record` durably (temp file, sync, rename, directory sync); `done` gets the outcome
  // on the env's thread, never inside the call. For a member that starts a cluster without
  // agreeing on it (a recovery's restore, alone): later starts find it committed and restart.
  static void WriteRecord(env::Env& env, const Record& record,
                          std::function<void(absl::Status)> done);

 private:
  void Poll();
  void Publish();
  // WriteRecord, then `then` (a failure finishes the bootstrap with it).
  void Write(const Record& record, std::function<void()> then);
  void Finish(absl::StatusOr<BootstrapSet> result);

  env::Env& env_;
  gossip::GossipNode* gossip_;
  const BootstrapperConfig config_;
  std::function<void(absl::StatusOr<BootstrapSet>)> done_;
  std::optional<BootstrapAck> acked_;
  env::Instant fresh_not_before_;  // a fresh pick after a dead epoch waits until then
  bool fresh_delayed_ = false;
  bool writing_ = false;   // a record is being written: no new decision meanwhile
  bool finished_ = false;
  std::vector<uint64_t> last_pending_;  // alive pending member ids at the last poll
  env::Instant last_change_;
  std::string why_;
  env::TimerId timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};
}  // namespace e2d::node

#endif  // E2D_NODE_BOOTSTRAP_H_
