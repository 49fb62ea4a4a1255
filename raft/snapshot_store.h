// Copyright e2d authors.
//
// SnapshotStore: a node's state-machine snapshots as files on env::FileSystem, one per
// snapshot, named "%016x-%016x.snap" (term, index) in one directory.
//
// File layout (little-endian):
//   "E2DSNAP1" | u32 crc32c of everything after this field | u32 metadata length |
//   u64 data length | raftpb::SnapshotMetadata | data
// Save is atomic: the bytes go to "<name>.tmp", which is data-synced, renamed to its name, and
// the directory synced; only then does Save report success. A crash leaves either no file or
// the whole file (a stray .tmp is removed by Open). Load checks everything and names the file
// and the problem on failure (DataLoss); nothing on disk is changed by reading.
// Older snapshots are removed only on request (RemoveBelow), once nothing refers to them (the
// WAL's newer marker is durable).

#ifndef E2D_RAFT_SNAPSHOT_STORE_H_
#define E2D_RAFT_SNAPSHOT_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "env/filesystem.h"
#include "raft/raftpb.pb.h"

namespace e2d::raft {

struct StoredSnapshot {
  raftpb::SnapshotMetadata metadata;
  std::string data;
};

class SnapshotStore {
 public:
  SnapshotStore(env::FileSystem& fs, std::string dir, uint64_t data_bytes_max)
      : fs_(fs), dir_(std::move(dir)), data_bytes_max_(data_bytes_max) {}

  // Creates the directory if needed and removes temporary files a crash left behind.
  absl::Status Open();

  // Saves atomically (see the header comment), then runs `done` (never inline).
  // InvalidArgument past data_bytes_max; the file system's errors (e.g. ResourceExhausted when
  // the disk is full), after which the temporary file is removed (best effort).
  void Save(const raftpb::SnapshotMetadata& metadata, const std::string& data,
            std::function<void(absl::Status)> done);

  // The snapshot (index, term). NotFound if there is no such file; DataLoss naming the file
  // when it is damaged or is not the snapshot its name says.
  absl::StatusOr<StoredSnapshot> Load(uint64_t index, uint64_t term);

  // Removes every snapshot with an index below `index`.
  absl::Status RemoveBelow(uint64_t index);

  static std::string FileName(uint64_t index, uint64_t term);

 private:
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  env::FileSystem& fs_;
  const std::string dir_;
  const uint64_t data_bytes_max_;
  bool parent_synced_ = false;  // the directory's entry in its parent is durable
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_SNAPSHOT_STORE_H_
