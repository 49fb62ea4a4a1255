// Copyright e2d authors.

#include "sim/swarm.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "env/random.h"

namespace e2d::sim {
namespace {

struct Builder {
  env::Random& r;
  const SwarmOptions& o;
  std::vector<FaultAction> actions;

  void Add(int64_t at_ms, std::string verb, std::vector<std::string> args) {
    actions.push_back(FaultAction{std::min(at_ms, o.duration_ms), std::move(verb), std::move(args)});
  }
  std::string Node() { return absl::StrCat(1 + r.Uniform(o.nodes)); }
  // Gaps between episodes: exponential-ish with the given mean.
  int64_t Gap(int64_t mean_ms) { return 1 + static_cast<int64_t>(r.Uniform(2 * mean_ms)); }
};

void Network(Builder& b) {
  const bool lossy = b.r.Chance(0.5);
  b.Add(0, "link", {"*", "*", absl::StrCat("latency_us=", b.r.Range(50, 5000)),
                    absl::StrCat("jitter_us=", b.r.Range(0, 5000)),
                    absl::StrCat("tail=", b.r.Chance(0.5) ? 0.01 : 0.0),
                    absl::StrCat("tail_ms=", b.r.Range(10, 500)),
                    absl::StrCat("loss=", lossy ? b.r.Range(1, 30) / 100.0 : 0.0),
                    absl::StrCat("dup=", b.r.Chance(0.3) ? b.r.Range(1, 10) / 100.0 : 0.0)});
  const int64_t mean_ms = b.r.Range(500, 5000);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    std::string x = b.Node(), y = b.Node();
    if (x == y) continue;
    if (b.r.Chance(0.5)) {
      b.Add(t, "clog", {x, y, absl::StrCat(b.r.Range(10, 3000))});
    } else {
      b.Add(t, "break", {x, y});
    }
  }
}

// Two disjoint, non-empty sides; the rest of the nodes (if any) talk to both.
void Sides(Builder& b, std::vector<std::string>* a, std::vector<std::string>* c) {
  for (int n = 1; n <= b.o.nodes; ++n) (b.r.Chance(0.5) ? a : c)->push_back(absl::StrCat(n));
  if (a->empty()) a->push_back(c->back()), c->pop_back();
  if (c->empty()) c->push_back(a->back()), a->pop_back();
}

void Partitions(Builder& b) {
  if (b.o.nodes < 2) return;
  const int64_t mean_ms = b.r.Range(b.o.partition_gap_ms_min, b.o.partition_gap_ms_max);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    const uint64_t kind = b.r.Uniform(4);
    if (kind == 0) {
      b.Add(t, "isolate", {b.o.target_leader && b.r.Chance(0.5) ? "leader" : b.Node()});
    } else if (kind == 1) {
      std::string x = b.Node(), y = b.Node();
      if (x != y) b.Add(t, "oneway", {x, y});
    } else {
      std::vector<std::string> side_a, side_b;
      Sides(b, &side_a, &side_b);
      if (kind == 3 && side_a.size() + side_b.size() >= 3) {
        std::vector<std::string>& big = side_a.size() > side_b.size() ? side_a : side_b;
        std::string bridge = big.back();
        big.pop_back();
        b.Add(t, "bridge", {absl::StrJoin(side_a, ","), absl::StrJoin(side_b, ","), bridge});
      } else {
        b.Add(t, "split", {absl::StrJoin(side_a, ","), absl::StrJoin(side_b, ",")});
      }
    }
    t += b.Gap(mean_ms / 2);
    b.Add(t, "heal", {});
  }
}

// Crash/restart, pause/resume and lose/restart episodes; at most down_max nodes down at once.
void Processes(Builder& b) {
  std::vector<int64_t> down_until(b.o.nodes + 1, 0);
  const int64_t mean_ms = b.r.Range(500, 6000);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    const int n = 1 + static_cast<int>(b.r.Uniform(b.o.nodes));
    // A fault on "leader" may hit any node: its end wakes every node ("*"). Its slot in
    // down_until is 0 (node ids start at 1).
    const bool leader = b.o.target_leader && b.r.Chance(0.5);
    const int slot = leader ? 0 : n;
    const int down = static_cast<int>(
        std::count_if(down_until.begin(), down_until.end(), [t](int64_t u) { return u > t; }));
    if (down_until[slot] > t || down >= b.o.down_max) continue;
    const int64_t length_ms = b.r.Range(1, 4000);
    const uint64_t kind = b.r.Uniform(b.o.lose ? 7 : 6);
    const std::string node = leader ? "leader" : absl::StrCat(n);
    const std::string wake = leader ? "*" : node;
    if (kind < 4) {
      b.Add(t, "crash", {node});
      b.Add(t + length_ms, "restart", {wake});
    } else if (kind < 6) {
      b.Add(t, "pause", {node});
      b.Add(t + length_ms, "resume", {wake});
    } else {
      b.Add(t, "lose", {node});
      b.Add(t + length_ms, "restart", {wake});
    }
    down_until[slot] = t + length_ms + 1;
  }
}

