// Copyright e2d authors.

#include "sim/lincheck.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"  // determinism-ok: lookup-only, never iterated
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "env/check.h"
#include "env/strings.h"

namespace e2d::sim::lincheck {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t HashValue(const Value& v) {
  return v.has_value() ? SplitMix64(static_cast<uint64_t>(*v) ^ 0x5bd1e995ULL) : 0x1234567ULL;
}

// The register model. Returns false if `op` cannot take effect in state `s`. An unknown cas is
// only worth linearizing when its compare succeeds: with a failing compare it has no effect, and
// "no effect" is already covered by never linearizing it.
bool Step(const Operation& op, const Value& s, Value* next) {
  switch (op.kind) {
    case OpKind::kRead:
      *next = s;
      return s == op.output;
    case OpKind::kWrite:
      *next = op.arg;
      return true;
    case OpKind::kCas:
      *next = op.cas_to;
      return s == op.arg;
  }
  return false;
}

// A configuration of the search: which operations are linearized, the register value, and
// whether the last operation linearized was an unknown one (that restricts the next step, see
// KeySearch). Operations are numbered kOk first, then kUnknown, each group in call order.
// Canonical compressed form: kOk operations are linearized roughly in call order, so their set
// is `ok_lo` (leading 64-bit words that are all ones) plus the words from there to the last
// non-zero one: a window about as wide as the history's concurrency, not as long as the
// history. The unknown set is kept up to its last non-zero word.
struct Config {
  Value value;
  bool after_unknown = false;
  uint32_t ok_lo = 0;
  std::vector<uint64_t> ok_window;  // empty, or the last word is non-zero
  std::vector<uint64_t> unknown;    // empty, or the last word is non-zero
};

uint64_t HashBase(uint32_t ok_lo, const uint64_t* words, size_t len, const Value& value,
                  bool after_unknown) {
  uint64_t h = SplitMix64(ok_lo ^ (after_unknown ? 0x6a09e667f3bcc909ULL : 0)) ^ HashValue(value);
  for (size_t i = 0; i < len; ++i) h = SplitMix64(h ^ words[i]) + i;
  return h;
}

// a ⊆ b, for bitsets whose last word is non-zero.
bool IsSubset(const uint64_t* a, size_t a_len, const uint64_t* b, size_t b_len) {
  if (a_len > b_len) return false;
  for (size_t i = 0; i < a_len; ++i) {
    if ((a[i] & ~b[i]) != 0) return false;
  }
  return true;
}

size_t PopCount(const std::vector<uint64_t>& words) {
  size_t n = 0;
  for (uint64_t w : words) n += static_cast<size_t>(__builtin_popcountll(w));
  return n;
}

// The configurations the search has reached, for pruning: a configuration is redundant if a
// reached one has the same kOk set, value and after_unknown flag and a subset of its unknown
// set (whatever can be done from the new one can be done from the old one, see KeySearch).
// Per "base" (kOk set, value, flag) an antichain of unknown sets is kept; a set that a new,
// smaller one covers is marked dead. Words live in one arena; the hash table holds base
// indices. Probed, never iterated. Memory bounded by bytes_max.
class ConfigStore {
 public:
  static constexpr int64_t kCovered = -1;
  static constexpr int64_t kFull = -2;

  explicit ConfigStore(uint64_t bytes_max)
      : bytes_max_(bytes_max), table_(0, BaseHash{this}, BaseEq{this}) {}
  ConfigStore(const ConfigStore&) = delete;
  ConfigStore& operator=(const ConfigStore&) = delete;

  // Records `c` and returns its id, or kCovered if a recorded configuration covers it, or
  // kFull if recording it could take the store over bytes_max (nothing recorded). Adds the
  // number of unknown sets compared to *comparisons.
  int64_t Add(const Config& c, uint64_t* comparisons) {
    probe_ = &c;
    probe_hash_ = HashBase(c.ok_lo, c.ok_window.data(), c.ok_window.size(), c.value,
                           c.after_unknown);
    auto it = table_.find(kProbe);
    probe_ = nullptr;
    int32_t base = it == table_.end() ? -1 : static_cast<int32_t>(*it);
    if (base >= 0) {
      for (int32_t s = bases_[base].first_set; s >= 0; s = sets_[s].next) {
        ++*comparisons;
        if (IsSubset(Words(sets_[s]), sets_[s].len, c.unknown.data(), c.unknown.size())) {
          return kCovered;
        }
      }
    }
    if (ProjectedBytes(c.ok_window.size() + c.unknown.size()) > bytes_max_) return kFull;
    if (base < 0) {
      E2D_CHECK(bases_.size() < INT32_MAX, "store index overflow");
      base = static_cast<int32_t>(bases_.size());
      bases_.push_back(Base{probe_hash_, c.value, arena_.size(), c.ok_lo,
                            static_cast<uint32_t>(c.ok_window.size()), c.after_unknown, -1});
      arena_.insert(arena_.end(), c.ok_window.begin(), c.ok_window.end());
      table_.insert(static_cast<uint32_t>(base));
    }
    for (int32_t* link = &bases_[base].first_set; *link >= 0;) {
      Set& s = sets_[*link];
      if (IsSubset(c.unknown.data(), c.unknown.size(), Words(s), s.len)) {
        s.dead = true;  // covered by the new one
        *link = s.next;
      } else {
        link = &s.next;
      }
    }
    E2D_CHECK(sets_.size() < INT32_MAX, "store index overflow");
    sets_.push_back(Set{arena_.size(), static_cast<uint32_t>(c.unknown.size()),
                        bases_[base].first_set, base, false});
    arena_.insert(arena_.end(), c.unknown.begin(), c.unknown.end());
    bases_[base].first_set = static_cast<int32_t>(sets_.size() - 1);
    return static_cast<int64_t>(sets_.size() - 1);
  }

