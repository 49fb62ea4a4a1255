// Copyright e2d authors.
//
// MVCC store throughput on both engines: puts (one write transaction each, as one applied Raft
// entry) and ranges (single-key gets and 100-key prefix scans over 10,000 keys).
// Run: bazel run -c opt //bench:kv_bench

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "env/check.h"
#include "kv/mem_engine.h"
#include "kv/mvcc.h"
#include "kv/rocksdb_engine.h"

namespace {

using e2d::kv::KvEngine;
using e2d::kv::MvccStore;

struct Rig {
  explicit Rig(bool rocks) {
    if (rocks) {
      const char* base = std::getenv("TEST_TMPDIR");
      dir = absl::StrCat(base ? base : "/tmp", "/e2d_kv_bench_", ::getpid());
      const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
      E2D_CHECK(std::system(cmd.c_str()) == 0, "rm");
      auto e = e2d::kv::RocksDbEngine::Open(dir);
      E2D_CHECK(e.ok(), "open: %s", e.status().ToString().c_str());
      engine = std::move(*e);
    } else {
      engine = std::make_unique<e2d::kv::MemEngine>();
    }
    auto s = MvccStore::Open(engine.get());
    E2D_CHECK(s.ok(), "mvcc open");
    store = std::move(*s);
  }
  ~Rig() {
    store.reset();
    engine.reset();
    if (!dir.empty()) {
      const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
    }
  }
  void Put(const std::string& k, const std::string& v) {
    MvccStore::Txn t = store->Begin();
    E2D_CHECK(t.Put(k, v, 0).ok(), "put");
    E2D_CHECK(t.Commit(++index).ok(), "commit");
  }
  std::string dir;
  std::unique_ptr<KvEngine> engine;
  std::unique_ptr<MvccStore> store;
  uint64_t index = 0;
};

std::string Key(uint64_t i) { return absl::StrFormat("/registry/pods/ns%02d/pod%06d", i % 100, i); }

void BM_MvccPut(benchmark::State& state) {
  Rig rig(state.range(0) == 1);
  const std::string value(256, 'v');
  uint64_t i = 0;
  for (auto _ : state) rig.Put(Key(i++ % 10'000), value);
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) == 1 ? "rocksdb" : "mem");
}

void BM_MvccGet(benchmark::State& state) {
  Rig rig(state.range(0) == 1);
  for (uint64_t i = 0; i < 10'000; ++i) rig.Put(Key(i), std::string(256, 'v'));
  uint64_t i = 0;
  for (auto _ : state) {
    e2d::kv::RangeRequest r;
    r.key = Key((i++ * 7919) % 10'000);
    auto res = rig.store->Range(r);
    E2D_CHECK(res.ok() && res->kvs.size() == 1, "get");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) == 1 ? "rocksdb" : "mem");
}

void BM_MvccPrefixScan100(benchmark::State& state) {
  Rig rig(state.range(0) == 1);
  for (uint64_t i = 0; i < 10'000; ++i) rig.Put(Key(i), std::string(256, 'v'));
  uint64_t i = 0;
  for (auto _ : state) {
    e2d::kv::RangeRequest r;
    r.key = absl::StrFormat("/registry/pods/ns%02d/", i++ % 100);
    r.range_end = r.key;
    r.range_end.back() = '0';  // '/' + 1
    auto res = rig.store->Range(r);
    E2D_CHECK(res.ok() && res->kvs.size() == 100, "scan");
  }
  state.SetItemsProcessed(state.iterations() * 100);
  state.SetLabel(state.range(0) == 1 ? "rocksdb" : "mem");
}

BENCHMARK(BM_MvccPut)->Arg(0)->Arg(1);
BENCHMARK(BM_MvccGet)->Arg(0)->Arg(1);
BENCHMARK(BM_MvccPrefixScan100)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
