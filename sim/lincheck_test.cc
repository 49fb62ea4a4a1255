// Copyright e2d authors.
//
// Linearizability checker: hand-written histories (Herlihy & Wing's definition, Jepsen's
// outcome semantics), a cross-check against a brute-force search on random small histories,
// the Jepsen log parser (errors name the line; mutated input never crashes), and the shared
// Jepsen etcd corpus with its expected verdicts.
//
// The corpus lives outside the workspace (see sim/BUILD.bazel and FindJepsenTestdata below).

#include "sim/lincheck.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "env/random.h"
#include "gtest/gtest.h"

namespace e2d::sim::lincheck {
namespace {

// ---- builders -----------------------------------------------------------------------------------

Operation Read(Value out, int64_t call, int64_t ret, Outcome o = Outcome::kOk) {
  Operation op;
  op.kind = OpKind::kRead;
  op.output = out;
  op.call_time = call;
  op.return_time = o == Outcome::kUnknown ? kNever : ret;
  op.outcome = o;
  return op;
}

Operation Write(Value v, int64_t call, int64_t ret, Outcome o = Outcome::kOk) {
  Operation op;
  op.kind = OpKind::kWrite;
  op.arg = v;
  op.call_time = call;
  op.return_time = o == Outcome::kUnknown ? kNever : ret;
  op.outcome = o;
  return op;
}

Operation Cas(Value from, Value to, int64_t call, int64_t ret, Outcome o = Outcome::kOk) {
  Operation op = Write(from, call, ret, o);
  op.kind = OpKind::kCas;
  op.cas_to = to;
  return op;
}

Operation OnKey(Operation op, std::string key) {
  op.key = std::move(key);
  return op;
}

// Numbers the operations 1..n and gives each its own client.
History H(std::vector<Operation> ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i].id = static_cast<int64_t>(i + 1);
    ops[i].client = static_cast<int64_t>(i);
  }
  return ops;
}

constexpr Outcome kOk = Outcome::kOk;
constexpr Outcome kFail = Outcome::kFail;
constexpr Outcome kUnknown = Outcome::kUnknown;

bool Linearizable(const History& h) {
  EXPECT_TRUE(ValidateHistory(h).ok()) << ValidateHistory(h);
  const CheckResult r = Check(h);
  EXPECT_EQ(r.linearizable, r.verdict == Verdict::kLinearizable);
  EXPECT_NE(r.verdict, Verdict::kUnknown) << r.explanation;
  return r.verdict == Verdict::kLinearizable;
}

// ---- hand-written histories ---------------------------------------------------------------------

TEST(LincheckTest, EmptyHistoryIsLinearizable) {
  const CheckResult r = Check({});
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
  EXPECT_EQ(r.keys, 0u);
}

TEST(LincheckTest, SequentialHistory) {
  EXPECT_TRUE(Linearizable(H({Read(std::nullopt, 0, 1), Write(1, 2, 3), Read(1, 4, 5),
                              Cas(1, 2, 6, 7), Read(2, 8, 9), Write(std::nullopt, 10, 11),
                              Read(std::nullopt, 12, 13)})));
  EXPECT_FALSE(Linearizable(H({Write(1, 0, 1), Read(std::nullopt, 2, 3)})));
}

// Herlihy & Wing section 2: overlapping operations may take effect in either order.
TEST(LincheckTest, ConcurrentWriteAndReadEitherOrder) {
  // The read overlaps the write: it may see the old value or the new one.
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 10), Read(std::nullopt, 2, 3)})));
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 10), Read(1, 2, 3)})));
  EXPECT_TRUE(Linearizable(H({Read(1, 0, 10), Write(1, 2, 3)})));
  // Two overlapping writes, then a read of either.
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 5), Write(2, 1, 6), Read(1, 7, 8)})));
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 5), Write(2, 1, 6), Read(2, 7, 8)})));
  // But two sequential reads cannot observe the writes in both orders.
  EXPECT_FALSE(Linearizable(
      H({Write(1, 0, 5), Write(2, 1, 6), Read(2, 7, 8), Read(1, 9, 10)})));
  // Equal times count as concurrent: a read called at the write's return may miss it.
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 5), Read(std::nullopt, 5, 6)})));
  EXPECT_FALSE(Linearizable(H({Write(1, 0, 5), Read(std::nullopt, 6, 7)})));
}

