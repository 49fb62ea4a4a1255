// Copyright e2d authors.
//
// KvApplier: etcd v3's KV requests (etcdserverpb shapes) applied to an MvccStore, with etcd's
// semantics and error messages. The gRPC server and the simulator's clients go through the same
// code: Validate* before proposing a write (a bad request never reaches the log), then the
// Raft-applied entry is applied here at its index; reads run directly (serializable) or after
// ReadIndex (linearizable) at the caller's choice.
//
// Txn: compares are evaluated on the current state (a compare with range_end must hold for every
// key in the range; a missing key compares as version/create/mod/lease 0 and never matches on
// value); then the chosen branch's operations run in order in one MVCC transaction, seeing each
// other's writes, nested txns included; all of it commits at one revision. A txn may hold at most
// txn_ops_max operations per branch, and may not write a key twice (a put and a delete covering
// it count) in one branch: etcd's "duplicate key given in txn request".
//
// An apply that fails (e.g. ignore_value on a missing key) changes nothing but still records
// the applied index, so replay after a crash reaches the same result.
//
// Space quota and alarms (etcd's backend quota and Maintenance.Alarm), all replicated state:
// decided only from applied entries and the store's size_bytes() (mvcc.h), persisted as aux
// records "alarm/<member>/<type>" in the same batch as the applied index, so every member that
// applied the same entries holds the same alarms, across restarts too.
//  - Quota: a Put, or a Txn whose chosen branches ran puts, costs etcd's estimate per put
//    (kKvOverheadBytes + key + value bytes; the value as stored, so an ignore_value put counts
//    the value it keeps); a LeaseGrant costs kLeaseOverheadBytes. If size_bytes() + cost >
//    quota_bytes the apply is refused with kErrNoSpace (ResourceExhausted) and nothing of it is
//    written (etcd writes the put and then answers the error; we refuse it whole), and the
//    NOSPACE alarm is raised for member kQuotaAlarmMemberId in the same batch.
//  - While any NOSPACE alarm is raised (for any member): every Put, every Txn holding a put in
//    any branch at any depth (etcd looks at the top level only), and every LeaseGrant is refused
//    with kErrNoSpace, however small; Range, DeleteRange, Txn without puts, Compact and
//    LeaseRevoke run. Deactivating the alarm lets writes through; if the store is still over the
//    quota, the next write that does not fit raises it again (as etcd).
//  - While a CORRUPT alarm is raised: every write apply (Put, DeleteRange, Txn, Compact,
//    LeaseGrant, LeaseRevoke) is refused with kErrCorrupt (DataLoss), as etcd's corrupt applier.
//    Range is a read and runs (etcd's Range bypasses the alarm appliers too).
// The size shrinks with compaction (no defragmentation needed, unlike etcd's bbolt file).
// KvLimits' quota_bytes and alarms_max are part of the state machine's definition: every member
// must use the same values, or the members' states diverge.
//
// Engine errors (the store's Commit/Compact fail, or loading the alarms failed) are returned as
// they are, without recording the index: the caller must stop (fail-stop, see mvcc.h).

#ifndef E2D_KV_APPLY_H_
#define E2D_KV_APPLY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/etcdserverpb.pb.h"
#include "kv/lease.h"
#include "kv/mvcc.h"

namespace e2d::kv {

inline constexpr char kErrNoSpace[] = "etcdserver: mvcc: database space exceeded";
inline constexpr char kErrCorrupt[] = "etcdserver: corrupt cluster";
// etcd's quota cost estimates (server/etcdserver/quota.go).
inline constexpr uint64_t kKvOverheadBytes = 256;    // per put, on top of key + value
inline constexpr uint64_t kLeaseOverheadBytes = 64;  // per lease grant
// The member a quota-raised NOSPACE alarm is recorded for. etcd records the member whose own
// bbolt file is full; here the size is replicated, so every member is over the quota at the same
// entry and the alarm is the cluster's: 0, which rpc.proto's AlarmRequest reads as "all members".
inline constexpr uint64_t kQuotaAlarmMemberId = 0;

struct KvLimits {
  size_t txn_ops_max = 128;              // etcd's --max-txn-ops default
  size_t request_bytes_max = 1536 * 1024;  // etcd's --max-request-bytes default (1.5 MiB)
  // The space quota on MvccStore::size_bytes(); 0: no quota (etcd's negative
  // --quota-backend-bytes). Default: etcd's default quota, 2 GiB (etcd's flag value 0). The same
  // on every member.
  uint64_t quota_bytes = uint64_t{2} * 1024 * 1024 * 1024;
  // Bound on raised alarms (distinct member and type pairs); an ACTIVATE beyond it is refused
  // (ResourceExhausted). The quota's own NOSPACE alarm is always recorded. The same on every
  // member.
  size_t alarms_max = 1024;
};

absl::Status ValidateRange(const etcdserverpb::RangeRequest& r, const KvLimits& limits);
absl::Status ValidatePut(const etcdserverpb::PutRequest& r, const KvLimits& limits);
absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                                 const KvLimits& limits);
absl::Status ValidateTxn(const etcdserverpb::TxnRequest& r, const KvLimits& limits);
// Refuses an unknown action or alarm type (InvalidArgument). ACTIVATE and DEACTIVATE of NONE
// are valid no-ops, as in etcd.
absl::Status ValidateAlarm(const etcdserverpb::AlarmRequest& r);

