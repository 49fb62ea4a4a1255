// Copyright e2d authors.
//
// MvccStore: etcd v3's multi-version key-value model over a KvEngine.
//
// One global revision counts write transactions; each change in a transaction gets the next
// sub-revision. Every key has create_revision (the put that created its current life),
// mod_revision (its last change) and version (puts since creation, 1 for the first); a delete
// writes a tombstone and ends the key's life, a later put starts a new one at version 1. Reads
// name a revision (0: the current one) and see the store exactly as it was then. Compaction at
// revision C forgets every value no read at or after C can see; reads below C then fail.
//
// Range follows etcd: `range_end` empty reads the single `key`; "\0" reads every key >= `key`;
// otherwise [key, range_end). `count` is the number of keys in the range (before the
// min/max revision filters); `limit` bounds the keys returned after filtering and sorting, and
// `more` says whether it cut some off.
//
// Writes go through a Txn: its reads see its own earlier writes; Commit writes every change, the
// new revision and the Raft applied index in one engine batch, so after a crash the store is
// exactly as of some applied index, and the log is replayed from there.
//
// A new store is at revision 1, as etcd's is; the first write makes revision 2.
//
// Size (the backend size etcd's space quota is measured against): size_bytes() is the sum of
// key and value bytes of every record the store holds in the engine, revision records and
// auxiliary records ("x/..."); the few fixed meta records ("m/...") are not counted. It grows
// with every commit, shrinks when a compaction drops records or an aux record is deleted or
// replaced by a shorter one, and is a function of the applied entries only (the same on every
// replica). It is not persisted: Open recounts it by scanning the records, so it always matches
// what the engine holds, after a crash too. Unlike etcd's bbolt file it needs no defragmentation
// to shrink.
//
// Errors (etcd's messages, code OutOfRange): "mvcc: required revision has been compacted",
// "mvcc: required revision is a future revision". Open fails with DataLoss on a damaged record.
// An engine error during Commit or Compact leaves the store unusable: the caller must stop
// (fail-stop, as for the WAL) and recover from the engine.

#ifndef E2D_KV_MVCC_H_
#define E2D_KV_MVCC_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/engine.h"
#include "kv/key_index.h"
#include "kv/kvpb.pb.h"

namespace e2d::kv {

inline constexpr char kErrCompacted[] = "mvcc: required revision has been compacted";
inline constexpr char kErrFutureRev[] = "mvcc: required revision is a future revision";

struct RangeRequest {
  std::string key;
  std::string range_end;
  int64_t limit = 0;     // 0: no limit
  int64_t revision = 0;  // 0: current
  enum class SortOrder { kNone, kAscend, kDescend } sort_order = SortOrder::kNone;
  enum class SortTarget { kKey, kVersion, kCreate, kMod, kValue } sort_target = SortTarget::kKey;
  bool keys_only = false;
  bool count_only = false;
  int64_t min_mod_revision = 0;  // 0: no bound
  int64_t max_mod_revision = 0;
  int64_t min_create_revision = 0;
  int64_t max_create_revision = 0;
};

struct RangeResult {
  std::vector<kvpb::KeyValue> kvs;
  bool more = false;
  int64_t count = 0;
  int64_t revision = 0;  // the store revision the read saw
};

class MvccStore {
 public:
  // Loads the store from `engine` (which must outlive it), rebuilding the in-memory index.
  static absl::StatusOr<std::unique_ptr<MvccStore>> Open(KvEngine* engine);
  // Makes `batch` record applied index 0: a store copied from another cluster (a backup) is
  // then replayed by a new Raft log from its first entry. Revisions are kept as they are.
  static void ForgetAppliedIndex(WriteBatch* batch);

  int64_t revision() const { return revision_; }
  int64_t compact_revision() const { return compact_revision_; }
  uint64_t applied_index() const { return applied_index_; }
  // See "Size" above. Changes only in Commit and Compact (after their batch is written).
  uint64_t size_bytes() const { return size_bytes_; }
  // Recounts size_bytes() from the engine (a full scan of the counted records): the independent
  // read of the same fact, for Open, invariant checkers and tests.
  absl::StatusOr<uint64_t> ComputeSizeBytes() const;