TEST(LincheckTest, StaleReadIsNotLinearizable) {
  const History h = H({Write(1, 0, 1), Write(2, 2, 3), Read(1, 4, 5)});
  const CheckResult r = Check(h);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_FALSE(r.linearizable);
  EXPECT_EQ(r.key_that_failed, "");
  // The two writes linearize; the read (op 3) cannot, with the register at 2.
  EXPECT_TRUE(absl::StrContains(r.explanation, "prefix: 2 of 3 operations")) << r.explanation;
  EXPECT_TRUE(absl::StrContains(r.explanation, "op 3 (client 2, read -> 1")) << r.explanation;
  EXPECT_TRUE(absl::StrContains(r.explanation, "register there = 2")) << r.explanation;
}

TEST(LincheckTest, CasSucceedsOnlyOnMatch) {
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 1), Cas(1, 2, 2, 3), Read(2, 4, 5)})));
  EXPECT_FALSE(Linearizable(H({Write(1, 0, 1), Cas(5, 6, 2, 3)})));  // ok cas, wrong value
  EXPECT_TRUE(Linearizable(H({Cas(std::nullopt, 7, 0, 1), Read(7, 2, 3)})));  // create
  // Two overlapping cas [1 2] cannot both succeed.
  EXPECT_FALSE(Linearizable(H({Write(1, 0, 1), Cas(1, 2, 2, 5), Cas(1, 2, 3, 6)})));
  // ...unless a write in between restores 1.
  EXPECT_TRUE(Linearizable(
      H({Write(1, 0, 1), Cas(1, 2, 2, 5), Write(1, 3, 4), Cas(1, 2, 3, 6)})));
}

TEST(LincheckTest, FailedCasDidNotHappen) {
  // A :fail cas is dropped: it constrains nothing...
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 1), Cas(1, 2, 2, 3, kFail), Read(1, 4, 5)})));
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 1), Cas(7, 2, 2, 3, kFail), Read(1, 4, 5)})));
  // ...and changed nothing.
  EXPECT_FALSE(Linearizable(H({Write(1, 0, 1), Cas(1, 2, 2, 3, kFail), Read(2, 4, 5)})));
  const CheckResult r = Check(H({Write(1, 0, 1), Cas(1, 2, 2, 3, kFail), Read(2, 4, 5)}));
  EXPECT_EQ(r.dropped_operations, 1u);
  EXPECT_EQ(r.operations, 2u);
}

TEST(LincheckTest, UnknownWriteMayHaveHappened) {
  // It took effect...
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 1), Write(2, 2, 0, kUnknown), Read(2, 10, 11)})));
  // ...or it did not...
  EXPECT_TRUE(Linearizable(H({Write(1, 0, 1), Write(2, 2, 0, kUnknown), Read(1, 10, 11)})));
  // ...or it took effect late, long after its client gave up on it.
  EXPECT_TRUE(Linearizable(
      H({Write(1, 0, 1), Write(2, 2, 0, kUnknown), Read(1, 10, 11), Read(2, 12, 13)})));
  // But once seen it cannot be undone (no second write of 1)...
  EXPECT_FALSE(Linearizable(
      H({Write(1, 0, 1), Write(2, 2, 0, kUnknown), Read(2, 3, 4), Read(1, 5, 6)})));
  // ...it cannot take effect before its call...
  EXPECT_FALSE(Linearizable(H({Read(2, 0, 1), Write(2, 5, 0, kUnknown)})));
  // ...and it takes effect at most once.
  EXPECT_FALSE(Linearizable(H({Write(2, 0, 0, kUnknown), Read(2, 1, 2), Write(3, 3, 4),
                               Read(2, 5, 6)})));
}

TEST(LincheckTest, UnknownCasMayHaveHappened) {
  const Operation w = Write(1, 0, 1);
  const Operation c = Cas(1, 2, 2, 0, kUnknown);
  EXPECT_TRUE(Linearizable(H({w, c, Read(2, 5, 6)})));
  EXPECT_TRUE(Linearizable(H({w, c, Read(1, 5, 6)})));
  EXPECT_FALSE(Linearizable(H({w, c, Read(3, 5, 6)})));
  // It can only set 2 from 1.
  EXPECT_FALSE(Linearizable(H({w, Write(5, 2, 3), c, Read(2, 6, 7)})));
}

TEST(LincheckTest, UnknownReadIsDropped) {
  const History h = H({Write(1, 0, 1), Read(99, 2, 0, kUnknown), Read(1, 3, 4)});
  const CheckResult r = Check(h);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
  EXPECT_EQ(r.dropped_operations, 1u);
  EXPECT_EQ(r.operations, 2u);
  EXPECT_EQ(r.unknown_operations, 0u);
}

