// Copyright e2d authors.

#include "env/posix_filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "env/check.h"
#include "env/strings.h"

namespace e2d::env {
namespace {

// A descriptor shared by a File and the syncs queued for it.
struct Fd {
  explicit Fd(int fd) : fd(fd) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
};

class PosixFile final : public File {
 public:
  PosixFile(PosixFileSystem* fs, std::string path, int fd, PosixFileSystem::Lane lane)
      : fs_(fs), path_(std::move(path)), fd_(std::make_shared<Fd>(fd)), lane_(lane) {}

  absl::Status Append(std::string_view data) override {
    struct stat st;
    if (::fstat(fd_->fd, &st) != 0) return ErrnoToStatus(errno, absl::StrCat("fstat ", path_));
    return WriteAt(static_cast<uint64_t>(st.st_size), data);
  }

  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(fd_->fd, data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, absl::StrCat("writing ", path_, " at offset ", offset + done));
      }
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t n) override {
    std::string out(n, '\0');
    size_t done = 0;
    while (done < n) {
      const ssize_t r =
          ::pread(fd_->fd, out.data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, absl::StrCat("reading ", path_, " at offset ", offset + done));
      }
      if (r == 0) break;  // end of file
      done += static_cast<size_t>(r);
    }
    out.resize(done);
    return out;
  }

  absl::StatusOr<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_->fd, &st) != 0) return ErrnoToStatus(errno, absl::StrCat("fstat ", path_));
    return static_cast<uint64_t>(st.st_size);
  }

  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_->fd, static_cast<off_t>(size)) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("truncating ", path_, " to ", size));
    }
    return absl::OkStatus();
  }

  void Sync(SyncCallback done) override { SyncWith(false, std::move(done)); }
  void DataSync(SyncCallback done) override { SyncWith(true, std::move(done)); }

 private:
  void SyncWith(bool data_only, SyncCallback done) {
    E2D_CHECK(done != nullptr, "a sync needs a callback");
    std::string what = absl::StrCat(data_only ? "fdatasync " : "fsync ", path_);
    std::shared_ptr<Fd> fd = fd_;  // keeps the descriptor open if the File closes first
    auto op = [fd, what, data_only]() -> absl::Status {
      const int r = data_only ? ::fdatasync(fd->fd) : ::fsync(fd->fd);
      if (r != 0) return ErrnoToStatus(errno, what);
      return absl::OkStatus();
    };
    fs_->Enqueue(what, std::move(op), std::move(done), lane_);
  }

  PosixFileSystem* fs_;
  const std::string path_;
  std::shared_ptr<Fd> fd_;
  const PosixFileSystem::Lane lane_;
};

}  // namespace

absl::Status ErrnoToStatus(int err, std::string_view what) {
  const std::string message = absl::StrCat(ToAbsl(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
      return absl::FailedPreconditionError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

PosixFileSystem::PosixFileSystem(std::string root, Poster post, size_t sync_queue_max)
    : root_(std::move(root)), post_(std::move(post)), sync_queue_max_(sync_queue_max) {
  E2D_CHECK(!root_.empty(), "PosixFileSystem needs a root directory");
  E2D_CHECK(post_ != nullptr, "PosixFileSystem needs a completion poster");
  E2D_CHECK(sync_queue_max_ > 0, "a sync queue bound of 0 would refuse every sync");
  for (Queue& q : lanes_) {
    q.thread = std::thread([this, &q] { Run(q); });  // determinism-ok: real runtime only
  }
}

PosixFileSystem::~PosixFileSystem() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    E2D_CHECK(!stop_, "destroyed twice");
    stop_ = true;
  }
  for (Queue& q : lanes_) {
    q.cv.notify_all();
    q.thread.join();
    E2D_CHECK(q.jobs.empty(), "an I/O thread stopped with %zu syncs queued", q.jobs.size());
  }
}

absl::StatusOr<std::string> PosixFileSystem::Resolve(std::string_view path) const {
  if (path.empty()) return root_;
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path '", ToAbsl(path), "' is absolute; paths are relative to the root"));
  }
  for (absl::string_view part : absl::StrSplit(ToAbsl(path), '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("path '", ToAbsl(path), "' has a '..' component (escapes the root)"));
    }
    if (part == "." || part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("path '", ToAbsl(path), "' has an empty or '.' component"));
    }
  }
  return absl::StrCat(root_, "/", ToAbsl(path));
}

