// Copyright e2d authors.

#include "sim/sim_disk.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kSecondNs = 1'000'000'000;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// Starts a sync through `start`, checks that its callback does not run inline, runs the
// simulator until it has run, and returns the status it got.
absl::Status AwaitSync(Simulator& sim, const std::function<void(env::SyncCallback)>& start) {
  bool done = false;
  absl::Status result = absl::UnknownError("callback never ran");
  start([&done, &result](absl::Status status) {
    EXPECT_FALSE(done) << "sync callback ran twice";
    done = true;
    result = std::move(status);
  });
  EXPECT_FALSE(done) << "sync callback ran inline";
  EXPECT_TRUE(sim.RunUntilTrue([&done] { return done; }, sim.now_ns() + 10 * kSecondNs));
  return result;
}

std::unique_ptr<env::File> MustOpen(env::FileSystem& fs, std::string_view path,
                                    env::OpenOptions options = {.create = true}) {
  absl::StatusOr<std::unique_ptr<env::File>> file = fs.Open(path, options);
  EXPECT_TRUE(file.ok()) << path << ": " << file.status();
  return file.ok() ? std::move(*file) : nullptr;
}

std::string ReadAll(env::File& file) {
  absl::StatusOr<uint64_t> size = file.Size();
  EXPECT_TRUE(size.ok()) << size.status();
  absl::StatusOr<std::string> data = file.ReadAt(0, size.ok() ? *size : 0);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : std::string();
}

class SimDiskTest : public ::testing::Test {
 protected:
  SimDiskTest() : sim_(42), node_(sim_.AddNode()), disk_(sim_, node_, sim_.ForkRandom("disk")) {}

  env::FileSystem& fs() { return disk_.fs(); }
  absl::Status Sync(env::File& file) {
    return AwaitSync(sim_, [&file](env::SyncCallback done) { file.Sync(std::move(done)); });
  }
  absl::Status SyncDir(std::string_view dir) {
    return AwaitSync(sim_, [this, dir](env::SyncCallback done) {
      fs().SyncDir(dir, std::move(done));
    });
  }
  // Creates `path` holding `data`, with data and directory entry durable.
  void WriteDurable(std::string_view path, std::string_view data) {
    std::unique_ptr<env::File> file = MustOpen(fs(), path);
    ASSERT_TRUE(file->Append(data).ok());
    ASSERT_TRUE(Sync(*file).ok());
    const size_t slash = path.rfind('/');
    ASSERT_TRUE(SyncDir(slash == std::string_view::npos ? "" : path.substr(0, slash)).ok());
  }

  Simulator sim_;
  NodeId node_;
  SimDisk disk_;
};

// ---- Basics and errors ----

TEST_F(SimDiskTest, WriteReadSizeTruncate) {
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(f->Append("hello").ok());
  ASSERT_TRUE(f->WriteAt(8, "xy").ok());  // past the end: the gap reads as zeros
  EXPECT_EQ(*f->Size(), 10u);
  EXPECT_EQ(*f->ReadAt(0, 100), std::string("hello\0\0\0xy", 10));
  EXPECT_EQ(*f->ReadAt(3, 3), std::string("lo\0", 3));
  EXPECT_EQ(*f->ReadAt(10, 5), "");
  EXPECT_EQ(*f->ReadAt(1000, 5), "");
  ASSERT_TRUE(f->WriteAt(1, "EL").ok());
  EXPECT_EQ(*f->ReadAt(0, 5), "hELlo");
  ASSERT_TRUE(f->Truncate(3).ok());
  EXPECT_EQ(ReadAll(*f), "hEL");
  ASSERT_TRUE(f->Truncate(5).ok());
  EXPECT_EQ(ReadAll(*f), std::string("hEL\0\0", 5));
  EXPECT_EQ(disk_.LiveContents("f"), std::string("hEL\0\0", 5));
  EXPECT_EQ(disk_.used_bytes(), 5u);
  // A second handle sees the same file.
  std::unique_ptr<env::File> g = MustOpen(fs(), "f", {});
  ASSERT_TRUE(g->Append("!").ok());
  EXPECT_EQ(*f->Size(), 6u);
}

