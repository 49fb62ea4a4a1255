// Copyright e2d authors.
//
// Recovery from the loss of a majority: what a member of a self-managed cluster decides when
// its cluster has had no leader for the health timeout because most of its voters are gone for
// good. Raft can never commit again then; the survivors agree on the one with the most data,
// which starts the cluster again alone from its own log (raft::Config::force_new_cluster, under
// a new cluster id); the other survivors step aside (their data moved away, not deleted) and
// join it like new nodes, through learners (node/membership.h).
//
// The survivors agree through gossip meta. A member that has seen no leader for the health
// timeout publishes that it lost quorum, with its commit index: nothing commits without a
// leader, so that number is final while the flag is up. Every survivor then computes the same
// choice from the same numbers: the largest commit index (the committed prefixes of one Raft
// history are prefixes of each other, so the largest holds all the others), ties to the
// smallest member id. Each survivor publishes the member it votes for, and the chosen one
// forces only once every other survivor votes for it, so that two survivors with different
// views never both force.
//
// A member only acts when the loss is established:
//  - every other voter is either a survivor (alive, running this cluster, quorum lost) or has
//    not been seen alive by gossip for the health timeout; anything else (a voter alive but
//    not declaring the loss, one down for less than the timeout) waits;
//  - the survivors are not a majority of the voters (then quorum can come back by itself);
//  - the survivors and the live nodes waiting to join are at least a majority of the required
//    size. A member cut off by a partition sees too few nodes to pass this: it waits instead of
//    starting a second cluster beside the majority. (A loss cannot be told apart from a
//    partition that lasts longer than the health timeout and leaves both sides with enough
//    nodes: the health timeout is the knob.)
// A member without a leader for the health timeout that sees another running a cluster
// recovered from its own steps aside (one whose old cluster runs again keeps it).
//
// The newest backup. With backups on, the chosen survivor reads the newest backup of its
// cluster that checks out (NewestBackupOf) before it acts. A backup is taken by a leader from
// what it applied, so everything up to its Raft index was committed; within one cluster the
// committed prefixes are one history, so a backup taken at a Raft index above the chosen
// survivor's commit index holds everything every survivor holds, and more. Then the survivor
// restores it (kRestore) instead of forcing: it sets its own data aside and starts the cluster
// again alone from the backup (under a new cluster id that records both the backup and the
// lost cluster), and the others step aside and join it as they would after a force. Otherwise
// (no backup, none that checks out, or none above the commit index) it forces. A store that
// cannot be read keeps it waiting, and it says why: the newest backup might hold writes that
// every survivor lacks. Only backups of the survivors' own cluster are weighed: an older
// cluster's backups predate the recovery that started this one, which already weighed them.
// Only the chosen survivor reads the store: either way the others do the same (step aside and
// join), so they need not know which it picked.
//
// DecideRecovery is pure (tested alone); the Node runs it every management interval, reads the
// backup store off its thread when asked, and hands kForce, kRestore and kStepAside to its
// owner, which restarts it accordingly.

#ifndef E2D_NODE_RECOVERY_H_
#define E2D_NODE_RECOVERY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "env/env.h"

namespace e2d::node {

struct RecoveryView {
  uint64_t self = 0;
  int required_size = 1;
  absl::Duration health_timeout = absl::Minutes(5);
  env::Instant now;
  std::optional<env::Instant> leaderless_since;  // nullopt: this member knows a leader
  bool voter = false;                            // this member is a voter of its applied membership
  uint64_t commit = 0;                           // this member's commit index
  // The other voters (both halves of a joint membership), as gossip sees them.
  struct Voter {
    uint64_t id = 0;
    bool alive = false;
    env::Instant down_since;   // not alive: since when (see MembershipView::RaftMember)
    bool lost_quorum = false;  // alive and publishes, for this cluster, that quorum is lost
    uint64_t commit = 0;       // with lost_quorum: its commit index
    uint64_t vote = 0;         // with lost_quorum: the survivor it votes for (0: none yet)
  };
  std::vector<Voter> others;
  int fresh = 0;  // live nodes waiting to join a cluster (pending, or running with none)
  // A member seen running a cluster forced from this member's cluster (0: none).
  uint64_t recovered_by = 0;
  // Backups (see above): whether a store is configured, whether this member has read its
  // newest backup of this cluster (`backup_error`: the store could not be read), and what it
  // found (nullopt: no backup of this cluster checks out).
  bool backups = false;
  bool backup_checked = false;
  std::string backup_error;
  struct Backup {
    std::string name;
    uint64_t raft_index = 0;
    uint64_t revision = 0;
  };
  std::optional<Backup> newest_backup;
};

struct RecoveryDecision {
  enum class Kind {
    kNone,       // nothing to do (why says what holds it back, if anything)
    kVote,       // quorum is lost for good: publish a vote for `best`
    kForce,      // this member is `best` and every survivor votes for it: force a new cluster
    kRestore,    // the same, but the newest backup holds more: start again alone from `backup`
    kStepAside,  // `best` recovered the cluster: move this member's data aside and join it
  };
  Kind kind = Kind::kNone;
  uint64_t best = 0;
  std::string backup;    // kRestore: the backup's name
  uint64_t cluster = 0;  // kRestore: the lost cluster it starts again (set by the Node)
  // kVote by the best survivor only: it needs the newest backup of its cluster (backups on,
  // not read yet, or the last read failed) before it can act.
  bool needs_backup = false;
  // For the log: stable while the situation is (no durations), so that it is logged once. Empty
  // while the member knows a leader or has not been without one for the health timeout.
  std::string why;
};

RecoveryDecision DecideRecovery(const RecoveryView& view);

// Whether the member has seen no leader for the health timeout (what it publishes as "quorum
// lost", with its commit index).
inline bool LostQuorum(const RecoveryView& v) {
  return v.leaderless_since.has_value() && v.now - *v.leaderless_since >= v.health_timeout;
}

}  // namespace e2d::node

#endif  // E2D_NODE_RECOVERY_H_
