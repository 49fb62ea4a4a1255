// Copyright e2d authors.

#include "node/backup_store.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace e2d::node {

bool IsStoreObjectName(const std::string& name) {
  return !name.empty() && name[0] != '.' && name.find('/') == std::string::npos;
}

absl::Status CheckStoreObjectName(const std::string& name) {
  if (IsStoreObjectName(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("backup: bad name ", name));
}

std::string BackupPrefix(uint64_t cluster_id) {
  return absl::StrFormat("e2d-%016x-", cluster_id);
}

std::string BackupName(uint64_t cluster_id, uint64_t revision) {
  return absl::StrFormat("%s%020u.bkp", BackupPrefix(cluster_id), revision);
}

bool ParseBackupName(std::string_view name, uint64_t* cluster_id, uint64_t* revision) {
  // "e2d-" 16 hex "-" 20 digits ".bkp"
  constexpr size_t kSize = 4 + 16 + 1 + 20 + 4;
  if (name.size() != kSize || name.substr(0, 4) != "e2d-" || name[20] != '-' ||
      name.substr(41) != ".bkp") {
    return false;
  }
  const std::string_view hex = name.substr(4, 16);
  const std::string_view digits = name.substr(21, 20);
  if (!std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); }) ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return false;
  }
  return absl::SimpleHexAtoi(absl::string_view(hex.data(), hex.size()), cluster_id) &&
         absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), revision);
}

absl::StatusOr<LoadedBackup> DecodeBackup(const std::string& name, const std::string& bytes,
                                          const std::optional<BackupKeys>& keys) {
  BackupSource source = [&bytes](uint64_t offset, size_t n) -> absl::StatusOr<std::string> {
    if (offset >= bytes.size()) return std::string();
    return bytes.substr(offset, n);
  };
  LoadedBackup loaded;
  loaded.name = name;
  absl::StatusOr<BackupMeta> meta =
      RestoreBackup(source, bytes.size(), keys, [&loaded](std::string_view chunk) {
        loaded.store.append(chunk);
        return absl::OkStatus();
      });
  if (!meta.ok()) {
    return absl::Status(meta.status().code(),
                        absl::StrCat("backup ", name, ": ", meta.status().message()));
  }
  loaded.meta = *std::move(meta);
  return loaded;
}

absl::StatusOr<LoadedBackup> NewestBackup(
    BackupStore& store, const std::optional<BackupKeys>& keys,
    const std::function<void(const std::string& name, const absl::Status& why)>& refused) {
  return NewestBackupOf(store, keys, std::nullopt, refused);
}

absl::StatusOr<LoadedBackup> NewestBackupOf(
    BackupStore& store, const std::optional<BackupKeys>& keys, std::optional<uint64_t> cluster_id,
    const std::function<void(const std::string& name, const absl::Status& why)>& refused) {
  absl::StatusOr<std::vector<std::string>> names = store.List();
  if (!names.ok()) {
    // A store that cannot be listed (no such bucket or directory among others) is never taken
    // for an empty one: NotFound is kept for "no backup at all".
    if (names.status().code() != absl::StatusCode::kNotFound) return names.status();
    return absl::FailedPreconditionError(names.status().message());
  }
  std::vector<std::tuple<uint64_t, std::string, uint64_t>> backups;  // (revision, name, cluster)
  for (std::string& n : *names) {
    uint64_t cluster = 0, revision = 0;
    if (ParseBackupName(n, &cluster, &revision) &&
        (!cluster_id.has_value() || cluster == *cluster_id)) {
      backups.emplace_back(revision, std::move(n), cluster);
    }
  }
  std::sort(backups.rbegin(), backups.rend());
  for (const auto& [revision, name, cluster] : backups) {
    absl::StatusOr<std::string> bytes = store.Get(name);
    // A backup that cannot be read now (the store is down, access denied) is not known to be
    // bad: restoring an older one instead would quietly lose writes. Only a backup gone since
    // the listing (retention) or one that does not check out is passed over.
    if (!bytes.ok() && bytes.status().code() != absl::StatusCode::kNotFound) {
      return bytes.status();
    }
    absl::StatusOr<LoadedBackup> loaded = bytes.ok() ? DecodeBackup(name, *bytes, keys)
                                                     : absl::StatusOr<LoadedBackup>(bytes.status());
    if (loaded.ok() && loaded->meta.revision != revision) {
      loaded =
          absl::DataLossError(absl::StrCat("backup ", name, " holds revision ",
                                           loaded->meta.revision, ", not the one it is named by"));
    } else if (loaded.ok() && loaded->meta.cluster_id != cluster) {
      loaded = absl::DataLossError(absl::StrCat(
          "backup ", name, " holds cluster ", absl::Hex(loaded->meta.cluster_id, absl::kZeroPad16),
          ", not the one it is named by"));
    }
    if (loaded.ok()) return loaded;
    refused(name, loaded.status());
  }
  if (backups.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no backup",
                     cluster_id.has_value()
                         ? absl::StrCat(" of cluster ", absl::Hex(*cluster_id, absl::kZeroPad16))
                         : "",
                     " under ", store.Describe()));
  }
  return absl::DataLossError(absl::StrCat("no backup under ", store.Describe(), " checks out"));
}