TEST_F(SimDiskTest, OpenErrors) {
  absl::StatusOr<std::unique_ptr<env::File>> missing = fs().Open("nope", {});
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(Message(missing.status()), HasSubstr("nope"));
  MustOpen(fs(), "f")->Append("abc").IgnoreError();
  absl::StatusOr<std::unique_ptr<env::File>> excl =
      fs().Open("f", {.create = true, .exclusive = true});
  EXPECT_TRUE(absl::IsAlreadyExists(excl.status())) << excl.status();
  absl::StatusOr<std::unique_ptr<env::File>> orphan = fs().Open("no/f", {.create = true});
  EXPECT_TRUE(absl::IsFailedPrecondition(orphan.status())) << orphan.status();
  EXPECT_TRUE(absl::IsNotFound(fs().Open("no/f", {}).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Open("f/x", {.create = true}).status()));
  ASSERT_TRUE(fs().CreateDir("d").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Open("d", {.create = true}).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Open("", {.create = true}).status()));
  // Truncate on open discards the contents.
  std::unique_ptr<env::File> t = MustOpen(fs(), "f", {.truncate = true});
  EXPECT_EQ(*t->Size(), 0u);
  EXPECT_EQ(disk_.used_bytes(), 0u);
}

TEST_F(SimDiskTest, BadPathsAreInvalidArgument) {
  for (std::string_view bad : {"/a", "a/", "a//b", "../x", "./a", "a/../b", "a/.", "/"}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(fs().Open(bad, {.create = true}).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().CreateDir(bad)));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().Remove(bad)));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().Rename(bad, "x")));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().Rename("x", bad)));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().List(bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(fs().Exists(bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(SyncDir(bad)));
    EXPECT_TRUE(absl::IsInvalidArgument(disk_.InjectReadError(bad, 0, 1)));
  }
  EXPECT_THAT(*fs().List(""), IsEmpty());
}

TEST_F(SimDiskTest, DirectoryOperations) {
  EXPECT_TRUE(fs().CreateDir("").ok());  // the root always exists
  ASSERT_TRUE(fs().CreateDir("d").ok());
  EXPECT_TRUE(fs().CreateDir("d").ok());  // already a directory: fine
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().CreateDir("x/y")));
  MustOpen(fs(), "d/b");
  MustOpen(fs(), "d/a");
  MustOpen(fs(), "f");
  EXPECT_TRUE(absl::IsAlreadyExists(fs().CreateDir("f")));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().CreateDir("f/x")));
  EXPECT_THAT(*fs().List(""), ElementsAre("d", "f"));
  EXPECT_THAT(*fs().List("d"), ElementsAre("a", "b"));
  EXPECT_TRUE(absl::IsNotFound(fs().List("zz").status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().List("f").status()));
  EXPECT_TRUE(*fs().Exists(""));
  EXPECT_TRUE(*fs().Exists("d/a"));
  EXPECT_FALSE(*fs().Exists("d/c"));
  EXPECT_FALSE(*fs().Exists("f/x"));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Remove("d")));  // not empty
  EXPECT_TRUE(absl::IsNotFound(fs().Remove("d/c")));
  EXPECT_TRUE(absl::IsInvalidArgument(fs().Remove("")));
  EXPECT_TRUE(absl::IsUnimplemented(fs().Rename("d", "e")));
  EXPECT_TRUE(absl::IsNotFound(fs().Rename("d/c", "e")));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Rename("f", "d")));
  EXPECT_TRUE(absl::IsFailedPrecondition(fs().Rename("f", "nodir/f")));
  ASSERT_TRUE(fs().Rename("d/a", "d/b").ok());  // replaces the target
  EXPECT_THAT(*fs().List("d"), ElementsAre("b"));
  ASSERT_TRUE(fs().Rename("d/b", "g").ok());
  EXPECT_TRUE(fs().Rename("g", "g").ok());
  EXPECT_THAT(*fs().List(""), ElementsAre("d", "f", "g"));
  ASSERT_TRUE(fs().Remove("d").ok());
  ASSERT_TRUE(fs().Remove("f").ok());
  EXPECT_THAT(*fs().List(""), ElementsAre("g"));
}

TEST_F(SimDiskTest, OffsetsBeyondMaxFileSizeAreRejected) {
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  EXPECT_TRUE(absl::IsOutOfRange(f->WriteAt(UINT64_MAX - 1, "abc")));
  EXPECT_TRUE(absl::IsOutOfRange(f->Truncate(UINT64_MAX)));
  EXPECT_EQ(*f->Size(), 0u);
}

// ---- Durability ----

TEST_F(SimDiskTest, UnsyncedDataLostOnCrashWithoutTear) {
  disk_.faults().tear_on_crash = false;
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(SyncDir("").ok());
  ASSERT_TRUE(f->Append("durable").ok());
  ASSERT_TRUE(Sync(*f).ok());
  ASSERT_TRUE(f->Append("-volatile").ok());
  ASSERT_TRUE(f->WriteAt(0, "D").ok());
  EXPECT_EQ(disk_.LiveContents("f"), "Durable-volatile");
  EXPECT_EQ(disk_.DurableContents("f"), "durable");
  const CrashReport report = disk_.Crash();
  EXPECT_EQ(report.pending_ops_lost, 2u);
  EXPECT_EQ(report.pending_ops_kept, 0u);
  EXPECT_EQ(report.torn_writes, 0u);
  EXPECT_EQ(disk_.LiveContents("f"), "durable");
  EXPECT_EQ(disk_.used_bytes(), 7u);
}

