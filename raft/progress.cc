// Copyright e2d authors.

#include "raft/progress.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::raft {

void Inflights::Add(uint64_t last_index, uint64_t size_bytes) {
  E2D_CHECK(!full(), "inflights full (%zu appends, %llu bytes)", entries_.size(),
            static_cast<unsigned long long>(bytes_));
  E2D_CHECK(entries_.empty() || last_index > entries_.back().last_index,
            "inflight index %llu not increasing", static_cast<unsigned long long>(last_index));
  entries_.push_back(Flight{last_index, size_bytes});
  bytes_ += size_bytes;
}

void Inflights::FreeLE(uint64_t index) {
  while (!entries_.empty() && entries_.front().last_index <= index) FreeFirstOne();
}

void Inflights::FreeFirstOne() {
  if (entries_.empty()) return;
  bytes_ -= entries_.front().size_bytes;
  entries_.pop_front();
}

void Inflights::Reset() {
  entries_.clear();
  bytes_ = 0;
}

const char* ProgressStateName(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, the follower has at least the snapshot: probe after it.
  if (state == ProgressState::kSnapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.Reset();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(uint64_t index) {
  bool updated = false;
  if (index > match) {
    match = index;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, index + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // Appends at or below match are stale; otherwise back up to just after what matches.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe, only the rejection of the append we sent (next - 1) is current.
  if (next == 0 || next - 1 != rejected) return false;
  next = std::max<uint64_t>(std::min(rejected, match_hint + 1), 1);
  probe_sent = false;
  return true;
}

bool Progress::paused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return inflights.full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void Progress::SentEntries(uint64_t last_index, uint64_t size_bytes) {
  if (state == ProgressState::kReplicate) {
    if (last_index >= next) {
      next = last_index + 1;
      inflights.Add(last_index, size_bytes);
    }
  } else if (state == ProgressState::kProbe) {
    probe_sent = true;
  }
}

std::string Progress::ToString() const {
  return absl::StrFormat("%s match=%d next=%d inflight=%d%s", ProgressStateName(state), match,
                         next, inflights.count(), is_learner ? " learner" : "");
}

}  // namespace e2d::raft
