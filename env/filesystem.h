// Copyright e2d authors.
//
// The file system as every core sees it. The real runtime backs it with POSIX calls (syncs on an
// I/O thread); the simulator with SimDisk, whose crash model is exact: what was not made durable
// by a completed sync is lost on a crash, and the unsynced tail may be torn.
//
// Paths are '/'-separated and relative to the node's data root; "" is the root itself.
// Durability contract (the one POSIX gives and our storage code must assume):
//  - file data written since the last completed Sync/DataSync of that file may be lost or torn
//    by a crash (a prefix of the writes, then a partial write at 512-byte sector granularity
//    whose rest reads as zeros or garbage);
//  - creating, renaming or removing a directory entry is durable only after a completed SyncDir
//    of the directory that holds it; a file's size change by append is made durable by DataSync.
// Errors: NotFound, AlreadyExists, FailedPrecondition (e.g. not a directory), Internal for EIO,
// ResourceExhausted for ENOSPC, DataLoss for detected corruption / unreadable sectors.

#ifndef E2D_ENV_FILESYSTEM_H_
#define E2D_ENV_FILESYSTEM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::env {

// Completion of a slow operation (a sync). Runs later on the node's thread, never from inside
// the call that started it, and never if the node crashed first.
using SyncCallback = std::function<void(absl::Status)>;

class File {
 public:
  virtual ~File() = default;

  // Writes `data` at the current end of the file.
  virtual absl::Status Append(std::string_view data) = 0;

  // Writes `data` at `offset` (like pwrite); writing past the end extends the file with zeros.
  virtual absl::Status WriteAt(uint64_t offset, std::string_view data) = 0;

  // Reads up to `n` bytes at `offset`; returns fewer only at the end of the file.
  virtual absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t n) = 0;

  // The current size in bytes (including writes not yet durable).
  virtual absl::StatusOr<uint64_t> Size() = 0;

  // Sets the size; growing fills with zeros.
  virtual absl::Status Truncate(uint64_t size) = 0;

  // fsync: makes every write and truncate issued on this file before the call durable, then
  // runs `done`. An error means nothing is promised about those writes.
  virtual void Sync(SyncCallback done) = 0;

  // fdatasync: like Sync for data and size; other metadata may stay volatile. The simulator
  // treats both alike.
  virtual void DataSync(SyncCallback done) = 0;
};

struct OpenOptions {
  bool create = false;     // create the file if it does not exist
  bool exclusive = false;  // with create: fail with AlreadyExists if it exists
  bool truncate = false;   // discard existing contents
  // A large file written once (a snapshot): a runtime may sync it apart from the others, so that
  // a log's small syncs never wait behind its flush. Order between syncs of different lanes is
  // not kept (within one file it is). The simulator ignores it.
  bool bulk = false;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens (and with options.create, creates) a regular file. The parent directory must exist.
  virtual absl::StatusOr<std::unique_ptr<File>> Open(std::string_view path,
                                                     const OpenOptions& options) = 0;

  // Creates a directory; OK if it already exists. The parent must exist.
  virtual absl::Status CreateDir(std::string_view path) = 0;

  // Atomically replaces `to` (if any) with `from`. Both in the same file system.
  virtual absl::Status Rename(std::string_view from, std::string_view to) = 0;

  // Removes a file or an empty directory.
  virtual absl::Status Remove(std::string_view path) = 0;

  // The names (not paths) in a directory, sorted bytewise.
  virtual absl::StatusOr<std::vector<std::string>> List(std::string_view dir) = 0;

  // True if `path` names a file or directory. Errors (e.g. a read fault) come back as status.
  virtual absl::StatusOr<bool> Exists(std::string_view path) = 0;

  // Makes the directory's entries (creations, renames, removals in it) durable, then runs `done`.
  virtual void SyncDir(std::string_view dir, SyncCallback done) = 0;
};

}  // namespace e2d::env

#endif  // E2D_ENV_FILESYSTEM_H_