// P-compositionality: keys are independent registers; the first failing key is named.
TEST(LincheckTest, KeysAreCheckedIndependently) {
  History h = H({OnKey(Write(1, 0, 10), "a"), OnKey(Read(std::nullopt, 2, 3), "b"),
                 OnKey(Read(1, 11, 12), "a"), OnKey(Write(5, 13, 14), "b")});
  EXPECT_TRUE(Linearizable(h));
  EXPECT_EQ(Check(h).keys, 2u);
  // A read on "c" of a value only written to "a" is not linearizable, nor is "d".
  h.push_back(OnKey(Read(1, 15, 16), "d"));
  h.push_back(OnKey(Read(1, 15, 16), "c"));
  h = H(h);
  const CheckResult r = Check(h);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.key_that_failed, "c");
  EXPECT_TRUE(absl::StartsWith(r.explanation, "key \"c\": ")) << r.explanation;
}

// Many writes of distinct values all overlapping, then a read of a value nobody wrote: the
// search must rule out every subset of the writes (with each last value) before it can say no,
// about writes * 2^(writes - 1) configurations.
History Explosive(const std::string& key, int writes) {
  std::vector<Operation> ops;
  for (int i = 0; i < writes; ++i) ops.push_back(OnKey(Write(i + 1, i, 1000 + i), key));
  ops.push_back(OnKey(Read(999, 2000, 2001), key));
  return H(ops);
}

TEST(LincheckTest, GivesUpAtTheStepBound) {
  CheckOptions options;
  options.steps_max = 10'000;
  const CheckResult r = Check(Explosive("x", 20), options);
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_FALSE(r.linearizable);
  EXPECT_EQ(r.key_that_failed, "x");
  EXPECT_TRUE(absl::StrContains(r.explanation, "steps_max")) << r.explanation;
  EXPECT_LE(r.steps, 11'000u);  // stops within one expansion of the bound
}

TEST(LincheckTest, GivesUpAtTheMemoBound) {
  CheckOptions options;
  options.memo_bytes_max = 64 << 10;
  const CheckResult r = Check(Explosive("x", 20), options);
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_TRUE(absl::StrContains(r.explanation, "memo_bytes_max")) << r.explanation;
  // Each configuration costs well over 37 bytes (value, words, table slot, queue entry).
  EXPECT_LE(r.states, (64u << 10) / 37);
  EXPECT_GT(r.states, 100u);
}

TEST(LincheckTest, DefiniteFailureBeatsGivingUp) {
  CheckOptions options;
  options.steps_max = 10'000;
  History h = Explosive("a", 20);
  h.push_back(OnKey(Write(1, 0, 1), "b"));
  h.push_back(OnKey(Read(2, 2, 3), "b"));
  CheckResult r = Check(H(h), options);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.key_that_failed, "b");
  // With "b" fine, the verdict is unknown and names "a".
  h.back() = OnKey(Read(1, 2, 3), "b");
  r = Check(H(h), options);
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_EQ(r.key_that_failed, "a");
}

TEST(LincheckTest, ModerateExplosionIsDecided) {
  const CheckResult r = Check(Explosive("x", 12));
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.explanation;
  EXPECT_GT(r.states, 12u << 10);
}

TEST(LincheckTest, SameHistorySameResultInAnyOrder) {
  History h = H({Write(1, 0, 5), Write(2, 1, 6), Cas(2, 3, 2, 9), Read(3, 10, 11),
                 Read(1, 12, 13), Write(4, 3, 0, kUnknown)});
  const CheckResult a = Check(h);
  std::reverse(h.begin(), h.end());
  const CheckResult b = Check(h);
  EXPECT_EQ(a.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(a.verdict, b.verdict);
  EXPECT_EQ(a.explanation, b.explanation);
  EXPECT_EQ(a.states, b.states);
}

TEST(LincheckTest, ValidateHistory) {
  EXPECT_TRUE(ValidateHistory(H({Write(1, 0, 1), Read(1, 2, 3)})).ok());
  History h = H({Write(1, 5, 4)});
  EXPECT_TRUE(absl::StrContains(ValidateHistory(h).message(), "op 1: returns (4) before"));
  h = H({Write(1, 0, 5), Read(1, 3, 6)});
  h[1].client = h[0].client;
  EXPECT_TRUE(absl::StrContains(ValidateHistory(h).message(), "while op 1 is pending"))
      << ValidateHistory(h);
  h = H({Write(1, 0, 0, kUnknown), Read(1, 3, 6)});
  h[1].client = h[0].client;
  EXPECT_TRUE(absl::StrContains(ValidateHistory(h).message(), "unknown outcome"));
}

// ---- cross-check against a reference search ----------------------------------------------------

// Independent reference, written for obviousness rather than speed: recursively tries every
// operation that may go next (no pending ok operation returned before it was called), unknown
// operations optionally (success once every ok operation is placed), remembering configurations
// (done-set, value) from which it already failed. No event list, no compression, no symmetry
// rule. A cas of unknown outcome whose compare fails is applied as a no-op here.
class Reference {
 public:
  explicit Reference(const History& h) {
    for (const Operation& op : h) {
      if (op.outcome == kFail || (op.outcome == kUnknown && op.kind == OpKind::kRead)) continue;
      ops_.push_back(op);
    }
    done_.assign(ops_.size(), false);
  }

  bool Linearizable() { return Search(std::nullopt); }

 private:
  bool Search(const Value& state) {
    int64_t min_return = kNever;
    bool ok_left = false;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (!done_[i] && ops_[i].outcome == kOk) {
        ok_left = true;
        min_return = std::min(min_return, ops_[i].return_time);
      }
    }
    if (!ok_left) return true;
    if (failed_.count({done_, state}) > 0) return false;
    for (size_t i = 0; i < ops_.size(); ++i) {
      const Operation& op = ops_[i];
      if (done_[i] || op.call_time > min_return) continue;
      Value next = state;
      if (op.kind == OpKind::kRead && state != op.output) continue;
      if (op.kind == OpKind::kWrite) next = op.arg;
      if (op.kind == OpKind::kCas) {
        if (state == op.arg) {
          next = op.cas_to;
        } else if (op.outcome == kOk) {
          continue;
        }
      }
      done_[i] = true;
      const bool found = Search(next);
      done_[i] = false;
      if (found) return true;
    }
    failed_.insert({done_, state});
    return false;
  }

  std::vector<Operation> ops_;
  std::vector<bool> done_;
  std::set<std::pair<std::vector<bool>, Value>> failed_;
};

