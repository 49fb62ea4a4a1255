// Copyright e2d authors.

#include "node/runtime/backup_stores.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/runtime/file_backup_store.h"
#include "node/runtime/s3_backup_store.h"

namespace e2d::node {

absl::StatusOr<std::unique_ptr<BackupStore>> OpenBackupStore(const std::string& url) {
  if (absl::StartsWith(url, "file://")) {
    absl::StatusOr<std::unique_ptr<FileBackupStore>> s = FileBackupStore::Open(url.substr(7));
    if (!s.ok()) return s.status();
    return std::unique_ptr<BackupStore>(std::move(*s));
  }
  if (IsS3Url(url)) {
    absl::StatusOr<S3Config> c =
        ParseS3Url(url, [](const char* name) { return std::getenv(name); });
    if (!c.ok()) return c.status();
    // Requests are signed with the wall clock: S3 refuses a signature over 15 minutes off.
    return std::unique_ptr<BackupStore>(
        std::make_unique<S3BackupStore>(std::move(*c), [] { return absl::Now(); }));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--snapshot-backup-url \"", url,
      "\" is not file://DIR, s3://BUCKET[/PREFIX] or http(s)://HOST[:PORT]/BUCKET[/PREFIX]"));
}

}  // namespace e2d::node
