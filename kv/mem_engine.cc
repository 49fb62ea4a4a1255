// Copyright e2d authors.

#include "kv/mem_engine.h"

#include <algorithm>

namespace e2d::kv {
namespace {

// Iterates over its own copy of the range: later writes are not seen.
class MemIterator final : public KvIterator {
 public:
  explicit MemIterator(std::vector<std::pair<std::string, std::string>> items)
      : items_(std::move(items)) {}
  bool Valid() const override { return pos_ < items_.size(); }
  void Next() override { ++pos_; }
  std::string_view key() const override { return items_[pos_].first; }
  std::string_view value() const override { return items_[pos_].second; }
  absl::Status status() const override { return absl::OkStatus(); }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
  size_t pos_ = 0;
};

}  // namespace

void MemEngine::Apply(const WriteBatch& batch, Map* map) {
  for (const WriteBatch::Op& op : batch.ops()) {
    if (op.del) {
      map->erase(op.key);
    } else {
      (*map)[op.key] = op.value;
    }
  }
}

absl::StatusOr<std::optional<std::string>> MemEngine::Get(std::string_view key) {
  auto it = live_.find(key);
  if (it == live_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::Status MemEngine::Write(const WriteBatch& batch) {
  Apply(batch, &live_);
  unsynced_.push_back(batch);
  return absl::OkStatus();
}

absl::Status MemEngine::Sync() {
  for (const WriteBatch& b : unsynced_) Apply(b, &durable_);
  unsynced_.clear();
  return absl::OkStatus();
}

std::unique_ptr<KvIterator> MemEngine::Scan(std::string_view start, std::string_view end) {
  std::vector<std::pair<std::string, std::string>> items;
  for (auto it = live_.lower_bound(start); it != live_.end(); ++it) {
    if (!end.empty() && it->first >= end) break;
    items.emplace_back(it->first, it->second);
  }
  return std::make_unique<MemIterator>(std::move(items));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MemEngine::Checkpoint() {
  return std::vector<std::pair<std::string, std::string>>(live_.begin(), live_.end());
}

void MemEngine::Crash(size_t keep) {
  keep = std::min(keep, unsynced_.size());
  for (size_t i = 0; i < keep; ++i) Apply(unsynced_[i], &durable_);
  unsynced_.clear();
  live_ = durable_;
}

}  // namespace e2d::kv
