// Copyright e2d authors.

#include "raft/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace e2d::raft {
namespace {

using Set = absl::btree_set<uint64_t>;

uint64_t MajorityIndex(const Set& voters, const std::function<uint64_t(uint64_t)>& match) {
  if (voters.empty()) return std::numeric_limits<uint64_t>::max();  // an empty half never limits
  std::vector<uint64_t> m;
  m.reserve(voters.size());
  for (uint64_t v : voters) m.push_back(match(v));
  std::sort(m.begin(), m.end(), std::greater<uint64_t>());
  return m[voters.size() / 2];
}

VoteResult MajorityOutcome(const Set& voters, const absl::btree_map<uint64_t, bool>& votes) {
  if (voters.empty()) return VoteResult::kWon;
  size_t yes = 0, no = 0;
  for (uint64_t v : voters) {
    auto it = votes.find(v);
    if (it == votes.end()) continue;
    (it->second ? yes : no)++;
  }
  const size_t quorum = voters.size() / 2 + 1;
  if (yes >= quorum) return VoteResult::kWon;
  if (voters.size() - no < quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

std::string Join(const Set& s) { return absl::StrJoin(s, ","); }

}  // namespace

std::vector<uint64_t> Membership::Members() const {
  Set all = voters;
  all.insert(voters_outgoing.begin(), voters_outgoing.end());
  all.insert(learners.begin(), learners.end());
  all.insert(learners_next.begin(), learners_next.end());
  return std::vector<uint64_t>(all.begin(), all.end());
}

std::vector<uint64_t> Membership::Voters() const {
  Set all = voters;
  all.insert(voters_outgoing.begin(), voters_outgoing.end());
  return std::vector<uint64_t>(all.begin(), all.end());
}

raftpb::ConfState Membership::ToConfState() const {
  raftpb::ConfState cs;
  for (uint64_t v : voters) cs.add_voters(v);
  for (uint64_t v : learners) cs.add_learners(v);
  for (uint64_t v : voters_outgoing) cs.add_voters_outgoing(v);
  for (uint64_t v : learners_next) cs.add_learners_next(v);
  cs.set_auto_leave(auto_leave);
  return cs;
}

absl::StatusOr<Membership> Membership::FromConfState(const raftpb::ConfState& cs) {
  Membership m;
  m.voters.insert(cs.voters().begin(), cs.voters().end());
  m.learners.insert(cs.learners().begin(), cs.learners().end());
  m.voters_outgoing.insert(cs.voters_outgoing().begin(), cs.voters_outgoing().end());
  m.learners_next.insert(cs.learners_next().begin(), cs.learners_next().end());
  m.auto_leave = cs.auto_leave();
  if (absl::Status s = m.Validate(); !s.ok()) return s;
  return m;
}

absl::Status Membership::Validate() const {
  auto bad = [&](std::string what) {
    return absl::InvalidArgumentError(absl::StrCat("membership ", ToString(), ": ", what));
  };
  if (voters.empty()) return bad("no voters");
  if (Members().size() > kMembersMax) return bad(absl::StrCat("more than ", kMembersMax, " members"));
  for (const Set* s : {&voters, &voters_outgoing, &learners, &learners_next}) {
    if (s->contains(0)) return bad("node id 0");
  }
  for (uint64_t l : learners) {
    if (IsVoter(l)) return bad(absl::StrCat("node ", l, " is both voter and learner"));
  }
  for (uint64_t l : learners_next) {
    if (voters.contains(l)) return bad(absl::StrCat("node ", l, " is both voter and next learner"));
    if (!voters_outgoing.contains(l)) {
      return bad(absl::StrCat("next learner ", l, " is not an outgoing voter"));
    }
  }
  if (!joint() && auto_leave) return bad("auto_leave outside joint consensus");
  return absl::OkStatus();
}

uint64_t Membership::CommittedIndex(const std::function<uint64_t(uint64_t)>& match) const {
  return std::min(MajorityIndex(voters, match), MajorityIndex(voters_outgoing, match));
}

VoteResult Membership::Outcome(const absl::btree_map<uint64_t, bool>& votes) const {
  const VoteResult a = MajorityOutcome(voters, votes);
  const VoteResult b = MajorityOutcome(voters_outgoing, votes);
  if (a == VoteResult::kLost || b == VoteResult::kLost) return VoteResult::kLost;
  if (a == VoteResult::kWon && b == VoteResult::kWon) return VoteResult::kWon;
  return VoteResult::kPending;
}

bool Membership::QuorumHolds(const std::function<bool(uint64_t)>& active) const {
  absl::btree_map<uint64_t, bool> votes;
  for (uint64_t v : Voters()) votes[v] = active(v);
  return Outcome(votes) == VoteResult::kWon;
}

std::string Membership::ToString() const {
  std::string s = absl::StrCat("voters=(", Join(voters), ")");
  if (joint()) absl::StrAppend(&s, "&&(", Join(voters_outgoing), ")");
  if (!learners.empty()) absl::StrAppend(&s, " learners=(", Join(learners), ")");
  if (!learners_next.empty()) absl::StrAppend(&s, " learners_next=(", Join(learners_next), ")");
  if (auto_leave) absl::StrAppend(&s, " autoleave");
  return s;
}

bool Membership::operator==(const Membership& o) const {
  return voters == o.voters && voters_outgoing == o.voters_outgoing && learners == o.learners &&
         learners_next == o.learners_next && auto_leave == o.auto_leave;
}

absl::StatusOr<Membership> ApplyChange(const Membership& current, const raftpb::ConfChange& cc) {
  if (cc.leave_joint()) {
    if (cc.changes_size() > 0) {
      return absl::InvalidArgumentError("conf change: leave_joint carries no changes");
    }
    if (!current.joint()) {
      return absl::FailedPreconditionError(
          absl::StrCat("conf change: leave_joint while not joint (", current.ToString(), ")"));
    }
    Membership next = current;
    next.voters_outgoing.clear();
    next.learners.insert(next.learners_next.begin(), next.learners_next.end());
    next.learners_next.clear();
    next.auto_leave = false;
    if (absl::Status s = next.Validate(); !s.ok()) return s;
    return next;
  }
  if (current.joint()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conf change: membership is joint (", current.ToString(), "); leave it first"));
  }
  if (cc.changes_size() == 0) return absl::InvalidArgumentError("conf change: no changes");
  Membership next = current;
  for (const raftpb::ConfChangeSingle& c : cc.changes()) {
    const uint64_t id = c.node_id();
    if (id == 0) return absl::InvalidArgumentError("conf change: node id 0");
    switch (c.type()) {
      case raftpb::CONF_CHANGE_ADD_NODE:
        next.voters.insert(id);
        next.learners.erase(id);
        next.learners_next.erase(id);
        break;
      case raftpb::CONF_CHANGE_ADD_LEARNER_NODE:
        next.voters.erase(id);
        next.learners.insert(id);
        break;
      case raftpb::CONF_CHANGE_REMOVE_NODE:
        next.voters.erase(id);
        next.learners.erase(id);
        next.learners_next.erase(id);
        break;
      case raftpb::CONF_CHANGE_UPDATE_NODE:
        if (!current.IsMember(id)) {
          return absl::FailedPreconditionError(
              absl::StrCat("conf change: update of node ", id, ", which is not a member"));
        }
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("conf change: unknown type ", static_cast<int>(c.type())));
    }
  }
  if (next.voters.empty()) {
    return absl::FailedPreconditionError("conf change: would leave no voter");
  }
  // How many voters change? More than one needs joint consensus.
  size_t changed = 0;
  for (uint64_t v : next.voters) changed += !current.voters.contains(v);
  for (uint64_t v : current.voters) changed += !next.voters.contains(v);
  if (changed > 1 && !current.voters.empty()) {  // (the bootstrap sets the first voters at once)
    next.voters_outgoing = current.voters;
    next.auto_leave = true;
    // A demoted voter keeps voting in the outgoing half; it becomes a learner on leaving.
    for (uint64_t v : current.voters) {
      if (next.learners.contains(v)) {
        next.learners.erase(v);
        next.learners_next.insert(v);
      }
    }
  }
  if (absl::Status s = next.Validate(); !s.ok()) return s;
  return next;
}

}  // namespace e2d::raft
