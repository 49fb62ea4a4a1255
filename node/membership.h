// Copyright e2d authors.
//
// Membership management: what the leader of a gossip-bootstrapped cluster changes by itself so
// that the cluster keeps its required size (e2d's replacement of dead members, done through
// learners). One change at a time, each a single Raft conf change that Raft itself checks
// again (one pending change at most; none that would lose quorum):
//  1. promote a learner that is alive and in sync (>= 90% of the leader's log, etcd's rule)
//     while there are fewer voters than the required size;
//  2. remove a member that gossip has not seen alive for the health timeout and that Raft has
//     not heard from lately (both: a member only partitioned from gossip, or not running
//     gossip, but answering Raft is never removed; a short partition never lasts the timeout).
//     A voter is removed only if the voters left still have a live majority without it;
//  3. remove a learner once there are as many voters as the required size (it was added for a
//     voter that is no longer missing, e.g. -n lowered while it caught up: nothing would
//     promote it);
//  4. add, as a learner, a live member that gossip sees and the cluster does not hold (a new
//     node started with the cluster's command line, waiting to join) while voters and learners
//     are fewer than the required size; one learner at a time, the smallest member id first,
//     so that joins never race (learners do not count for quorum until promoted);
//  5. remove a voter beyond the required size (scale down), only while every voter is alive
//     and no learner is catching up: never the leader, the largest member id first.
// A node that joins is started by its owner with the running members (as if by etcdctl member
// add); see node/bootstrap.h for how it decides to.
//
// DecideMembership is pure (tested alone); the Node runs it on its leader every interval.

#ifndef E2D_NODE_MEMBERSHIP_H_
#define E2D_NODE_MEMBERSHIP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "env/env.h"

namespace e2d::node {

struct MembershipView {
  int required_size = 1;
  absl::Duration health_timeout = absl::Minutes(5);
  env::Instant now;
  uint64_t self = 0;             // the leader deciding
  uint64_t last_index = 0;       // the leader's last log index
  bool change_pending = false;   // a conf change is in the log but not applied yet

  struct RaftMember {
    uint64_t id = 0;
    bool learner = false;
    uint64_t match = 0;          // the leader's progress for it
    bool recently_active = false;
    // Gossip's view: alive now, or since when it has not been (the first time this leader
    // saw it not alive, or the time gossip declared it dead, whichever is later).
    bool alive = false;
    env::Instant down_since;
  };
  std::vector<RaftMember> members;  // every voter and learner, the leader included

  // Live members gossip sees that the cluster does not hold, and that may join it (pending, or
  // running with no cluster or this one).
  struct Candidate {
    uint64_t id = 0;
    std::string name;
    env::Address peer_address;
  };
  std::vector<Candidate> candidates;
};

struct MembershipAction {
  enum class Kind { kNone, kPromote, kRemove, kAddLearner };
  Kind kind = Kind::kNone;
  uint64_t id = 0;
  env::Address peer_address;  // kAddLearner
  std::string why;            // for the log (kNone: what holds it back, if anything)
};

MembershipAction DecideMembership(const MembershipView& view);

}  // namespace e2d::node

#endif  // E2D_NODE_MEMBERSHIP_H_
