// Copyright e2d authors.

#include "node/recovery.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace e2d::node {

namespace {

std::string Hex(uint64_t id) { return absl::StrFormat("%016x", id); }

RecoveryDecision Decide(RecoveryDecision::Kind kind, uint64_t best, std::string why) {
  RecoveryDecision d;
  d.kind = kind;
  d.best = best;
  d.why = std::move(why);
  return d;
}

}  // namespace

RecoveryDecision DecideRecovery(const RecoveryView& v) {
  using Kind = RecoveryDecision::Kind;
  if (!v.leaderless_since.has_value()) return Decide(Kind::kNone, 0, "");
  if (!LostQuorum(v)) return Decide(Kind::kNone, 0, "");  // an election, most likely
  // Only without a leader: a member whose old cluster runs again (its lost majority came back)
  // keeps it, and does not throw its data away for another.
  if (v.recovered_by != 0 && v.recovered_by != v.self) {
    return Decide(Kind::kStepAside, v.recovered_by,
                  absl::StrCat("member ", Hex(v.recovered_by),
                               " started the cluster again from its data after the loss of a "
                               "majority: this member's data is superseded"));
  }
  if (!v.voter) {
    return Decide(Kind::kNone, 0,
                  "no leader for the health timeout; a learner holds no data of its own to "
                  "recover from: it waits");
  }
  int survivors = 1, lost = 0;
  uint64_t best = v.self, best_commit = v.commit;
  for (const RecoveryView::Voter& o : v.others) {
    if (o.alive) {
      if (!o.lost_quorum) {
        return Decide(Kind::kNone, 0,
                      absl::StrCat("no leader for the health timeout, but voter ", Hex(o.id),
                                   " is alive and has not declared quorum lost"));
      }
      ++survivors;
      if (o.commit > best_commit || (o.commit == best_commit && o.id < best)) {
        best = o.id;
        best_commit = o.commit;
      }
      continue;
    }
    if (v.now - o.down_since < v.health_timeout) {
      return Decide(Kind::kNone, 0,
                    absl::StrCat("no leader for the health timeout; voter ", Hex(o.id),
                                 " has not been down for the health timeout yet"));
    }
    ++lost;
  }
  const int voters = survivors + lost;
  if (survivors >= voters / 2 + 1) {
    return Decide(Kind::kNone, 0,
                  absl::StrCat("no leader, but ", survivors, " of the ", voters,
                               " voters are alive: a majority, quorum can come back"));
  }
  if (survivors + v.fresh < v.required_size / 2 + 1) {
    return Decide(
        Kind::kNone, 0,
        absl::StrCat(lost, " of the ", voters, " voters are lost, but this member sees ", "only ",
                     survivors, " survivor(s) and ", v.fresh,
                     " node(s) waiting to join, fewer than a majority of the ", v.required_size,
                     " members required: it may be cut off by a "
                     "partition, so it waits"));
  }
  const std::string lost_why =
      absl::StrCat(lost, " of the ", voters, " voters lost for the health timeout; ", survivors,
                   " survivor(s), the most data (commit index ", best_commit, ") at ", Hex(best));
  if (best != v.self) return Decide(Kind::kVote, best, lost_why);
  for (const RecoveryView::Voter& o : v.others) {
    if (o.alive && o.vote != v.self) {
      return Decide(Kind::kVote, best,
                    absl::StrCat(lost_why, "; waiting for survivor ", Hex(o.id), " to agree"));
    }
  }
  const std::string agreed = absl::StrCat(lost_why, "; every survivor agrees");
  if (v.backups) {
    if (!v.backup_checked || !v.backup_error.empty()) {
      RecoveryDecision d = Decide(
          Kind::kVote, best,
          v.backup_checked
              ? absl::StrCat(agreed, ", but the backup store could not be read (",
                             v.backup_error, "): waiting, since its newest backup may hold "
                             "writes no survivor has")
              : absl::StrCat(agreed, "; reading the newest backup of the cluster first"));
      d.needs_backup = true;
      return d;
    }
    if (v.newest_backup.has_value() && v.newest_backup->raft_index > best_commit) {
      RecoveryDecision d = Decide(
          Kind::kRestore, best,
          absl::StrCat(agreed, "; the newest backup ", v.newest_backup->name,
                       " holds more (Raft index ", v.newest_backup->raft_index, ", revision ",
                       v.newest_backup->revision, "): it is restored instead"));
      d.backup = v.newest_backup->name;
      return d;
    }
    return Decide(Kind::kForce, best,
                  absl::StrCat(agreed, "; ",
                               v.newest_backup.has_value()
                                   ? absl::StrCat("the newest backup ", v.newest_backup->name,
                                                  " holds no more (Raft index ",
                                                  v.newest_backup->raft_index, ")")
                                   : std::string("no backup of the cluster checks out")));
  }
  return Decide(Kind::kForce, best, agreed);
}

}  // namespace e2d::node
