// Copyright e2d authors.
//
// Lessor: etcd v3 leases. A lease has an id and a TTL; keys attached to it are deleted when it
// is revoked, which is what its expiry leads to.
//
// Two halves, as in etcd:
//  - replicated state, changed only by applied Raft entries (Grant, Revoke) and by the puts and
//    deletes that attach keys to leases (OnEvents), so every member holds the same leases and
//    attachments. Lease records live in the MVCC store's auxiliary space, written in the same
//    batch as the applied index; attachments are rebuilt from the keys' lease fields on Open.
//  - leader-local timing: only the primary (the leader's lessor) keeps expiry deadlines, renews
//    them on keep-alive and lists expired leases, for which the leader proposes a Revoke through
//    Raft. Expiry is therefore decided once and applied everywhere. A new leader promotes its
//    lessor, giving every lease its full TTL plus `extend` (the time an election may take), so
//    leases survive a leader change with their remaining TTL extended, as etcd does.
// Times are milliseconds on the leader's monotonic clock (env::Clock in the node and simulator).
//
// Errors carry etcd's messages: "etcdserver: requested lease not found" (NotFound),
// "etcdserver: lease already exists", "etcdserver: too large lease TTL",
// "etcdserver: not a primary lessor" (keep-alive on a follower).

#ifndef E2D_KV_LEASE_H_
#define E2D_KV_LEASE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "kv/mvcc.h"

namespace e2d::kv {

inline constexpr char kErrLeaseNotFoundMsg[] = "etcdserver: requested lease not found";

struct LeaseConfig {
  int64_t min_ttl_seconds = 2;  // the node derives it from the election timeout, as etcd
  int64_t max_ttl_seconds = 9'000'000'000;
  size_t leases_max = 1'000'000;
};

class Lessor {
 public:
  static absl::StatusOr<std::unique_ptr<Lessor>> Open(MvccStore* store, LeaseConfig config);

  // ---- Replicated: applied from Raft entries at `index`. ----
  // Returns the TTL granted (raised to the minimum).
  absl::StatusOr<int64_t> Grant(int64_t id, int64_t ttl_seconds, uint64_t index, int64_t now_ms);
  // Deletes every key attached to the lease and the lease, in one transaction.
  absl::Status Revoke(int64_t id, uint64_t index);
  // Attachments follow the committed events (a put's lease field; a delete detaches).
  void OnEvents(const std::vector<kvpb::Event>& events);
  bool Exists(int64_t id) const { return leases_.contains(id); }

  // ---- Leader-local timing. ----
  void Promote(int64_t now_ms, int64_t extend_ms);
  void Demote();
  bool primary() const { return primary_; }
  // Keep-alive: the lease's TTL, its deadline moved to now + TTL.
  absl::StatusOr<int64_t> Renew(int64_t id, int64_t now_ms);
  // Leases whose deadline has passed, oldest first, at most `max`.
  std::vector<int64_t> Expired(int64_t now_ms, size_t max) const;

  struct TimeToLive {
    int64_t ttl_seconds = -1;  // remaining, rounded up; -1 for an unknown or expired lease
    int64_t granted_ttl_seconds = 0;
    std::vector<std::string> keys;
  };
  TimeToLive Ttl(int64_t id, int64_t now_ms) const;
  std::vector<int64_t> List() const;

 private:
  struct Lease {
    int64_t ttl_seconds = 0;
    int64_t deadline_ms = 0;  // primary only
    absl::btree_set<std::string> keys;
  };
  Lessor(MvccStore* store, LeaseConfig config) : store_(store), config_(config) {}
  static std::string RecordKey(int64_t id);

  MvccStore* store_;
  const LeaseConfig config_;
  absl::btree_map<int64_t, Lease> leases_;
  bool primary_ = false;
};

}  // namespace e2d::kv

#endif  // E2D_KV_LEASE_H_