Value RandomValue(env::Random& r, int values) {
  const int64_t v = r.Range(-1, values - 1);
  return v < 0 ? Value() : Value(v);
}

Operation RandomOp(env::Random& r, int values, int64_t call, int64_t ret, Outcome o) {
  switch (r.Uniform(3)) {
    case 0: return Read(RandomValue(r, values), call, ret, o);
    case 1: return Write(RandomValue(r, values), call, ret, o);
    default: return Cas(RandomValue(r, values), RandomValue(r, values), call, ret, o);
  }
}

// Gives every operation a random instant at which it takes effect on a real register (an
// unknown one up to `unknown_lag` after its call, or never), then fills in read outputs and
// turns ok cas whose compare fails into :fail. The result is linearizable.
void Replay(env::Random& r, int64_t unknown_lag, std::vector<Operation>& ops) {
  std::vector<std::pair<int64_t, size_t>> points;
  for (size_t i = 0; i < ops.size(); ++i) {
    const int64_t end =
        ops[i].outcome == kUnknown ? ops[i].call_time + unknown_lag : ops[i].return_time;
    points.push_back({r.Range(ops[i].call_time, end), i});
  }
  std::sort(points.begin(), points.end());
  Value reg;
  for (const auto& [t, i] : points) {
    Operation& op = ops[i];
    if (op.outcome == kFail) continue;
    if (op.outcome == kUnknown && r.Chance(0.5)) continue;
    if (op.kind == OpKind::kRead) op.output = reg;
    if (op.kind == OpKind::kWrite) reg = op.arg;
    if (op.kind == OpKind::kCas) {
      if (reg == op.arg) {
        reg = op.cas_to;
      } else if (op.outcome == kOk) {
        op.outcome = kFail;
      }
    }
  }
}

// Up to 7 operations at random times, replayed on a register 70% of the time, then sometimes
// one read output changed: about half are linearizable.
History RandomSmallHistory(env::Random& r) {
  const int n = static_cast<int>(r.Range(1, 7));
  std::vector<Operation> ops;
  for (int i = 0; i < n; ++i) {
    const int64_t call = r.Range(0, 20);
    const Outcome o = r.Chance(0.7) ? kOk : r.Chance(0.5) ? kFail : kUnknown;
    ops.push_back(RandomOp(r, 3, call, call + r.Range(0, 8), o));
  }
  if (r.Chance(0.7)) {
    Replay(r, 30, ops);
    if (r.Chance(0.3)) ops[r.Uniform(ops.size())].output = RandomValue(r, 3);
  }
  return H(ops);
}

