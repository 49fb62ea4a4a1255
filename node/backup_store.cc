// Copyright e2d authors.

#include "node/backup_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace e2d::node {

std::string BackupPrefix(uint64_t cluster_id) {
  return absl::StrFormat("e2d-%016x-", cluster_id);
}

std::string BackupName(uint64_t cluster_id, uint64_t revision) {
  return absl::StrFormat("%s%020u.bkp", BackupPrefix(cluster_id), revision);
}

absl::Status MemBackupStore::Put(const std::string& name, std::string_view bytes) {
  absl::MutexLock lock(&mu_);
  objects_[name] = std::string(bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemBackupStore::List() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, bytes] : objects_) names.push_back(name);
  return names;
}

absl::StatusOr<std::string> MemBackupStore::Get(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(name);
  if (it == objects_.end()) return absl::NotFoundError(absl::StrCat("no backup ", name));
  return it->second;
}

absl::Status MemBackupStore::Delete(const std::string& name) {
  absl::MutexLock lock(&mu_);
  objects_.erase(name);
  return absl::OkStatus();
}

}  // namespace e2d::node
