// Copyright e2d authors.
//
// RaftLog: one node's view of the replicated log. Entries after the last snapshot live in
// memory; the log also tracks which of them are durable (handed to the WAL and synced), which
// are committed, and which are applied. Indexes start at 1; index 0 has term 0.
//
// Invariants (checked): snapshot_index <= applied <= committed <= last_index, and
// stable_index <= last_index; committed never decreases.

#ifndef E2D_RAFT_RAFT_LOG_H_
#define E2D_RAFT_RAFT_LOG_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "raft/raftpb.pb.h"

namespace e2d::raft {

class RaftLog {
 public:
  // A log recovered from durable state: a snapshot at (snapshot_index, snapshot_term) (0, 0 if
  // none), then `entries` (contiguous from snapshot_index + 1, all durable), and the durable
  // commit index. REQUIRES (crashes otherwise): contiguity, commit within the log.
  RaftLog(uint64_t snapshot_index, uint64_t snapshot_term, std::vector<raftpb::Entry> entries,
          uint64_t committed);

  uint64_t first_index() const { return snapshot_index_ + 1; }
  uint64_t last_index() const { return snapshot_index_ + entries_.size(); }
  uint64_t last_term() const { return TermOr0(last_index()); }
  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t stable_index() const { return stable_index_; }
  uint64_t snapshot_index() const { return snapshot_index_; }

  // The term of the entry at `index`: the snapshot's term at snapshot_index, 0 below it (the
  // entry was compacted away) or past the end.
  uint64_t TermOr0(uint64_t index) const;
  bool MatchTerm(uint64_t index, uint64_t term) const;

  // §5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?
  bool IsUpToDate(uint64_t last_index, uint64_t last_term) const;

  // Follower side of AppendEntries (§5.3): if our log has (index, log_term), appends `entries`
  // after it, truncating from the first conflicting entry, advances commit to
  // min(committed, index of the last new entry) and returns that last new index. Returns
  // nullopt if the previous entry does not match.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<raftpb::Entry>& entries);

  // Appends at the end or overwrites a suffix (the first entry's index may be <= last + 1).
  // Crashes if it would overwrite a committed entry or leave a gap. Returns the new last index.
  uint64_t Append(const std::vector<raftpb::Entry>& entries);

  // A hint for a leader whose append at `index` with `term` was rejected: the largest index
  // <= `index` whose term is <= `term`, with its term (the fast backtracking of etcd-io/raft).
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index, uint64_t term) const;

  void CommitTo(uint64_t index);  // no-op if lower; crashes past last_index
  // Leader (§5.4.2): commits `index` only if its entry has the current `term`. Returns whether
  // the commit index advanced.
  bool MaybeCommit(uint64_t index, uint64_t term);
  void AppliedTo(uint64_t index);  // crashes unless applied <= index <= committed

  // Entries in [lo, hi) totalling at most `bytes_max` (but always at least one if any).
  // REQUIRES: first_index <= lo <= hi <= last_index + 1.
  std::vector<raftpb::Entry> Slice(uint64_t lo, uint64_t hi, uint64_t bytes_max) const;

  // The index of the first conf change entry after `after` whose data is `data`, or 0 if the
  // log holds none (entries compacted away are not searched).
  uint64_t FindConfChange(uint64_t after, const std::string& data) const;

  // Persistence: the entries not yet handed out for persistence, and marking them handed out.
  bool HasUnpersisted() const { return unpersisted_from_ <= last_index(); }
  std::vector<raftpb::Entry> TakeUnpersisted();
  // The entries handed out by TakeUnpersisted are now durable, except those overwritten since.
  void StableTo(const std::vector<raftpb::Entry>& persisted);

  // Log compaction: drops the entries up to `index`, which a durable snapshot now covers.
  // REQUIRES (crashes otherwise): snapshot_index < index <= applied and index <= stable_index.
  void CompactTo(uint64_t index);

  // Installs a snapshot received from the leader: every entry is dropped and the log restarts
  // after (index, term), committed and applied there. REQUIRES: index > committed.
  void Restore(uint64_t index, uint64_t term);

  uint64_t snapshot_term() const { return snapshot_term_; }

  std::string ToString() const;

 private:
  const raftpb::Entry& at(uint64_t index) const;
  void CheckInvariants() const;

  uint64_t snapshot_index_;
  uint64_t snapshot_term_;
  std::deque<raftpb::Entry> entries_;  // entries_[i].index() == snapshot_index_ + 1 + i
  uint64_t committed_;
  uint64_t applied_;
  uint64_t stable_index_;      // entries up to here are durable
  uint64_t unpersisted_from_;  // entries from here on were never handed out for persistence
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_RAFT_LOG_H_
