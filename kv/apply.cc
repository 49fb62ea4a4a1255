// Copyright e2d authors.

#include "kv/apply.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::kv {
namespace {

using etcdserverpb::AlarmRequest;
using etcdserverpb::AlarmType;
using etcdserverpb::Compare;
using etcdserverpb::RequestOp;

// etcd's messages (rpctypes).
constexpr char kErrEmptyKey[] = "etcdserver: key is not provided";
constexpr char kErrTooManyOps[] = "etcdserver: too many operations in txn request";
constexpr char kErrDuplicateKey[] = "etcdserver: duplicate key given in txn request";
constexpr char kErrKeyNotFound[] = "etcdserver: key not found";
constexpr char kErrValueProvided[] = "etcdserver: value is provided";
constexpr char kErrLeaseProvided[] = "etcdserver: lease is provided";
constexpr char kErrLeaseNotFound[] = "etcdserver: requested lease not found";
constexpr char kErrTooLarge[] = "etcdserver: request is too large";

RangeRequest ToMvcc(const etcdserverpb::RangeRequest& r) {
  RangeRequest m;
  m.key = r.key();
  m.range_end = r.range_end();
  m.limit = r.limit();
  m.revision = r.revision();
  m.sort_order = static_cast<RangeRequest::SortOrder>(r.sort_order());
  m.sort_target = static_cast<RangeRequest::SortTarget>(r.sort_target());
  m.keys_only = r.keys_only();
  m.count_only = r.count_only();
  m.min_mod_revision = r.min_mod_revision();
  m.max_mod_revision = r.max_mod_revision();
  m.min_create_revision = r.min_create_revision();
  m.max_create_revision = r.max_create_revision();
  return m;
}

void Fill(RangeResult res, etcdserverpb::RangeResponse* out) {
  out->mutable_header()->set_revision(res.revision);
  for (kvpb::KeyValue& kv : res.kvs) *out->add_kvs() = std::move(kv);
  out->set_more(res.more);
  out->set_count(res.count);
}

// Writes of one branch: keys put and ranges deleted, for the duplicate check.
struct Writes {
  std::vector<std::string> puts;
  std::vector<std::pair<std::string, std::string>> deletes;
  bool Covers(const std::string& key) const {
    for (const std::string& p : puts) {
      if (p == key) return true;
    }
    for (const auto& [k, e] : deletes) {
      if (KeyInRange(key, k, e)) return true;
    }
    return false;
  }
};

absl::Status CheckBranch(const google::protobuf::RepeatedPtrField<RequestOp>& ops,
                         const KvLimits& limits, Writes* writes);

absl::Status CheckOp(const RequestOp& op, const KvLimits& limits, Writes* w) {
  switch (op.request_case()) {
    case RequestOp::kRequestRange:
      return ValidateRange(op.request_range(), limits);
    case RequestOp::kRequestPut: {
      if (absl::Status s = ValidatePut(op.request_put(), limits); !s.ok()) return s;
      if (w->Covers(op.request_put().key())) return absl::InvalidArgumentError(kErrDuplicateKey);
      w->puts.push_back(op.request_put().key());
      return absl::OkStatus();
    }
    case RequestOp::kRequestDeleteRange: {
      const auto& d = op.request_delete_range();
      if (absl::Status s = ValidateDeleteRange(d, limits); !s.ok()) return s;
      for (const std::string& p : w->puts) {
        if (KeyInRange(p, d.key(), d.range_end())) {
          return absl::InvalidArgumentError(kErrDuplicateKey);
        }
      }
      w->deletes.emplace_back(d.key(), d.range_end());
      return absl::OkStatus();
    }
    case RequestOp::kRequestTxn: {
      // Each nested branch is checked against what the outer branch wrote before it; what
      // either may write then counts for the rest of the outer branch.
      const etcdserverpb::TxnRequest& t = op.request_txn();
      if (t.compare_size() > static_cast<int>(limits.txn_ops_max) ||
          t.success_size() > static_cast<int>(limits.txn_ops_max) ||
          t.failure_size() > static_cast<int>(limits.txn_ops_max)) {
        return absl::InvalidArgumentError(kErrTooManyOps);
      }
      Writes success = *w, failure = *w;
      if (absl::Status s = CheckBranch(t.success(), limits, &success); !s.ok()) return s;
      if (absl::Status s = CheckBranch(t.failure(), limits, &failure); !s.ok()) return s;
      const long puts = static_cast<long>(w->puts.size());
      const long deletes = static_cast<long>(w->deletes.size());
      for (const Writes* b : {&success, &failure}) {
        w->puts.insert(w->puts.end(), b->puts.begin() + puts, b->puts.end());
        w->deletes.insert(w->deletes.end(), b->deletes.begin() + deletes, b->deletes.end());
      }
      return absl::OkStatus();
    }
    case RequestOp::REQUEST_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("etcdserver: a txn operation holds no request");
}

absl::Status CheckBranch(const google::protobuf::RepeatedPtrField<RequestOp>& ops,
                         const KvLimits& limits, Writes* writes) {
  for (const RequestOp& op : ops) {
    if (absl::Status s = CheckOp(op, limits, writes); !s.ok()) return s;
  }
  return absl::OkStatus();
}

template <typename T>
bool CompareInts(Compare::CompareResult r, T a, T b) {
  switch (r) {
    case Compare::EQUAL:
      return a == b;
    case Compare::NOT_EQUAL:
      return a != b;
    case Compare::GREATER:
      return a > b;
    case Compare::LESS:
      return a < b;
    default:
      return false;
  }
}

bool CompareKv(const Compare& c, const kvpb::KeyValue& kv) {
  switch (c.target()) {
    case Compare::VERSION:
      return CompareInts(c.result(), kv.version(), c.version());
    case Compare::CREATE:
      return CompareInts(c.result(), kv.create_revision(), c.create_revision());
    case Compare::MOD:
      return CompareInts(c.result(), kv.mod_revision(), c.mod_revision());
    case Compare::VALUE:
      return CompareInts(c.result(), kv.value(), c.value());
    case Compare::LEASE:
      return CompareInts(c.result(), kv.lease(), c.lease());
    default:
      return false;
  }
}

// Every response header in a txn carries the txn's final revision.
void SetRevision(etcdserverpb::TxnResponse* r, int64_t revision) {
  r->mutable_header()->set_revision(revision);
  for (etcdserverpb::ResponseOp& op : *r->mutable_responses()) {
    switch (op.response_case()) {
      case etcdserverpb::ResponseOp::kResponseRange:
        op.mutable_response_range()->mutable_header()->set_revision(revision);
        break;
      case etcdserverpb::ResponseOp::kResponsePut:
        op.mutable_response_put()->mutable_header()->set_revision(revision);
        break;
      case etcdserverpb::ResponseOp::kResponseDeleteRange:
        op.mutable_response_delete_range()->mutable_header()->set_revision(revision);
        break;
      case etcdserverpb::ResponseOp::kResponseTxn:
        SetRevision(op.mutable_response_txn(), revision);
        break;
      default:
        break;
    }
  }
}

// Whether any branch of `r`, at any depth, holds a put.
bool HasPut(const etcdserverpb::TxnRequest& r) {
  for (const auto* branch : {&r.success(), &r.failure()}) {
    for (const RequestOp& op : *branch) {
      if (op.has_request_put()) return true;
      if (op.has_request_txn() && HasPut(op.request_txn())) return true;
    }
  }
  return false;
}

// etcd's quota cost of the puts a transaction ran (its PUT events).
uint64_t PutCostBytes(const std::vector<kvpb::Event>& events) {
  uint64_t cost = 0;
  for (const kvpb::Event& e : events) {
    if (e.type() == kvpb::Event::PUT) {
      cost += kKvOverheadBytes + e.kv().key().size() + e.kv().value().size();
    }
  }
  return cost;
}

constexpr char kAlarmPrefix[] = "alarm/";

}  // namespace

absl::Status ValidateRange(const etcdserverpb::RangeRequest& r, const KvLimits& limits) {
  if (r.key().empty()) return absl::InvalidArgumentError(kErrEmptyKey);
  if (r.ByteSizeLong() > limits.request_bytes_max) return absl::InvalidArgumentError(kErrTooLarge);
  return absl::OkStatus();
}

absl::Status ValidatePut(const etcdserverpb::PutRequest& r, const KvLimits& limits) {
  if (r.key().empty()) return absl::InvalidArgumentError(kErrEmptyKey);
  if (r.ignore_value() && !r.value().empty()) {
    return absl::InvalidArgumentError(kErrValueProvided);
  }
  if (r.ignore_lease() && r.lease() != 0) return absl::InvalidArgumentError(kErrLeaseProvided);
  if (r.ByteSizeLong() > limits.request_bytes_max) return absl::InvalidArgumentError(kErrTooLarge);
  return absl::OkStatus();
}

absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                                 const KvLimits& limits) {
  if (r.key().empty()) return absl::InvalidArgumentError(kErrEmptyKey);
  if (r.ByteSizeLong() > limits.request_bytes_max) return absl::InvalidArgumentError(kErrTooLarge);
  return absl::OkStatus();
}

