// Copyright e2d authors.
//
// The KvEngine contract (engine.h), run against every engine: MemEngine and RocksDbEngine.
// The crash model is tested for each the way it can crash: MemEngine through Crash(keep) for
// every prefix; RocksDB by killing a child process that is writing, with SIGKILL.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv/mem_engine.h"
#include "kv/rocksdb_engine.h"

namespace e2d::kv {
namespace {

std::string TempDir(std::string name) {
  std::replace(name.begin(), name.end(), '/', '_');  // parameterized test names hold slashes
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(base ? base : "/tmp", "/engine_", name, "_", ::getpid());
  const std::string cmd = absl::StrCat("rm -rf '", dir, "'");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

struct EngineKind {
  std::string name;
  // A fresh engine; `reopen` closes it (after a Sync) and opens what is durable again.
  std::function<std::unique_ptr<KvEngine>(const std::string& dir)> open;
  std::function<std::unique_ptr<KvEngine>(std::unique_ptr<KvEngine>, const std::string& dir)>
      reopen;
};

EngineKind Mem() {
  return {"mem", [](const std::string&) { return std::make_unique<MemEngine>(); },
          [](std::unique_ptr<KvEngine> e, const std::string&) {
            static_cast<MemEngine*>(e.get())->Crash(0);
            return e;
          }};
}

EngineKind Rocks() {
  return {"rocksdb",
          [](const std::string& dir) -> std::unique_ptr<KvEngine> {
            auto e = RocksDbEngine::Open(dir);
            EXPECT_TRUE(e.ok()) << e.status();
            return std::move(*e);
          },
          [](std::unique_ptr<KvEngine> e, const std::string& dir) -> std::unique_ptr<KvEngine> {
            e.reset();
            auto again = RocksDbEngine::Open(dir);
            EXPECT_TRUE(again.ok()) << again.status();
            return std::move(*again);
          }};
}

class EngineContractTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  void SetUp() override {
    dir_ = TempDir(absl::StrCat(GetParam().name, "_",
                                ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    engine_ = GetParam().open(dir_);
  }
  std::string GetOr(std::string_view key, std::string none = "<none>") {
    auto v = engine_->Get(key);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() && *v ? **v : none;
  }
  std::string dir_;
  std::unique_ptr<KvEngine> engine_;
};

TEST_P(EngineContractTest, BatchesApplyInOrderAndAtOnce) {
  WriteBatch b;
  b.Put("a", "1");
  b.Put("b", "2");
  b.Delete("a");
  b.Put("c", std::string("\0x\xff", 3));
  ASSERT_TRUE(engine_->Write(b).ok());
  EXPECT_EQ(GetOr("a"), "<none>");
  EXPECT_EQ(GetOr("b"), "2");
  EXPECT_EQ(GetOr("c"), std::string("\0x\xff", 3));
}

TEST_P(EngineContractTest, ScansAreOrderedBoundedAndSeeASnapshot) {
  WriteBatch b;
  for (const std::string& k :
       std::vector<std::string>{"k3", "k1", "k2", "m", std::string("k\0", 2)}) {
    b.Put(k, "v" + k);
  }
  ASSERT_TRUE(engine_->Write(b).ok());
  std::unique_ptr<KvIterator> it = engine_->Scan("k", "l");
  WriteBatch later;
  later.Put("k0", "new");
  later.Delete("k2");
  ASSERT_TRUE(engine_->Write(later).ok());
  std::vector<std::string> keys;
  for (; it->Valid(); it->Next()) keys.emplace_back(it->key());
  EXPECT_TRUE(it->status().ok());
  EXPECT_EQ(keys, (std::vector<std::string>{std::string("k\0", 2), "k1", "k2", "k3"}));
  auto all = engine_->Checkpoint();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 5u);  // k\0 k0 k1 k3 m
  EXPECT_EQ((*all)[1].first, "k0");
}

TEST_P(EngineContractTest, SyncedBatchesSurviveAReopen) {
  for (int i = 0; i < 100; ++i) {
    WriteBatch b;
    b.Put(absl::StrCat("key", i), absl::StrCat(i));
    ASSERT_TRUE(engine_->Write(b).ok());
  }
  ASSERT_TRUE(engine_->Sync().ok());
  engine_ = GetParam().reopen(std::move(engine_), dir_);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(GetOr(absl::StrCat("key", i)), absl::StrCat(i));
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineContractTest, ::testing::Values(Mem(), Rocks()),
                         [](const auto& info) { return info.param.name; });

// MemEngine: after a crash, the durable state plus exactly a prefix of the unsynced batches.
TEST(MemEngineCrashTest, EveryPrefixOfUnsyncedBatches) {
  for (size_t keep = 0; keep <= 3; ++keep) {
    MemEngine e;
    WriteBatch synced;
    synced.Put("s", "1");
    ASSERT_TRUE(e.Write(synced).ok());
    ASSERT_TRUE(e.Sync().ok());
    for (int i = 0; i < 3; ++i) {
      WriteBatch b;
      b.Put(absl::StrCat("u", i, "a"), "x");
      b.Put(absl::StrCat("u", i, "b"), "x");
      ASSERT_TRUE(e.Write(b).ok());
    }
    e.Crash(keep);
    EXPECT_TRUE(*e.Get("s"));
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(e.Get(absl::StrCat("u", i, "a"))->has_value(), i < keep);
      EXPECT_EQ(e.Get(absl::StrCat("u", i, "b"))->has_value(), i < keep);
    }
  }
}

// RocksDB: a child process writes two-key batches, syncing every 10 and reporting each sync on
// a pipe, and is killed mid-stream. Reopened, the database holds whole batches 0..m with no gap,
// and m covers every batch reported synced.
TEST(RocksDbCrashTest, AKilledWriterLeavesWholeBatchesAndEverySyncedOne) {
  const std::string dir = TempDir("rocks_kill");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto e = RocksDbEngine::Open(dir);
    if (!e.ok()) ::_exit(3);
    for (int i = 0;; ++i) {
      WriteBatch b;
      b.Put(absl::StrCat("b", 100000 + i, "a"), std::string(100, 'x'));
      b.Put(absl::StrCat("b", 100000 + i, "b"), std::string(100, 'y'));
      if (!(*e)->Write(b).ok()) ::_exit(4);
      if (i % 10 == 9) {
        if (!(*e)->Sync().ok()) ::_exit(5);
        const int32_t done = i;
        if (::write(fds[1], &done, sizeof(done)) != sizeof(done)) ::_exit(6);
      }
    }
  }
  ::close(fds[1]);
  int32_t synced = -1;
  while (synced < 500) {
    ASSERT_EQ(::read(fds[0], &synced, sizeof(synced)), static_cast<ssize_t>(sizeof(synced)));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ::close(fds[0]);
  auto e = RocksDbEngine::Open(dir);
  ASSERT_TRUE(e.ok()) << e.status();
  auto all = (*e)->Checkpoint();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size() % 2, 0u) << "a torn batch";
  const int batches = static_cast<int>(all->size() / 2);
  for (int i = 0; i < batches; ++i) {
    EXPECT_EQ((*all)[2 * i].first, absl::StrCat("b", 100000 + i, "a"));
    EXPECT_EQ((*all)[2 * i + 1].first, absl::StrCat("b", 100000 + i, "b"));
  }
  EXPECT_GT(batches, synced);
}

}  // namespace
}  // namespace e2d::kv