void Disk(Builder& b) {
  for (int n = 1; n <= b.o.nodes; ++n) {
    std::vector<std::string> args = {
        absl::StrCat(n), absl::StrCat("latency_us=", b.r.Range(10, 20000)),
        absl::StrCat("jitter_us=", b.r.Range(0, 10000)),
        absl::StrCat("spike=", b.r.Chance(0.3) ? 0.01 : 0.0),
        absl::StrCat("spike_ms=", b.r.Range(20, 2000)),
        absl::StrCat("tear=", b.r.Chance(0.8) ? 1 : 0)};
    if (b.o.disk_errors && b.r.Chance(0.3)) {
      args.push_back(absl::StrCat("eio=", b.r.Range(1, 20) / 1000.0));
      args.push_back(absl::StrCat("syncfail=", b.r.Range(1, 20) / 1000.0));
    }
    if (b.o.disk_errors && b.r.Chance(0.2)) {
      args.push_back(absl::StrCat("capacity=", b.r.Range(0, 64 * 1024)));
    }
    b.Add(0, "disk", std::move(args));
  }
  const int64_t mean_ms = b.r.Range(2000, 10000);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    b.Add(t, "stall", {b.Node(), absl::StrCat(b.r.Range(10, 3000))});
  }
}

void Corruption(Builder& b) {
  const int64_t mean_ms = b.r.Range(2000, 10000);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    const std::string offset = absl::StrCat(b.r.Uniform(4096));
    if (b.r.Chance(0.5)) {
      b.Add(t, "bitflip", {b.Node(), b.o.corruption_path, offset, absl::StrCat(b.r.Uniform(8))});
    } else {
      b.Add(t, "readerr", {b.Node(), b.o.corruption_path, offset, absl::StrCat(b.r.Range(1, 512))});
    }
  }
}

void Clocks(Builder& b) {
  for (int n = 1; n <= b.o.nodes; ++n) {
    const int64_t bound = b.r.Chance(0.2) ? 100'000 : 1'000;
    b.Add(0, "drift", {absl::StrCat(n), absl::StrCat(b.r.Range(-bound, bound))});
  }
  const int64_t mean_ms = b.r.Range(2000, 10000);
  for (int64_t t = b.Gap(mean_ms); t < b.o.duration_ms; t += b.Gap(mean_ms)) {
    b.Add(t, "jump", {b.Node(), absl::StrCat(b.r.Range(1, 2000))});
  }
}

}  // namespace

FaultSchedule GenerateSwarm(const std::string& scenario, uint64_t seed, const SwarmOptions& o) {
  E2D_CHECK(o.nodes >= 1 && o.duration_ms >= 0, "bad swarm options");
  env::Random r = env::Random(seed).Fork("swarm");
  Builder b{r, o, {}};
  // Swarm: each allowed family is on for this seed with probability 1/2 (decided up front, so
  // adding a family to a scenario does not reshuffle the others' draws).
  const double p = o.swarm ? 0.5 : 1.0;
  const bool on_network = r.Chance(p), on_partitions = r.Chance(p), on_processes = r.Chance(p),
             on_disk = r.Chance(p), on_corruption = r.Chance(p), on_clocks = r.Chance(p);
  if (o.network && on_network) Network(b);
  if (o.partitions && on_partitions) Partitions(b);
  if (o.processes && on_processes) Processes(b);
  if (o.disk && on_disk) Disk(b);
  if (o.corruption && on_corruption && !o.corruption_path.empty()) Corruption(b);
  if (o.clocks && on_clocks) Clocks(b);
  FaultSchedule s;
  s.scenario = scenario;
  s.seed = seed;
  s.nodes = o.nodes;
  s.duration_ms = o.duration_ms;
  s.actions = std::move(b.actions);
  s.SortByTime();
  for (const FaultAction& a : s.actions) {
    E2D_CHECK(ValidateFault(a, o.nodes).ok(), "swarm generated an invalid fault '%s'", a.verb.c_str());
  }
  return s;
}

}  // namespace e2d::sim