absl::Status ValidateTxn(const etcdserverpb::TxnRequest& r, const KvLimits& limits) {
  if (r.ByteSizeLong() > limits.request_bytes_max) return absl::InvalidArgumentError(kErrTooLarge);
  RequestOp op;
  *op.mutable_request_txn() = r;
  Writes none;
  return CheckOp(op, limits, &none);
}

absl::Status ValidateAlarm(const AlarmRequest& r) {
  if (!AlarmRequest::AlarmAction_IsValid(r.action())) {
    return absl::InvalidArgumentError("etcdserver: unknown alarm action");
  }
  if (!etcdserverpb::AlarmType_IsValid(r.alarm())) {
    return absl::InvalidArgumentError("etcdserver: unknown alarm type");
  }
  return absl::OkStatus();
}

KvApplier::KvApplier(MvccStore* store, Lessor* lessor, KvLimits limits)
    : store_(store), lessor_(lessor), limits_(limits) {
  load_status_ = LoadAlarms();
}

absl::StatusOr<std::unique_ptr<KvApplier>> KvApplier::Open(MvccStore* store, Lessor* lessor,
                                                           KvLimits limits) {
  auto applier = std::make_unique<KvApplier>(store, lessor, limits);
  if (!applier->load_status_.ok()) return applier->load_status_;
  return applier;
}

