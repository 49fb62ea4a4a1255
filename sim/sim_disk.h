// Copyright e2d authors.
//
// SimDisk: one node's disk in the simulator, an env::FileSystem with an exact crash model.
//
// State: a tree of directory entries and a table of inodes. Each has a live view (what reads
// see) and a durable view (what survives a crash):
//  - file data: a write goes to the live content and onto the inode's pending list; a sync
//    that completes moves every pending op issued before the sync call into the durable content;
//  - directory entries (create, rename, remove): live at once, durable after SyncDir of the
//    directory holding them completes.
// Crash(): the live tree becomes the durable tree; each inode's live content becomes its durable
// content plus, when tearing is on, a random prefix of its pending ops in order, the next one
// torn at 512-byte sector granularity (whole sectors kept, the rest of that write's range zeros
// or garbage). Inodes no durable entry names are gone.
//
// Faults (DiskFaults): sync latency with jitter and rare spikes; stalls (no sync completes before
// a time); write EIO; failed syncs (as Linux after fsync EIO: the covered writes stay readable
// but are no longer pending, so a later successful sync does not make them durable and a crash
// loses them); ENOSPC past a capacity; injected read errors on byte ranges; bit flips.
//
// Every mutating operation and every sync completion is folded into the simulator digest.

#ifndef E2D_SIM_SIM_DISK_H_
#define E2D_SIM_SIM_DISK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "env/filesystem.h"
#include "env/random.h"
#include "sim/simulator.h"

namespace e2d::sim {

inline constexpr uint64_t kSectorSizeBytes = 512;

struct DiskFaults {
  int64_t sync_latency_ns = 200'000;      // base latency of Sync/DataSync/SyncDir
  int64_t sync_jitter_ns = 100'000;       // + uniform [0, jitter]
  double sync_spike_probability = 0;      // chance a sync takes sync_spike_latency_ns extra
  int64_t sync_spike_latency_ns = 50'000'000;
  int64_t stall_until_ns = 0;             // no sync completes before this virtual time
  double write_error_probability = 0;     // Append/WriteAt/Truncate fail with Internal (EIO)
  double sync_error_probability = 0;      // a sync completes with Internal (EIO)
  uint64_t capacity_bytes = UINT64_MAX;   // total live file bytes; beyond it ResourceExhausted
  bool tear_on_crash = true;              // false: a crash keeps exactly the durable state
};

// What a crash did to the unsynced tail, for tests and logs.
struct CrashReport {
  uint64_t pending_ops_lost = 0;   // pending ops not applied at all
  uint64_t pending_ops_kept = 0;   // pending ops applied whole
  uint64_t torn_writes = 0;        // pending writes applied partially
  uint64_t entries_reverted = 0;   // directory entries whose live state differed from durable
};

class SimDisk {
 public:
  // Callbacks of syncs are scheduled on `sim` as events of `node` (so they die with a crash).
  SimDisk(Simulator& sim, NodeId node, env::Random random);
  ~SimDisk();
  SimDisk(const SimDisk&) = delete;
  SimDisk& operator=(const SimDisk&) = delete;

  // The file system view. File objects opened before a Crash()/Wipe() fail every call with
  // FailedPrecondition afterwards.
  env::FileSystem& fs();

  DiskFaults& faults() { return faults_; }

  // Power loss / process crash (see the header comment). Pending sync callbacks never run.
  CrashReport Crash();

  // Permanent loss: the disk is replaced by an empty one (the root directory only).
  void Wipe();

  // Until cleared, reads overlapping [offset, offset + length) of the file at `path` fail with
  // DataLoss naming the path and offset. NotFound if no such file.
  absl::Status InjectReadError(std::string_view path, uint64_t offset, uint64_t length);
  void ClearReadErrors();

  // Flips bit `bit` (0..7) of the byte at `offset` in both the live and durable content (silent
  // corruption that survives a crash). OutOfRange if the byte does not exist in either.
  absl::Status FlipBit(std::string_view path, uint64_t offset, int bit);

  // Inspection for tests and oracles (no digest effect).
  std::optional<std::string> LiveContents(std::string_view path) const;
  std::optional<std::string> DurableContents(std::string_view path) const;
  uint64_t used_bytes() const;

  class Impl;

 private:
  Simulator& sim_;
  DiskFaults faults_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_SIM_DISK_H_