  // Whether configuration `id` has since been covered by a smaller one.
  bool Dead(int64_t id) const { return sets_[id].dead; }

  // The configuration `id` as added.
  void Load(int64_t id, Config* c) const {
    const Set& s = sets_[id];
    const Base& b = bases_[s.base];
    c->value = b.value;
    c->after_unknown = b.after_unknown;
    c->ok_lo = b.ok_lo;
    c->ok_window.assign(arena_.data() + b.offset, arena_.data() + b.offset + b.ok_len);
    c->unknown.assign(Words(s), Words(s) + s.len);
  }

  uint64_t configs() const { return sets_.size(); }
  uint64_t bytes() const { return ProjectedBytes(0); }

 private:
  static constexpr uint32_t kProbe = UINT32_MAX;  // the table key standing for *probe_

  struct Base {
    uint64_t hash;
    Value value;
    uint64_t offset;  // kOk window words in arena_
    uint32_t ok_lo;
    uint32_t ok_len;
    bool after_unknown;
    int32_t first_set;  // live unknown sets of this base, linked through Set::next; -1: none
  };
  struct Set {
    uint64_t offset;  // unknown words in arena_
    uint32_t len;
    int32_t next;
    int32_t base;
    bool dead;
  };
  struct View {
    uint64_t hash;
    const Value* value;
    bool after_unknown;
    uint32_t ok_lo;
    size_t ok_len;
    const uint64_t* ok_words;
  };

  const uint64_t* Words(const Set& s) const { return arena_.data() + s.offset; }
  View ViewOf(uint32_t i) const {
    if (i == kProbe) {
      return View{probe_hash_, &probe_->value, probe_->after_unknown, probe_->ok_lo,
                  probe_->ok_window.size(), probe_->ok_window.data()};
    }
    const Base& b = bases_[i];
    return View{b.hash, &b.value, b.after_unknown, b.ok_lo, b.ok_len, arena_.data() + b.offset};
  }
  struct BaseHash {
    const ConfigStore* store;
    size_t operator()(uint32_t i) const { return store->ViewOf(i).hash; }
  };
  struct BaseEq {
    const ConfigStore* store;
    bool operator()(uint32_t a, uint32_t b) const {
      const View x = store->ViewOf(a);
      const View y = store->ViewOf(b);
      return x.hash == y.hash && *x.value == *y.value && x.after_unknown == y.after_unknown &&
             x.ok_lo == y.ok_lo && x.ok_len == y.ok_len &&
             (x.ok_len == 0 ||
              std::memcmp(x.ok_words, y.ok_words, x.ok_len * sizeof(uint64_t)) == 0);
    }
  };

  // Bytes held after adding a configuration of `words` words, if every container that is full
  // doubles.
  uint64_t ProjectedBytes(size_t words) const {
    auto grown = [](size_t size, size_t cap, size_t add) {
      return size + add > cap ? std::max(2 * cap, size + add) : cap;
    };
    const size_t cap = table_.capacity();
    const uint64_t slots = (table_.size() + 1) * 8 > cap * 7 ? 2 * cap + 1 : cap;
    // The search's queue holds at most one 4-byte id per configuration: counted with Set.
    return grown(bases_.size(), bases_.capacity(), 1) * sizeof(Base) +
           grown(sets_.size(), sets_.capacity(), 1) * (sizeof(Set) + 2 * sizeof(uint32_t)) +
           grown(arena_.size(), arena_.capacity(), words) * sizeof(uint64_t) +
           slots * (sizeof(uint32_t) + 1);
  }

