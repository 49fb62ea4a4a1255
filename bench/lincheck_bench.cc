// Copyright e2d authors.
//
// Linearizability checker throughput:
//  - BM_CheckGenerated/keys/ops/clients_per_key: a deterministic random linearizable history of
//    `ops` operations over `keys` registers. Every key has its own `clients_per_key` clients,
//    each always busy, so on every key about that many operations overlap at any time; each
//    operation takes effect at a random instant of its interval on a real register. Mix: 50%
//    read, 30% write, 20% cas (values 0..4, so about a fifth of the cas succeed; the others are
//    :fail), 2% of all operations end unknown (half of those take effect, possibly after later
//    operations; the client is then replaced, as Jepsen does). Reports checked ops/s.
//  - BM_CheckJepsen/N: parse + check of etcd_N.log from the shared Jepsen corpus
//    ($E2D_JEPSEN_TESTDATA, else ../shared/testdata/jepsen-etcd next to the workspace, else
//    /work/shared/testdata/jepsen-etcd). 070 is the longest log; 002 took a plain Lowe search
//    the most configurations (45k; about 60 here).
// Run: bazel run -c opt //bench:lincheck_bench

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "env/check.h"
#include "env/random.h"
#include "env/strings.h"
#include "sim/lincheck.h"

namespace {

namespace lc = e2d::sim::lincheck;

struct Draft {
  lc::Operation op;
  int64_t effect_time = 0;
  bool takes_effect = true;
};

// One key's operations: `clients` always-busy clients, ops_per_key operations.
void GenerateKey(e2d::env::Random& r, int key, int ops_per_key, int clients,
                 int64_t* next_client, lc::History* out) {
  std::vector<int64_t> free_at(clients), client_id(clients);
  for (int c = 0; c < clients; ++c) {
    free_at[c] = r.Range(0, 20);
    client_id[c] = (*next_client)++;
  }
  std::vector<Draft> drafts;
  for (int i = 0; i < ops_per_key; ++i) {
    const int c = static_cast<int>(std::min_element(free_at.begin(), free_at.end()) -
                                   free_at.begin());
    Draft d;
    d.op.key = absl::StrCat("key/", key);
    d.op.client = client_id[c];
    d.op.call_time = free_at[c];
    d.op.return_time = d.op.call_time + r.Range(1, 100);
    const uint64_t kind = r.Uniform(10);
    d.op.kind = kind < 5 ? lc::OpKind::kRead : kind < 8 ? lc::OpKind::kWrite : lc::OpKind::kCas;
    if (d.op.kind != lc::OpKind::kRead) d.op.arg = r.Range(0, 4);
    if (d.op.kind == lc::OpKind::kCas) d.op.cas_to = r.Range(0, 4);
    d.effect_time = r.Range(d.op.call_time, d.op.return_time);
    if (r.Chance(0.02)) {
      d.op.outcome = lc::Outcome::kUnknown;
      d.takes_effect = r.Chance(0.5);
      d.effect_time = r.Range(d.op.call_time, d.op.call_time + 300);
      client_id[c] = (*next_client)++;  // Jepsen retires a process after :info
    }
    free_at[c] = d.op.return_time + r.Range(1, 20);
    drafts.push_back(std::move(d));
  }
  std::vector<size_t> order(drafts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(drafts[a].effect_time, a) < std::tie(drafts[b].effect_time, b);
  });
  lc::Value reg;
  for (size_t i : order) {
    Draft& d = drafts[i];
    if (!d.takes_effect) continue;
    switch (d.op.kind) {
      case lc::OpKind::kRead:
        d.op.output = reg;
        break;
      case lc::OpKind::kWrite:
        reg = d.op.arg;
        break;
      case lc::OpKind::kCas:
        if (reg == d.op.arg) {
          reg = d.op.cas_to;
        } else if (d.op.outcome == lc::Outcome::kOk) {
          d.op.outcome = lc::Outcome::kFail;  // compare failed: did not happen
        }
        break;
    }
  }
  for (Draft& d : drafts) {
    if (d.op.outcome == lc::Outcome::kUnknown) d.op.return_time = lc::kNever;
    out->push_back(std::move(d.op));
  }
}

