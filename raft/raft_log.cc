// Copyright e2d authors.

#include "raft/raft_log.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::raft {
namespace {
using ull = unsigned long long;
}  // namespace

RaftLog::RaftLog(uint64_t snapshot_index, uint64_t snapshot_term,
                 std::vector<raftpb::Entry> entries, uint64_t committed)
    : snapshot_index_(snapshot_index),
      snapshot_term_(snapshot_term),
      entries_(std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end())),
      committed_(std::max(committed, snapshot_index)),
      applied_(snapshot_index),
      stable_index_(snapshot_index + entries_.size()),
      unpersisted_from_(stable_index_ + 1) {
  for (size_t i = 0; i < entries_.size(); ++i) {
    E2D_CHECK(entries_[i].index() == snapshot_index_ + 1 + i, "recovered log not contiguous at %zu",
              i);
  }
  CheckInvariants();
}

void RaftLog::CheckInvariants() const {
  E2D_CHECK(snapshot_index_ <= applied_ && applied_ <= committed_ && committed_ <= last_index(),
            "log indexes out of order: snapshot %llu applied %llu committed %llu last %llu",
            (ull)snapshot_index_, (ull)applied_, (ull)committed_, (ull)last_index());
  E2D_CHECK(stable_index_ <= last_index() && unpersisted_from_ <= last_index() + 1,
            "stable %llu / unpersisted %llu past last %llu", (ull)stable_index_,
            (ull)unpersisted_from_, (ull)last_index());
}

const raftpb::Entry& RaftLog::at(uint64_t index) const {
  E2D_CHECK(index > snapshot_index_ && index <= last_index(), "index %llu outside (%llu, %llu]",
            (ull)index, (ull)snapshot_index_, (ull)last_index());
  return entries_[index - snapshot_index_ - 1];
}

uint64_t RaftLog::TermOr0(uint64_t index) const {
  if (index == snapshot_index_) return snapshot_term_;
  if (index < snapshot_index_ || index > last_index()) return 0;
  return at(index).term();
}

bool RaftLog::MatchTerm(uint64_t index, uint64_t term) const {
  if (index < snapshot_index_ || index > last_index()) return false;
  return TermOr0(index) == term;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t last_term) const {
  return last_term > this->last_term() ||
         (last_term == this->last_term() && last_index >= this->last_index());
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                             const std::vector<raftpb::Entry>& entries) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  const uint64_t last_new = index + entries.size();
  // Skip the entries we already have; append from the first one that is new or conflicts.
  size_t first_new = 0;
  while (first_new < entries.size() &&
         (entries[first_new].index() <= snapshot_index_ ||  // compacted: committed, so equal
          MatchTerm(entries[first_new].index(), entries[first_new].term()))) {
    ++first_new;
  }
  if (first_new < entries.size()) {
    E2D_CHECK(entries[first_new].index() > committed_,
              "append conflicts with committed entry %llu (committed %llu)",
              (ull)entries[first_new].index(), (ull)committed_);
    Append(std::vector<raftpb::Entry>(entries.begin() + first_new, entries.end()));
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(const std::vector<raftpb::Entry>& entries) {
  if (entries.empty()) return last_index();
  const uint64_t first = entries.front().index();
  E2D_CHECK(first > committed_ && first <= last_index() + 1,
            "append at %llu: committed %llu, last %llu", (ull)first, (ull)committed_,
            (ull)last_index());
  if (first <= last_index()) {  // overwrite a suffix
    entries_.resize(first - snapshot_index_ - 1);
    stable_index_ = std::min(stable_index_, first - 1);
    unpersisted_from_ = std::min(unpersisted_from_, first);
  }
  for (const raftpb::Entry& e : entries) {
    E2D_CHECK(e.index() == last_index() + 1, "append not contiguous at %llu", (ull)e.index());
    entries_.push_back(e);
  }
  CheckInvariants();
  return last_index();
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  index = std::min(index, last_index());
  while (index > snapshot_index_) {
    const uint64_t t = TermOr0(index);
    if (t <= term) return {index, t};
    --index;
  }
  return {index, TermOr0(index)};
}

void RaftLog::CommitTo(uint64_t index) {
  if (index <= committed_) return;
  E2D_CHECK(index <= last_index(), "commit %llu past last index %llu", (ull)index,
            (ull)last_index());
  committed_ = index;
}

bool RaftLog::MaybeCommit(uint64_t index, uint64_t term) {
  if (index > committed_ && TermOr0(index) == term) {
    CommitTo(index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(uint64_t index) {
  if (index == 0) return;
  E2D_CHECK(index >= applied_ && index <= committed_, "applied %llu outside [%llu, %llu]",
            (ull)index, (ull)applied_, (ull)committed_);
  applied_ = index;
}

std::vector<raftpb::Entry> RaftLog::Slice(uint64_t lo, uint64_t hi, uint64_t bytes_max) const {
  E2D_CHECK(first_index() <= lo && lo <= hi && hi <= last_index() + 1,
            "slice [%llu, %llu) outside [%llu, %llu]", (ull)lo, (ull)hi, (ull)first_index(),
            (ull)last_index() + 1);
  std::vector<raftpb::Entry> out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const raftpb::Entry& e = at(i);
    bytes += e.ByteSizeLong();
    if (!out.empty() && bytes > bytes_max) break;
    out.push_back(e);
  }
  return out;
}

uint64_t RaftLog::FindConfChange(uint64_t after, const std::string& data) const {
  for (uint64_t i = std::max(after + 1, first_index()); i <= last_index(); ++i) {
    const raftpb::Entry& e = at(i);
    if (e.type() == raftpb::ENTRY_CONF_CHANGE && e.data() == data) return i;
  }
  return 0;
}

std::vector<raftpb::Entry> RaftLog::TakeUnpersisted() {
  std::vector<raftpb::Entry> out;
  for (uint64_t i = std::max(unpersisted_from_, first_index()); i <= last_index(); ++i) {
    out.push_back(at(i));
  }
  unpersisted_from_ = last_index() + 1;
  return out;
}

void RaftLog::StableTo(const std::vector<raftpb::Entry>& persisted) {
  // The newest persisted entry still in the log proves all before it (Log Matching).
  for (auto it = persisted.rbegin(); it != persisted.rend(); ++it) {
    if (MatchTerm(it->index(), it->term())) {
      stable_index_ = std::max(stable_index_, it->index());
      break;
    }
  }
  CheckInvariants();
}

std::string RaftLog::ToString() const {
  return absl::StrFormat("log[snap=%d/%d last=%d/%d committed=%d applied=%d stable=%d]",
                         snapshot_index_, snapshot_term_, last_index(), last_term(), committed_,
                         applied_, stable_index_);
}

void RaftLog::CompactTo(uint64_t index) {
  E2D_CHECK(index > snapshot_index_ && index <= applied_ && index <= stable_index_,
            "compact to %llu outside (snapshot %llu, min(applied %llu, stable %llu)]", (ull)index,
            (ull)snapshot_index_, (ull)applied_, (ull)stable_index_);
  snapshot_term_ = at(index).term();
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<long>(index - snapshot_index_));
  snapshot_index_ = index;
  CheckInvariants();
}

void RaftLog::Restore(uint64_t index, uint64_t term) {
  E2D_CHECK(index > committed_, "restore to %llu at or below committed %llu", (ull)index,
            (ull)committed_);
  entries_.clear();
  snapshot_index_ = index;
  snapshot_term_ = term;
  committed_ = applied_ = stable_index_ = index;
  unpersisted_from_ = index + 1;
  CheckInvariants();
}

}  // namespace e2d::raft