  const uint64_t bytes_max_;
  std::vector<Base> bases_;
  std::vector<Set> sets_;
  std::vector<uint64_t> arena_;
  const Config* probe_ = nullptr;
  uint64_t probe_hash_ = 0;
  absl::flat_hash_set<uint32_t, BaseHash, BaseEq> table_;  // determinism-ok: find/insert only
};

struct KeyResult {
  Verdict verdict = Verdict::kLinearizable;
  std::string explanation;
  uint64_t states = 0;
  uint64_t steps = 0;
};

// One key's search over configurations, as in Wing & Gong and Lowe: from a configuration, any
// kOk operation not yet linearized may be linearized next if it was called before the earliest
// return among the kOk operations not yet linearized (the "blocking" one), and so may an
// unknown operation called by then (unknown operations never return). Success when every kOk
// operation is linearized; the unknown ones left can all take effect later, the same as never.
//
// Order (see CheckKey, which runs one search of each order side by side when a key has unknown
// operations): kDepthFirst explores depth-first (one LIFO; successors in candidate order, kOk
// ones first), which is Lowe's search and finds a linearization fast when there is one.
// kFewestUnknownFirst explores configurations by the number of unknown operations they use,
// fewest first, depth-first within that number: it reaches each configuration first with the
// smallest unknown set that can reach it, so the covering rule prunes every other way there,
// which is what proves a history with many unknown operations non-linearizable in reasonable
// time. Without unknown operations the two orders are the same.
//
// Pruning; each rule keeps at least one linearization if any exists, by an exchange argument:
//  - covering (ConfigStore): a configuration whose kOk set, value and flag equal a reached
//    one's and whose unknown set is a superset is not explored;
//  - twins: unknown operations with the same effect (kind and arguments) form a class and are
//    interchangeable once called, so only the earliest-called unused member is ever tried;
//  - an unknown operation that leaves the value unchanged is never linearized (same as never);
//  - no write (of either outcome) is linearized right after an unknown operation: the write
//    erases the unknown one's effect, so the same order without the unknown operation does the
//    same and leaves it available (hence the after_unknown flag in configurations);
//  - just in time: an unknown operation is only linearized if the very next one can observe
//    its result: a kOk read returning it or kOk cas expecting it among the current kOk
//    candidates, or an unknown cas candidate expecting it whose own result is worth it. (Any
//    other next operation is a write, which erases it, or there is none: then drop it.)
class KeySearch {
 public:
  enum class Order { kDepthFirst, kFewestUnknownFirst };
  enum class Status { kRunning, kLinearizable, kNotLinearizable, kMemoFull };

  // The caller bounds the number of steps (see steps()).
  KeySearch(const std::vector<const Operation*>& ops, uint64_t memo_bytes_max, Order order);
  KeySearch(const KeySearch&) = delete;
  KeySearch& operator=(const KeySearch&) = delete;

  // Expands one more configuration (the first call starts the search). REQUIRES: the previous
  // call returned kRunning.
  Status Advance();

  // For kNotLinearizable: the longest linearizable prefix and where it got stuck.
  std::string DescribeFailure() const;
  uint64_t steps() const { return steps_; }
  uint64_t configs() const { return store_.configs(); }

 private:
  // Unknown operations with one effect, in call order.
  struct Class {
    OpKind kind;
    Value arg;
    Value cas_to;
    std::vector<int32_t> members;
  };
  // What Expand learns about a configuration.
  struct Frontier {
    int32_t blocking = -1;     // the kOk op not linearized with the earliest return
    int64_t called_by = 0;     // its return time: candidates must be called by then
    std::vector<int32_t> ok;   // kOk candidates, in call order
    std::vector<int32_t> unknown;  // unknown candidates (just in time)
  };

  bool Unknown(int32_t op) const { return static_cast<size_t>(op) >= ok_count_; }
  bool OkDone(const Config& c, int32_t op) const;
  bool UnknownUsed(const Config& c, int32_t op) const;
  size_t OkDoneCount(const Config& c) const;
  void BuildClasses();
  void FindCandidates(const Config& c, Frontier* f);
  void FindUnknownCandidates(const Config& c, Frontier* f);
  bool Successor(const Config& c, int32_t op, Config* next) const;
  Status AdvanceOnce();
  Status Expand(uint32_t id, size_t k);

  std::vector<const Operation*> ops_;  // kOk then kUnknown, each in call order
  size_t ok_count_ = 0;
  const Order order_;
  std::vector<int64_t> call_time_;    // per op, copied for locality
  std::vector<int64_t> return_time_;  // per kOk op
  // suffix_min_return_[i]: (return time, op) minimal over kOk ops i.. (ok_count_: none).
  std::vector<std::pair<int64_t, int32_t>> suffix_min_return_;
  std::vector<Class> classes_;
  absl::btree_map<Value, std::vector<int32_t>> producers_;  // result value -> classes