  absl::StatusOr<RangeResult> Range(const RangeRequest& request) const;

  class Txn {
   public:
    Txn(Txn&& other) noexcept;
    Txn& operator=(Txn&&) = delete;
    ~Txn();
    absl::StatusOr<RangeResult> Range(const RangeRequest& request) const;
    // Returns the key's previous value, if it had one.
    absl::StatusOr<std::optional<kvpb::KeyValue>> Put(const std::string& key,
                                                      const std::string& value, int64_t lease);
    // Deletes every live key in the range (range_end as in Range); returns their last values.
    absl::StatusOr<std::vector<kvpb::KeyValue>> DeleteRange(const std::string& key,
                                                            const std::string& range_end);
    // The events of the changes so far (prev_kv filled).
    const std::vector<kvpb::Event>& events() const { return events_; }
    // Records outside the versioned key space (leases, ...), written in the same batch. Their
    // keys get the prefix "x/" in the engine; read them back with MvccStore::Aux.
    void PutAux(const std::string& key, const std::string& value);
    void DeleteAux(const std::string& key);
    // Writes the changes (if any: a read-only txn leaves the revision alone) with the applied
    // index, in one batch, and moves size_bytes() by what the batch adds and replaces (an aux
    // write reads the record it replaces first).
    absl::Status Commit(uint64_t applied_index);
    // The revision this txn writes at, or the current one if it changed nothing (yet).
    int64_t revision() const;

   private:
    friend class MvccStore;
    explicit Txn(MvccStore* store);
    // The key's value as this txn sees it.
    absl::StatusOr<std::optional<kvpb::KeyValue>> Get(const std::string& key) const;

    MvccStore* store_;
    int64_t main_;
    int64_t sub_ = 0;
    bool done_ = false;
    std::vector<std::pair<Revision, kvpb::Stored>> changes_;
    std::vector<kvpb::Event> events_;  // one per change, with prev_kv
    WriteBatch aux_;
    absl::btree_map<std::string, kvpb::Stored> pending_;  // each changed key's latest state
  };

  // Starts a write transaction. REQUIRES: no other is open (crashes otherwise).
  Txn Begin();

  // The auxiliary records whose keys start with `prefix`, in key order (prefix included).
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Aux(
      const std::string& prefix) const;

  // Compacts at `revision` (see the header comment), recording `applied_index`; size_bytes()
  // drops by the records deleted (read once each to learn their size).
  absl::Status Compact(int64_t revision, uint64_t applied_index);

  // Called after every commit that changed something, with the new revision and its events in
  // order (a delete's kv holds the key and mod_revision; prev_kv the value before).
  using CommitListener = std::function<void(int64_t revision, const std::vector<kvpb::Event>&)>;
  void set_on_commit(CommitListener listener) { on_commit_ = std::move(listener); }

  // The events of revisions [from, to] (to <= revision()), in order, whole revisions only,
  // stopping after the revision that makes `out` reach `events_max` (at least one revision).
  // Returns the first revision not read. prev_kv is filled where the revision before is still
  // readable. OutOfRange (kErrCompacted) if `from` was compacted away.
  absl::StatusOr<int64_t> History(int64_t from, int64_t to, size_t events_max,
                                  std::vector<kvpb::Event>* out) const;

 private:
  explicit MvccStore(KvEngine* engine) : engine_(engine) {}
  absl::StatusOr<kvpb::KeyValue> Load(Revision rev) const;
  absl::Status CheckRevision(int64_t revision) const;

  KvEngine* engine_;
  absl::btree_map<std::string, KeyIndex> index_;
  int64_t revision_ = 0;
  int64_t compact_revision_ = 0;
  uint64_t applied_index_ = 0;
  uint64_t size_bytes_ = 0;
  bool txn_open_ = false;
  CommitListener on_commit_;
};

// The engine key of a revision's record, ordered by revision.
std::string RevisionKey(Revision rev);

// Whether `k` lies in the range etcd's (key, range_end) names: range_end empty means `key`
// itself; "\0" every key from `key` on; otherwise [key, range_end).
bool KeyInRange(const std::string& k, const std::string& key, const std::string& range_end);

}  // namespace e2d::kv

#endif  // E2D_KV_MVCC_H_
