// Copyright e2d authors.

#include "node/runtime/file_backup_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace e2d::node {

namespace {

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status MakeDirs(const std::string& dir) {
  std::string path;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      path = dir.substr(0, i);
      if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return Errno("backup: cannot create directory", path);
      }
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Errno("backup: cannot stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("backup: ", dir, " is not a directory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileBackupStore>> FileBackupStore::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("backup: the directory is empty");
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  return std::unique_ptr<FileBackupStore>(new FileBackupStore(dir));
}

absl::Status FileBackupStore::Put(const std::string& name, std::string_view bytes) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  const std::string tmp = absl::StrCat(dir_, "/.", name, ".part");
  const std::string final_path = absl::StrCat(dir_, "/", name);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("backup: cannot create", tmp);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = Errno("backup: cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    absl::Status s = Errno("backup: cannot sync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    absl::Status s = Errno("backup: cannot rename into", final_path);
    ::unlink(tmp.c_str());
    return s;
  }
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno("backup: cannot open directory", dir_);
  const int r = ::fsync(dfd);
  ::close(dfd);
  if (r != 0) return Errno("backup: cannot sync directory", dir_);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BackupObject>> FileBackupStore::ListObjects() {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return Errno("backup: cannot list", dir_);
  std::vector<BackupObject> objects;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!IsStoreObjectName(name) || !absl::EndsWith(name, ".bkp")) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), name.c_str(), &st, 0) != 0) {
      if (errno == ENOENT) continue;  // deleted since readdir saw it
      absl::Status s = Errno("backup: cannot stat", absl::StrCat(dir_, "/", name));
      ::closedir(d);
      return s;
    }
    objects.push_back({std::move(name), static_cast<int64_t>(st.st_mtim.tv_sec)});
  }
  ::closedir(d);
  return objects;
}

absl::StatusOr<std::string> FileBackupStore::Get(const std::string& name) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  const std::string path = absl::StrCat(dir_, "/", name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("backup: no ", path));
    return Errno("backup: cannot open", path);
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = Errno("backup: cannot read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status FileBackupStore::Delete(const std::string& name) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  const std::string path = absl::StrCat(dir_, "/", name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("backup: cannot delete", path);
  return absl::OkStatus();
}

}  // namespace e2d::node