  ConfigStore store_;
  // queue_[k]: ids of reached configurations to expand (LIFO), using k unknown operations
  // (kFewestUnknownFirst; kDepthFirst uses queue_[0] only). queue_[0..next_bucket_) are empty.
  std::vector<std::vector<uint32_t>> queue_;
  size_t next_bucket_ = 0;
  bool started_ = false;
  bool finished_ = false;
  uint64_t steps_ = 0;
  Config current_, next_;  // scratch for Expand
  Frontier frontier_;
  std::vector<std::pair<uint32_t, size_t>> found_;
  std::vector<Value> wanted_;
  // The deepest configuration expanded: depth, its blocking op, its value.
  size_t best_depth_ = 0;
  int32_t best_op_ = -1;
  Value best_value_;
};

KeySearch::KeySearch(const std::vector<const Operation*>& ops, uint64_t memo_bytes_max,
                     Order order)
    : ops_(ops), order_(order), store_(memo_bytes_max) {
  E2D_CHECK(ops_.size() < (size_t{1} << 30), "%zu operations on one key", ops_.size());
  std::stable_sort(ops_.begin(), ops_.end(), [](const Operation* a, const Operation* b) {
    const bool ua = a->outcome == Outcome::kUnknown, ub = b->outcome == Outcome::kUnknown;
    return std::tie(ua, a->call_time) < std::tie(ub, b->call_time);
  });
  while (ok_count_ < ops_.size() && ops_[ok_count_]->outcome == Outcome::kOk) ++ok_count_;
  for (size_t i = 0; i < ops_.size(); ++i) {
    call_time_.push_back(ops_[i]->call_time);
    if (i < ok_count_) return_time_.push_back(ops_[i]->return_time);
  }
  suffix_min_return_.assign(ok_count_ + 1, {kNever, -1});
  for (size_t i = ok_count_; i-- > 0;) {
    const Operation& op = *ops_[i];
    E2D_CHECK(op.call_time <= op.return_time, "operation %lld returns before its call",
              static_cast<long long>(op.id));
    suffix_min_return_[i] =
        std::min(suffix_min_return_[i + 1], {op.return_time, static_cast<int32_t>(i)});
  }
  for (size_t i = ok_count_; i < ops_.size(); ++i) {
    E2D_CHECK(ops_[i]->outcome == Outcome::kUnknown, "only kOk and kUnknown are searched");
  }
  BuildClasses();
}

// Groups the unknown operations by effect (twins) and indexes the groups by result value.
void KeySearch::BuildClasses() {
  using Effect = std::tuple<int, Value, Value>;
  absl::btree_map<Effect, int32_t> index;  // looked up only
  for (size_t i = ok_count_; i < ops_.size(); ++i) {
    const Operation& op = *ops_[i];
    const Value to = op.kind == OpKind::kCas ? op.cas_to : std::nullopt;
    auto [it, inserted] = index.try_emplace(Effect{static_cast<int>(op.kind), op.arg, to},
                                            static_cast<int32_t>(classes_.size()));
    if (inserted) {
      classes_.push_back(Class{op.kind, op.arg, to, {}});
      producers_[op.kind == OpKind::kCas ? to : op.arg].push_back(it->second);
    }
    classes_[it->second].members.push_back(static_cast<int32_t>(i));  // ops_ is in call order
  }
}

bool KeySearch::OkDone(const Config& c, int32_t op) const {
  const size_t w = static_cast<size_t>(op) / 64;
  if (w < c.ok_lo) return true;
  if (w - c.ok_lo >= c.ok_window.size()) return false;
  return (c.ok_window[w - c.ok_lo] >> (op % 64)) & 1;
}

bool KeySearch::UnknownUsed(const Config& c, int32_t op) const {
  const size_t u = static_cast<size_t>(op) - ok_count_;
  return u / 64 < c.unknown.size() && ((c.unknown[u / 64] >> (u % 64)) & 1);
}

size_t KeySearch::OkDoneCount(const Config& c) const {
  return std::min(ok_count_, size_t{c.ok_lo} * 64) + PopCount(c.ok_window);
}

// The candidates of configuration `c`, which has at least one kOk op left.
void KeySearch::FindCandidates(const Config& c, Frontier* f) {
  // Every kOk op after the highest linearized one is pending: those are covered by
  // suffix_min_return_; only the ragged part of the window below it needs a look.
  const size_t lo = size_t{c.ok_lo} * 64;
  const size_t end = c.ok_window.empty()
                         ? lo
                         : lo + c.ok_window.size() * 64 -
                               static_cast<size_t>(__builtin_clzll(c.ok_window.back()));
  std::pair<int64_t, int32_t> blocking = suffix_min_return_[std::min(end, ok_count_)];
  size_t first = std::min(end, ok_count_);  // the first kOk op not linearized
  for (size_t w = 0; w < c.ok_window.size(); ++w) {
    const size_t base = lo + w * 64;
    uint64_t pending = ~c.ok_window[w];
    if (end - base < 64) pending &= (uint64_t{1} << (end - base)) - 1;
    for (; pending != 0; pending &= pending - 1) {
      const size_t i = base + static_cast<size_t>(__builtin_ctzll(pending));
      first = std::min(first, i);
      blocking = std::min(blocking, {return_time_[i], static_cast<int32_t>(i)});
    }
  }
  E2D_CHECK(blocking.second >= 0, "a configuration with kOk ops left has a blocking one");
  f->blocking = blocking.second;
  f->called_by = blocking.first;
  f->ok.clear();
  for (size_t i = first; i < ok_count_ && call_time_[i] <= f->called_by; ++i) {
    if (!OkDone(c, static_cast<int32_t>(i))) f->ok.push_back(static_cast<int32_t>(i));
  }
  FindUnknownCandidates(c, f);
}

// The just-in-time rule: values observed by the kOk candidates, closed under "an unknown cas
// candidate turns X into a wanted value", then the first unused member of every class that
// produces a wanted value, if called by f->called_by.
void KeySearch::FindUnknownCandidates(const Config& c, Frontier* f) {
  f->unknown.clear();
  if (classes_.empty()) return;
  std::vector<Value>& wanted = wanted_;
  wanted.clear();
  auto want = [&wanted](const Value& v) {
    if (std::find(wanted.begin(), wanted.end(), v) == wanted.end()) wanted.push_back(v);
  };
  for (int32_t op : f->ok) {
    if (ops_[op]->kind == OpKind::kRead) want(ops_[op]->output);
    if (ops_[op]->kind == OpKind::kCas) want(ops_[op]->arg);
  }
  for (size_t i = 0; i < wanted.size(); ++i) {  // grows while iterating: the closure
    auto it = producers_.find(wanted[i]);
    if (it == producers_.end()) continue;
    for (int32_t cls : it->second) {
      const Class& k = classes_[cls];
      size_t used = 0;
      while (used < k.members.size() && UnknownUsed(c, k.members[used])) ++used;
      if (used == k.members.size() || call_time_[k.members[used]] > f->called_by) continue;
      f->unknown.push_back(k.members[used]);
      if (k.kind == OpKind::kCas) want(k.arg);
    }
  }
}

// The configuration after linearizing `op` in `c`, in canonical form; false if the model or a
// pruning rule forbids it.
bool KeySearch::Successor(const Config& c, int32_t op, Config* next) const {
  const bool unknown = Unknown(op);
  if (c.after_unknown && ops_[op]->kind == OpKind::kWrite) return false;
  Value value;
  if (!Step(*ops_[op], c.value, &value)) return false;
  if (unknown && value == c.value) return false;
  next->value = value;
  next->after_unknown = unknown;
  next->ok_lo = c.ok_lo;
  next->ok_window = c.ok_window;
  next->unknown = c.unknown;
  if (unknown) {
    const size_t u = static_cast<size_t>(op) - ok_count_;
    if (next->unknown.size() <= u / 64) next->unknown.resize(u / 64 + 1, 0);
    next->unknown[u / 64] |= uint64_t{1} << (u % 64);
    return true;
  }
  const size_t w = static_cast<size_t>(op) / 64 - c.ok_lo;
  if (next->ok_window.size() <= w) next->ok_window.resize(w + 1, 0);
  next->ok_window[w] |= uint64_t{1} << (op % 64);
  // Canonical: drop leading full words (the last word of all may be partial).
  const size_t words = (ok_count_ + 63) / 64;
  const uint64_t last_full =
      ok_count_ % 64 == 0 ? ~uint64_t{0} : (uint64_t{1} << (ok_count_ % 64)) - 1;
  size_t drop = 0;
  while (drop < next->ok_window.size() &&
         next->ok_window[drop] ==
             (next->ok_lo + drop + 1 == words ? last_full : ~uint64_t{0})) {
    ++drop;
  }
  next->ok_lo += static_cast<uint32_t>(drop);
  next->ok_window.erase(next->ok_window.begin(), next->ok_window.begin() + drop);
  while (!next->ok_window.empty() && next->ok_window.back() == 0) next->ok_window.pop_back();
  return true;
}

// Expands configuration `id`, which uses k unknown operations: queues its new successors.
KeySearch::Status KeySearch::Expand(uint32_t id, size_t k) {
  store_.Load(id, &current_);
  FindCandidates(current_, &frontier_);
  const size_t depth = OkDoneCount(current_) + PopCount(current_.unknown);
  if (best_op_ < 0 || depth > best_depth_) {
    best_depth_ = depth;
    best_op_ = frontier_.blocking;
    best_value_ = current_.value;
  }
  found_.clear();
  for (const std::vector<int32_t>* list : {&frontier_.ok, &frontier_.unknown}) {
    for (int32_t op : *list) {
      ++steps_;
      if (!Successor(current_, op, &next_)) continue;
      if (!Unknown(op) && OkDoneCount(next_) == ok_count_) return Status::kLinearizable;
      const int64_t added = store_.Add(next_, &steps_);
      if (added == ConfigStore::kFull) return Status::kMemoFull;
      if (added < 0) continue;
      const bool deeper = Unknown(op) && order_ == Order::kFewestUnknownFirst;
      found_.push_back({static_cast<uint32_t>(added), deeper ? k + 1 : k});
    }
  }
  // LIFO: pushed in reverse, the first candidate is expanded first.
  for (size_t i = found_.size(); i-- > 0;) {
    const auto [added, bucket] = found_[i];
    if (queue_.size() <= bucket) queue_.resize(bucket + 1);
    queue_[bucket].push_back(added);
  }
  return Status::kRunning;
}

KeySearch::Status KeySearch::Advance() {
  const Status status = AdvanceOnce();
  finished_ = status != Status::kRunning;
  return status;
}

KeySearch::Status KeySearch::AdvanceOnce() {
  E2D_CHECK(!finished_, "Advance after the search finished");
  if (!started_) {
    started_ = true;
    if (ok_count_ == 0) return Status::kLinearizable;
    const int64_t root = store_.Add(Config{}, &steps_);
    if (root < 0) return Status::kMemoFull;
    queue_.assign(1, {static_cast<uint32_t>(root)});
  }
  while (next_bucket_ < queue_.size()) {
    std::vector<uint32_t>& bucket = queue_[next_bucket_];
    if (bucket.empty()) {
      ++next_bucket_;  // successors go to this bucket or later ones: it stays empty
      continue;
    }
    const uint32_t id = bucket.back();
    bucket.pop_back();
    if (!store_.Dead(id)) return Expand(id, next_bucket_);
  }
  return Status::kNotLinearizable;
}

std::string KeySearch::DescribeFailure() const {
  E2D_CHECK(best_op_ >= 0, "a failed search expanded at least the initial configuration");
  const Operation& op = *ops_[best_op_];
  return absl::StrCat("longest linearizable prefix: ", best_depth_, " of ", ops_.size(),
                      " operations; no continuation linearizes op ", op.id, " (client ",
                      op.client, ", ", OperationToString(op), ", call ", op.call_time,
                      ", return ", op.return_time, ") before its return; register there = ",
                      ValueToString(best_value_));
}

// One key. With unknown operations, a fewest-unknown-first search joins the depth-first one
// once that has spent 64 steps per operation without a verdict (most linearizable histories
// are done by then); from there the two alternate expansions. Both are exact: the first
// verdict wins. Each gets half the memo budget; steps are counted together against steps_max.
KeyResult CheckKey(const std::vector<const Operation*>& ops, const CheckOptions& options) {
  const bool any_unknown = std::any_of(ops.begin(), ops.end(), [](const Operation* op) {
    return op->outcome == Outcome::kUnknown;
  });
  const uint64_t memo_bytes_max = any_unknown ? options.memo_bytes_max / 2
                                              : options.memo_bytes_max;
  const uint64_t head_start = 64 * uint64_t{ops.size()} + 4096;
  std::vector<std::unique_ptr<KeySearch>> searches;
  searches.push_back(
      std::make_unique<KeySearch>(ops, memo_bytes_max, KeySearch::Order::kDepthFirst));
  KeyResult result;
  std::vector<bool> running(searches.size(), true);
  size_t left = searches.size();
  uint64_t steps = 0;
  for (size_t turn = 0;; turn = (turn + 1) % searches.size()) {
    if (any_unknown && searches.size() == 1 && (steps >= head_start || left == 0)) {
      searches.push_back(std::make_unique<KeySearch>(ops, memo_bytes_max,
                                                     KeySearch::Order::kFewestUnknownFirst));
      running.push_back(true);
      ++left;
    }
    if (left == 0) break;
    if (!running[turn]) continue;
    if (steps >= options.steps_max) {
      result.verdict = Verdict::kUnknown;
      result.explanation = absl::StrCat("gave up after ", steps,
                                        " search steps (CheckOptions::steps_max = ",
                                        options.steps_max, ")");
      break;
    }
    const uint64_t before = searches[turn]->steps();
    const KeySearch::Status status = searches[turn]->Advance();
    steps += searches[turn]->steps() - before;
    if (status == KeySearch::Status::kLinearizable) break;
    if (status == KeySearch::Status::kNotLinearizable) {
      result.verdict = Verdict::kNotLinearizable;
      result.explanation = searches[turn]->DescribeFailure();
      break;
    }
    if (status == KeySearch::Status::kMemoFull) {
      running[turn] = false;
      --left;
    }
  }
  if (left == 0) {
    result.verdict = Verdict::kUnknown;
    result.explanation = absl::StrCat(
        "gave up: the search memo filled CheckOptions::memo_bytes_max = ",
        options.memo_bytes_max, " bytes");
  }
  for (const auto& s : searches) {
    result.steps += s->steps();
    result.states += s->configs();
  }
  return result;
}

}  // namespace

