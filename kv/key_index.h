// Copyright e2d authors.
//
// KeyIndex: the revisions at which one key changed, in generations. A generation starts with
// the put that creates the key and ends with the delete (tombstone) that removes it; a later put
// starts a new generation. From it: which revision of the key is visible at a given store
// revision (none if the key did not exist then), and what compaction may drop.
//
// Invariants (checked): revisions strictly increase across the whole index; only the last
// generation may be open (not ended by a tombstone).

#ifndef E2D_KV_KEY_INDEX_H_
#define E2D_KV_KEY_INDEX_H_

#include <compare>
#include <cstdint>
#include <optional>
#include <vector>

namespace e2d::kv {

// A store revision: `main` counts write transactions, `sub` the changes within one.
struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  friend auto operator<=>(const Revision&, const Revision&) = default;
};

class KeyIndex {
 public:
  // A put at `rev`: extends the open generation or starts one.
  void Put(Revision rev);
  // A delete at `rev`. REQUIRES: the key exists (an open generation).
  void Tombstone(Revision rev);

  // The revision holding the key's value as of store revision `at`, or none if the key did not
  // exist then (never created, deleted, or compacted away).
  std::optional<Revision> Get(int64_t at) const;

  // For a put that is about to happen: the creating revision and the version the key will have
  // (1 when it starts a new generation).
  struct Next {
    int64_t create_revision;
    int64_t version;
  };
  Next NextPut(int64_t main) const;

  // Whether the key exists now (its last generation is open).
  bool live() const { return !gens_.empty() && !gens_.back().ended; }

  // A tombstone whose generation's puts were compacted away (Compact keeps a tombstone at the
  // compact revision itself): how MvccStore::Open rebuilds such a key. REQUIRES: not live.
  void LoneTombstone(Revision rev);
  // Drops what no read at or after `at` can see: every revision below `at` except the newest one
  // at or below `at` of a generation still open at `at`; a generation deleted exactly at `at`
  // keeps its tombstone (the history of revision `at` still holds the delete). Appends the dropped
  // revisions to `dropped`. Returns whether the index is now empty.
  bool Compact(int64_t at, std::vector<Revision>* dropped);

 private:
  struct Generation {
    int64_t created = 0;        // main revision of the creating put
    int64_t versions = 0;       // puts in this generation (compaction does not lower it)
    std::vector<Revision> revs; // puts, then the tombstone if ended
    bool ended = false;
  };
  void Check(Revision rev) const;

  std::vector<Generation> gens_;
};

}  // namespace e2d::kv

#endif  // E2D_KV_KEY_INDEX_H_