TEST_F(SimDiskTest, SyncedDataSurvivesCrashEvenWithTearing) {
  disk_.faults().tear_on_crash = true;
  WriteDurable("f", std::string(5000, 'x'));
  ASSERT_TRUE(fs().CreateDir("d").ok());
  ASSERT_TRUE(SyncDir("").ok());
  WriteDurable("d/g", "nested");
  disk_.Crash();
  std::unique_ptr<env::File> f = MustOpen(fs(), "f", {});
  EXPECT_EQ(ReadAll(*f), std::string(5000, 'x'));
  EXPECT_EQ(disk_.LiveContents("d/g"), "nested");
}

TEST_F(SimDiskTest, SyncCoversOnlyWritesIssuedBeforeIt) {
  disk_.faults().tear_on_crash = false;
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(SyncDir("").ok());
  ASSERT_TRUE(f->Append("before").ok());
  bool done = false;
  f->Sync([&done](absl::Status status) {
    EXPECT_TRUE(status.ok());
    done = true;
  });
  ASSERT_TRUE(f->Append("-after").ok());  // issued while the sync is in flight
  ASSERT_TRUE(sim_.RunUntilTrue([&done] { return done; }, 10 * kSecondNs));
  EXPECT_EQ(disk_.DurableContents("f"), "before");
  disk_.Crash();
  EXPECT_EQ(disk_.LiveContents("f"), "before");
}

TEST_F(SimDiskTest, CreatedFileNeedsSyncDirToSurvive) {
  disk_.faults().tear_on_crash = false;
  std::unique_ptr<env::File> a = MustOpen(fs(), "a");
  ASSERT_TRUE(a->Append("data").ok());
  ASSERT_TRUE(Sync(*a).ok());  // the data is durable, the name is not
  ASSERT_TRUE(fs().CreateDir("d").ok());
  ASSERT_TRUE(SyncDir("").ok());  // makes "a" and "d" durable
  std::unique_ptr<env::File> b = MustOpen(fs(), "b");
  ASSERT_TRUE(b->Append("data").ok());
  ASSERT_TRUE(Sync(*b).ok());
  std::unique_ptr<env::File> x = MustOpen(fs(), "d/x");
  ASSERT_TRUE(SyncDir("").ok());  // not "d": d/x stays volatile
  std::unique_ptr<env::File> c = MustOpen(fs(), "c");
  ASSERT_TRUE(c->Append("data").ok());
  ASSERT_TRUE(Sync(*c).ok());
  const CrashReport report = disk_.Crash();
  EXPECT_EQ(report.entries_reverted, 2u);  // "c" and "d/x"
  EXPECT_THAT(*fs().List(""), ElementsAre("a", "b", "d"));
  EXPECT_THAT(*fs().List("d"), IsEmpty());
  EXPECT_EQ(disk_.LiveContents("b"), "data");
  EXPECT_FALSE(*fs().Exists("c"));
  EXPECT_EQ(disk_.used_bytes(), 8u);
}

TEST_F(SimDiskTest, RemoveIsDurableOnlyAfterSyncDir) {
  disk_.faults().tear_on_crash = false;
  WriteDurable("f", "keep");
  ASSERT_TRUE(fs().Remove("f").ok());
  EXPECT_FALSE(*fs().Exists("f"));
  EXPECT_EQ(disk_.used_bytes(), 0u);
  EXPECT_EQ(disk_.DurableContents("f"), "keep");
  disk_.Crash();
  EXPECT_EQ(disk_.LiveContents("f"), "keep");  // the removal was not durable
  ASSERT_TRUE(fs().Remove("f").ok());
  ASSERT_TRUE(SyncDir("").ok());
  disk_.Crash();
  EXPECT_FALSE(*fs().Exists("f"));
}

TEST_F(SimDiskTest, RecreatedDirectoryDoesNotReviveOldEntries) {
  disk_.faults().tear_on_crash = false;
  ASSERT_TRUE(fs().CreateDir("d").ok());
  ASSERT_TRUE(SyncDir("").ok());
  WriteDurable("d/x", "old");
  ASSERT_TRUE(fs().Remove("d/x").ok());
  ASSERT_TRUE(fs().Remove("d").ok());
  ASSERT_TRUE(SyncDir("").ok());  // "d" is durably gone, though d's own entries were not synced
  ASSERT_TRUE(fs().CreateDir("d").ok());
  ASSERT_TRUE(SyncDir("").ok());
  disk_.Crash();
  EXPECT_TRUE(*fs().Exists("d"));
  EXPECT_THAT(*fs().List("d"), IsEmpty());
}