class KvApplier {
 public:
  // Loads the raised alarms from `store`. `lessor` (optional) checks that a put's lease exists
  // and follows attachments. Both must outlive the applier, and it must be recreated whenever
  // the store is reopened (it caches the alarms, as the Lessor caches the leases).
  static absl::StatusOr<std::unique_ptr<KvApplier>> Open(MvccStore* store,
                                                         Lessor* lessor = nullptr,
                                                         KvLimits limits = KvLimits());
  // As Open; if loading the alarms fails, every apply returns that error.
  explicit KvApplier(MvccStore* store, Lessor* lessor = nullptr, KvLimits limits = KvLimits());

  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& r) const;
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& r,
                                                uint64_t index);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& r, uint64_t index);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& r,
                                                uint64_t index);
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(
      const etcdserverpb::CompactionRequest& r, uint64_t index);
  // Lessor::Grant and Lessor::Revoke behind the alarms and the quota (see the header comment);
  // the node must grant and revoke through these. REQUIRES: a lessor (crashes otherwise).
  absl::StatusOr<int64_t> LeaseGrant(int64_t id, int64_t ttl_seconds, uint64_t index,
                                     int64_t now_ms);
  absl::Status LeaseRevoke(int64_t id, uint64_t index);
  // Maintenance.Alarm, applied at `index` like a write (etcd proposes it through Raft too).
  // GET: the raised alarms of type `alarm` (NONE: all). ACTIVATE / DEACTIVATE: raises / clears
  // (memberID, alarm); the response holds that pair if it was raised (already, or now) /
  // cleared now, and nothing for a no-op. The member id is recorded as given; 0 is the
  // quota's own NOSPACE alarm (kQuotaAlarmMemberId).
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarm(const etcdserverpb::AlarmRequest& r,
                                                    uint64_t index);

  // The raised alarms of `type` (NONE: all) without going through the log, ordered by member
  // id, then type (etcd's order is a Go map's).
  std::vector<etcdserverpb::AlarmMember> Alarms(
      etcdserverpb::AlarmType type = etcdserverpb::NONE) const;
  bool Raised(etcdserverpb::AlarmType type) const;
  const KvLimits& limits() const { return limits_; }

 private:
  // (member id, alarm type), the key of a raised alarm.
  using AlarmKey = std::pair<uint64_t, int>;
  static std::string AlarmRecordKey(AlarmKey key);
  absl::StatusOr<etcdserverpb::TxnResponse> RunTxn(MvccStore::Txn& t,
                                                   const etcdserverpb::TxnRequest& r);
  absl::Status RunOp(MvccStore::Txn& t, const etcdserverpb::RequestOp& op,
                     etcdserverpb::ResponseOp* out);
  // Commits `t` at `index` if `result` is OK; otherwise abandons it and records the index alone
  // (raising the quota's NOSPACE alarm in the same batch if `raise_nospace`).
  absl::Status Finish(MvccStore::Txn t, const absl::Status& result, uint64_t index,
                      bool raise_nospace = false);
  // Records `index` alone (with the quota's NOSPACE alarm if `raise_nospace`); returns `why`.
  absl::Status Refuse(const absl::Status& why, uint64_t index, bool raise_nospace = false);
  // The alarms' verdict on a write apply that may put keys or grant leases (`adds`) or not;
  // OK to run it.
  absl::Status Admit(bool adds) const;
  // Whether a write costing `cost_bytes` would take the store over the quota.
  bool OverQuota(uint64_t cost_bytes) const;
  absl::Status LoadAlarms();

  MvccStore* store_;
  Lessor* lessor_;
  KvLimits limits_;
  absl::Status load_status_;          // of LoadAlarms; every apply fails if it did
  absl::btree_set<AlarmKey> alarms_;  // raised, as the aux records say; <= alarms_max + 1
};

}  // namespace e2d::kv

#endif  // E2D_KV_APPLY_H_
