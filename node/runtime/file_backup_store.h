// Copyright e2d authors.
//
// FileBackupStore: backups in a local directory (--snapshot-backup-url file://DIR). Put writes
// a hidden temporary file, fdatasyncs it, renames it into place and fsyncs the directory, so a
// crash leaves either the old object set or the new one whole; temporary files are never listed.
// Runtime only (POSIX calls on the offload worker's thread).

#ifndef E2D_NODE_RUNTIME_FILE_BACKUP_STORE_H_
#define E2D_NODE_RUNTIME_FILE_BACKUP_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node/backup_store.h"

namespace e2d::node {

class FileBackupStore final : public BackupStore {
 public:
  // Creates `dir` (and its parents) if missing. FailedPrecondition if it is not a directory.
  static absl::StatusOr<std::unique_ptr<FileBackupStore>> Open(const std::string& dir);

  absl::Status Put(const std::string& name, std::string_view bytes) override;
  absl::StatusOr<std::vector<BackupObject>> ListObjects() override;
  absl::StatusOr<std::string> Get(const std::string& name) override;
  absl::Status Delete(const std::string& name) override;
  std::string Describe() const override { return "file://" + dir_; }

 private:
  explicit FileBackupStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_FILE_BACKUP_STORE_H_
