// Copyright e2d authors.

#include "kv/rocksdb_engine.h"

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace e2d::kv {
namespace {

absl::Status ToStatus(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat("rocksdb: ", what, ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

class RocksIterator final : public KvIterator {
 public:
  RocksIterator(rocksdb::DB* db, std::string start, std::string end)
      : db_(db), snapshot_(db->GetSnapshot()), end_(std::move(end)) {
    rocksdb::ReadOptions o;
    o.snapshot = snapshot_;
    it_.reset(db->NewIterator(o));
    it_->Seek(start);
  }
  ~RocksIterator() override {
    it_.reset();
    db_->ReleaseSnapshot(snapshot_);
  }
  bool Valid() const override {
    return it_->Valid() && (end_.empty() || it_->key().compare(ToSlice(end_)) < 0);
  }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return {it_->key().data(), it_->key().size()}; }
  std::string_view value() const override { return {it_->value().data(), it_->value().size()}; }
  absl::Status status() const override { return ToStatus(it_->status(), "iterating"); }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
  std::string end_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbEngine>> RocksDbEngine::Open(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) return ToStatus(s, absl::StrCat("opening ", path));
  return std::unique_ptr<RocksDbEngine>(new RocksDbEngine(path, db));
}

RocksDbEngine::RocksDbEngine(std::string path, rocksdb::DB* db)
    : path_(std::move(path)), db_(db) {}

RocksDbEngine::~RocksDbEngine() = default;

absl::StatusOr<std::optional<std::string>> RocksDbEngine::Get(std::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return ToStatus(s, absl::StrCat("reading ", path_));
  return std::optional<std::string>(std::move(value));
}

absl::Status RocksDbEngine::Write(const WriteBatch& batch) {
  rocksdb::WriteBatch b;
  for (const WriteBatch::Op& op : batch.ops()) {
    rocksdb::Status s = op.del ? b.Delete(op.key) : b.Put(op.key, op.value);
    if (!s.ok()) return ToStatus(s, "building a batch");
  }
  return ToStatus(db_->Write(rocksdb::WriteOptions(), &b), absl::StrCat("writing ", path_));
}

absl::Status RocksDbEngine::Sync() {
  return ToStatus(db_->SyncWAL(), absl::StrCat("syncing the WAL of ", path_));
}

std::unique_ptr<KvIterator> RocksDbEngine::Scan(std::string_view start, std::string_view end) {
  return std::make_unique<RocksIterator>(db_.get(), std::string(start), std::string(end));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RocksDbEngine::Checkpoint() {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<KvIterator> it = Scan("", "");
  for (; it->Valid(); it->Next()) out.emplace_back(it->key(), it->value());
  if (absl::Status s = it->status(); !s.ok()) return s;
  return out;
}

}  // namespace e2d::kv
