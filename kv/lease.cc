// Copyright e2d authors.

#include "kv/lease.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace e2d::kv {

std::string Lessor::RecordKey(int64_t id) {
  return absl::StrFormat("lease/%016x", static_cast<uint64_t>(id));
}

absl::StatusOr<std::unique_ptr<Lessor>> Lessor::Open(MvccStore* store, LeaseConfig config) {
  std::unique_ptr<Lessor> l(new Lessor(store, config));
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> records = store->Aux("lease/");
  if (!records.ok()) return records.status();
  for (const auto& [key, value] : *records) {
    uint64_t id = 0;
    int64_t ttl = 0;
    if (key.size() != 6 + 16 || !absl::SimpleHexAtoi(key.substr(6), &id) ||
        !absl::SimpleAtoi(value, &ttl)) {
      return absl::DataLossError(absl::StrCat("lease: record ", key, " is damaged"));
    }
    l->leases_[static_cast<int64_t>(id)].ttl_seconds = ttl;
  }
  RangeRequest all;
  all.key = std::string(1, '\0');
  all.range_end = std::string(1, '\0');
  absl::StatusOr<RangeResult> kvs = store->Range(all);
  if (!kvs.ok()) return kvs.status();
  for (const kvpb::KeyValue& kv : kvs->kvs) {
    if (kv.lease() == 0) continue;
    auto it = l->leases_.find(kv.lease());
    if (it == l->leases_.end()) {
      return absl::DataLossError(
          absl::StrCat("lease: key ", kv.key(), " is attached to missing lease ", kv.lease()));
    }
    it->second.keys.insert(kv.key());
  }
  return l;
}

absl::StatusOr<int64_t> Lessor::Grant(int64_t id, int64_t ttl_seconds, uint64_t index,
                                      int64_t now_ms) {
  absl::Status refused;
  if (id <= 0) {
    refused = absl::InvalidArgumentError("etcdserver: lease id must be positive");
  } else if (leases_.contains(id)) {
    refused = absl::FailedPreconditionError("etcdserver: lease already exists");
  } else if (ttl_seconds > config_.max_ttl_seconds) {
    refused = absl::OutOfRangeError("etcdserver: too large lease TTL");
  } else if (leases_.size() >= config_.leases_max) {
    refused = absl::ResourceExhaustedError(
        absl::StrCat("etcdserver: too many leases (bound ", config_.leases_max, ")"));
  }
  MvccStore::Txn t = store_->Begin();
  const int64_t ttl = std::max(ttl_seconds, config_.min_ttl_seconds);
  if (refused.ok()) t.PutAux(RecordKey(id), absl::StrCat(ttl));
  if (absl::Status s = t.Commit(index); !s.ok()) return s;  // the index is applied either way
  if (!refused.ok()) return refused;
  Lease& l = leases_[id];
  l.ttl_seconds = ttl;
  if (primary_) l.deadline_ms = now_ms + ttl * 1000;
  return ttl;
}

absl::Status Lessor::Revoke(int64_t id, uint64_t index) {
  auto it = leases_.find(id);
  MvccStore::Txn t = store_->Begin();
  if (it == leases_.end()) {
    if (absl::Status s = t.Commit(index); !s.ok()) return s;
    return absl::NotFoundError(kErrLeaseNotFoundMsg);
  }
  for (const std::string& key : it->second.keys) {
    if (absl::StatusOr<std::vector<kvpb::KeyValue>> d = t.DeleteRange(key, ""); !d.ok()) {
      return d.status();
    }
  }
  t.DeleteAux(RecordKey(id));
  leases_.erase(it);
  const std::vector<kvpb::Event> events = t.events();
  if (absl::Status s = t.Commit(index); !s.ok()) return s;
  OnEvents(events);
  return absl::OkStatus();
}

void Lessor::OnEvents(const std::vector<kvpb::Event>& events) {
  for (const kvpb::Event& e : events) {
    if (e.has_prev_kv() && e.prev_kv().lease() != 0) {
      if (auto it = leases_.find(e.prev_kv().lease()); it != leases_.end()) {
        it->second.keys.erase(e.prev_kv().key());
      }
    }
    if (e.type() == kvpb::Event::PUT && e.kv().lease() != 0) {
      if (auto it = leases_.find(e.kv().lease()); it != leases_.end()) {
        it->second.keys.insert(e.kv().key());
      }
    }
  }
}

void Lessor::Promote(int64_t now_ms, int64_t extend_ms) {
  primary_ = true;
  for (auto& [id, l] : leases_) l.deadline_ms = now_ms + l.ttl_seconds * 1000 + extend_ms;
}

void Lessor::Demote() {
  primary_ = false;
  for (auto& [id, l] : leases_) l.deadline_ms = 0;
}

absl::StatusOr<int64_t> Lessor::Renew(int64_t id, int64_t now_ms) {
  if (!primary_) return absl::FailedPreconditionError("etcdserver: not a primary lessor");
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::NotFoundError(kErrLeaseNotFoundMsg);
  if (it->second.deadline_ms <= now_ms) {
    return absl::NotFoundError(kErrLeaseNotFoundMsg);  // expired: its revoke is on the way
  }
  it->second.deadline_ms = now_ms + it->second.ttl_seconds * 1000;
  return it->second.ttl_seconds;
}

std::vector<int64_t> Lessor::Expired(int64_t now_ms, size_t max) const {
  std::vector<std::pair<int64_t, int64_t>> due;  // (deadline, id)
  if (!primary_) return {};
  for (const auto& [id, l] : leases_) {
    if (l.deadline_ms <= now_ms) due.emplace_back(l.deadline_ms, id);
  }
  std::sort(due.begin(), due.end());
  std::vector<int64_t> out;
  for (size_t i = 0; i < due.size() && i < max; ++i) out.push_back(due[i].second);
  return out;
}

Lessor::TimeToLive Lessor::Ttl(int64_t id, int64_t now_ms) const {
  TimeToLive out;
  auto it = leases_.find(id);
  if (it == leases_.end()) return out;
  out.granted_ttl_seconds = it->second.ttl_seconds;
  if (primary_ && it->second.deadline_ms > now_ms) {
    out.ttl_seconds = (it->second.deadline_ms - now_ms + 999) / 1000;
  } else if (!primary_) {
    out.ttl_seconds = it->second.ttl_seconds;  // a follower knows no deadline
  }
  out.keys.assign(it->second.keys.begin(), it->second.keys.end());
  return out;
}

std::vector<int64_t> Lessor::List() const {
  std::vector<int64_t> out;
  for (const auto& [id, l] : leases_) out.push_back(id);
  return out;
}

}  // namespace e2d::kv
