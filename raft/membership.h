// Copyright e2d authors.
//
// Membership: who votes, who only learns, and how a change to that is applied (Raft thesis §4.3
// joint consensus, in etcd-io/raft's formulation).
//
// A membership is one voter set (`voters`), or during joint consensus two (`voters` is the new
// configuration, `voters_outgoing` the old one): then every decision (an election, a commit)
// needs a majority of each. Learners receive the log but never vote or count. A voter demoted to
// learner while it still votes in the outgoing half waits in `learners_next` and becomes a learner
// when the joint state is left.
//
// Changes (raftpb::ConfChange), applied by every node when the change's entry is applied, so
// every node goes through the same sequence of memberships:
//  - a change that alters the voters by at most one node is applied directly (a single-server
//    change: any two consecutive majorities overlap);
//  - a change that alters more voters enters joint consensus (voters_outgoing = old voters);
//    a later change with leave_joint = true leaves it (auto_leave: the leader proposes that by
//    itself once the joint membership is applied);
//  - invalid changes (no voter left, unknown change type, changes while joint other than
//    leaving, leaving when not joint) are refused with InvalidArgument / FailedPrecondition.
//
// Invariants (checked by Validate): voters non-empty; learners and learners_next disjoint from
// voters; learners disjoint from voters_outgoing; learners_next only while joint and each of its
// ids in voters_outgoing; no id 0.

#ifndef E2D_RAFT_MEMBERSHIP_H_
#define E2D_RAFT_MEMBERSHIP_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/raftpb.pb.h"

namespace e2d::raft {

// Bound on the members of one configuration (voters + learners); changes beyond it are refused.
inline constexpr size_t kMembersMax = 64;

enum class VoteResult { kPending, kWon, kLost };

struct Membership {
  absl::btree_set<uint64_t> voters;
  absl::btree_set<uint64_t> voters_outgoing;  // non-empty only during joint consensus
  absl::btree_set<uint64_t> learners;
  absl::btree_set<uint64_t> learners_next;
  bool auto_leave = false;

  bool joint() const { return !voters_outgoing.empty(); }
  bool IsVoter(uint64_t id) const { return voters.contains(id) || voters_outgoing.contains(id); }
  bool IsLearner(uint64_t id) const {
    return !IsVoter(id) && (learners.contains(id) || learners_next.contains(id));
  }
  bool IsMember(uint64_t id) const { return IsVoter(id) || IsLearner(id); }
  // Every voter (of either half) and learner, ascending.
  std::vector<uint64_t> Members() const;
  std::vector<uint64_t> Voters() const;  // both halves, ascending

  raftpb::ConfState ToConfState() const;
  // InvalidArgument if the ConfState breaks an invariant (names the offending id).
  static absl::StatusOr<Membership> FromConfState(const raftpb::ConfState& cs);
  absl::Status Validate() const;

  // The highest index `match` puts on a majority of each voter half (the commit candidate).
  uint64_t CommittedIndex(const std::function<uint64_t(uint64_t)>& match) const;
  // The election outcome given the votes recorded so far (granted = true); non-voters' votes
  // are ignored.
  VoteResult Outcome(const absl::btree_map<uint64_t, bool>& votes) const;
  // Whether `active` holds for a majority of each voter half.
  bool QuorumHolds(const std::function<bool(uint64_t)>& active) const;

  std::string ToString() const;
  bool operator==(const Membership& o) const;
};

// The membership after applying `cc` to `current` (see the header comment). Errors name the
// change and the node.
absl::StatusOr<Membership> ApplyChange(const Membership& current, const raftpb::ConfChange& cc);

}  // namespace e2d::raft

#endif  // E2D_RAFT_MEMBERSHIP_H_