lc::History GenerateHistory(uint64_t seed, int keys, int ops, int clients_per_key) {
  e2d::env::Random r(seed);
  lc::History h;
  h.reserve(static_cast<size_t>(ops));
  int64_t next_client = 0;
  for (int k = 0; k < keys; ++k) {
    const int n = ops / keys + (k < ops % keys ? 1 : 0);
    GenerateKey(r, k, n, clients_per_key, &next_client, &h);
  }
  // Interleave the keys as a recorder would see them: by call time.
  std::stable_sort(h.begin(), h.end(), [](const lc::Operation& a, const lc::Operation& b) {
    return a.call_time < b.call_time;
  });
  for (size_t i = 0; i < h.size(); ++i) h[i].id = static_cast<int64_t>(i + 1);
  return h;
}

void BM_CheckGenerated(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0));
  const int ops = static_cast<int>(state.range(1));
  const int clients = static_cast<int>(state.range(2));
  const lc::History h = GenerateHistory(42, keys, ops, clients);
  E2D_CHECK(lc::ValidateHistory(h).ok(), "generated history is malformed");
  lc::CheckResult r;
  for (auto _ : state) {
    r = lc::Check(h);
    benchmark::DoNotOptimize(r);
  }
  if (r.verdict != lc::Verdict::kLinearizable) {
    const std::string why = absl::StrCat("generated history judged ",
                                         e2d::env::ToAbsl(lc::VerdictName(r.verdict)), ": ",
                                         r.explanation);
    state.SkipWithError(why.c_str());
    return;
  }
  state.counters["ops/s"] = benchmark::Counter(static_cast<double>(h.size()),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.counters["checked"] = static_cast<double>(r.operations);
  state.counters["unknown"] = static_cast<double>(r.unknown_operations);
  state.counters["dropped"] = static_cast<double>(r.dropped_operations);
  state.counters["states"] = static_cast<double>(r.states);
}
BENCHMARK(BM_CheckGenerated)
    ->Args({1000, 100'000, 10})  // the reference workload
    ->Args({1000, 100'000, 3})
    ->Args({1, 100'000, 10})  // one hot key: memo windows, ~1000 unknown ops on one register
    ->Unit(benchmark::kMillisecond);

std::string JepsenDir() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* d = std::getenv("E2D_JEPSEN_TESTDATA"); d != nullptr && *d != '\0') return d;
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY"); ws != nullptr) {
    const fs::path p = (fs::path(ws) / "../shared/testdata/jepsen-etcd").lexically_normal();
    if (fs::is_directory(p, ec)) return p.string();
  }
  return "/work/shared/testdata/jepsen-etcd";
}

void BM_CheckJepsen(benchmark::State& state) {
  char name[32];
  std::snprintf(name, sizeof(name), "etcd_%03d.log", static_cast<int>(state.range(0)));
  const std::string path = absl::StrCat(JepsenDir(), "/", name);
  lc::CheckResult r;
  size_t ops = 0;
  for (auto _ : state) {
    absl::StatusOr<lc::History> h = lc::ParseJepsenLogFile(path);
    if (!h.ok()) {
      state.SkipWithError(std::string(h.status().message()).c_str());
      return;
    }
    ops = h->size();
    r = lc::Check(*h);
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(absl::StrCat(name, " ", e2d::env::ToAbsl(lc::VerdictName(r.verdict))));
  state.counters["ops"] = static_cast<double>(ops);
  state.counters["states"] = static_cast<double>(r.states);
  state.counters["ops/s"] = benchmark::Counter(static_cast<double>(ops),
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CheckJepsen)->Arg(70)->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