// `n` operations by `clients` always-busy clients (each operation overlaps about clients - 1
// others), a client replaced after an unknown outcome, replayed on a register.
History RandomLongHistory(env::Random& r, int n, int clients, double unknown_rate, int values) {
  std::vector<int64_t> free_at(clients, 0);
  std::vector<int64_t> client_id(clients);
  int64_t next_client = 0;
  for (int64_t& id : client_id) id = next_client++;
  std::vector<Operation> ops;
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(std::min_element(free_at.begin(), free_at.end()) -
                                   free_at.begin());
    const int64_t call = free_at[c] + r.Range(1, 5);
    const int64_t ret = call + r.Range(0, 30);
    const Outcome o = r.Chance(unknown_rate) ? kUnknown : kOk;
    ops.push_back(RandomOp(r, values, call, ret, o));
    ops.back().client = client_id[c];
    free_at[c] = ret;
    if (o == kUnknown) client_id[c] = next_client++;
  }
  Replay(r, 200, ops);
  for (size_t i = 0; i < ops.size(); ++i) ops[i].id = static_cast<int64_t>(i + 1);
  return ops;
}

TEST(LincheckTest, AgreesWithReferenceOnRandomSmallHistories) {
  env::Random r(20240601);
  int linearizable = 0;
  const int kHistories = 4000;
  for (int i = 0; i < kHistories; ++i) {
    const History h = RandomSmallHistory(r);
    const bool expected = Reference(h).Linearizable();
    const CheckResult got = Check(h);
    ASSERT_NE(got.verdict, Verdict::kUnknown);
    ASSERT_EQ(got.linearizable, expected) << "history " << i << ": " << got.explanation;
    linearizable += expected ? 1 : 0;
  }
  // Both verdicts are well represented.
  EXPECT_GT(linearizable, kHistories / 5);
  EXPECT_LT(linearizable, kHistories * 4 / 5);
}

// Longer than one 64-bit word of operations, with unknown twins: exercises the compressed memo
// keys and the symmetry rule against the plain reference.
TEST(LincheckTest, AgreesWithReferenceOnRandomLongHistories) {
  env::Random r(77);
  int linearizable = 0;
  const int kHistories = 300;
  for (int i = 0; i < kHistories; ++i) {
    History h = RandomLongHistory(r, static_cast<int>(r.Range(40, 160)),
                                  static_cast<int>(r.Range(2, 4)), 0.04, 3);
    ASSERT_TRUE(ValidateHistory(h).ok()) << ValidateHistory(h);
    if (r.Chance(0.85)) {  // change a few read outputs
      for (int k = static_cast<int>(r.Range(1, 5)); k > 0; --k) {
        Operation& op = h[r.Uniform(h.size())];
        if (op.kind == OpKind::kRead) op.output = RandomValue(r, 3);
      }
    }
    const bool expected = Reference(h).Linearizable();
    const CheckResult got = Check(h);
    ASSERT_NE(got.verdict, Verdict::kUnknown);
    ASSERT_EQ(got.linearizable, expected) << "history " << i << ": " << got.explanation;
    linearizable += expected ? 1 : 0;
  }
  EXPECT_GT(linearizable, kHistories / 5);
  EXPECT_LT(linearizable, kHistories * 4 / 5);
}

// Many unknown outcomes (a fifth), including unknown cas chains and twins: exercises the
// pruning rules for unknown operations and both search orders.
TEST(LincheckTest, AgreesWithReferenceOnUnknownHeavyHistories) {
  env::Random r(99);
  int linearizable = 0;
  const int kHistories = 600;
  for (int i = 0; i < kHistories; ++i) {
    History h = RandomLongHistory(r, static_cast<int>(r.Range(8, 40)),
                                  static_cast<int>(r.Range(2, 4)), 0.2, 3);
    if (r.Chance(0.9)) {  // change a few read outputs
      for (int k = static_cast<int>(r.Range(1, 4)); k > 0; --k) {
        Operation& op = h[r.Uniform(h.size())];
        if (op.kind == OpKind::kRead) op.output = RandomValue(r, 3);
      }
    }
    const bool expected = Reference(h).Linearizable();
    const CheckResult got = Check(h);
    ASSERT_NE(got.verdict, Verdict::kUnknown);
    ASSERT_EQ(got.linearizable, expected) << "history " << i << ": " << got.explanation;
    linearizable += expected ? 1 : 0;
  }
  // Unknown outcomes make many changed histories still linearizable; enough are not.
  EXPECT_GT(linearizable, kHistories / 5);
  EXPECT_LT(linearizable, kHistories * 9 / 10);
}

// Corrupts one kOk read late in `h` to a value nobody wrote; returns its id.
int64_t CorruptLateRead(History& h) {
  size_t victim = h.size() - 100;
  while (h[victim].kind != OpKind::kRead || h[victim].outcome != kOk) ++victim;
  h[victim].output = 1'000'000;
  return h[victim].id;
}

