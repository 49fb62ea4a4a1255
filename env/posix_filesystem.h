// Copyright e2d authors.
//
// PosixFileSystem: env::FileSystem on a real directory tree, for the node runtime and for
// benchmarks. Paths are relative to the root given at construction; an absolute path or a ".."
// component is refused (InvalidArgument naming the path), so nothing outside the root is
// reachable.
//
// Reads, writes, truncates and directory changes are plain blocking syscalls on the caller's
// thread. Sync, DataSync and SyncDir run fsync/fdatasync on one I/O thread the file system owns
// (a slow disk then delays completions, never the caller), at most `sync_queue_max` waiting;
// beyond that a request fails at once with ResourceExhausted. Completions are handed to
// `post`, which must run them later on the node's thread: they never run inside the call that
// started them. A file may be closed (its File destroyed) while its sync is queued: the
// descriptor stays open until the sync ran. The destructor finishes the queued syncs, posts
// their completions and joins the thread.
//
// Errors name the operation, the path and strerror: ENOENT -> NotFound, EEXIST ->
// AlreadyExists, ENOTDIR/EISDIR/ENOTEMPTY -> FailedPrecondition, ENOSPC/EDQUOT ->
// ResourceExhausted, everything else (EIO first) -> Internal.

#ifndef E2D_ENV_POSIX_FILESYSTEM_H_
#define E2D_ENV_POSIX_FILESYSTEM_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "env/filesystem.h"

namespace e2d::env {

class PosixFileSystem final : public FileSystem {
 public:
  using Poster = std::function<void(std::function<void()>)>;

  PosixFileSystem(std::string root, Poster post, size_t sync_queue_max = 1024);
  ~PosixFileSystem() override;
  PosixFileSystem(const PosixFileSystem&) = delete;
  PosixFileSystem& operator=(const PosixFileSystem&) = delete;

  absl::StatusOr<std::unique_ptr<File>> Open(std::string_view path,
                                             const OpenOptions& options) override;
  absl::Status CreateDir(std::string_view path) override;
  absl::Status Rename(std::string_view from, std::string_view to) override;
  absl::Status Remove(std::string_view path) override;
  absl::StatusOr<std::vector<std::string>> List(std::string_view dir) override;
  absl::StatusOr<bool> Exists(std::string_view path) override;
  void SyncDir(std::string_view dir, SyncCallback done) override;

  // The full path of `path` under the root, or InvalidArgument.
  absl::StatusOr<std::string> Resolve(std::string_view path) const;

  // Queues `op` for the I/O thread; its result goes to `done` through the poster.
  void Enqueue(std::function<absl::Status()> op, SyncCallback done);

 private:
  struct Job {
    std::function<absl::Status()> op;
    SyncCallback done;
  };
  void Run();

  const std::string root_;
  const Poster post_;
  const size_t sync_queue_max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::thread thread_;  // determinism-ok: real runtime only; the simulator uses SimDisk
};

// errno -> status, as the header comment says. `what` names the operation and the path.
absl::Status ErrnoToStatus(int err, std::string_view what);

}  // namespace e2d::env

#endif  // E2D_ENV_POSIX_FILESYSTEM_H_