class RenameTest : public SimDiskTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RenameTest, OldNameDurableUntilSyncDir) {
  const bool sync_dir_after_rename = GetParam();
  disk_.faults().tear_on_crash = false;
  WriteDurable("current", "old");
  WriteDurable("tmp", "new");
  ASSERT_TRUE(fs().Rename("tmp", "current").ok());
  EXPECT_EQ(disk_.LiveContents("current"), "new");
  EXPECT_FALSE(*fs().Exists("tmp"));
  EXPECT_EQ(disk_.DurableContents("current"), "old");
  EXPECT_EQ(disk_.DurableContents("tmp"), "new");
  if (sync_dir_after_rename) {
    ASSERT_TRUE(SyncDir("").ok());
  }
  disk_.Crash();
  if (sync_dir_after_rename) {
    EXPECT_EQ(disk_.LiveContents("current"), "new");
    EXPECT_FALSE(*fs().Exists("tmp"));
  } else {
    EXPECT_EQ(disk_.LiveContents("current"), "old");
    EXPECT_EQ(disk_.LiveContents("tmp"), "new");
  }
}

INSTANTIATE_TEST_SUITE_P(SyncDirOrNot, RenameTest, ::testing::Bool());

// ---- Torn writes ----

// Bytes that are never zero and depend on the absolute file offset.
std::string Pattern(uint64_t offset, size_t length) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) out[i] = static_cast<char>('a' + (offset + i) * 7 % 26);
  return out;
}

struct TornOutcome {
  bool all_applied = false;
  bool partial = false;  // the torn write kept some but not all of its sectors
  bool zero_fill = false;
  bool garbage_fill = false;
  bool full_size = false;  // the file size is the one after the whole torn write
  size_t whole = 0;  // writes applied whole
};

// Checks `got` is a legal crash outcome of `durable` plus pending appends `writes`, and says
// which one it is.
TornOutcome CheckTornOutcome(const std::string& durable,
                             const std::vector<std::pair<uint64_t, std::string>>& writes,
                             const std::string& got) {
  TornOutcome outcome;
  EXPECT_GE(got.size(), durable.size());
  EXPECT_EQ(got.substr(0, durable.size()), durable) << "durable bytes altered";
  for (const auto& [offset, data] : writes) {
    const uint64_t end = offset + data.size();
    if (got.size() >= end && got.compare(offset, data.size(), data) == 0) {
      ++outcome.whole;
      continue;
    }
    size_t match = 0;
    while (offset + match < got.size() && match < data.size() &&
           got[offset + match] == data[match]) {
      ++match;
    }
    const uint64_t first_boundary = (offset / kSectorSizeBytes + 1) * kSectorSizeBytes;
    const uint64_t cut = offset + match < first_boundary
                             ? offset
                             : (offset + match) / kSectorSizeBytes * kSectorSizeBytes;
    EXPECT_LT(offset + match - cut, 8u) << "kept bytes past a sector boundary";
    EXPECT_TRUE(got.size() == cut || got.size() == end) << got.size();
    const std::string rest = got.size() > cut ? got.substr(cut) : std::string();
    const bool zeros = rest.find_first_not_of('\0') == std::string::npos;
    outcome.zero_fill = !rest.empty() && zeros;
    outcome.garbage_fill = !rest.empty() && !zeros;
    outcome.partial = cut > offset;
    outcome.full_size = got.size() == end;
    return outcome;  // nothing after the torn write
  }
  outcome.all_applied = true;
  EXPECT_EQ(got.size(), writes.back().first + writes.back().second.size());
  return outcome;
}