std::string ValueToString(const Value& v) { return v.has_value() ? absl::StrCat(*v) : "nil"; }

std::string OperationToString(const Operation& op) {
  std::string s;
  switch (op.kind) {
    case OpKind::kRead:
      s = op.outcome == Outcome::kOk ? absl::StrCat("read -> ", ValueToString(op.output))
                                     : "read";
      break;
    case OpKind::kWrite:
      s = absl::StrCat("write ", ValueToString(op.arg));
      break;
    case OpKind::kCas:
      s = absl::StrCat("cas [", ValueToString(op.arg), " ", ValueToString(op.cas_to), "]");
      break;
  }
  if (op.outcome == Outcome::kFail) absl::StrAppend(&s, " (fail)");
  if (op.outcome == Outcome::kUnknown) absl::StrAppend(&s, " (unknown)");
  return s;
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown (gave up)";
  }
  return "?";
}

CheckResult Check(const History& history, const CheckOptions& options) {
  CheckResult result;
  absl::btree_map<std::string, std::vector<const Operation*>> by_key;
  for (const Operation& op : history) {
    const bool drop = op.outcome == Outcome::kFail ||
                      (op.outcome == Outcome::kUnknown && op.kind == OpKind::kRead);
    if (drop) {
      ++result.dropped_operations;
      continue;
    }
    by_key[op.key].push_back(&op);
    ++result.operations;
    if (op.outcome == Outcome::kUnknown) ++result.unknown_operations;
  }
  result.keys = by_key.size();
  std::string gave_up_key, gave_up_why;
  bool gave_up = false;
  for (const auto& [key, ops] : by_key) {
    const KeyResult r = CheckKey(ops, options);
    result.states += r.states;
    result.steps += r.steps;
    if (r.verdict == Verdict::kNotLinearizable) {
      result.verdict = Verdict::kNotLinearizable;
      result.linearizable = false;
      result.key_that_failed = key;
      result.explanation = absl::StrCat("key \"", key, "\": ", r.explanation);
      return result;
    }
    if (r.verdict == Verdict::kUnknown && !gave_up) {
      gave_up = true;
      gave_up_key = key;
      gave_up_why = r.explanation;
    }
  }
  if (gave_up) {
    result.verdict = Verdict::kUnknown;
    result.linearizable = false;
    result.key_that_failed = gave_up_key;
    result.explanation = absl::StrCat("key \"", gave_up_key, "\": ", gave_up_why);
  }
  return result;
}

