// Copyright e2d authors.

#include "node/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace e2d::node {

namespace {

std::string Hex(uint64_t id) { return absl::StrFormat("%016x", id); }

bool Up(const MembershipView& v, const MembershipView::RaftMember& m) {
  return m.id == v.self || (m.alive && m.recently_active);
}

bool DownLongEnough(const MembershipView& v, const MembershipView::RaftMember& m) {
  return m.id != v.self && !m.alive && !m.recently_active &&
         v.now - m.down_since >= v.health_timeout;
}

MembershipAction Act(MembershipAction::Kind kind, uint64_t id, std::string why) {
  MembershipAction a;
  a.kind = kind;
  a.id = id;
  a.why = std::move(why);
  return a;
}

}  // namespace

MembershipAction DecideMembership(const MembershipView& v) {
  using Kind = MembershipAction::Kind;
  if (v.change_pending) return Act(Kind::kNone, 0, "a membership change is being applied");
  std::vector<MembershipView::RaftMember> members = v.members;
  std::sort(members.begin(), members.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  int voters = 0, learners = 0, voters_up = 0;
  for (const auto& m : members) {
    (m.learner ? learners : voters) += 1;
    if (!m.learner && Up(v, m)) ++voters_up;
  }

  // 1. Promote a live learner in sync while voters are missing.
  if (voters < v.required_size) {
    for (const auto& m : members) {
      if (m.learner && m.alive && m.recently_active && m.match > 0 &&
          m.match * 10 >= v.last_index * 9) {
        return Act(Kind::kPromote, m.id,
                   absl::StrCat("learner ", Hex(m.id), " is in sync (", m.match, " of ",
                                v.last_index, ") and the cluster has ", voters, " of its ",
                                v.required_size, " voters"));
      }
    }
  }
  std::string held;  // a learner not promoted yet, and why
  for (const auto& m : members) {
    if (m.learner && !DownLongEnough(v, m)) {
      held = absl::StrCat("learner ", Hex(m.id), " is not in sync yet (", m.match, " of ",
                          v.last_index, m.alive && m.recently_active ? ")" : ", not heard from)");
      break;
    }
  }

  // 2. Remove a member down for the health timeout, keeping a live majority of voters.
  for (const auto& m : members) {
    if (!DownLongEnough(v, m)) continue;
    const std::string down = absl::StrCat(
        "member ", Hex(m.id), " has not been seen alive by gossip nor heard from by Raft for ",
        absl::FormatDuration(v.now - m.down_since), " (health timeout ",
        absl::FormatDuration(v.health_timeout), ")");
    if (m.learner) return Act(Kind::kRemove, m.id, down);
    const int left = voters - 1;
    if (voters_up >= left / 2 + 1) return Act(Kind::kRemove, m.id, down);
    return Act(Kind::kNone, 0,
               absl::StrCat(down, ", but only ", voters_up, " of the ", left,
                            " voters left would be up: not removed while quorum is at risk"));
  }

  // 3. A learner is only for a missing voter: once the cluster has its voters again (-n lowered
  //    while it caught up), nothing would promote it; remove it.
  if (voters >= v.required_size) {
    for (const auto& m : members) {
      if (!m.learner) continue;
      return Act(Kind::kRemove, m.id,
                 absl::StrCat("the cluster has ", voters, " voters and requires ",
                              v.required_size, ": learner ", Hex(m.id), " is not needed"));
    }
  }

  // 4. Add a learner while members are missing, one at a time.
  if (voters + learners < v.required_size) {
    if (learners > 0) return Act(Kind::kNone, 0, held.empty() ? "a learner is catching up" : held);
    std::vector<MembershipView::Candidate> candidates = v.candidates;
    std::sort(candidates.begin(), candidates.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    for (const auto& c : candidates) {
      if (std::any_of(members.begin(), members.end(),
                      [&](const auto& m) { return m.id == c.id; })) {
        continue;
      }
      MembershipAction a = Act(
          Kind::kAddLearner, c.id,
          absl::StrCat("the cluster has ", voters + learners, " of its ", v.required_size,
                       " members and ", c.name, " at ", c.peer_address, " waits to join"));
      a.peer_address = c.peer_address;
      return a;
    }
    return Act(Kind::kNone, 0,
               absl::StrCat("the cluster has ", voters + learners, " of its ", v.required_size,
                            " members and no node waits to join"));
  }

  // 5. Scale down: a voter beyond the required size, only while all are up.
  if (voters > v.required_size && learners == 0 && voters_up == voters) {
    for (auto it = members.rbegin(); it != members.rend(); ++it) {
      if (it->learner || it->id == v.self) continue;
      return Act(Kind::kRemove, it->id,
                 absl::StrCat("the cluster has ", voters, " voters and requires ",
                              v.required_size));
    }
  }
  return Act(Kind::kNone, 0, held);
}

}  // namespace e2d::node