// Long, highly concurrent histories on one key are decided quickly and within a small memo (the
// memo holds a window of operations per configuration, not the whole history).
TEST(LincheckTest, LongSingleKeyHistory) {
  env::Random r(5);
  History h = RandomLongHistory(r, 20'000, 8, 0.0, 5);
  CheckOptions options;
  options.memo_bytes_max = 256 << 20;
  CheckResult got = Check(h, options);
  ASSERT_EQ(got.verdict, Verdict::kLinearizable) << got.explanation;
  const int64_t victim = CorruptLateRead(h);
  got = Check(h, options);
  ASSERT_EQ(got.verdict, Verdict::kNotLinearizable) << got.explanation;
  EXPECT_TRUE(absl::StrContains(got.explanation,
                                absl::StrCat("no continuation linearizes op ", victim, " ")))
      << got.explanation;
}

// With 5% unknown outcomes: the linearization is found by the depth-first search, the proof
// that the corrupted history has none by the fewest-unknown-first one.
TEST(LincheckTest, LongSingleKeyHistoryWithUnknownOutcomes) {
  env::Random r(6);
  History h = RandomLongHistory(r, 5'000, 8, 0.05, 1000);
  CheckOptions options;
  options.memo_bytes_max = 256 << 20;
  CheckResult got = Check(h, options);
  ASSERT_EQ(got.verdict, Verdict::kLinearizable) << got.explanation;
  EXPECT_GT(got.unknown_operations, 150u);
  const int64_t victim = CorruptLateRead(h);
  got = Check(h, options);
  ASSERT_EQ(got.verdict, Verdict::kNotLinearizable) << got.explanation;
  EXPECT_TRUE(absl::StrContains(got.explanation,
                                absl::StrCat("no continuation linearizes op ", victim, " ")))
      << got.explanation;
}

TEST(LincheckTest, IdenticalUnknownWritesDoNotExplode) {
  // 30 unknown writes of 7 and 30 of 8, then sequential reads 7, 8, 7, ... and a read of 9
  // nobody wrote. Without the twin rule, each read could consume any of the 30 writes of its
  // value: 30 * 29 * ... distinct configurations.
  std::vector<Operation> ops;
  for (int i = 0; i < 60; ++i) ops.push_back(Write(i % 2 == 0 ? 7 : 8, i, 0, kUnknown));
  for (int j = 0; j < 20; ++j) ops.push_back(Read(j % 2 == 0 ? 7 : 8, 100 + 2 * j, 101 + 2 * j));
  ops.push_back(Read(9, 200, 201));
  const CheckResult r = Check(H(ops));
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.explanation;
  EXPECT_LT(r.states, 1000u);
}

// ---- Jepsen log parser --------------------------------------------------------------------------

TEST(LincheckParserTest, ParsesEveryOutcome) {
  const std::string log =
      "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
      "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
      "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
      "INFO  jepsen.util - 1\t:ok\t:read\t1\n"
      "\n"
      "INFO  jepsen.util - 2\t:invoke\t:cas\t[1 2]\n"
      "INFO  jepsen.util - 2\t:fail\t:cas\t[1 2]\n"
      "INFO  jepsen.util - 3   :invoke :write  -5\n"
      "INFO  jepsen.util - 3   :info   :write  :timed-out\n"
      "INFO  jepsen.util - :nemesis\t:info\t:start\t[:isolated {\"n1\" #{\"n2\"}}]\n"
      "INFO  jepsen.util - 4\t:invoke\t:cas\t[nil 3]\n"
      "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
      "INFO  jepsen.util - 1\t:fail\t:read\t:timed-out";
  absl::StatusOr<History> h = ParseJepsenLog(log);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->size(), 6u);
  const History& ops = *h;
  EXPECT_EQ(ops[0], (Operation{1, 0, "", OpKind::kWrite, 1, {}, {}, 1, 3, kOk}));
  EXPECT_EQ(ops[1], (Operation{2, 1, "", OpKind::kRead, {}, {}, 1, 2, 4, kOk}));
  EXPECT_EQ(ops[2], (Operation{6, 2, "", OpKind::kCas, 1, 2, {}, 6, 7, kFail}));
  EXPECT_EQ(ops[3], (Operation{8, 3, "", OpKind::kWrite, -5, {}, {}, 8, kNever, kUnknown}));
  EXPECT_EQ(ops[4], (Operation{12, 1, "", OpKind::kRead, {}, {}, {}, 12, 13, kFail}));
  // Still pending at the end: unknown.
  EXPECT_EQ(ops[5], (Operation{11, 4, "", OpKind::kCas, {}, 3, {}, 11, kNever, kUnknown}));
  EXPECT_TRUE(ValidateHistory(ops).ok()) << ValidateHistory(ops);
  EXPECT_TRUE(Check(ops).linearizable);
}

TEST(LincheckParserTest, ErrorsNameTheLine) {
  const std::string ok = "INFO  jepsen.util - 0\t:invoke\t:write\t1\n";
  struct Case {
    std::string text;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"garbage", "line 1: expected 'INFO jepsen.util - PROCESS"},
      {ok + "INFO  jepsen.util - 0\t:ok\t:write", "line 2: expected 'INFO jepsen.util"},
      {ok + "WARN  jepsen.util - 1\t:invoke\t:read\tnil", "line 2: expected 'INFO"},
      {"\n\nINFO  jepsen.util - x\t:invoke\t:read\tnil", "line 3: bad process id 'x'"},
      {"INFO  jepsen.util - -1\t:invoke\t:read\tnil", "line 1: bad process id '-1'"},
      {"INFO  jepsen.util - 1\t:start\t:read\tnil", "line 1: unknown type ':start'"},
      {"INFO  jepsen.util - 1\t:invoke\t:append\t1", "line 1: unknown function ':append'"},
      {"INFO  jepsen.util - 1\t:invoke\t:write\tfoo", "line 1: bad value 'foo'"},
      {"INFO  jepsen.util - 1\t:invoke\t:write\t99999999999999999999", "line 1: bad value"},
      {"INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2 3]", "line 1: bad value '[1 2 3]'"},
      {"INFO  jepsen.util - 1\t:invoke\t:cas\t[1]", "line 1: bad value '[1]'"},
      {"INFO  jepsen.util - 1\t:invoke\t:cas\t1", "line 1: :invoke :cas has value 1"},
      {"INFO  jepsen.util - 1\t:invoke\t:read\t3", "line 1: :invoke :read has value 3"},
      {"INFO  jepsen.util - 1\t:invoke\t:write\t:x", "line 1: :invoke :write has value :x"},
      {ok + "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
       "line 2: process 0 invokes while its operation from line 1 is still pending"},
      {ok + "INFO  jepsen.util - 1\t:ok\t:write\t1", "line 2: :ok: process 1 has no pending"},
      {ok + "INFO  jepsen.util - 0\t:ok\t:read\t1",
       "line 2: :ok :read does not match the :write invoked by process 0 on line 1"},
      {ok + "INFO  jepsen.util - 0\t:ok\t:write\t2",
       "line 2: :ok :write has value 2 but the invocation on line 1 had 1"},
      {ok + "INFO  jepsen.util - 0\t:ok\t:write\t:timed-out", "line 2: :ok :write has value"},
      {ok + "INFO  jepsen.util - 0\t:info\t:write\t3", "line 2: :info :write has value 3"},
      {ok + "INFO  jepsen.util - 0\t:info\t:write\t:timed-out\n\n" +
           "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
       "line 4: process 0 invokes again after its :info on line 2"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<History> h = ParseJepsenLog(c.text);
    ASSERT_FALSE(h.ok()) << c.text;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(h.status().message(), c.error))
        << "input:\n" << c.text << "\nerror: " << h.status() << "\nwanted: " << c.error;
  }
}

