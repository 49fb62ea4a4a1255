// Copyright e2d authors.
//
// OpenBackupStore: the BackupStore a --snapshot-backup-url names.
//
//   file://DIR                           FileBackupStore (node/runtime/file_backup_store.h)
//   s3://BUCKET[/PREFIX]                 S3BackupStore (node/runtime/s3_backup_store.h), with
//   http(s)://HOST[:PORT]/BUCKET[/PREFIX]  credentials and region from the environment
//
// Nothing is contacted here: the URL, the directory and the presence of credentials are
// checked; a store that cannot be reached shows in the first backup's error. Runtime only.

#ifndef E2D_NODE_RUNTIME_BACKUP_STORES_H_
#define E2D_NODE_RUNTIME_BACKUP_STORES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "node/backup_store.h"

namespace e2d::node {

// InvalidArgument, naming the problem, for any other scheme, an empty path, a bad bucket or
// missing S3 credentials; FailedPrecondition if a file:// path is not a directory.
absl::StatusOr<std::unique_ptr<BackupStore>> OpenBackupStore(const std::string& url);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_BACKUP_STORES_H_