absl::StatusOr<std::unique_ptr<File>> PosixFileSystem::Open(std::string_view path,
                                                            const OpenOptions& options) {
  absl::StatusOr<std::string> full = Resolve(path);
  if (!full.ok()) return full.status();
  int flags = O_RDWR | O_CLOEXEC;
  if (options.create) flags |= O_CREAT;
  if (options.create && options.exclusive) flags |= O_EXCL;
  if (options.truncate) flags |= O_TRUNC;
  const int fd = ::open(full->c_str(), flags, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", *full));
  return std::unique_ptr<File>(new PosixFile(
      this, *full, fd, options.bulk ? Lane::kBulk : Lane::kNormal));
}

absl::Status PosixFileSystem::CreateDir(std::string_view path) {
  absl::StatusOr<std::string> full = Resolve(path);
  if (!full.ok()) return full.status();
  if (::mkdir(full->c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("creating directory ", *full));
  }
  struct stat st;
  if (::stat(full->c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", *full));
  if (!S_ISDIR(st.st_mode)) {  // mkdir's EEXIST, as SimDisk reports it
    return absl::AlreadyExistsError(
        absl::StrCat("creating directory ", *full, ": exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status PosixFileSystem::Rename(std::string_view from, std::string_view to) {
  if (from.empty() || to.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("renaming '", ToAbsl(from), "' to '",
                                                   ToAbsl(to), "': cannot rename the root"));
  }
  absl::StatusOr<std::string> a = Resolve(from);
  if (!a.ok()) return a.status();
  absl::StatusOr<std::string> b = Resolve(to);
  if (!b.ok()) return b.status();
  if (::rename(a->c_str(), b->c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("renaming ", *a, " to ", *b));
  }
  return absl::OkStatus();
}

absl::Status PosixFileSystem::Remove(std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("cannot remove the root directory");
  absl::StatusOr<std::string> full = Resolve(path);
  if (!full.ok()) return full.status();
  if (::remove(full->c_str()) != 0) return ErrnoToStatus(errno, absl::StrCat("removing ", *full));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::List(std::string_view dir) {
  absl::StatusOr<std::string> full = Resolve(dir);
  if (!full.ok()) return full.status();
  DIR* d = ::opendir(full->c_str());
  if (d == nullptr) return ErrnoToStatus(errno, absl::StrCat("listing ", *full));
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoToStatus(err, absl::StrCat("listing ", *full));
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<bool> PosixFileSystem::Exists(std::string_view path) {
  absl::StatusOr<std::string> full = Resolve(path);
  if (!full.ok()) return full.status();
  struct stat st;
  if (::stat(full->c_str(), &st) == 0) return true;
  // ENOTDIR: an ancestor is a file, so nothing below it exists (as SimDisk answers).
  if (errno == ENOENT || errno == ENOTDIR) return false;
  return ErrnoToStatus(errno, absl::StrCat("stat ", *full));
}

void PosixFileSystem::SyncDir(std::string_view dir, SyncCallback done) {
  E2D_CHECK(done != nullptr, "SyncDir needs a callback");
  absl::StatusOr<std::string> full = Resolve(dir);
  if (!full.ok()) {
    Complete(std::move(done), full.status());
    return;
  }
  std::string what = absl::StrCat("syncing directory ", *full);
  auto op = [path = *full, what]() -> absl::Status {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening directory ", path));
    const int r = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (r != 0) return ErrnoToStatus(err, what);
    return absl::OkStatus();
  };
  Enqueue(what, std::move(op), std::move(done));
}

void PosixFileSystem::Enqueue(std::string_view what, std::function<absl::Status()> op,
                              SyncCallback done, Lane lane) {
  E2D_CHECK(op != nullptr && done != nullptr, "a sync needs an operation and a callback");
  Queue& q = lanes_[static_cast<int>(lane)];
  {
    std::lock_guard<std::mutex> lock(mu_);
    E2D_CHECK(!stop_, "sync requested while the file system is being destroyed");
    if (q.jobs.size() < sync_queue_max_) {
      q.jobs.push_back(Job{std::move(op), std::move(done)});
      q.cv.notify_one();
      return;
    }
  }
  absl::Status full = absl::ResourceExhaustedError(
      absl::StrCat(ToAbsl(what), ": sync queue full (", sync_queue_max_, " waiting)"));
  Complete(std::move(done), std::move(full));
}

void PosixFileSystem::Complete(SyncCallback done, absl::Status status) {
  // The status moves to the node's thread whole: no copy stays behind, so its reference count
  // is never shared between threads (system Abseil's refcounting is invisible to TSan).
  post_([done = std::move(done), status = std::move(status)]() mutable {
    done(std::move(status));
  });
}

void PosixFileSystem::Run(Queue& q) {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      q.cv.wait(lock, [this, &q] { return stop_ || !q.jobs.empty(); });
      if (q.jobs.empty()) return;  // stopping, and everything queued is done
      E2D_CHECK(q.jobs.size() <= sync_queue_max_, "sync queue over its bound: %zu",
                q.jobs.size());
      job = std::move(q.jobs.front());
      q.jobs.pop_front();
    }
    Complete(std::move(job.done), job.op());
  }
}

}  // namespace e2d::env