std::string KvApplier::AlarmRecordKey(AlarmKey key) {
  return absl::StrFormat("%s%016x/%08x", kAlarmPrefix, key.first,
                         static_cast<uint32_t>(key.second));
}

absl::Status KvApplier::LoadAlarms() {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> records =
      store_->Aux(kAlarmPrefix);
  if (!records.ok()) return records.status();
  constexpr size_t kPrefix = sizeof(kAlarmPrefix) - 1;
  for (const auto& [key, value] : *records) {
    uint64_t member = 0;
    uint32_t type = 0;
    if (key.size() != kPrefix + 16 + 1 + 8 || key[kPrefix + 16] != '/' ||
        !absl::SimpleHexAtoi(key.substr(kPrefix, 16), &member) ||
        !absl::SimpleHexAtoi(key.substr(kPrefix + 17), &type) ||
        !etcdserverpb::AlarmType_IsValid(static_cast<int>(type)) ||
        type == etcdserverpb::NONE || !value.empty()) {
      return absl::DataLossError(absl::StrCat("kv: alarm record ", key, " is damaged"));
    }
    alarms_.insert({member, static_cast<int>(type)});
  }
  return absl::OkStatus();
}

std::vector<etcdserverpb::AlarmMember> KvApplier::Alarms(AlarmType type) const {
  std::vector<etcdserverpb::AlarmMember> out;
  for (const auto& [member, t] : alarms_) {
    if (type != etcdserverpb::NONE && t != type) continue;
    etcdserverpb::AlarmMember& m = out.emplace_back();
    m.set_memberid(member);
    m.set_alarm(static_cast<AlarmType>(t));
  }
  return out;
}