TEST(LincheckParserTest, FileErrorsNameThePath) {
  absl::StatusOr<History> h = ParseJepsenLogFile("/nonexistent/etcd.log");
  ASSERT_FALSE(h.ok());
  EXPECT_TRUE(absl::StrContains(h.status().message(), "/nonexistent/etcd.log")) << h.status();
  const std::string path = absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR")
                                                                    : "/tmp",
                                        "/lincheck_bad.log");
  std::ofstream(path) << "INFO  jepsen.util - 0\t:invoke\t:write\t1\nnonsense\n";
  h = ParseJepsenLogFile(path);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().message(), absl::StrCat(path, ":line 2: expected 'INFO jepsen.util - "
                                                     "PROCESS :TYPE :FUNCTION VALUE'"));
}

// Random edits of a valid log are either parsed (and then checked) or rejected with a line
// number: never a crash (run under ASan/UBSan by CI).
TEST(LincheckParserTest, MutatedLogsNeverCrash) {
  const std::string base =
      "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
      "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
      "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
      "INFO  jepsen.util - 1\t:ok\t:read\t1\n"
      "INFO  jepsen.util - 2\t:invoke\t:cas\t[1 2]\n"
      "INFO  jepsen.util - 3\t:invoke\t:write\t4\n"
      "INFO  jepsen.util - 2\t:ok\t:cas\t[1 2]\n"
      "INFO  jepsen.util - 3\t:info\t:write\t:timed-out\n"
      "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
      "INFO  jepsen.util - 1\t:ok\t:read\t4\n";
  const std::string alphabet = " \t\n:[]-0123456789nilx";
  env::Random r(7);
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s = base;
    const int edits = static_cast<int>(r.Range(1, 4));
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = r.Uniform(s.size());
      switch (r.Uniform(3)) {
        case 0: s.erase(at, r.Range(1, 8)); break;
        case 1: s[at] = alphabet[r.Uniform(alphabet.size())]; break;
        default: s.insert(at, 1, alphabet[r.Uniform(alphabet.size())]); break;
      }
    }
    absl::StatusOr<History> h = ParseJepsenLog(s);
    if (h.ok()) {
      ++parsed;
      EXPECT_TRUE(ValidateHistory(*h).ok()) << s;
      Check(*h);
    } else {
      EXPECT_TRUE(absl::StartsWith(h.status().message(), "line ")) << h.status();
    }
  }
  EXPECT_GT(parsed, 0);
}

