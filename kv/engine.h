// Copyright e2d authors.
//
// KvEngine: the ordered key-value store under the MVCC state machine. Keys and values are byte
// strings ordered bytewise. Writes come in atomic batches; a batch is visible to reads as soon
// as Write returns and durable once a later Sync completes. Crash model (the one RocksDB with
// its WAL unsynced gives, and the in-memory engine reproduces exactly): after a crash the engine
// holds every batch written before the last completed Sync, in order, and possibly some of the
// batches written after it, but always a prefix of them and never part of a batch.
//
// Errors: absl::Status (Internal for I/O, DataLoss for corruption found on open).

#ifndef E2D_KV_ENGINE_H_
#define E2D_KV_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::kv {

// An atomic group of puts and deletes, applied in order.
class WriteBatch {
 public:
  void Put(std::string_view key, std::string_view value) {
    ops_.push_back(Op{false, std::string(key), std::string(value)});
  }
  void Delete(std::string_view key) { ops_.push_back(Op{true, std::string(key), {}}); }
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }

  struct Op {
    bool del;
    std::string key;
    std::string value;
  };
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

// Iterates keys in [start, end) in ascending order (end empty: to the last key) over the state at
// the time it was created; later writes are not seen.
class KvIterator {
 public:
  virtual ~KvIterator() = default;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  virtual absl::Status status() const = 0;  // an error ends the iteration (Valid() is false)
};

class KvEngine {
 public:
  virtual ~KvEngine() = default;

  virtual absl::StatusOr<std::optional<std::string>> Get(std::string_view key) = 0;
  virtual absl::Status Write(const WriteBatch& batch) = 0;
  // Makes every batch written before the call durable (blocking; the driver calls it from its
  // I/O thread in the node, at once in the simulator).
  virtual absl::Status Sync() = 0;
  virtual std::unique_ptr<KvIterator> Scan(std::string_view start, std::string_view end) = 0;
  // Every key and value, in order, as one consistent snapshot (for Raft snapshots).
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Checkpoint() = 0;
};

}  // namespace e2d::kv

#endif  // E2D_KV_ENGINE_H_
