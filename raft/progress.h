// Copyright e2d authors.
//
// What a leader knows about one follower's log, and the bound on what it sends it.
//
// States (as in etcd-io/raft):
//  - probe: the leader does not know where the follower's log matches; it sends at most one
//    append per heartbeat interval and backs `next` up on each rejection;
//  - replicate: the follower is known to match up to `match`; appends stream optimistically
//    (`next` runs ahead) within the inflight window;
//  - snapshot: the follower needs a snapshot; nothing else is sent until it is applied.

#ifndef E2D_RAFT_PROGRESS_H_
#define E2D_RAFT_PROGRESS_H_

#include <cstdint>
#include <deque>
#include <string>

namespace e2d::raft {

// A bounded window of in-flight appends, each remembered by its last index and size. The leader
// stops sending to a follower whose window is full, in count or in bytes.
class Inflights {
 public:
  Inflights(size_t count_max, uint64_t bytes_max) : count_max_(count_max), bytes_max_(bytes_max) {}

  // Records an append ending at `last_index`. REQUIRES: !full() and last_index increasing.
  void Add(uint64_t last_index, uint64_t size_bytes);
  // Forgets every append ending at or below `index` (acknowledged).
  void FreeLE(uint64_t index);
  void FreeFirstOne();
  void Reset();

  bool full() const { return entries_.size() >= count_max_ || bytes_ >= bytes_max_; }
  size_t count() const { return entries_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Flight {
    uint64_t last_index;
    uint64_t size_bytes;
  };
  const size_t count_max_;
  const uint64_t bytes_max_;
  std::deque<Flight> entries_;
  uint64_t bytes_ = 0;
};

enum class ProgressState { kProbe, kReplicate, kSnapshot };

const char* ProgressStateName(ProgressState state);

class Progress {
 public:
  Progress(uint64_t next, size_t inflight_count_max, uint64_t inflight_bytes_max)
      : next(next), inflights(inflight_count_max, inflight_bytes_max) {}

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);

  // An acknowledgement of `index`. Returns false if it was stale (at or below match).
  bool MaybeUpdate(uint64_t index);

  // A rejection of an append whose previous index was `rejected`, with the follower's hint of
  // where to probe next (`match_hint`). Returns false if the rejection is stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);

  // Whether the leader must hold back appends to this follower for now.
  bool paused() const;

  // Records that an append with entries up to `last_index` (`size_bytes` of them) was sent.
  void SentEntries(uint64_t last_index, uint64_t size_bytes);

  std::string ToString() const;

  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  uint64_t pending_snapshot = 0;  // in kSnapshot: the index of the snapshot sent
  bool probe_sent = false;        // in kProbe: an append was sent since the last heartbeat reply
  bool recent_active = false;     // heard from since the last check-quorum round
  bool is_learner = false;
  uint64_t commit = 0;            // the follower's commit index, as it last reported it
  uint64_t acked_beat = 0;        // the latest heartbeat round it acknowledged (leader lease)
  int snapshot_ticks = 0;         // in kSnapshot: ticks since the snapshot was sent
  Inflights inflights;
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_PROGRESS_H_
