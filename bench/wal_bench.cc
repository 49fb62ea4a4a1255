// Copyright e2d authors.
//
// WAL throughput on a real disk: raft::Wal on PosixFileSystem in a temporary directory
// (under $TEST_TMPDIR, else /tmp: make sure that is a real disk, not tmpfs). Each iteration
// appends a batch of entries and waits for one Sync: a batch of 1 is one fsync per entry;
// larger batches are group commit (the driver hands the WAL a whole Ready, many proposals, and
// syncs once). The baseline, registered right after each WAL case so both see the disk in the
// same state, is pwrite + fdatasync of the same payload bytes on a plain file with no WAL. At the
// end a table gives WAL/raw (entries per second of the WAL over those of raw: 1.0 means the WAL
// costs nothing on top of the disk's own sync latency; the WAL also writes its framing, see the
// disk_B/entry counter).
// Run: bazel run -c opt //bench:wal_bench

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
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

// Bytes in the WAL's segment files.
uint64_t WalDiskBytes(e2d::env::FileSystem& fs, const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = fs.List(dir);
  E2D_CHECK(names.ok(), "list: %s", names.status().ToString().c_str());
  uint64_t total = 0;
  for (const std::string& name : *names) {
    auto f = fs.Open(dir + "/" + name, e2d::env::OpenOptions());
    E2D_CHECK(f.ok(), "open: %s", f.status().ToString().c_str());
    total += *(*f)->Size();
  }
  return total;
}

// One batch of `batch` entries of `payload` bytes appended, then one Sync waited for: the
// completion queue is the node's thread, drained here until the callback ran.
class WalRig {
 public:
  WalRig(const std::string& dir, int batch, size_t payload)
      : fs_(dir, loop_.poster()), entries_(batch) {
    e2d::raft::WalContents contents;
    auto wal = e2d::raft::Wal::Open(fs_, options_, &contents);
    E2D_CHECK(wal.ok(), "open: %s", wal.status().ToString().c_str());
    wal_ = std::move(*wal);
    hs_.set_term(1);
    for (auto& e : entries_) {  // built once: the driver has its entries in hand already
      e.set_term(1);
      e.set_data(std::string(payload, 'x'));
    }
  }

  void AppendAndSync() {
    for (auto& e : entries_) e.set_index(++index_);
    hs_.set_commit(index_);
    const absl::Status appended = wal_->Append(entries_, &hs_);
    E2D_CHECK(appended.ok(), "append: %s", appended.ToString().c_str());
    bool done = false;
    wal_->Sync([&done](absl::Status s) {
      E2D_CHECK(s.ok(), "sync: %s", s.ToString().c_str());
      done = true;
    });
    loop_.RunUntil([&done] { return done; });
  }

  uint64_t disk_bytes() { return WalDiskBytes(fs_, options_.dir); }
  uint64_t entries() const { return index_; }

 private:
  e2d::env::CompletionQueue loop_;  // outlives fs_ (the poster contract)
  e2d::env::PosixFileSystem fs_;
  e2d::raft::WalOptions options_;
  std::unique_ptr<e2d::raft::Wal> wal_;  // destroyed before fs_
  std::vector<e2d::raftpb::Entry> entries_;
  e2d::raftpb::HardState hs_;
  uint64_t index_ = 0;
};

void BM_WalAppendSync(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const size_t payload = static_cast<size_t>(state.range(1));
  const std::string dir = TempDir("wal");
  {
    WalRig rig(dir, batch, payload);
    rig.AppendAndSync();  // untimed: the first sync also syncs the new directories
    const uint64_t warm_bytes = rig.disk_bytes();
    const uint64_t warm_entries = rig.entries();
    for (auto _ : state) rig.AppendAndSync();
    state.SetItemsProcessed(state.iterations() * batch);
    state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(payload));
    state.counters["disk_B/entry"] = static_cast<double>(rig.disk_bytes() - warm_bytes) /
                                     static_cast<double>(rig.entries() - warm_entries);
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
  auto write_and_sync = [&] {
    E2D_CHECK(::pwrite(fd, bytes.data(), bytes.size(), offset) ==
                  static_cast<ssize_t>(bytes.size()),
              "pwrite");
    offset += static_cast<off_t>(bytes.size());
    E2D_CHECK(::fdatasync(fd) == 0, "fdatasync");
  };
  write_and_sync();  // untimed, like the WAL's first sync
  for (auto _ : state) write_and_sync();
  ::close(fd);
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(payload));
  state.counters["disk_B/entry"] = static_cast<double>(payload);
  RemoveDir(dir);
}

// The console output, plus the real time per iteration of every run, keyed by its arguments
// ("1/128") and kind, for the WAL/raw table printed at the end (the median over
// --benchmark_repetitions).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      // Iterations, or only the median when --benchmark_report_aggregates_only hides them.
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (run.error_occurred || (run.run_type != Run::RT_Iteration && !median)) continue;
      const std::string name = run.benchmark_name();  // e.g. BM_WalAppendSync/1/128/real_time
      const size_t slash = name.find('/');
      const std::string family = name.substr(0, slash);
      const std::string args = name.substr(slash + 1, name.find("/real_time") - slash - 1);
      const double seconds =
          run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      auto& times = (family == "BM_WalAppendSync" ? wal_ : raw_)[args];
      if (median) times.clear();  // the library's median of the repetitions seen just before
      times.push_back(seconds);
      if (std::find(order_.begin(), order_.end(), args) == order_.end()) order_.push_back(args);
    }
  }

  void PrintRatios(const std::map<std::string, int>& batch_of) const {
    std::printf("\n%-16s %14s %14s %8s\n", "batch/payload", "WAL entries/s", "raw entries/s",
                "WAL/raw");
    for (const std::string& args : order_) {
      auto w = wal_.find(args);
      auto r = raw_.find(args);
      if (w == wal_.end() || r == raw_.end()) continue;
      const double batch = batch_of.at(args);
      const double wal = Median(w->second);
      const double raw = Median(r->second);
      std::printf("%-16s %14.0f %14.0f %8.2f\n", args.c_str(), batch / wal, batch / raw,
                  raw / wal);
    }
  }

 private:
  static double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }

  std::map<std::string, std::vector<double>> wal_;  // seconds per iteration, one per repetition
  std::map<std::string, std::vector<double>> raw_;
  std::vector<std::string> order_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const std::vector<std::pair<int, int>> cases = {
      {1, 128}, {1, 4096}, {16, 128}, {16, 4096}, {256, 128}, {256, 4096}};
  std::map<std::string, int> batch_of;
  for (const auto& [batch, payload] : cases) {
    batch_of[absl::StrCat(batch, "/", payload)] = batch;
    // Interleaved, WAL then raw for each case, so that a ratio compares neighbours in time.
    benchmark::RegisterBenchmark("BM_WalAppendSync", BM_WalAppendSync)
        ->Args({batch, payload})
        ->UseRealTime();
    benchmark::RegisterBenchmark("BM_RawWriteFdatasync", BM_RawWriteFdatasync)
        ->Args({batch, payload})
        ->UseRealTime();
  }
  const char* base = std::getenv("TEST_TMPDIR");
  benchmark::AddCustomContext("wal_dir_base", base ? base : "/tmp");
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios(batch_of);
  benchmark::Shutdown();
  return 0;
}