absl::StatusOr<std::vector<std::string>> BackupStore::List() {
  absl::StatusOr<std::vector<BackupObject>> objects = ListObjects();
  if (!objects.ok()) return objects.status();
  std::vector<std::string> names;
  names.reserve(objects->size());
  for (BackupObject& o : *objects) names.push_back(std::move(o.name));
  return names;
}

std::vector<std::string> BackupsToDelete(std::vector<BackupObject> ours,
                                         const BackupRetention& r) {
  // Newest first: names of one cluster sort by revision.
  std::sort(ours.begin(), ours.end(),
            [](const BackupObject& a, const BackupObject& b) { return a.name > b.name; });
  std::vector<bool> kept(ours.size(), false);
  for (size_t i = 0; i < ours.size() && i < static_cast<size_t>(std::max(r.keep, 1)); ++i) {
    kept[i] = true;
  }
  // One generation per period: the newest backup of each of the last `count` periods.
  auto generations = [&](int64_t period, int count) {
    int64_t last_bucket = 0;
    int taken = 0;
    for (size_t i = 0; i < ours.size() && taken < count; ++i) {
      // Floor division, so that times before 1970 still bucket by whole periods.
      const int64_t t = ours[i].modified_unix_seconds;
      const int64_t bucket = t >= 0 ? t / period : -((-t + period - 1) / period);
      if (taken > 0 && bucket == last_bucket) continue;
      kept[i] = true;
      last_bucket = bucket;
      ++taken;
    }
  };
  generations(3600, r.keep_hourly);
  generations(86400, r.keep_daily);
  std::vector<std::string> doomed;
  for (size_t i = ours.size(); i-- > 0;) {
    if (!kept[i]) doomed.push_back(std::move(ours[i].name));
  }
  return doomed;
}

absl::Status MemBackupStore::Put(const std::string& name, std::string_view bytes) {
  const int64_t now = now_ ? now_() : 0;
  absl::MutexLock lock(&mu_);
  objects_[name] = {std::string(bytes), now};
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BackupObject>> MemBackupStore::ListObjects() {
  absl::MutexLock lock(&mu_);
  std::vector<BackupObject> objects;
  for (const auto& [name, object] : objects_) objects.push_back({name, object.second});
  return objects;
}

absl::StatusOr<std::string> MemBackupStore::Get(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(name);
  if (it == objects_.end()) return absl::NotFoundError(absl::StrCat("no backup ", name));
  return it->second.first;
}

absl::Status MemBackupStore::Delete(const std::string& name) {
  absl::MutexLock lock(&mu_);
  objects_.erase(name);
  return absl::OkStatus();
}

}  // namespace e2d::node