absl::Status ValidateHistory(const History& history) {
  absl::btree_map<int64_t, std::vector<const Operation*>> by_client;
  for (const Operation& op : history) {
    if (op.outcome != Outcome::kUnknown && op.return_time < op.call_time) {
      return absl::InvalidArgumentError(
          absl::StrCat("op ", op.id, ": returns (", op.return_time, ") before its call (",
                       op.call_time, ")"));
    }
    by_client[op.client].push_back(&op);
  }
  for (auto& [client, ops] : by_client) {
    std::stable_sort(ops.begin(), ops.end(), [](const Operation* a, const Operation* b) {
      return a->call_time < b->call_time;
    });
    for (size_t i = 1; i < ops.size(); ++i) {
      const Operation& prev = *ops[i - 1];
      const bool open = prev.outcome == Outcome::kUnknown;
      if (open || prev.return_time >= ops[i]->call_time) {
        return absl::InvalidArgumentError(absl::StrCat(
            "op ", ops[i]->id, ": client ", client, " calls it while op ", prev.id,
            open ? " has an unknown outcome (its client must not be reused)" : " is pending"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Jepsen log parser.

namespace {

struct JepsenValue {
  enum class Kind { kScalar, kPair, kKeyword } kind = Kind::kScalar;
  Value a, b;  // scalar: a; pair: [a b]
  std::string keyword;

  bool SameAs(const JepsenValue& o) const { return kind == o.kind && a == o.a && b == o.b; }
};

std::string ToString(const JepsenValue& v) {
  switch (v.kind) {
    case JepsenValue::Kind::kScalar:
      return ValueToString(v.a);
    case JepsenValue::Kind::kPair:
      return absl::StrCat("[", ValueToString(v.a), " ", ValueToString(v.b), "]");
    case JepsenValue::Kind::kKeyword:
      return v.keyword;
  }
  return "?";
}

bool ParseScalar(absl::string_view s, Value* out) {
  if (s == "nil") {
    *out = std::nullopt;
    return true;
  }
  int64_t v = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &v)) return false;
  *out = v;
  return true;
}

absl::Status ParseJepsenValue(const std::vector<absl::string_view>& fields, JepsenValue* out) {
  const std::string text = absl::StrJoin(fields.begin() + 6, fields.end(), " ");
  absl::string_view s = text;
  if (fields.size() == 7 && s.size() > 1 && s[0] == ':') {
    out->kind = JepsenValue::Kind::kKeyword;
    out->keyword = text;
    return absl::OkStatus();
  }
  if (fields.size() == 7 && ParseScalar(s, &out->a)) {
    out->kind = JepsenValue::Kind::kScalar;
    return absl::OkStatus();
  }
  if (fields.size() == 8 && s.size() > 2 && s.front() == '[' && s.back() == ']') {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(s.substr(1, s.size() - 2), ' ');
    if (parts.size() == 2 && ParseScalar(parts[0], &out->a) && ParseScalar(parts[1], &out->b)) {
      out->kind = JepsenValue::Kind::kPair;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "bad value '", text, "' (expected nil, an integer, [FROM TO] or a :keyword)"));
}

struct Pending {
  int64_t line = 0;
  OpKind kind = OpKind::kRead;
  JepsenValue value;
};

struct JepsenParser {
  History history;
  absl::btree_map<int64_t, Pending> pending;  // by process; iterated at the end: ordered
  absl::btree_map<int64_t, int64_t> retired;  // process -> line of its :info

  absl::Status Line(int64_t line_no, absl::string_view line);
  absl::Status Invoke(int64_t line_no, int64_t process, OpKind kind, const JepsenValue& v);
  absl::Status Complete(int64_t line_no, int64_t process, absl::string_view type, OpKind kind,
                        const JepsenValue& v);
  void Finish();
};

absl::string_view KindName(OpKind k) {
  return k == OpKind::kRead ? ":read" : k == OpKind::kWrite ? ":write" : ":cas";
}

absl::Status JepsenParser::Line(int64_t line_no, absl::string_view line) {
  const std::vector<absl::string_view> f =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (f.empty()) return absl::OkStatus();
  const bool prefix_ok = f.size() >= 4 && f[0] == "INFO" && f[1] == "jepsen.util" && f[2] == "-";
  if (prefix_ok && f[3] == ":nemesis") return absl::OkStatus();  // faults, not client ops
  if (!prefix_ok || f.size() < 7) {
    return absl::InvalidArgumentError(
        "expected 'INFO jepsen.util - PROCESS :TYPE :FUNCTION VALUE'");
  }
  int64_t process = 0;
  if (!absl::SimpleAtoi(f[3], &process) || process < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad process id '", f[3], "'"));
  }
  OpKind kind;
  if (f[5] == ":read") {
    kind = OpKind::kRead;
  } else if (f[5] == ":write") {
    kind = OpKind::kWrite;
  } else if (f[5] == ":cas") {
    kind = OpKind::kCas;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown function '", f[5], "' (expected :read, :write or :cas)"));
  }
  JepsenValue v;
  if (absl::Status s = ParseJepsenValue(f, &v); !s.ok()) return s;
  if (f[4] == ":invoke") return Invoke(line_no, process, kind, v);
  if (f[4] == ":ok" || f[4] == ":fail" || f[4] == ":info") {
    return Complete(line_no, process, f[4], kind, v);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown type '", f[4], "' (expected :invoke, :ok, :fail or :info)"));
}

absl::Status JepsenParser::Invoke(int64_t line_no, int64_t process, OpKind kind,
                                  const JepsenValue& v) {
  using K = JepsenValue::Kind;
  const bool shape_ok = kind == OpKind::kRead    ? (v.kind == K::kScalar && !v.a.has_value())
                        : kind == OpKind::kWrite ? v.kind == K::kScalar
                                                 : v.kind == K::kPair;
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        ":invoke ", KindName(kind), " has value ", ToString(v), " (expected ",
        kind == OpKind::kRead ? "nil" : kind == OpKind::kWrite ? "a value" : "[FROM TO]", ")"));
  }
  if (auto it = retired.find(process); it != retired.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("process ", process, " invokes again after its :info on line ",
                     it->second, " (Jepsen never reuses such a process)"));
  }
  auto [it, inserted] = pending.try_emplace(process, Pending{line_no, kind, v});
  if (!inserted) {
    return absl::InvalidArgumentError(
        absl::StrCat("process ", process, " invokes while its operation from line ",
                     it->second.line, " is still pending"));
  }
  return absl::OkStatus();
}

absl::Status JepsenParser::Complete(int64_t line_no, int64_t process, absl::string_view type,
                                    OpKind kind, const JepsenValue& v) {
  auto it = pending.find(process);
  if (it == pending.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        type, ": process ", process, " has no pending operation"));
  }
  const Pending p = it->second;
  if (p.kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        type, " ", KindName(kind), " does not match the ",
        KindName(p.kind), " invoked by process ", process, " on line ", p.line));
  }
  const bool is_ok = type == ":ok";
  bool value_ok = v.SameAs(p.value);
  if (is_ok && kind == OpKind::kRead) value_ok = v.kind == JepsenValue::Kind::kScalar;
  if (!is_ok) value_ok = value_ok || v.kind == JepsenValue::Kind::kKeyword;
  if (!value_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        type, " ", KindName(kind), " has value ", ToString(v),
        " but the invocation on line ", p.line, " had ", ToString(p.value)));
  }
  pending.erase(it);
  Operation op;
  op.id = p.line;
  op.client = process;
  op.kind = kind;
  op.call_time = p.line;
  op.return_time = line_no;
  if (kind == OpKind::kWrite) op.arg = p.value.a;
  if (kind == OpKind::kCas) {
    op.arg = p.value.a;
    op.cas_to = p.value.b;
  }
  if (is_ok) {
    op.outcome = Outcome::kOk;
    if (kind == OpKind::kRead) op.output = v.a;
  } else if (type == ":fail") {
    op.outcome = Outcome::kFail;
  } else {
    op.outcome = Outcome::kUnknown;
    op.return_time = kNever;
    retired[process] = line_no;
  }
  history.push_back(std::move(op));
  return absl::OkStatus();
}

