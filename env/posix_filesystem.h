// Copyright e2d authors.
//
// PosixFileSystem: env::FileSystem on a real directory tree, for the node runtime and for
// benchmarks. Paths are relative to the root given at construction; an absolute path, a ".."
// component, or a "." or empty component ("a//b", "a/") is refused with InvalidArgument naming
// the path, so nothing outside the root is reachable and every file has one spelling.
//
// Reads, writes, truncates and directory changes are plain blocking syscalls on the caller's
// thread. Sync, DataSync and SyncDir run fsync/fdatasync on an I/O thread the file system owns
// (a slow disk then delays completions, never the caller), at most `sync_queue_max` waiting per
// thread; beyond that a request fails with ResourceExhausted. There are two such threads
// (lanes): one for files opened with OpenOptions::bulk (snapshots), one for everything else (the
// WAL, directories), so that a WAL sync never queues behind the flush of a large snapshot.
// Accepted requests of one lane run and complete in the order they were made.
//
// The poster contract. Every completion, failures included (a full queue, a bad path), is handed
// to `post`, never run inside the call that started it. `post` is called from the I/O thread and
// from the caller's thread, so it must be thread-safe; it must not run the function it is given
// (it queues it for the node's thread, e.g. asio::post or env::CompletionQueue); and it must stay
// callable until the destructor has returned. Whatever is posted must eventually be run for the
// callbacks to happen; nothing here waits for that.
//
// Lifetimes: a File may be destroyed while its sync is queued (the descriptor stays open until
// the sync ran), but every File must be destroyed before its PosixFileSystem. The destructor
// finishes the queued syncs, posts their completions and joins the I/O thread.
//
// Errors name the operation, the full path and strerror: ENOENT -> NotFound, EEXIST ->
// AlreadyExists, EACCES/EPERM -> PermissionDenied, ENOTDIR/EISDIR/ENOTEMPTY ->
// FailedPrecondition, ENOSPC/EDQUOT ->
// ResourceExhausted, everything else (EIO first) -> Internal. Where POSIX leaves room, answers
// match SimDisk's: CreateDir over a file is AlreadyExists, Exists below a file is false, and
// Remove or Rename of the root ("") is InvalidArgument.

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

  // `root` must be an existing directory (not checked here: the first operation reports it).
  // Crashes (E2D_CHECK) on an empty root, an empty poster or a zero queue bound.
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

  // Queues `op` for the I/O thread; its result goes to `done` through the poster (or
  // ResourceExhausted naming `what`, through the poster too, when sync_queue_max requests
  // already wait). The file system's own syncs go through here; public so tests can hold the
  // I/O thread.
  enum class Lane { kNormal = 0, kBulk = 1 };
  void Enqueue(std::string_view what, std::function<absl::Status()> op, SyncCallback done,
               Lane lane = Lane::kNormal);

 private:
  struct Job {
    std::function<absl::Status()> op;
    SyncCallback done;
  };
  struct Queue {
    std::condition_variable cv;
    std::deque<Job> jobs;  // guarded by mu_
    std::thread thread;    // determinism-ok: real runtime only; the simulator uses SimDisk
  };
  void Run(Queue& q);
  // Hands `done(status)` to the poster.
  void Complete(SyncCallback done, absl::Status status);

  const std::string root_;
  const Poster post_;
  const size_t sync_queue_max_;
  std::mutex mu_;
  bool stop_ = false;  // guarded by mu_
  Queue lanes_[2];     // by Lane
};

// errno -> status, as the header comment says. `what` names the operation and the path.
absl::Status ErrnoToStatus(int err, std::string_view what);

}  // namespace e2d::env

#endif  // E2D_ENV_POSIX_FILESYSTEM_H_