bool KvApplier::Raised(AlarmType type) const {
  for (const auto& [member, t] : alarms_) {
    if (t == type) return true;
  }
  return false;
}

absl::Status KvApplier::Admit(bool adds) const {
  if (Raised(etcdserverpb::CORRUPT)) return absl::DataLossError(kErrCorrupt);
  if (adds && Raised(etcdserverpb::NOSPACE)) return absl::ResourceExhaustedError(kErrNoSpace);
  return absl::OkStatus();
}

bool KvApplier::OverQuota(uint64_t cost_bytes) const {
  const uint64_t quota = limits_.quota_bytes;
  if (quota == 0) return false;
  return cost_bytes > quota || store_->size_bytes() > quota - cost_bytes;
}

absl::StatusOr<etcdserverpb::RangeResponse> KvApplier::Range(
    const etcdserverpb::RangeRequest& r) const {
  absl::StatusOr<RangeResult> res = store_->Range(ToMvcc(r));
  if (!res.ok()) return res.status();
  etcdserverpb::RangeResponse out;
  Fill(std::move(*res), &out);
  return out;
}

absl::Status KvApplier::RunOp(MvccStore::Txn& t, const RequestOp& op,
                              etcdserverpb::ResponseOp* out) {
  switch (op.request_case()) {
    case RequestOp::kRequestRange: {
      absl::StatusOr<RangeResult> res = t.Range(ToMvcc(op.request_range()));
      if (!res.ok()) return res.status();
      Fill(std::move(*res), out->mutable_response_range());
      return absl::OkStatus();
    }
    case RequestOp::kRequestPut: {
      const etcdserverpb::PutRequest& p = op.request_put();
      if (p.lease() != 0 && (lessor_ == nullptr || !lessor_->Exists(p.lease()))) {
        return absl::NotFoundError(kErrLeaseNotFound);
      }
      std::string value = p.value();
      int64_t lease = p.lease();
      if (p.ignore_value() || p.ignore_lease()) {
        RangeRequest get;
        get.key = p.key();
        absl::StatusOr<RangeResult> cur = t.Range(get);
        if (!cur.ok()) return cur.status();
        if (cur->kvs.empty()) return absl::InvalidArgumentError(kErrKeyNotFound);
        if (p.ignore_value()) value = cur->kvs[0].value();
        if (p.ignore_lease()) lease = cur->kvs[0].lease();
      }
      absl::StatusOr<std::optional<kvpb::KeyValue>> prev = t.Put(p.key(), value, lease);
      if (!prev.ok()) return prev.status();
      etcdserverpb::PutResponse* resp = out->mutable_response_put();
      if (p.prev_kv() && *prev) *resp->mutable_prev_kv() = std::move(**prev);
      return absl::OkStatus();
    }
    case RequestOp::kRequestDeleteRange: {
      const etcdserverpb::DeleteRangeRequest& d = op.request_delete_range();
      absl::StatusOr<std::vector<kvpb::KeyValue>> gone = t.DeleteRange(d.key(), d.range_end());
      if (!gone.ok()) return gone.status();
      etcdserverpb::DeleteRangeResponse* resp = out->mutable_response_delete_range();
      resp->set_deleted(static_cast<int64_t>(gone->size()));
      if (d.prev_kv()) {
        for (kvpb::KeyValue& kv : *gone) *resp->add_prev_kvs() = std::move(kv);
      }
      return absl::OkStatus();
    }
    case RequestOp::kRequestTxn: {
      absl::StatusOr<etcdserverpb::TxnResponse> nested = RunTxn(t, op.request_txn());
      if (!nested.ok()) return nested.status();
      *out->mutable_response_txn() = std::move(*nested);
      return absl::OkStatus();
    }
    case RequestOp::REQUEST_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("etcdserver: a txn operation holds no request");
}

absl::StatusOr<etcdserverpb::TxnResponse> KvApplier::RunTxn(MvccStore::Txn& t,
                                                            const etcdserverpb::TxnRequest& r) {
  bool succeeded = true;
  for (const Compare& c : r.compare()) {
    RangeRequest get;
    get.key = c.key();
    get.range_end = c.range_end();
    absl::StatusOr<RangeResult> cur = t.Range(get);
    if (!cur.ok()) return cur.status();
    bool holds;
    if (cur->kvs.empty()) {
      holds = c.target() != Compare::VALUE && CompareKv(c, kvpb::KeyValue());
    } else {
      holds = true;
      for (const kvpb::KeyValue& kv : cur->kvs) holds = holds && CompareKv(c, kv);
    }
    if (!holds) {
      succeeded = false;
      break;
    }
  }
  etcdserverpb::TxnResponse out;
  out.set_succeeded(succeeded);
  for (const RequestOp& op : succeeded ? r.success() : r.failure()) {
    if (absl::Status s = RunOp(t, op, out.add_responses()); !s.ok()) return s;
  }
  return out;
}

absl::Status KvApplier::Finish(MvccStore::Txn t, const absl::Status& result, uint64_t index,
                              bool raise_nospace) {
  if (result.ok()) {
    const std::vector<kvpb::Event> events = t.events();
    if (absl::Status s = t.Commit(index); !s.ok()) return s;
    if (lessor_ != nullptr) lessor_->OnEvents(events);
    return absl::OkStatus();
  }
  { MvccStore::Txn abandoned = std::move(t); }  // nothing of it is written
  return Refuse(result, index, raise_nospace);
}

absl::Status KvApplier::Refuse(const absl::Status& why, uint64_t index, bool raise_nospace) {
  E2D_CHECK(!why.ok(), "kv: a refusal without a reason");
  const AlarmKey nospace{kQuotaAlarmMemberId, etcdserverpb::NOSPACE};
  MvccStore::Txn empty = store_->Begin();
  if (raise_nospace) {
    // Only a write that passed Admit (no NOSPACE raised) can cross the quota.
    E2D_CHECK(!Raised(etcdserverpb::NOSPACE), "kv: the quota raised NOSPACE twice");
    empty.PutAux(AlarmRecordKey(nospace), "");
  }
  if (absl::Status s = empty.Commit(index); !s.ok()) return s;
  if (raise_nospace) alarms_.insert(nospace);
  return why;
}

absl::StatusOr<etcdserverpb::TxnResponse> KvApplier::Txn(const etcdserverpb::TxnRequest& r,
                                                         uint64_t index) {
  if (!load_status_.ok()) return load_status_;
  if (absl::Status s = Admit(HasPut(r)); !s.ok()) return Refuse(s, index);
  MvccStore::Txn t = store_->Begin();
  absl::StatusOr<etcdserverpb::TxnResponse> out = RunTxn(t, r);
  bool raise_nospace = false;
  if (out.ok()) {
    const uint64_t cost_bytes = PutCostBytes(t.events());
    if (cost_bytes > 0 && OverQuota(cost_bytes)) {
      out = absl::ResourceExhaustedError(kErrNoSpace);
      raise_nospace = true;
    }
  }
  if (absl::Status s = Finish(std::move(t), out.status(), index, raise_nospace); !s.ok()) {
    return s;
  }
  SetRevision(&*out, store_->revision());
  return out;
}

absl::StatusOr<etcdserverpb::PutResponse> KvApplier::Put(const etcdserverpb::PutRequest& r,
                                                         uint64_t index) {
  etcdserverpb::TxnRequest txn;
  *txn.add_success()->mutable_request_put() = r;
  absl::StatusOr<etcdserverpb::TxnResponse> out = Txn(txn, index);
  if (!out.ok()) return out.status();
  return std::move(*out->mutable_responses(0)->mutable_response_put());
}

absl::StatusOr<etcdserverpb::DeleteRangeResponse> KvApplier::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& r, uint64_t index) {
  etcdserverpb::TxnRequest txn;
  *txn.add_success()->mutable_request_delete_range() = r;
  absl::StatusOr<etcdserverpb::TxnResponse> out = Txn(txn, index);
  if (!out.ok()) return out.status();
  return std::move(*out->mutable_responses(0)->mutable_response_delete_range());
}

