// Copyright e2d authors.
//
// BackupStore: where backup files go (a file:// directory, an s3:// bucket, memory in tests).
// Objects are named; Put is atomic (a reader sees the whole object or none, so a half-written
// backup is never the newest); names sort by age within a cluster (see BackupName).
//
// Threading: called from the env's offload worker (env::Env::Offload), never from two threads
// at once by the node; implementations need no locking of their own beyond that, except
// MemBackupStore, which tests also read from their own thread.

#ifndef E2D_NODE_BACKUP_STORE_H_
#define E2D_NODE_BACKUP_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/backup.h"

namespace e2d::node {

// One object of a store: its name, and when it was last written (seconds since the Unix
// epoch, as the store records it: a file's mtime, S3's LastModified).
struct BackupObject {
  std::string name;
  int64_t modified_unix_seconds = 0;
  bool operator==(const BackupObject& o) const = default;
};

class BackupStore {
 public:
  virtual ~BackupStore() = default;
  // Writes `name` whole, replacing any object of that name.
  virtual absl::Status Put(const std::string& name, std::string_view bytes) = 0;
  // Every complete object, in no particular order.
  virtual absl::StatusOr<std::vector<BackupObject>> ListObjects() = 0;
  // Their names.
  absl::StatusOr<std::vector<std::string>> List();
  virtual absl::StatusOr<std::string> Get(const std::string& name) = 0;
  virtual absl::Status Delete(const std::string& name) = 0;
  // For logs: where the objects go (the URL).
  virtual std::string Describe() const = 0;
};

// Whether a store takes `name` for an object: not empty, not hidden (a leading '.' marks a
// store's temporary objects), and no '/' (objects live directly under the store's place).
bool IsStoreObjectName(const std::string& name);
// InvalidArgument ("backup: bad name ...") unless IsStoreObjectName(name).
absl::Status CheckStoreObjectName(const std::string& name);

// "e2d-<cluster id, 16 hex>-<revision, 20 digits>.bkp": sorts by revision within a cluster.
std::string BackupName(uint64_t cluster_id, uint64_t revision);
// The prefix every backup of `cluster_id` has.
std::string BackupPrefix(uint64_t cluster_id);

// Which backups of its cluster the leader keeps: the newest `keep`; and, of each of the last
// `keep_hourly` hours and `keep_daily` days (UTC) that hold a backup, the newest one there
// (hourly and daily generations, for going back further with few files).
struct BackupRetention {
  int keep = 10;  // at least 1: the backup just written is always kept
  int keep_hourly = 0;
  int keep_daily = 0;
};
// The names among `ours` (backups of one cluster) that `r` does not keep, oldest first.
// "Newest" is by revision (the name); hours and days are those of the store's times.
std::vector<std::string> BackupsToDelete(std::vector<BackupObject> ours, const BackupRetention& r);
// The cluster id and revision a BackupName holds; false if `name` is not one.
bool ParseBackupName(std::string_view name, uint64_t* cluster_id, uint64_t* revision);

// A backup read whole and checked: what it records, and the store it holds (the payload).
struct LoadedBackup {
  std::string name;
  BackupMeta meta;
  std::string store;
};
// Checks `bytes` whole (VerifyBackup), then decodes it; an error names the backup.
absl::StatusOr<LoadedBackup> DecodeBackup(const std::string& name, const std::string& bytes,
                                          const std::optional<BackupKeys>& keys);
// The newest backup in `store` that checks out. Revisions never go back, across restores too
// (a restored cluster goes on from its backup's revision), so the backup of the highest
// revision of any cluster is the newest data; ties go to the name that sorts last. A backup
// that does not check out (damaged, tampered, another CA's key) is passed to `refused` with
// why, and the next older one is tried; so is one deleted since the listing. Any other error
// reading a backup (the store is down, access is denied) is returned as it is: an older backup
// is never restored because the newest could not be read. NotFound if there is no backup at
// all; DataLoss if none checks out; a store that cannot be listed is an error, never NotFound.
absl::StatusOr<LoadedBackup> NewestBackup(
    BackupStore& store, const std::optional<BackupKeys>& keys,
    const std::function<void(const std::string& name, const absl::Status& why)>& refused);

// The same among the backups of cluster `cluster_id` only (all clusters': nullopt). A backup
// whose content names another cluster than its name does is refused like a damaged one.
absl::StatusOr<LoadedBackup> NewestBackupOf(
    BackupStore& store, const std::optional<BackupKeys>& keys, std::optional<uint64_t> cluster_id,
    const std::function<void(const std::string& name, const absl::Status& why)>& refused);

class MemBackupStore final : public BackupStore {
 public:
  // `now_unix_seconds` stamps each Put (none: 0, the simulator's default).
  explicit MemBackupStore(std::function<int64_t()> now_unix_seconds = nullptr)
      : now_(std::move(now_unix_seconds)) {}
  absl::Status Put(const std::string& name, std::string_view bytes) override;
  absl::StatusOr<std::vector<BackupObject>> ListObjects() override;
  absl::StatusOr<std::string> Get(const std::string& name) override;
  absl::Status Delete(const std::string& name) override;
  std::string Describe() const override { return "mem://"; }

 private:
  const std::function<int64_t()> now_;
  absl::Mutex mu_;
  std::map<std::string, std::pair<std::string, int64_t>> objects_;  // name: bytes, time
};

}  // namespace e2d::node

#endif  // E2D_NODE_BACKUP_STORE_H_
