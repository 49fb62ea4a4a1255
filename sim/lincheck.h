// Copyright e2d authors.
//
// Linearizability checker for histories of key/value register operations (read, write,
// compare-and-set), the oracle the simulator runs over client histories.
//
// Algorithm: Wing & Gong's search as improved by Lowe ("Testing for linearizability", 2017):
// a depth-first search over configurations (set of linearized operations, register value),
// where the next operation to linearize is any pending one called before the earliest pending
// return, memoising every configuration reached so that none is explored twice. Registers are
// independent objects, so the history is partitioned by key and each key is checked on its own
// (P-compositionality, Horn & Kroening 2015): the whole history is linearizable iff every key's
// sub-history is. Memo entries hold a window of the bitset (about as wide as the concurrency),
// so one key can have a long history.
//
// Operations of unknown outcome stay pending forever, which makes the plain search blow up. So
// the search also prunes (soundly; see KeySearch in lincheck.cc): a configuration is skipped if
// one reached before had the same kOk set and value with a subset of the unknown operations;
// unknown operations with identical effects are used in call order only; an unknown operation
// is linearized only if the very next operation observes its result. And for a key with unknown
// operations, a second search that explores configurations by the number of unknown operations
// they use, fewest first, runs alongside the depth-first one (alternating steps, first verdict
// wins): depth-first finds linearizations fast, fewest-first proves their absence fast.
//
// Semantics of outcomes (Jepsen's):
//   kOk       the operation took effect exactly once, at some instant between call and return.
//   kFail     the operation definitely did not take effect (a failed cas did not happen at all,
//             a failed read observed nothing): it is dropped before the search.
//   kUnknown  (Jepsen's :info) the operation may or may not have taken effect, at any instant
//             after its call; its return time is infinity. Unknown reads have no effect and no
//             trustworthy output, so they are dropped too.
//
// Model per key: a register holding an optional int64 (nullopt = absent, the initial value).
// A read returns the current value (nullopt allowed); a write sets it; cas(from, to) succeeds
// iff current == from and then sets `to`.
//
// Bounds: every key's search is limited by CheckOptions (memo memory, search steps). A key
// whose search hits a bound gets no verdict: the result is then Verdict::kUnknown ("gave up"),
// unless some other key is definitely not linearizable. Nothing here grows without bound.
//
// Deterministic: same history, same options => same result and the same explanation text (keys
// are visited in sorted order; hash tables are only probed, never iterated).

#ifndef E2D_SIM_LINCHECK_H_
#define E2D_SIM_LINCHECK_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::sim::lincheck {

// A register value; nullopt means "absent" (Jepsen's nil).
using Value = std::optional<int64_t>;

enum class OpKind { kRead, kWrite, kCas };
enum class Outcome { kOk, kFail, kUnknown };

// The return time of an operation whose outcome is unknown.
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

struct Operation {
  int64_t id = 0;      // caller's label, only used in explanations (the Jepsen parser: line no.)
  int64_t client = 0;  // process that issued it; one process has one operation at a time
  std::string key;
  OpKind kind = OpKind::kRead;
  Value arg = std::nullopt;     // write: the value written; cas: the expected value
  Value cas_to = std::nullopt;  // cas: the value set on success; unused otherwise
  Value output = std::nullopt;  // read with outcome kOk: the value observed; unused otherwise
  int64_t call_time = 0;
  int64_t return_time = 0;      // REQUIRES call_time <= return_time; ignored for kUnknown
  Outcome outcome = Outcome::kOk;

  friend bool operator==(const Operation&, const Operation&) = default;
};

// In any order; Check sorts by time. Equal times count as concurrent (calls before returns).
using History = std::vector<Operation>;

struct CheckOptions {
  // Memory the memo of one key's search may hold, in bytes (split between the two searches of
  // a key with unknown operations). A configuration costs about 100 bytes plus 8 per 64
  // operations in its window and per 64 unknown operations of the key.
  uint64_t memo_bytes_max = uint64_t{512} << 20;
  // Search steps for one key: one step = one candidate operation tried or one memo entry
  // compared. The search stops within one configuration's expansion past this.
  uint64_t steps_max = 200'000'000;
};

enum class Verdict { kLinearizable, kNotLinearizable, kUnknown };

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  bool linearizable = true;     // verdict == kLinearizable
  // The first key (in sorted order) that is not linearizable; if none is, the first key whose
  // search gave up (verdict kUnknown); else empty.
  std::string key_that_failed;
  // One line: for a failure, how long a linearizable prefix the search found and the operation
  // it could not place; for a give-up, which bound was hit. Empty when linearizable.
  std::string explanation;

  // Statistics, summed over keys.
  uint64_t keys = 0;             // distinct keys with at least one operation left to check
  uint64_t operations = 0;       // operations searched (after dropping fail / unknown reads)
  uint64_t unknown_operations = 0;  // of which outcome kUnknown
  uint64_t dropped_operations = 0;  // kFail operations and unknown reads
  uint64_t states = 0;           // configurations memoised (reached and not pruned)
  uint64_t steps = 0;            // search steps (see CheckOptions::steps_max)
};

// Checks the history. REQUIRES: every kOk operation has call_time <= return_time (crashes with
// E2D_CHECK otherwise; ValidateHistory reports it as an error instead).
CheckResult Check(const History& history, const CheckOptions& options = {});

// Well-formedness, beyond what Check needs: call_time <= return_time for every operation whose
// outcome is known, and no client has two operations overlapping in time or issues one after an
// operation of unknown outcome. InvalidArgument names the operation id.
absl::Status ValidateHistory(const History& history);

// Short human-readable forms, e.g. "read -> 3", "write 2", "cas [1 2]", "nil".
std::string ValueToString(const Value& v);
std::string OperationToString(const Operation& op);
std::string_view VerdictName(Verdict v);

// Parses a Jepsen etcd/cas-register log: one line per event,
//   INFO  jepsen.util - 4	:invoke	:cas	[1 2]
// with type :invoke / :ok / :fail / :info, function :read / :write / :cas and value nil, an
// integer, [from to] or a :keyword (e.g. :timed-out on :info and :fail). Fields are separated by
// any spaces or tabs; blank lines are ignored. All operations are on one register (key "").
// Time is the line number; an operation's id is the line of its :invoke. An operation still
// pending at the end of the log is unknown. A completion must match its invocation (same
// function; :ok echoes the invoked value, :ok :read may carry any value); a process has one
// operation at a time and is never used again after :info. Errors: InvalidArgument
// "line N: what is wrong".
absl::StatusOr<History> ParseJepsenLog(std::string_view text);

// Reads a file and parses it as above; errors are prefixed with "PATH:" (plain std::ifstream:
// for tools and tests, not for code that runs inside the simulator).
absl::StatusOr<History> ParseJepsenLogFile(const std::string& path);

}  // namespace e2d::sim::lincheck

#endif  // E2D_SIM_LINCHECK_H_