absl::StatusOr<etcdserverpb::CompactionResponse> KvApplier::Compact(
    const etcdserverpb::CompactionRequest& r, uint64_t index) {
  if (!load_status_.ok()) return load_status_;
  if (absl::Status s = Admit(false); !s.ok()) return Refuse(s, index);
  if (absl::Status s = store_->Compact(r.revision(), index); !s.ok()) {
    // A refused compaction (OutOfRange) wrote nothing; an engine error leaves the store unusable.
    if (s.code() != absl::StatusCode::kOutOfRange) return s;
    return Refuse(s, index);
  }
  etcdserverpb::CompactionResponse out;
  out.mutable_header()->set_revision(store_->revision());
  return out;
}

absl::StatusOr<int64_t> KvApplier::LeaseGrant(int64_t id, int64_t ttl_seconds, uint64_t index,
                                              int64_t now_ms) {
  E2D_CHECK(lessor_ != nullptr, "kv: LeaseGrant without a lessor");
  if (!load_status_.ok()) return load_status_;
  if (absl::Status s = Admit(true); !s.ok()) return Refuse(s, index);
  if (OverQuota(kLeaseOverheadBytes)) {
    return Refuse(absl::ResourceExhaustedError(kErrNoSpace), index, /*raise_nospace=*/true);
  }
  return lessor_->Grant(id, ttl_seconds, index, now_ms);
}

