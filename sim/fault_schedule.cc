// Copyright e2d authors.

#include "sim/fault_schedule.h"

#include <algorithm>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "env/status_macros.h"
#include "env/strings.h"
#include "sim/cluster.h"

namespace e2d::sim {
namespace {

using KeyValues = absl::btree_map<std::string, std::string>;

// The verb is named by Dispatch(), which prefixes every error with it.
absl::Status Invalid(const FaultAction& a, absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

absl::StatusOr<int64_t> ParseInt(absl::string_view s, int64_t lo, int64_t hi,
                                 absl::string_view what) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", s, "' is not an integer in [", lo, ", ", hi, "]"));
  }
  return v;
}

absl::StatusOr<double> ParseProbability(absl::string_view s, absl::string_view what) {
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || !(v >= 0 && v <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", s, "' is not a probability"));
  }
  return v;
}

absl::StatusOr<NodeId> ParseNode(absl::string_view s, int nodes) {
  absl::StatusOr<int64_t> v = ParseInt(s, 1, nodes, "node");
  if (!v.ok()) return v.status();
  return static_cast<NodeId>(*v);
}

// "*" (every node) or a comma-separated list of node ids.
absl::StatusOr<std::vector<NodeId>> ParseNodes(absl::string_view s, int nodes) {
  std::vector<NodeId> out;
  if (s == "*") {
    for (int i = 1; i <= nodes; ++i) out.push_back(static_cast<NodeId>(i));
    return out;
  }
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    absl::StatusOr<NodeId> n = ParseNode(part, nodes);
    if (!n.ok()) return n.status();
    out.push_back(*n);
  }
  return out;
}

// Splits key=value tokens from args[first..]; every key must be in `allowed`.
absl::StatusOr<KeyValues> ParseKeyValues(const FaultAction& a, size_t first,
                                         std::vector<absl::string_view> allowed) {
  KeyValues kv;
  for (size_t i = first; i < a.args.size(); ++i) {
    std::pair<std::string, std::string> p = absl::StrSplit(a.args[i], absl::MaxSplits('=', 1));
    if (std::find(allowed.begin(), allowed.end(), p.first) == allowed.end() || p.second.empty()) {
      return Invalid(a, absl::StrCat("unknown or empty option '", a.args[i], "' (allowed: ",
                                     absl::StrJoin(allowed, ", "), ")"));
    }
    kv[p.first] = p.second;
  }
  return kv;
}

absl::Status ExpectArgs(const FaultAction& a, size_t n_min, size_t n_max) {
  if (a.args.size() < n_min || a.args.size() > n_max) {
    return Invalid(a, absl::StrCat("takes ", n_min, n_min == n_max ? "" : absl::StrCat("-", n_max),
                                   " arguments, got ", a.args.size()));
  }
  return absl::OkStatus();
}