TEST(SimDiskTornTest, TornWritesKeepWholeSectorsAndNeverTouchDurableBytes) {
  const std::string durable(700, 'D');  // ends mid-sector: the first write starts unaligned
  const std::vector<std::pair<uint64_t, std::string>> writes = {
      {700, Pattern(700, 3000)}, {3700, Pattern(3700, 1500)}};
  int all_applied = 0, partial = 0, zero_fill = 0, garbage_fill = 0, none_kept = 0;
  int torn_full_size = 0, torn_short_size = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE(seed);
    Simulator sim(seed);
    const NodeId node = sim.AddNode();
    SimDisk disk(sim, node, sim.ForkRandom("disk"));
    std::unique_ptr<env::File> f = MustOpen(disk.fs(), "f");
    ASSERT_TRUE(f->Append(durable).ok());
    ASSERT_TRUE(AwaitSync(sim, [&f](env::SyncCallback done) { f->Sync(std::move(done)); }).ok());
    ASSERT_TRUE(AwaitSync(sim, [&disk](env::SyncCallback done) {
                  disk.fs().SyncDir("", std::move(done));
                }).ok());
    for (const auto& [offset, data] : writes) ASSERT_TRUE(f->Append(data).ok());
    const CrashReport report = disk.Crash();
    const TornOutcome outcome = CheckTornOutcome(durable, writes, *disk.LiveContents("f"));
    EXPECT_EQ(report.pending_ops_kept, outcome.whole);
    EXPECT_EQ(report.torn_writes, outcome.all_applied ? 0u : 1u);
    EXPECT_EQ(disk.DurableContents("f"), disk.LiveContents("f"));
    all_applied += outcome.all_applied;
    partial += outcome.partial;
    zero_fill += outcome.zero_fill;
    garbage_fill += outcome.garbage_fill;
    none_kept += !outcome.all_applied && outcome.whole == 0 && !outcome.partial;
    torn_full_size += !outcome.all_applied && outcome.full_size;
    torn_short_size += !outcome.all_applied && !outcome.full_size;
  }
  EXPECT_GT(all_applied, 0);
  EXPECT_GT(partial, 10);
  EXPECT_GT(zero_fill, 0);
  EXPECT_GT(garbage_fill, 0);
  EXPECT_GT(none_kept, 0);
  EXPECT_GT(torn_full_size, 0);
  EXPECT_GT(torn_short_size, 0);
}

TEST(SimDiskTornTest, TornTruncateIsAppliedOrNot) {
  int applied = 0, not_applied = 0;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    Simulator sim(seed);
    SimDisk disk(sim, sim.AddNode(), sim.ForkRandom("disk"));
    std::unique_ptr<env::File> f = MustOpen(disk.fs(), "f");
    ASSERT_TRUE(f->Append(std::string(1000, 'x')).ok());
    ASSERT_TRUE(AwaitSync(sim, [&f](env::SyncCallback done) { f->Sync(std::move(done)); }).ok());
    ASSERT_TRUE(AwaitSync(sim, [&disk](env::SyncCallback done) {
                  disk.fs().SyncDir("", std::move(done));
                }).ok());
    ASSERT_TRUE(f->Truncate(100).ok());
    disk.Crash();
    const std::string got = *disk.LiveContents("f");
    if (got == std::string(100, 'x')) {
      ++applied;
    } else {
      EXPECT_EQ(got, std::string(1000, 'x')) << seed;
      ++not_applied;
    }
  }
  EXPECT_GT(applied, 0);
  EXPECT_GT(not_applied, 0);
}

// ---- Sync timing ----