absl::Status KvApplier::LeaseRevoke(int64_t id, uint64_t index) {
  E2D_CHECK(lessor_ != nullptr, "kv: LeaseRevoke without a lessor");
  if (!load_status_.ok()) return load_status_;
  if (absl::Status s = Admit(false); !s.ok()) return Refuse(s, index);
  return lessor_->Revoke(id, index);
}

absl::StatusOr<etcdserverpb::AlarmResponse> KvApplier::Alarm(const AlarmRequest& r,
                                                             uint64_t index) {
  if (!load_status_.ok()) return load_status_;
  if (absl::Status s = ValidateAlarm(r); !s.ok()) return Refuse(s, index);
  const AlarmKey key{r.memberid(), r.alarm()};
  const bool known = r.alarm() != etcdserverpb::NONE;  // (member, NONE) is never raised
  const bool raise = r.action() == AlarmRequest::ACTIVATE && known && !alarms_.contains(key);
  const bool clear = r.action() == AlarmRequest::DEACTIVATE && alarms_.contains(key);
  if (raise && alarms_.size() >= limits_.alarms_max) {
    return Refuse(absl::ResourceExhaustedError(absl::StrCat(
                      "etcdserver: too many alarms (bound ", limits_.alarms_max, ")")),
                  index);
  }
  MvccStore::Txn t = store_->Begin();
  if (raise) t.PutAux(AlarmRecordKey(key), "");
  if (clear) t.DeleteAux(AlarmRecordKey(key));
  if (absl::Status s = t.Commit(index); !s.ok()) return s;
  if (raise) alarms_.insert(key);
  if (clear) alarms_.erase(key);
  etcdserverpb::AlarmResponse out;
  out.mutable_header()->set_revision(store_->revision());
  if (r.action() == AlarmRequest::GET) {
    for (etcdserverpb::AlarmMember& m : Alarms(r.alarm())) *out.add_alarms() = std::move(m);
  } else if ((r.action() == AlarmRequest::ACTIVATE && known) || clear) {
    etcdserverpb::AlarmMember* m = out.add_alarms();
    m->set_memberid(key.first);
    m->set_alarm(r.alarm());
  }
  return out;
}

}  // namespace e2d::kv