// link FROM TO key=value...: updates the given fields of each directed link.
absl::Status Link(const FaultAction& a, int nodes, Cluster* c) {
  E2D_RETURN_IF_ERROR(ExpectArgs(a, 2, 8));
  E2D_ASSIGN_OR_RETURN(auto from, ParseNodes(a.args[0], nodes));
  E2D_ASSIGN_OR_RETURN(auto to, ParseNodes(a.args[1], nodes));
  E2D_ASSIGN_OR_RETURN(auto kv, ParseKeyValues(a, 2, {"latency_us", "jitter_us", "tail", "tail_ms",
                                                 "loss", "dup"}));
  LinkConfig update;
  absl::btree_map<std::string, int64_t> ints;
  absl::btree_map<std::string, double> probs;
  for (const auto& [k, v] : kv) {
    if (k == "tail" || k == "loss" || k == "dup") {
      E2D_ASSIGN_OR_RETURN(auto p, ParseProbability(v, k));
      probs[k] = p;
    } else {
      E2D_ASSIGN_OR_RETURN(auto i, ParseInt(v, 0, 3'600'000'000, k));
      ints[k] = i;
    }
  }
  if (c == nullptr) return absl::OkStatus();
  for (NodeId f : from) {
    for (NodeId t : to) {
      if (f == t) continue;
      LinkConfig cfg = c->network().link(f, t);
      if (ints.contains("latency_us")) cfg.latency_ns = ints["latency_us"] * 1000;
      if (ints.contains("jitter_us")) cfg.jitter_ns = ints["jitter_us"] * 1000;
      if (ints.contains("tail_ms")) cfg.tail_latency_ns = ints["tail_ms"] * 1'000'000;
      if (probs.contains("tail")) cfg.tail_probability = probs["tail"];
      if (probs.contains("loss")) cfg.loss = probs["loss"];
      if (probs.contains("dup")) cfg.duplicate = probs["dup"];
      c->network().SetLink(f, t, cfg);
    }
  }
  return absl::OkStatus();
}

// The node named by `s` for a fault that may target the current leader: kNoNode (a no-op) if
// `s` is "leader" and nobody leads.
absl::StatusOr<NodeId> ParseTarget(absl::string_view s, int nodes, Cluster* c) {
  if (s != "leader") return ParseNode(s, nodes);
  return c == nullptr ? kNoNode : c->leader();
}

absl::Status Partition(const FaultAction& a, int nodes, Cluster* c) {
  const int64_t ms_max = 3'600'000;
  if (a.verb == "heal") {
    E2D_RETURN_IF_ERROR(ExpectArgs(a, 0, 0));
    if (c) c->network().Heal();
  } else if (a.verb == "isolate") {
    E2D_RETURN_IF_ERROR(ExpectArgs(a, 1, 1));
    E2D_ASSIGN_OR_RETURN(NodeId n, ParseTarget(a.args[0], nodes, c));
    if (c && n != kNoNode) c->network().Isolate(n);
  } else if (a.verb == "split" || a.verb == "bridge") {
    E2D_RETURN_IF_ERROR(ExpectArgs(a, a.verb == "split" ? 2 : 3, a.verb == "split" ? 2 : 3));
    E2D_ASSIGN_OR_RETURN(auto side_a, ParseNodes(a.args[0], nodes));
    E2D_ASSIGN_OR_RETURN(auto side_b, ParseNodes(a.args[1], nodes));
    if (a.verb == "split") {
      if (c) c->network().Split(side_a, side_b);
    } else {
      E2D_ASSIGN_OR_RETURN(auto bridge, ParseNode(a.args[2], nodes));
      if (c) c->network().Bridge(side_a, side_b, bridge);
    }
  } else if (a.verb == "oneway" || a.verb == "break" || a.verb == "clog") {
    E2D_RETURN_IF_ERROR(ExpectArgs(a, a.verb == "clog" ? 3 : 2, a.verb == "clog" ? 3 : 2));
    E2D_ASSIGN_OR_RETURN(auto x, ParseNode(a.args[0], nodes));
    E2D_ASSIGN_OR_RETURN(auto y, ParseNode(a.args[1], nodes));
    if (x == y) return Invalid(a, "needs two different nodes");
    if (a.verb == "clog") {
      E2D_ASSIGN_OR_RETURN(auto ms, ParseInt(a.args[2], 0, ms_max, "duration_ms"));
      if (c) c->network().Clog(x, y, c->sim().now_ns() + ms * 1'000'000);
    } else if (c) {
      if (a.verb == "oneway") c->network().Block(x, y);
      if (a.verb == "break") c->network().BreakStreams(x, y);
    }
  }
  return absl::OkStatus();
}

absl::Status Process(const FaultAction& a, int nodes, Cluster* c) {
  E2D_RETURN_IF_ERROR(ExpectArgs(a, 1, 1));
  const bool wakes = a.verb == "restart" || a.verb == "resume";
  if (wakes) {
    E2D_ASSIGN_OR_RETURN(auto targets, ParseNodes(a.args[0], nodes));
    if (c == nullptr) return absl::OkStatus();
    for (NodeId n : targets) {
      if (a.verb == "restart" && !c->up(n)) c->Restart(n);
      if (a.verb == "resume") c->Resume(n);
    }
    return absl::OkStatus();
  }
  E2D_ASSIGN_OR_RETURN(NodeId n, ParseTarget(a.args[0], nodes, c));
  if (c == nullptr || n == kNoNode) return absl::OkStatus();
  c->Log(n, absl::StrCat(a.verb, " (", a.args[0], ")"));
  if (a.verb == "crash") c->Crash(n);
  if (a.verb == "pause") c->Pause(n);
  if (a.verb == "lose") c->Lose(n);
  return absl::OkStatus();
}

absl::Status Disk(const FaultAction& a, int nodes, Cluster* c) {
  E2D_RETURN_IF_ERROR(ExpectArgs(a, 1, 10));
  E2D_ASSIGN_OR_RETURN(auto n, ParseNode(a.args[0], nodes));
  E2D_ASSIGN_OR_RETURN(auto kv, ParseKeyValues(a, 1, {"latency_us", "jitter_us", "spike", "spike_ms",
                                                 "eio", "syncfail", "capacity", "tear"}));
  DiskFaults f = c ? c->disk(n).faults() : DiskFaults{};
  for (const auto& [k, v] : kv) {
    if (k == "spike" || k == "eio" || k == "syncfail") {
      E2D_ASSIGN_OR_RETURN(auto p, ParseProbability(v, k));
      (k == "spike" ? f.sync_spike_probability
                    : k == "eio" ? f.write_error_probability : f.sync_error_probability) = p;
    } else if (k == "capacity") {
      E2D_ASSIGN_OR_RETURN(auto bytes, ParseInt(v, 0, INT64_MAX, k));
      f.capacity_bytes = static_cast<uint64_t>(bytes);
    } else if (k == "tear") {
      E2D_ASSIGN_OR_RETURN(auto tear, ParseInt(v, 0, 1, k));
      f.tear_on_crash = tear == 1;
    } else {
      E2D_ASSIGN_OR_RETURN(auto i, ParseInt(v, 0, 3'600'000'000, k));
      if (k == "latency_us") f.sync_latency_ns = i * 1000;
      if (k == "jitter_us") f.sync_jitter_ns = i * 1000;
      if (k == "spike_ms") f.sync_spike_latency_ns = i * 1'000'000;
    }
  }
  if (c) c->disk(n).faults() = f;
  return absl::OkStatus();
}

absl::Status DiskData(const FaultAction& a, int nodes, Cluster* c) {
  E2D_RETURN_IF_ERROR(ExpectArgs(a, 4, 4));
  E2D_ASSIGN_OR_RETURN(auto n, ParseNode(a.args[0], nodes));
  E2D_ASSIGN_OR_RETURN(auto offset, ParseInt(a.args[2], 0, INT64_MAX, "offset"));
  const bool flip = a.verb == "bitflip";
  E2D_ASSIGN_OR_RETURN(auto last, ParseInt(a.args[3], flip ? 0 : 1, flip ? 7 : INT64_MAX,
                                      flip ? "bit" : "length"));
  if (c == nullptr) return absl::OkStatus();
  // The file may not exist (yet) in a generated schedule: that is a no-op, not an error.
  absl::Status s = flip ? c->disk(n).FlipBit(a.args[1], offset, static_cast<int>(last))
                        : c->disk(n).InjectReadError(a.args[1], offset, last);
  if (!s.ok()) c->Log(n, absl::StrCat("fault ", a.verb, " not applied: ", s.ToString()));
  return absl::OkStatus();
}

absl::Status ClockOrStall(const FaultAction& a, int nodes, Cluster* c) {
  E2D_RETURN_IF_ERROR(ExpectArgs(a, 2, 2));
  E2D_ASSIGN_OR_RETURN(auto n, ParseNode(a.args[0], nodes));
  if (a.verb == "drift") {
    E2D_ASSIGN_OR_RETURN(auto ppm, ParseInt(a.args[1], -kDriftPpmMax, kDriftPpmMax, "ppm"));
    if (c) c->clock(n).SetDrift(ppm);
    return absl::OkStatus();
  }
  E2D_ASSIGN_OR_RETURN(auto ms, ParseInt(a.args[1], 0, 3'600'000, "duration_ms"));
  if (c == nullptr) return absl::OkStatus();
  if (a.verb == "jump") c->clock(n).Jump(ms * 1'000'000);
  if (a.verb == "stall") c->disk(n).faults().stall_until_ns = c->sim().now_ns() + ms * 1'000'000;
  return absl::OkStatus();
}

absl::Status DispatchVerb(const FaultAction& a, int nodes, Cluster* c) {
  const std::string& v = a.verb;
  if (v == "link") return Link(a, nodes, c);
  if (v == "heal" || v == "isolate" || v == "split" || v == "bridge" || v == "oneway" ||
      v == "break" || v == "clog") {
    return Partition(a, nodes, c);
  }
  if (v == "crash" || v == "restart" || v == "pause" || v == "resume" || v == "lose") {
    return Process(a, nodes, c);
  }
  if (v == "disk") return Disk(a, nodes, c);
  if (v == "readerr" || v == "bitflip") return DiskData(a, nodes, c);
  if (v == "drift" || v == "jump" || v == "stall") return ClockOrStall(a, nodes, c);
  return absl::InvalidArgumentError(absl::StrCat("unknown fault '", v, "'"));
}

absl::Status Dispatch(const FaultAction& a, int nodes, Cluster* c) {
  absl::Status s = DispatchVerb(a, nodes, c);
  if (s.ok() || absl::StartsWith(s.message(), "unknown fault")) return s;
  return absl::Status(s.code(), absl::StrCat("fault '", a.verb, "': ", s.message()));
}

absl::Status AtLine(int line, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("line ", line, ": ", s.message()));
}

}  // namespace

void FaultSchedule::SortByTime() {
  std::stable_sort(actions.begin(), actions.end(),
                   [](const FaultAction& x, const FaultAction& y) { return x.at_ms < y.at_ms; });
}

absl::Status ValidateFault(const FaultAction& action, int nodes) {
  return Dispatch(action, nodes, nullptr);
}

absl::Status ApplyFault(const FaultAction& action, Cluster& cluster) {
  const int nodes = static_cast<int>(cluster.nodes().size());
  E2D_RETURN_IF_ERROR(ValidateFault(action, nodes));
  return Dispatch(action, nodes, &cluster);
}

void ScheduleFaults(const FaultSchedule& schedule, Cluster& cluster,
                    std::function<void(const std::string& why)> on_error) {
  for (const FaultAction& action : schedule.actions) {
    const std::string text = absl::StrCat(action.verb, " ", absl::StrJoin(action.args, " "));
    cluster.sim().Schedule(action.at_ms * 1'000'000, kNoNode, "fault", env::StableHash(text),
                           [&cluster, on_error, action, text] {
                             cluster.Log(kNoNode, absl::StrCat("fault: ", text));
                             if (absl::Status s = ApplyFault(action, cluster); !s.ok()) {
                               on_error("could not apply fault: " + s.ToString());
                             }
                           });
  }
}

void HealEverything(Cluster& cluster, const std::function<bool(uint32_t node)>& fail_stopped) {
  cluster.network().Heal();
  for (NodeId a : cluster.nodes()) {
    for (NodeId b : cluster.nodes()) {
      if (a != b) cluster.network().SetLink(a, b, LinkConfig{});
    }
  }
  for (NodeId n : cluster.nodes()) {
    DiskFaults& f = cluster.disk(n).faults();
    f = DiskFaults{.tear_on_crash = f.tear_on_crash};
    cluster.disk(n).ClearReadErrors();
    cluster.Resume(n);
    if (cluster.up(n) && fail_stopped(n)) cluster.Crash(n);
    if (!cluster.up(n)) cluster.Restart(n);
  }
}

std::string FaultSchedule::ToText() const {
  std::string out = "# e2d fault schedule (replay: bazel run //sim -- --schedule=FILE)\n";
  absl::StrAppend(&out, "scenario ", scenario, "\nseed ", seed, "\nnodes ", nodes,
                  "\nduration_ms ", duration_ms, "\n");
  for (const FaultAction& a : actions) {
    absl::StrAppend(&out, "@", a.at_ms, " ", a.verb);
    for (const std::string& arg : a.args) absl::StrAppend(&out, " ", arg);
    out += "\n";
  }
  return out;
}

namespace {

// One "KEY VALUE" header line.
absl::Status ParseHeader(const std::vector<std::string>& words, FaultSchedule* s, int* have) {
  if (words.size() != 2) return absl::InvalidArgumentError("expected 'KEY VALUE'");
  const std::string& key = words[0];
  if (key == "scenario") {
    s->scenario = words[1];
    *have |= 1;
  } else if (key == "seed") {
    if (!absl::SimpleAtoi(words[1], &s->seed)) {
      return absl::InvalidArgumentError("seed is not an unsigned integer");
    }
    *have |= 2;
  } else if (key == "nodes") {
    E2D_ASSIGN_OR_RETURN(int64_t n, ParseInt(words[1], 1, 1000, "nodes"));
    s->nodes = static_cast<int>(n);
    *have |= 4;
  } else if (key == "duration_ms") {
    E2D_ASSIGN_OR_RETURN(s->duration_ms, ParseInt(words[1], 0, 100'000'000, "duration_ms"));
    *have |= 8;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown key '", key, "'"));
  }
  return absl::OkStatus();
}

// One "@MS VERB ARGS..." line.
absl::Status ParseAction(const std::vector<std::string>& words, FaultSchedule* s) {
  E2D_ASSIGN_OR_RETURN(int64_t at,
                       ParseInt(absl::string_view(words[0]).substr(1), 0, s->duration_ms, "time"));
  if (!s->actions.empty() && at < s->actions.back().at_ms) {
    return absl::InvalidArgumentError("actions must be in time order");
  }
  if (words.size() < 2) return absl::InvalidArgumentError("missing fault verb");
  FaultAction a{at, words[1], std::vector<std::string>(words.begin() + 2, words.end())};
  E2D_RETURN_IF_ERROR(ValidateFault(a, s->nodes));
  s->actions.push_back(std::move(a));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FaultSchedule> FaultSchedule::Parse(std::string_view text) {
  constexpr int kAllHeaders = 1 | 2 | 4 | 8;
  FaultSchedule s;
  int have = 0;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(env::ToAbsl(text), '\n')) {
    ++line_no;
    line = line.substr(0, line.find('#'));
    std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    absl::Status st;
    if (words[0][0] != '@') {
      st = ParseHeader(words, &s, &have);
    } else if ((have & (4 | 8)) != (4 | 8)) {
      st = absl::InvalidArgumentError("'nodes' and 'duration_ms' must come first");
    } else {
      st = ParseAction(words, &s);
    }
    if (!st.ok()) return AtLine(line_no, st);
  }
  if (have != kAllHeaders) {
    return absl::InvalidArgumentError(
        "schedule needs 'scenario', 'seed', 'nodes' and 'duration_ms'");
  }
  return s;
}

}  // namespace e2d::sim