// ---- the shared Jepsen etcd corpus --------------------------------------------------------------

// The corpus is not a Bazel input (it lives next to the checkout, outside the workspace). Found,
// in order: $E2D_JEPSEN_TESTDATA; the path written in sim/lincheck_testdata_path.txt, relative
// to the workspace root, which is located through the real path of that runfile (the runfiles
// tree links back to the source tree, also inside the sandbox); /work/shared/testdata/... .
// `how` says which of these found it.
std::string FindJepsenTestdata(std::string* how) {
  namespace fs = std::filesystem;
  if (const char* dir = std::getenv("E2D_JEPSEN_TESTDATA"); dir != nullptr && *dir != '\0') {
    *how = "$E2D_JEPSEN_TESTDATA";
    return dir;
  }
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    const fs::path marker = fs::path(srcdir) / workspace / "sim" / "lincheck_testdata_path.txt";
    std::error_code ec;
    const fs::path real = fs::canonical(marker, ec);
    std::ifstream in(marker);
    std::string line, relative;
    while (std::getline(in, line)) {
      if (!line.empty() && line[0] != '#') relative = line;
    }
    if (!ec && !relative.empty()) {
      const fs::path dir = (real.parent_path().parent_path() / relative).lexically_normal();
      *how = absl::StrCat("sim/lincheck_testdata_path.txt, workspace ",
                          real.parent_path().parent_path().string());
      if (fs::is_directory(dir, ec)) return dir.string();
      std::cerr << "no Jepsen corpus at " << dir << " (from " << real << ")\n";
    }
  }
  const std::string fallback = "/work/shared/testdata/jepsen-etcd";
  std::error_code ec;
  *how = "the fallback absolute path";
  if (fs::is_directory(fallback, ec)) return fallback;
  return "";
}

TEST(LincheckJepsenTest, EveryVerdictMatches) {
  std::string how;
  const std::string dir = FindJepsenTestdata(&how);
  ASSERT_FALSE(dir.empty()) << "Jepsen corpus not found: set E2D_JEPSEN_TESTDATA or place it "
                               "at ../shared/testdata/jepsen-etcd next to the checkout";
  std::cout << "Jepsen corpus: " << dir << " (found through " << how << ")\n";
  std::ifstream verdicts(dir + "/VERDICTS");
  ASSERT_TRUE(verdicts.good()) << dir << "/VERDICTS";
  std::vector<std::string> listed;
  std::string line;
  int line_no = 0, checked = 0, linearizable = 0;
  while (std::getline(verdicts, line)) {
    ++line_no;
    if (line.empty()) continue;
    const std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_EQ(f.size(), 2u) << "VERDICTS line " << line_no << ": " << line;
    ASSERT_TRUE(f[1] == "true" || f[1] == "false") << "VERDICTS line " << line_no;
    listed.push_back(f[0]);
    absl::StatusOr<History> h = ParseJepsenLogFile(dir + "/" + f[0]);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_TRUE(ValidateHistory(*h).ok()) << f[0] << ": " << ValidateHistory(*h);
    const CheckResult r = Check(*h);
    const bool expected = f[1] == "true";
    EXPECT_NE(r.verdict, Verdict::kUnknown) << f[0] << ": " << r.explanation;
    EXPECT_EQ(r.linearizable, expected) << f[0] << ": " << r.explanation;
    ++checked;
    linearizable += expected ? 1 : 0;
  }
  // Every log in the directory has a verdict.
  std::vector<std::string> logs;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log") logs.push_back(entry.path().filename().string());
  }
  std::sort(logs.begin(), logs.end());
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(logs, listed);
  EXPECT_GT(checked, 0);
  std::cout << checked << " Jepsen logs checked, " << linearizable << " linearizable\n";
}

}  // namespace
}  // namespace e2d::sim::lincheck
