// Copyright e2d authors.
//
// WAL throughput on a real disk: raft::Wal on PosixFileSystem in a temporary directory
// (under $TEST_TMPDIR, else /tmp). Each iteration appends a batch of entries and waits for one
// Sync: a batch of 1 is one fsync per entry; larger batches are group commit (the driver hands
// the WAL a whole Ready, many proposals, and syncs once). The baseline, in the same run, is
// pwrite + fdatasync of the same payload bytes on a plain file, so the ratio WAL/raw shows what
// the WAL's framing, checksums and bookkeeping cost on top of the disk's own sync latency.
// Run: bazel run -c opt //bench:wal_bench

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "env/check.h"
#include "env/completion_queue.h"
#include "env/posix_filesystem.h"
#include "raft/wal.h"

namespace {

std::string TempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(base ? base : "/tmp", "/e2d_wal_bench_", name, "_", ::getpid());
  const std::string cmd = absl::StrCat("rm -rf '", dir, "' && mkdir -p '", dir, "'");
  E2D_CHECK(std::system(cmd.c_str()) == 0, "cannot create %s", dir.c_str());
  return dir;
}

void RemoveDir(const std::string& dir) {
  const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
}

void BM_WalAppendSync(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const size_t payload = static_cast<size_t>(state.range(1));
  const std::string dir = TempDir("wal");
  {
    e2d::env::CompletionQueue loop;
    e2d::env::PosixFileSystem fs(dir, loop.poster());
    e2d::raft::WalContents contents;
    auto wal = e2d::raft::Wal::Open(fs, e2d::raft::WalOptions{}, &contents);
    E2D_CHECK(wal.ok(), "open: %s", wal.status().ToString().c_str());
    const std::string data(payload, 'x');
    uint64_t index = 0;
    e2d::raftpb::HardState hs;
    hs.set_term(1);
    for (auto _ : state) {
      std::vector<e2d::raftpb::Entry> entries(batch);
      for (auto& e : entries) {
        e.set_term(1);
        e.set_index(++index);
        e.set_data(data);
      }
      hs.set_commit(index);
      E2D_CHECK((*wal)->Append(entries, &hs).ok(), "append");
      bool done = false;
      (*wal)->Sync([&done](absl::Status s) {
        E2D_CHECK(s.ok(), "sync: %s", s.ToString().c_str());
        done = true;
      });
      loop.RunUntil([&done] { return done; });
    }
    state.SetItemsProcessed(state.iterations() * batch);
    state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(payload));
  }
  RemoveDir(dir);
}

void BM_RawWriteFdatasync(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const size_t payload = static_cast<size_t>(state.range(1));
  const std::string dir = TempDir("raw");
  const std::string path = dir + "/raw";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  E2D_CHECK(fd >= 0, "open %s", path.c_str());
  const std::string bytes(payload * static_cast<size_t>(batch), 'x');
  off_t offset = 0;
  for (auto _ : state) {
    E2D_CHECK(::pwrite(fd, bytes.data(), bytes.size(), offset) ==
                  static_cast<ssize_t>(bytes.size()), "pwrite");
    offset += static_cast<off_t>(bytes.size());
    E2D_CHECK(::fdatasync(fd) == 0, "fdatasync");
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(payload));
  RemoveDir(dir);
}

void Args(benchmark::internal::Benchmark* b) {
  b->Args({1, 128})->Args({1, 4096})->Args({16, 128})->Args({256, 128})->Args({16, 4096});
  b->UseRealTime();
}

BENCHMARK(BM_WalAppendSync)->Apply(Args);
BENCHMARK(BM_RawWriteFdatasync)->Apply(Args);

}  // namespace

BENCHMARK_MAIN();