TEST_F(SimDiskTest, SyncCompletesOnlyAfterItsLatency) {
  disk_.faults().sync_latency_ns = 1'000'000;
  disk_.faults().sync_jitter_ns = 0;
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(f->Append("x").ok());
  const int64_t start_ns = sim_.now_ns();
  int64_t done_at_ns = -1;
  f->Sync([this, &done_at_ns](absl::Status status) {
    EXPECT_TRUE(status.ok());
    done_at_ns = sim_.now_ns();
  });
  EXPECT_EQ(done_at_ns, -1) << "ran inline";
  EXPECT_EQ(disk_.DurableContents("f"), std::nullopt);  // not even the name is durable
  sim_.RunUntil(start_ns + 999'999);
  EXPECT_EQ(done_at_ns, -1) << "completed before its latency";
  sim_.RunUntil(start_ns + 1'000'000);
  EXPECT_EQ(done_at_ns, start_ns + 1'000'000);
}

TEST_F(SimDiskTest, StallDelaysCompletion) {
  disk_.faults().stall_until_ns = 50'000'000;
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  int64_t done_at_ns = -1;
  f->Sync([this, &done_at_ns](absl::Status) { done_at_ns = sim_.now_ns(); });
  ASSERT_TRUE(sim_.RunUntilTrue([&done_at_ns] { return done_at_ns >= 0; }, kSecondNs));
  EXPECT_EQ(done_at_ns, 50'000'000);

  // A stall set after the sync was issued still holds it back.
  disk_.faults().stall_until_ns = 0;
  done_at_ns = -1;
  f->Sync([this, &done_at_ns](absl::Status) { done_at_ns = sim_.now_ns(); });
  disk_.faults().stall_until_ns = sim_.now_ns() + 20'000'000;
  const int64_t stall_ns = disk_.faults().stall_until_ns;
  ASSERT_TRUE(sim_.RunUntilTrue([&done_at_ns] { return done_at_ns >= 0; }, 2 * kSecondNs));
  EXPECT_EQ(done_at_ns, stall_ns);
}

TEST_F(SimDiskTest, SyncsCompleteInFifoOrder) {
  disk_.faults().sync_latency_ns = 10'000;
  disk_.faults().sync_jitter_ns = 5'000'000;  // jitter far above latency: would reorder freely
  disk_.faults().sync_spike_probability = 0.2;
  std::vector<std::unique_ptr<env::File>> files;
  for (int i = 0; i < 4; ++i) files.push_back(MustOpen(fs(), "f" + std::to_string(i)));
  std::vector<int> order;
  std::vector<int64_t> times;
  auto record = [this, &order, &times](int i) {
    return [this, &order, &times, i](absl::Status status) {
      EXPECT_TRUE(status.ok());
      order.push_back(i);
      times.push_back(sim_.now_ns());
    };
  };
  for (int i = 0; i < 40; ++i) {
    if (i == 20) disk_.faults().stall_until_ns = sim_.now_ns() + 3'000'000;  // mid-queue stall
    if (i % 5 == 4) {
      fs().SyncDir("", record(i));
    } else {
      files[i % 4]->Append("x").IgnoreError();
      files[i % 4]->Sync(record(i));
    }
    sim_.RunUntil(sim_.now_ns() + 100'000);
  }
  sim_.RunUntil(sim_.now_ns() + 10 * kSecondNs);
  ASSERT_EQ(order.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(order[i], i);
  for (size_t i = 1; i < times.size(); ++i) EXPECT_LE(times[i - 1], times[i]);
}

// ---- Injected faults ----

TEST_F(SimDiskTest, WriteEioChangesNothing) {
  std::unique_ptr<env::File> f = MustOpen(fs(), "dir-less-file");
  ASSERT_TRUE(f->Append("abc").ok());
  disk_.faults().write_error_probability = 1;
  const uint64_t digest = sim_.digest();
  absl::Status append = f->Append("def");
  EXPECT_TRUE(absl::IsInternal(append)) << append;
  EXPECT_THAT(Message(append), HasSubstr("dir-less-file"));
  EXPECT_THAT(Message(append), HasSubstr("offset 3"));
  absl::Status write = f->WriteAt(7, "z");
  EXPECT_TRUE(absl::IsInternal(write)) << write;
  EXPECT_THAT(Message(write), HasSubstr("offset 7"));
  EXPECT_TRUE(absl::IsInternal(f->Truncate(1)));
  EXPECT_EQ(ReadAll(*f), "abc");
  EXPECT_EQ(sim_.digest(), digest);
  disk_.faults().write_error_probability = 0;
  EXPECT_TRUE(f->Append("def").ok());
  EXPECT_EQ(ReadAll(*f), "abcdef");
}

TEST_F(SimDiskTest, FailedSyncLosesDataEvenAfterLaterSuccessfulSync) {
  disk_.faults().tear_on_crash = true;  // nothing pending at the crash: tearing cannot matter
  WriteDurable("f", "a");
  std::unique_ptr<env::File> f = MustOpen(fs(), "f", {});
  ASSERT_TRUE(f->Append("b").ok());
  disk_.faults().sync_error_probability = 1;
  absl::Status failed = Sync(*f);
  EXPECT_TRUE(absl::IsInternal(failed)) << failed;
  EXPECT_THAT(Message(failed), HasSubstr("'f'"));
  EXPECT_EQ(ReadAll(*f), "ab");  // still readable
  disk_.faults().sync_error_probability = 0;
  ASSERT_TRUE(f->Append("c").ok());
  ASSERT_TRUE(Sync(*f).ok());
  EXPECT_EQ(disk_.DurableContents("f"), std::string("a\0c", 3));
  const CrashReport report = disk_.Crash();
  EXPECT_EQ(report.pending_ops_lost + report.pending_ops_kept + report.torn_writes, 0u);
  EXPECT_EQ(disk_.LiveContents("f"), std::string("a\0c", 3));  // "b" is gone for good
}

TEST_F(SimDiskTest, FailedSyncDirLeavesEntriesVolatile) {
  disk_.faults().tear_on_crash = false;
  MustOpen(fs(), "f");
  disk_.faults().sync_error_probability = 1;
  EXPECT_TRUE(absl::IsInternal(SyncDir("")));
  disk_.faults().sync_error_probability = 0;
  disk_.Crash();
  EXPECT_FALSE(*fs().Exists("f"));
}

TEST_F(SimDiskTest, EnospcRejectsWholeWriteAndChangesNothing) {
  disk_.faults().capacity_bytes = 100;
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(f->Append(std::string(60, 'a')).ok());
  const uint64_t digest = sim_.digest();
  absl::Status full = f->Append(std::string(50, 'b'));
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_THAT(Message(full), HasSubstr("'f'"));
  EXPECT_THAT(Message(full), HasSubstr("offset 60"));
  EXPECT_TRUE(absl::IsResourceExhausted(f->WriteAt(90, std::string(20, 'c'))));
  EXPECT_TRUE(absl::IsResourceExhausted(f->Truncate(101)));
  EXPECT_EQ(sim_.digest(), digest);
  EXPECT_EQ(ReadAll(*f), std::string(60, 'a'));
  EXPECT_EQ(disk_.used_bytes(), 60u);
  EXPECT_TRUE(f->WriteAt(0, std::string(60, 'z')).ok());  // overwrite: no growth
  std::unique_ptr<env::File> g = MustOpen(fs(), "g");
  ASSERT_TRUE(g->Append(std::string(40, 'g')).ok());  // exactly full
  EXPECT_EQ(disk_.used_bytes(), 100u);
  EXPECT_TRUE(absl::IsResourceExhausted(g->Append("!")));
  // An unlinked file's space comes back when its last handle closes.
  ASSERT_TRUE(fs().Remove("g").ok());
  EXPECT_EQ(disk_.used_bytes(), 100u);
  g.reset();
  EXPECT_EQ(disk_.used_bytes(), 60u);
  EXPECT_TRUE(f->Append(std::string(40, 'b')).ok());
}

TEST_F(SimDiskTest, ReadErrorsReturnDataLossNamingPathAndOffset) {
  ASSERT_TRUE(fs().CreateDir("data").ok());
  std::unique_ptr<env::File> f = MustOpen(fs(), "data/log");
  ASSERT_TRUE(f->Append(std::string(1000, 'x')).ok());
  ASSERT_TRUE(disk_.InjectReadError("data/log", 100, 10).ok());
  EXPECT_TRUE(f->ReadAt(0, 100).ok());
  EXPECT_TRUE(f->ReadAt(110, 500).ok());
  absl::StatusOr<std::string> bad = f->ReadAt(95, 10);
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_THAT(Message(bad.status()), HasSubstr("'data/log'"));
  EXPECT_THAT(Message(bad.status()), HasSubstr("offset 95"));
  EXPECT_TRUE(absl::IsDataLoss(f->ReadAt(109, 1).status()));
  EXPECT_TRUE(absl::IsNotFound(disk_.InjectReadError("data/none", 0, 1)));
  EXPECT_TRUE(absl::IsFailedPrecondition(disk_.InjectReadError("data", 0, 1)));
  disk_.ClearReadErrors();
  EXPECT_EQ(*f->ReadAt(95, 10), std::string(10, 'x'));
}

TEST_F(SimDiskTest, BitFlipSurvivesCrash) {
  WriteDurable("f", "AAAA");
  ASSERT_TRUE(disk_.FlipBit("f", 2, 0).ok());
  EXPECT_EQ(disk_.LiveContents("f"), "AA@A");
  disk_.Crash();
  EXPECT_EQ(disk_.LiveContents("f"), "AA@A");
  EXPECT_TRUE(absl::IsOutOfRange(disk_.FlipBit("f", 4, 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(disk_.FlipBit("f", 0, 8)));
  EXPECT_TRUE(absl::IsNotFound(disk_.FlipBit("g", 0, 0)));
}

// ---- Crash, wipe and handles ----

TEST_F(SimDiskTest, HandlesGoStaleAfterCrash) {
  WriteDurable("f", "abc");
  std::unique_ptr<env::File> f = MustOpen(fs(), "f", {});
  disk_.Crash();
  EXPECT_TRUE(absl::IsFailedPrecondition(f->Append("x")));
  EXPECT_TRUE(absl::IsFailedPrecondition(f->WriteAt(0, "x")));
  EXPECT_TRUE(absl::IsFailedPrecondition(f->ReadAt(0, 1).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(f->Size().status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(f->Truncate(0)));
  EXPECT_THAT(Message(f->Append("x")), HasSubstr("'f'"));
  EXPECT_TRUE(absl::IsFailedPrecondition(
      AwaitSync(sim_, [&f](env::SyncCallback done) { f->DataSync(std::move(done)); })));
  std::unique_ptr<env::File> fresh = MustOpen(fs(), "f", {});
  EXPECT_EQ(ReadAll(*fresh), "abc");
  f.reset();  // destroying a stale handle is harmless
  EXPECT_EQ(ReadAll(*fresh), "abc");
}

TEST_F(SimDiskTest, WipeLeavesAnEmptyDiskAndStaleHandles) {
  WriteDurable("f", "abc");
  ASSERT_TRUE(fs().CreateDir("d").ok());
  std::unique_ptr<env::File> f = MustOpen(fs(), "f", {});
  disk_.Wipe();
  EXPECT_THAT(*fs().List(""), IsEmpty());
  EXPECT_EQ(disk_.used_bytes(), 0u);
  EXPECT_EQ(disk_.DurableContents("f"), std::nullopt);
  EXPECT_TRUE(absl::IsFailedPrecondition(f->Append("x")));
  disk_.Crash();
  EXPECT_THAT(*fs().List(""), IsEmpty());
  EXPECT_TRUE(MustOpen(fs(), "f")->Append("new").ok());
}

TEST_F(SimDiskTest, FilesMayOutliveTheDisk) {
  std::unique_ptr<env::File> f;
  {
    SimDisk other(sim_, node_, sim_.ForkRandom("other"));
    f = MustOpen(other.fs(), "f");
    bool ran = false;
    f->Sync([&ran](absl::Status) { ran = true; });
    other.fs().SyncDir("", [&ran](absl::Status) { ran = true; });
    EXPECT_FALSE(ran);
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(f->Append("x")));
  bool ran = false;
  f->Sync([&ran](absl::Status) { ran = true; });
  sim_.RunUntil(sim_.now_ns() + kSecondNs);
  EXPECT_FALSE(ran);
}

TEST_F(SimDiskTest, SyncCallbacksNeverRunAfterCrash) {
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  ASSERT_TRUE(f->Append("x").ok());
  int ran = 0;
  f->Sync([&ran](absl::Status) { ++ran; });
  fs().SyncDir("", [&ran](absl::Status) { ++ran; });
  fs().SyncDir("missing", [&ran](absl::Status) { ++ran; });  // an error, also deferred
  EXPECT_GT(sim_.pending(), 0u);
  disk_.Crash();  // the disk alone, without sim_.Crash(node_): its own guard must hold
  sim_.RunUntil(sim_.now_ns() + kSecondNs);
  EXPECT_EQ(ran, 0);
  EXPECT_FALSE(*fs().Exists("f"));

  // And with the simulator's crash too, as the cluster harness does.
  std::unique_ptr<env::File> g = MustOpen(fs(), "g");
  g->Sync([&ran](absl::Status) { ++ran; });
  sim_.Crash(node_);
  disk_.Crash();
  sim_.RunUntil(sim_.now_ns() + kSecondNs);
  EXPECT_EQ(ran, 0);
  // Syncs issued after the crash work again.
  std::unique_ptr<env::File> h = MustOpen(fs(), "h");
  EXPECT_TRUE(Sync(*h).ok());
}

TEST_F(SimDiskTest, CallbackMayCrashTheDiskWithoutLaterCallbacksRunning) {
  std::unique_ptr<env::File> f = MustOpen(fs(), "f");
  int ran = 0;
  f->Sync([this, &ran](absl::Status) {
    ++ran;
    disk_.Crash();
  });
  // A stall set now pushes the first sync back to the second one's due time, and the second's
  // event (queued first) completes both: the crash in the first callback must stop the second.
  disk_.faults().stall_until_ns = 1'000'000;
  f->Sync([&ran](absl::Status) { ran += 10; });
  sim_.RunUntil(kSecondNs);
  EXPECT_EQ(ran, 1);
}

// ---- Determinism ----

struct RunResult {
  uint64_t digest;
  std::string contents;
};

RunResult RunScenario(uint64_t seed, std::string_view payload) {
  Simulator sim(seed);
  const NodeId node = sim.AddNode();
  SimDisk disk(sim, node, sim.ForkRandom("disk/1"));
  disk.faults().sync_spike_probability = 0.3;
  disk.faults().sync_error_probability = 0.2;
  std::unique_ptr<env::File> f = MustOpen(disk.fs(), "log");
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(f->Append(std::string(payload) + std::string(300, static_cast<char>('a' + i)))
                    .ok());
    if (i % 3 == 0) f->Sync([](absl::Status) {});
    if (i % 7 == 0) disk.fs().SyncDir("", [](absl::Status) {});
    sim.RunUntil(sim.now_ns() + 150'000);
  }
  EXPECT_TRUE(disk.fs().Rename("log", "log2").ok());
  disk.Crash();
  sim.RunUntil(sim.now_ns() + kSecondNs);
  std::optional<std::string> contents = disk.LiveContents("log");
  if (!contents.has_value()) contents = disk.LiveContents("log2");
  return RunResult{sim.digest(), contents.value_or("<none>")};
}

TEST(SimDiskDeterminismTest, SameSeedSameDigest) {
  const RunResult a = RunScenario(7, "p");
  const RunResult b = RunScenario(7, "p");
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(a.contents, b.contents);
  EXPECT_NE(RunScenario(8, "p").digest, a.digest);
  EXPECT_NE(RunScenario(7, "q").digest, a.digest);  // the written data is in the digest
}

}  // namespace
}  // namespace e2d::sim
