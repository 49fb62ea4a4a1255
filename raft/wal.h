// Copyright e2d authors.
//
// The Raft write-ahead log: the durable record of a node's log entries and hard state, on
// env::FileSystem, so the same code runs on a real disk and on SimDisk.
//
// Layout: a directory of segment files named "%016x-%016x.wal" (segment sequence number, index
// of the first entry the segment may hold). A new segment starts when the current one would
// exceed segment_size_bytes_max. Each record is 8-byte aligned:
//   u32 crc32c (masked, over everything after it) | u32 payload length | u8 type | 3 zero bytes |
//   u64 record sequence number (strictly increasing across the whole WAL) | payload | padding
// Record types: entry (a raftpb::Entry), hard state (raftpb::HardState), snapshot marker
// (index + term of a snapshot that was durably saved elsewhere).
//
// Durability: Append() only buffers. Sync() writes every buffered record, DataSyncs the
// segment (and the directory when a segment was created), and then runs its callback. Calls
// that arrive while a sync is in flight are coalesced into the next one (group commit): many
// appends, one fsync. A failed write or sync makes the WAL unusable: every later call fails
// with the first error (after an fsync error the page cache cannot be trusted).
//
// Recovery (Open): reads segments in order. An entry with index i replaces every entry with
// index >= i read before it (a leader overwrote a conflicting suffix). A record that fails
// its checks where nothing valid follows it in the last segment is a torn tail: it and
// everything after it are cut off (truncate + sync) and Open succeeds. A bad record with a valid
// later record after it (same segment, found by scanning aligned offsets), or a bad record in a
// segment that is not the last, is corruption of data that was durable: Open fails with
// DataLoss naming the file and byte offset, and changes nothing on disk. Open itself does not
// wait for syncs: the repairs Open makes (cutting a torn tail, creating the directory or the
// first segment) become durable with the first Sync; a crash before it only means the next Open
// repairs the same tail again.

#ifndef E2D_RAFT_WAL_H_
#define E2D_RAFT_WAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "env/filesystem.h"
#include "raft/raftpb.pb.h"

namespace e2d::raft {

struct WalOptions {
  std::string dir = "wal";
  uint64_t segment_size_bytes_max = 64ull << 20;
  // Bound on bytes buffered by Append() and not yet handed to a sync; beyond it Append fails
  // with ResourceExhausted (the caller must Sync and wait).
  uint64_t buffer_bytes_max = 64ull << 20;
  // Bound on one record's payload; larger records are refused on append and treated as
  // corruption on read.
  uint64_t record_bytes_max = 16ull << 20;
};

struct SnapshotMarker {
  uint64_t index = 0;
  uint64_t term = 0;
};

// What recovery found.
struct WalContents {
  std::optional<raftpb::HardState> hard_state;  // the last one written
  std::optional<SnapshotMarker> snapshot;       // the last marker written
  std::vector<raftpb::Entry> entries;           // contiguous, increasing indexes, after overwrites
  uint64_t torn_bytes_cut = 0;                  // bytes removed from a torn tail
};

class Wal {
 public:
  // Opens or creates the WAL in options.dir and recovers it (see the header comment).
  static absl::StatusOr<std::unique_ptr<Wal>> Open(env::FileSystem& fs, const WalOptions& options,
                                                   WalContents* contents);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Buffers entries (which must continue the log: the first index is at most last index + 1;
  // a lower index overwrites a suffix) and, if given, a hard state. InvalidArgument for a gap,
  // ResourceExhausted past buffer_bytes_max, the sticky error once the WAL failed.
  absl::Status Append(const std::vector<raftpb::Entry>& entries,
                      const raftpb::HardState* hard_state);

  // Buffers a snapshot marker (durable with the next sync).
  absl::Status AppendSnapshotMarker(const SnapshotMarker& marker);

  // Makes everything appended before this call durable, then runs `done` (never inline).
  void Sync(std::function<void(absl::Status)> done);

  // Removes whole segments all of whose entries are at or below `index` (which a durable
  // snapshot covers), keeping the segment that holds the latest hard state and marker valid.
  absl::Status ReleaseTo(uint64_t index);

  uint64_t last_index() const;
  bool failed() const;

  class Impl;

 private:
  explicit Wal(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_WAL_H_