void JepsenParser::Finish() {
  for (const auto& [process, p] : pending) {
    Operation op;
    op.id = p.line;
    op.client = process;
    op.kind = p.kind;
    op.arg = p.value.a;
    if (p.kind == OpKind::kCas) op.cas_to = p.value.b;
    op.call_time = p.line;
    op.return_time = kNever;
    op.outcome = Outcome::kUnknown;
    history.push_back(std::move(op));
  }
  pending.clear();
}

constexpr uint64_t kJepsenLogBytesMax = uint64_t{1} << 30;

}  // namespace

absl::StatusOr<History> ParseJepsenLog(std::string_view text) {
  JepsenParser parser;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(env::ToAbsl(text), '\n')) {
    ++line_no;
    if (absl::Status s = parser.Line(line_no, line); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", s.message()));
    }
  }
  parser.Finish();
  return std::move(parser.history);
}

absl::StatusOr<History> ParseJepsenLogFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kJepsenLogBytesMax) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", kJepsenLogBytesMax, " bytes"));
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  absl::StatusOr<History> h = ParseJepsenLog(text);
  if (!h.ok()) {
    return absl::Status(h.status().code(), absl::StrCat(path, ":", h.status().message()));
  }
  return h;
}

}  // namespace e2d::sim::lincheck
