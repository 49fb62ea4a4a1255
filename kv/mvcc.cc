// Copyright e2d authors.

#include "kv/mvcc.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"

namespace e2d::kv {
namespace {

constexpr char kRevisionPrefix[] = "r";
constexpr char kMetaRevision[] = "m/revision";
constexpr char kMetaCompact[] = "m/compact";
constexpr char kMetaApplied[] = "m/applied";
// The counted records (see "Size" in mvcc.h): revision records ["r", "s") and aux records
// ["x/", "x0").
constexpr char kRevisionEnd[] = "s";
constexpr char kAuxPrefix[] = "x/";
constexpr char kAuxEnd[] = "x0";

// The key and value bytes of every record in [start, end).
absl::StatusOr<uint64_t> ScanBytes(KvEngine* engine, std::string_view start,
                                   std::string_view end) {
  uint64_t bytes = 0;
  std::unique_ptr<KvIterator> it = engine->Scan(start, end);
  for (; it->Valid(); it->Next()) bytes += it->key().size() + it->value().size();
  if (!it->status().ok()) return it->status();
  return bytes;
}

void PutBigEndian(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBigEndian(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

bool Less(const kvpb::KeyValue& a, const kvpb::KeyValue& b, RangeRequest::SortTarget t) {
  switch (t) {
    case RangeRequest::SortTarget::kKey:
      return a.key() < b.key();
    case RangeRequest::SortTarget::kVersion:
      return a.version() < b.version();
    case RangeRequest::SortTarget::kCreate:
      return a.create_revision() < b.create_revision();
    case RangeRequest::SortTarget::kMod:
      return a.mod_revision() < b.mod_revision();
    case RangeRequest::SortTarget::kValue:
      return a.value() < b.value();
  }
  return false;
}

// The common tail of every range: count, filters, sort, limit, projections. `all` holds the
// keys in the range in key order.
RangeResult Finish(std::vector<kvpb::KeyValue> all, const RangeRequest& r, int64_t revision) {
  RangeResult out;
  out.revision = revision;
  out.count = static_cast<int64_t>(all.size());
  if (r.count_only) return out;
  std::erase_if(all, [&r](const kvpb::KeyValue& kv) {
    return (r.min_mod_revision > 0 && kv.mod_revision() < r.min_mod_revision) ||
           (r.max_mod_revision > 0 && kv.mod_revision() > r.max_mod_revision) ||
           (r.min_create_revision > 0 && kv.create_revision() < r.min_create_revision) ||
           (r.max_create_revision > 0 && kv.create_revision() > r.max_create_revision);
  });
  RangeRequest::SortOrder order = r.sort_order;
  if (order == RangeRequest::SortOrder::kNone && r.sort_target != RangeRequest::SortTarget::kKey) {
    order = RangeRequest::SortOrder::kAscend;  // as etcd: a target without an order ascends
  }
  if (order == RangeRequest::SortOrder::kAscend) {
    std::stable_sort(all.begin(), all.end(), [&r](const auto& a, const auto& b) {
      return Less(a, b, r.sort_target);
    });
  } else if (order == RangeRequest::SortOrder::kDescend) {
    std::stable_sort(all.begin(), all.end(), [&r](const auto& a, const auto& b) {
      return Less(b, a, r.sort_target);
    });
  }
  if (r.limit > 0 && static_cast<int64_t>(all.size()) > r.limit) {
    all.resize(static_cast<size_t>(r.limit));
    out.more = true;
  }
  if (r.keys_only) {
    for (kvpb::KeyValue& kv : all) kv.clear_value();
  }
  out.kvs = std::move(all);
  return out;
}

}  // namespace

std::string RevisionKey(Revision rev) {
  std::string k = kRevisionPrefix;
  PutBigEndian(&k, static_cast<uint64_t>(rev.main));
  PutBigEndian(&k, static_cast<uint64_t>(rev.sub));
  return k;
}

void MvccStore::ForgetAppliedIndex(WriteBatch* batch) { batch->Put(kMetaApplied, "0"); }

absl::StatusOr<std::unique_ptr<MvccStore>> MvccStore::Open(KvEngine* engine) {
  std::unique_ptr<MvccStore> s(new MvccStore(engine));
  auto meta = [&](const char* key, int64_t* out) -> absl::Status {
    absl::StatusOr<std::optional<std::string>> v = engine->Get(key);
    if (!v.ok()) return v.status();
    if (*v && !absl::SimpleAtoi(**v, out)) {
      return absl::DataLossError(absl::StrCat("mvcc: meta record ", key, " is damaged"));
    }
    return absl::OkStatus();
  };
  int64_t applied = 0;
  if (absl::Status st = meta(kMetaRevision, &s->revision_); !st.ok()) return st;
  if (absl::Status st = meta(kMetaCompact, &s->compact_revision_); !st.ok()) return st;
  if (absl::Status st = meta(kMetaApplied, &applied); !st.ok()) return st;
  s->applied_index_ = static_cast<uint64_t>(applied);
  if (s->revision_ == 0) s->revision_ = 1;  // a new store, as etcd's, starts at revision 1
  uint64_t revision_bytes = 0;
  std::unique_ptr<KvIterator> it = engine->Scan(kRevisionPrefix, kRevisionEnd);
  for (; it->Valid(); it->Next()) {
    const std::string_view k = it->key();
    revision_bytes += k.size() + it->value().size();
    kvpb::Stored stored;
    if (k.size() != 17 || !stored.ParseFromArray(it->value().data(),
                                                 static_cast<int>(it->value().size()))) {
      return absl::DataLossError("mvcc: a revision record is damaged");
    }
    const Revision rev{static_cast<int64_t>(GetBigEndian(k.substr(1, 8))),
                       static_cast<int64_t>(GetBigEndian(k.substr(9, 8)))};
    if (rev.main > s->revision_) {
      return absl::DataLossError(absl::StrCat("mvcc: record at revision ", rev.main,
                                              " beyond the store revision ", s->revision_));
    }
    KeyIndex& ki = s->index_[stored.kv().key()];
    if (stored.tombstone()) {
      if (ki.live()) {
        ki.Tombstone(rev);
      } else if (rev.main == s->compact_revision_) {
        ki.LoneTombstone(rev);  // its puts were compacted away (KeyIndex::Compact)
      } else {
        return absl::DataLossError(absl::StrCat("mvcc: a tombstone at revision ", rev.main,
                                                " for a key that is not live"));
      }
    } else {
      ki.Put(rev);
    }
  }
  if (!it->status().ok()) return it->status();
  absl::StatusOr<uint64_t> aux_bytes = ScanBytes(engine, kAuxPrefix, kAuxEnd);
  if (!aux_bytes.ok()) return aux_bytes.status();
  s->size_bytes_ = revision_bytes + *aux_bytes;
  return s;
}

absl::StatusOr<uint64_t> MvccStore::ComputeSizeBytes() const {
  absl::StatusOr<uint64_t> revision_bytes = ScanBytes(engine_, kRevisionPrefix, kRevisionEnd);
  if (!revision_bytes.ok()) return revision_bytes.status();
  absl::StatusOr<uint64_t> aux_bytes = ScanBytes(engine_, kAuxPrefix, kAuxEnd);
  if (!aux_bytes.ok()) return aux_bytes.status();
  return *revision_bytes + *aux_bytes;
}

bool KeyInRange(const std::string& k, const std::string& key, const std::string& end) {
  if (end.empty()) return k == key;
  if (k < key) return false;
  return end == std::string(1, '\0') || k < end;
}

absl::Status MvccStore::CheckRevision(int64_t revision) const {
  if (revision > revision_) return absl::OutOfRangeError(kErrFutureRev);
  if (revision > 0 && revision < compact_revision_) return absl::OutOfRangeError(kErrCompacted);
  if (revision < 0) return absl::InvalidArgumentError("mvcc: negative revision");
  return absl::OkStatus();
}

absl::StatusOr<kvpb::KeyValue> MvccStore::Load(Revision rev) const {
  absl::StatusOr<std::optional<std::string>> v = engine_->Get(RevisionKey(rev));
  if (!v.ok()) return v.status();
  kvpb::Stored stored;
  if (!*v || !stored.ParseFromString(**v)) {
    return absl::DataLossError(absl::StrCat("mvcc: record of revision ", rev.main, ".", rev.sub,
                                            " is missing or damaged"));
  }
  return std::move(*stored.mutable_kv());
}

absl::StatusOr<RangeResult> MvccStore::Range(const RangeRequest& r) const {
  if (absl::Status s = CheckRevision(r.revision); !s.ok()) return s;
  const int64_t at = r.revision > 0 ? r.revision : revision_;
  std::vector<kvpb::KeyValue> all;
  for (auto it = index_.lower_bound(r.key); it != index_.end(); ++it) {
    if (!KeyInRange(it->first, r.key, r.range_end)) break;
    if (std::optional<Revision> rev = it->second.Get(at)) {
      absl::StatusOr<kvpb::KeyValue> kv = Load(*rev);
      if (!kv.ok()) return kv.status();
      all.push_back(std::move(*kv));
    }
  }
  return Finish(std::move(all), r, at);
}

MvccStore::Txn MvccStore::Begin() {
  E2D_CHECK(!txn_open_, "mvcc: a write transaction is already open");
  txn_open_ = true;
  return Txn(this);
}

MvccStore::Txn::Txn(MvccStore* store) : store_(store), main_(store->revision_ + 1) {}

MvccStore::Txn::Txn(Txn&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      main_(other.main_),
      sub_(other.sub_),
      done_(other.done_),
      changes_(std::move(other.changes_)),
      events_(std::move(other.events_)),
      aux_(std::move(other.aux_)),
      pending_(std::move(other.pending_)) {}

MvccStore::Txn::~Txn() {
  if (store_ != nullptr && !done_) store_->txn_open_ = false;  // abandoned: nothing written
}

int64_t MvccStore::Txn::revision() const {
  return changes_.empty() ? store_->revision_ : main_;
}

absl::StatusOr<std::optional<kvpb::KeyValue>> MvccStore::Txn::Get(const std::string& key) const {
  if (auto p = pending_.find(key); p != pending_.end()) {
    if (p->second.tombstone()) return std::optional<kvpb::KeyValue>();
    return std::optional<kvpb::KeyValue>(p->second.kv());
  }
  auto it = store_->index_.find(key);
  if (it == store_->index_.end()) return std::optional<kvpb::KeyValue>();
  std::optional<Revision> rev = it->second.Get(store_->revision_);
  if (!rev) return std::optional<kvpb::KeyValue>();
  absl::StatusOr<kvpb::KeyValue> kv = store_->Load(*rev);
  if (!kv.ok()) return kv.status();
  return std::optional<kvpb::KeyValue>(std::move(*kv));
}

absl::StatusOr<RangeResult> MvccStore::Txn::Range(const RangeRequest& r) const {
  if (r.revision != 0 && r.revision != revision()) return store_->Range(r);
  // The committed keys of the range and this txn's changed ones, in key order.
  std::vector<std::string> keys;
  for (auto it = store_->index_.lower_bound(r.key); it != store_->index_.end(); ++it) {
    if (!KeyInRange(it->first, r.key, r.range_end)) break;
    keys.push_back(it->first);
  }
  for (auto it = pending_.lower_bound(r.key); it != pending_.end(); ++it) {
    if (!KeyInRange(it->first, r.key, r.range_end)) break;
    keys.push_back(it->first);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<kvpb::KeyValue> all;
  for (const std::string& k : keys) {
    absl::StatusOr<std::optional<kvpb::KeyValue>> kv = Get(k);
    if (!kv.ok()) return kv.status();
    if (*kv) all.push_back(std::move(**kv));
  }
  return Finish(std::move(all), r, revision());
}

absl::StatusOr<std::optional<kvpb::KeyValue>> MvccStore::Txn::Put(const std::string& key,
                                                                  const std::string& value,
                                                                  int64_t lease) {
  absl::StatusOr<std::optional<kvpb::KeyValue>> prev = Get(key);
  if (!prev.ok()) return prev.status();
  kvpb::Stored s;
  kvpb::KeyValue* kv = s.mutable_kv();
  kv->set_key(key);
  kv->set_value(value);
  kv->set_lease(lease);
  kv->set_mod_revision(main_);
  if (*prev) {
    kv->set_create_revision((*prev)->create_revision());
    kv->set_version((*prev)->version() + 1);
  } else {
    kv->set_create_revision(main_);
    kv->set_version(1);
  }
  kvpb::Event& ev = events_.emplace_back();
  ev.set_type(kvpb::Event::PUT);
  *ev.mutable_kv() = s.kv();
  if (*prev) *ev.mutable_prev_kv() = **prev;
  changes_.emplace_back(Revision{main_, sub_++}, s);
  pending_[key] = std::move(s);
  return prev;
}

absl::StatusOr<std::vector<kvpb::KeyValue>> MvccStore::Txn::DeleteRange(
    const std::string& key, const std::string& range_end) {
  RangeRequest r;
  r.key = key;
  r.range_end = range_end;
  absl::StatusOr<RangeResult> live = Range(r);
  if (!live.ok()) return live.status();
  for (const kvpb::KeyValue& prev : live->kvs) {
    kvpb::Stored s;
    s.set_tombstone(true);
    s.mutable_kv()->set_key(prev.key());
    s.mutable_kv()->set_mod_revision(main_);
    kvpb::Event& ev = events_.emplace_back();
    ev.set_type(kvpb::Event::DELETE);
    *ev.mutable_kv() = s.kv();
    *ev.mutable_prev_kv() = prev;
    changes_.emplace_back(Revision{main_, sub_++}, s);
    pending_[prev.key()] = std::move(s);
  }
  return std::move(live->kvs);
}

void MvccStore::Txn::PutAux(const std::string& key, const std::string& value) {
  aux_.Put(absl::StrCat(kAuxPrefix, key), value);
}

void MvccStore::Txn::DeleteAux(const std::string& key) {
  aux_.Delete(absl::StrCat(kAuxPrefix, key));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MvccStore::Aux(
    const std::string& prefix) const {
  const std::string start = absl::StrCat("x/", prefix);
  std::string end = start;
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xff) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(end.back() + 1);
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<KvIterator> it = engine_->Scan(start, end.empty() ? "y" : end);
  for (; it->Valid(); it->Next()) {
    out.emplace_back(std::string(it->key().substr(2)), std::string(it->value()));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

absl::Status MvccStore::Txn::Commit(uint64_t applied_index) {
  E2D_CHECK(!done_, "mvcc: transaction committed twice");
  WriteBatch batch;
  uint64_t added_bytes = 0;    // of the records this batch writes
  uint64_t removed_bytes = 0;  // of the records it deletes or replaces
  for (const auto& [rev, stored] : changes_) {
    std::string key = RevisionKey(rev);
    std::string value = stored.SerializeAsString();
    added_bytes += key.size() + value.size();  // a revision record is always a new key
    batch.Put(key, value);
  }
  if (!changes_.empty()) batch.Put(kMetaRevision, absl::StrCat(main_));
  // An aux op replaces what the engine holds, or what an earlier op of this batch wrote.
  absl::btree_map<std::string, std::optional<size_t>> aux_value_bytes;
  for (const WriteBatch::Op& op : aux_.ops()) {
    auto known = aux_value_bytes.find(op.key);
    if (known == aux_value_bytes.end()) {
      absl::StatusOr<std::optional<std::string>> old = store_->engine_->Get(op.key);
      if (!old.ok()) return old.status();
      std::optional<size_t> old_bytes;
      if (*old) old_bytes = (*old)->size();
      known = aux_value_bytes.emplace(op.key, old_bytes).first;
    }
    if (known->second) removed_bytes += op.key.size() + *known->second;
    if (op.del) {
      known->second.reset();
      batch.Delete(op.key);
    } else {
      known->second = op.value.size();
      added_bytes += op.key.size() + op.value.size();
      batch.Put(op.key, op.value);
    }
  }
  batch.Put(kMetaApplied, absl::StrCat(applied_index));
  E2D_CHECK(store_->size_bytes_ + added_bytes >= removed_bytes,
            "mvcc: a commit removes %llu bytes of a store of %llu",
            static_cast<unsigned long long>(removed_bytes),
            static_cast<unsigned long long>(store_->size_bytes_ + added_bytes));
  if (absl::Status s = store_->engine_->Write(batch); !s.ok()) return s;
  for (const auto& [rev, stored] : changes_) {
    KeyIndex& ki = store_->index_[stored.kv().key()];
    if (stored.tombstone()) {
      ki.Tombstone(rev);
    } else {
      ki.Put(rev);
    }
  }
  if (!changes_.empty()) store_->revision_ = main_;
  store_->applied_index_ = applied_index;
  store_->size_bytes_ = store_->size_bytes_ + added_bytes - removed_bytes;
  done_ = true;
  store_->txn_open_ = false;
  if (!changes_.empty() && store_->on_commit_) store_->on_commit_(main_, events_);
  return absl::OkStatus();
}

absl::Status MvccStore::Compact(int64_t revision, uint64_t applied_index) {
  if (revision <= compact_revision_) return absl::OutOfRangeError(kErrCompacted);
  if (revision > revision_) return absl::OutOfRangeError(kErrFutureRev);
  std::vector<Revision> dropped;
  std::vector<std::string> empty;
  for (auto& [key, ki] : index_) {
    if (ki.Compact(revision, &dropped)) empty.push_back(key);
  }
  WriteBatch batch;
  uint64_t removed_bytes = 0;
  for (Revision r : dropped) {
    const std::string key = RevisionKey(r);
    absl::StatusOr<std::optional<std::string>> record = engine_->Get(key);
    if (!record.ok()) return record.status();
    if (!*record) {
      return absl::DataLossError(absl::StrCat("mvcc: record of revision ", r.main, ".", r.sub,
                                              " is missing"));
    }
    removed_bytes += key.size() + (*record)->size();
    batch.Delete(key);
  }
  batch.Put(kMetaCompact, absl::StrCat(revision));
  batch.Put(kMetaApplied, absl::StrCat(applied_index));
  E2D_CHECK(removed_bytes <= size_bytes_, "mvcc: compaction drops %llu bytes of %llu",
            static_cast<unsigned long long>(removed_bytes),
            static_cast<unsigned long long>(size_bytes_));
  if (absl::Status s = engine_->Write(batch); !s.ok()) return s;
  for (const std::string& k : empty) index_.erase(k);
  compact_revision_ = revision;
  applied_index_ = applied_index;
  size_bytes_ -= removed_bytes;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> MvccStore::History(int64_t from, int64_t to, size_t events_max,
                                           std::vector<kvpb::Event>* out) const {
  if (from < compact_revision_) return absl::OutOfRangeError(kErrCompacted);
  if (to > revision_) return absl::OutOfRangeError(kErrFutureRev);
  std::unique_ptr<KvIterator> it =
      engine_->Scan(RevisionKey({from, 0}), RevisionKey({to + 1, 0}));
  int64_t last = 0;
  for (; it->Valid(); it->Next()) {
    const std::string_view k = it->key();
    const int64_t main = static_cast<int64_t>(GetBigEndian(k.substr(1, 8)));
    if (main != last && last != 0 && out->size() >= events_max) return main;
    last = main;
    kvpb::Stored stored;
    if (!stored.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("mvcc: record of revision ", main, " is damaged"));
    }
    kvpb::Event& ev = out->emplace_back();
    ev.set_type(stored.tombstone() ? kvpb::Event::DELETE : kvpb::Event::PUT);
    *ev.mutable_kv() = std::move(*stored.mutable_kv());
    if (main - 1 >= compact_revision_ && main - 1 >= 1) {
      RangeRequest before;
      before.key = ev.kv().key();
      before.revision = main - 1;
      absl::StatusOr<RangeResult> prev = Range(before);
      if (prev.ok() && !prev->kvs.empty()) *ev.mutable_prev_kv() = std::move(prev->kvs[0]);
    }
  }
  if (!it->status().ok()) return it->status();
  return to + 1;
}

}  // namespace e2d::kv
