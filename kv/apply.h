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

#ifndef E2D_KV_APPLY_H_
#define E2D_KV_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/etcdserverpb.pb.h"
#include "kv/lease.h"
#include "kv/mvcc.h"

namespace e2d::kv {

struct KvLimits {
  size_t txn_ops_max = 128;              // etcd's --max-txn-ops default
  size_t request_bytes_max = 1536 * 1024;  // etcd's --max-request-bytes default (1.5 MiB)
};

absl::Status ValidateRange(const etcdserverpb::RangeRequest& r, const KvLimits& limits);
absl::Status ValidatePut(const etcdserverpb::PutRequest& r, const KvLimits& limits);
absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                                 const KvLimits& limits);
absl::Status ValidateTxn(const etcdserverpb::TxnRequest& r, const KvLimits& limits);

class KvApplier {
 public:
  // `lessor` (optional) checks that a put's lease exists and follows attachments.
  explicit KvApplier(MvccStore* store, Lessor* lessor = nullptr)
      : store_(store), lessor_(lessor) {}

  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& r) const;
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& r,
                                                uint64_t index);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& r, uint64_t index);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& r,
                                                uint64_t index);
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(
      const etcdserverpb::CompactionRequest& r, uint64_t index);

 private:
  absl::StatusOr<etcdserverpb::TxnResponse> RunTxn(MvccStore::Txn& t,
                                                   const etcdserverpb::TxnRequest& r);
  absl::Status RunOp(MvccStore::Txn& t, const etcdserverpb::RequestOp& op,
                     etcdserverpb::ResponseOp* out);
  // Commits `t` at `index` if `result` is OK; otherwise abandons it and records the index alone.
  absl::Status Finish(MvccStore::Txn t, const absl::Status& result, uint64_t index);

  MvccStore* store_;
  Lessor* lessor_;
};

}  // namespace e2d::kv

#endif  // E2D_KV_APPLY_H_
