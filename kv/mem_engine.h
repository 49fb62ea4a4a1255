// Copyright e2d authors.
//
// MemEngine: KvEngine in memory, for the simulator and tests, with the exact crash model of
// engine.h. It keeps two states: the live one (every batch written) and the durable one (as of
// the last Sync). Crash() replaces the live state by the durable one plus a prefix of the batches
// written since, of a length chosen by the caller (the simulator draws it from its seed), so a
// test can reach every outcome the contract allows. The object outlives the process that uses
// it (the simulated machine owns it, as a real machine owns its disk).

#ifndef E2D_KV_MEM_ENGINE_H_
#define E2D_KV_MEM_ENGINE_H_

#include <deque>
#include <map>

#include "kv/engine.h"

namespace e2d::kv {

class MemEngine final : public KvEngine {
 public:
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::Status Sync() override;
  std::unique_ptr<KvIterator> Scan(std::string_view start, std::string_view end) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Checkpoint() override;

  // Batches written since the last Sync.
  size_t unsynced_batches() const { return unsynced_.size(); }
  // The machine crashed: keeps the durable state and the first `keep` unsynced batches
  // (clamped to how many there are).
  void Crash(size_t keep);

 private:
  using Map = std::map<std::string, std::string, std::less<>>;
  static void Apply(const WriteBatch& batch, Map* map);

  Map live_;
  Map durable_;
  std::deque<WriteBatch> unsynced_;
};

}  // namespace e2d::kv

#endif  // E2D_KV_MEM_ENGINE_H_
