// Copyright e2d authors.
//
// RocksDbEngine: KvEngine on RocksDB, for the node. Write applies a batch atomically with
// RocksDB's WAL on but not synced (a process crash keeps it; a power loss may drop the batches
// after the last Sync, always a suffix of them), Sync syncs the WAL. Iterators and Checkpoint
// read a consistent RocksDB snapshot. Errors carry RocksDB's status text with the path.

#ifndef E2D_KV_ROCKSDB_ENGINE_H_
#define E2D_KV_ROCKSDB_ENGINE_H_

#include <memory>
#include <string>

#include "kv/engine.h"

namespace rocksdb {
class DB;
}

namespace e2d::kv {

class RocksDbEngine final : public KvEngine {
 public:
  // Opens (creating if missing) the database in directory `path`.
  static absl::StatusOr<std::unique_ptr<RocksDbEngine>> Open(const std::string& path);
  ~RocksDbEngine() override;

  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::Status Sync() override;
  std::unique_ptr<KvIterator> Scan(std::string_view start, std::string_view end) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Checkpoint() override;

 private:
  RocksDbEngine(std::string path, rocksdb::DB* db);
  const std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace e2d::kv

#endif  // E2D_KV_ROCKSDB_ENGINE_H_
