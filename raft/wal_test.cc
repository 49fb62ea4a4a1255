// Copyright e2d authors.

#include "raft/wal.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "env/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/sim_disk.h"
#include "sim/simulator.h"

namespace e2d::raft {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int64_t kSecondNs = 1'000'000'000;
constexpr uint64_t kHeaderBytes = 20;  // as wal.h lays it out

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// ---- Test data ----

raftpb::Entry MakeEntry(uint64_t index, uint64_t term, std::string data) {
  raftpb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_data(std::move(data));
  return entry;
}

// Entries first..last of `term`, each with `data_bytes` bytes that depend on index and term.
std::vector<raftpb::Entry> Entries(uint64_t first, uint64_t last, uint64_t term,
                                   size_t data_bytes = 16) {
  std::vector<raftpb::Entry> entries;
  for (uint64_t i = first; i <= last; ++i) {
    std::string data(data_bytes, '\0');
    for (size_t k = 0; k < data_bytes; ++k) {
      data[k] = static_cast<char>('a' + (i * 7 + term + k) % 26);
    }
    entries.push_back(MakeEntry(i, term, std::move(data)));
  }
  return entries;
}

raftpb::HardState MakeHardState(uint64_t term, uint64_t vote, uint64_t commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

using EntryKey = std::tuple<uint64_t, uint64_t, std::string>;

std::vector<EntryKey> Keys(const std::vector<raftpb::Entry>& entries) {
  std::vector<EntryKey> keys;
  for (const raftpb::Entry& e : entries) keys.emplace_back(e.index(), e.term(), e.data());
  return keys;
}

std::optional<std::tuple<uint64_t, uint64_t, uint64_t>> HsKey(
    const std::optional<raftpb::HardState>& hs) {
  if (!hs.has_value()) return std::nullopt;
  return std::make_tuple(hs->term(), hs->vote(), hs->commit());
}

std::optional<std::pair<uint64_t, uint64_t>> MarkerKey(const std::optional<SnapshotMarker>& m) {
  if (!m.has_value()) return std::nullopt;
  return std::make_pair(m->index, m->term);
}

// ---- A file system that counts syncs ----

struct SyncCounts {
  int data_syncs = 0;  // Sync and DataSync of files
  int dir_syncs = 0;
};

class CountingFile final : public env::File {
 public:
  CountingFile(std::unique_ptr<env::File> base, SyncCounts* counts)
      : base_(std::move(base)), counts_(counts) {}
  absl::Status Append(std::string_view data) override { return base_->Append(data); }
  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    return base_->WriteAt(offset, data);
  }
  absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t n) override {
    return base_->ReadAt(offset, n);
  }
  absl::StatusOr<uint64_t> Size() override { return base_->Size(); }
  absl::Status Truncate(uint64_t size) override { return base_->Truncate(size); }
  void Sync(env::SyncCallback done) override {
    ++counts_->data_syncs;
    base_->Sync(std::move(done));
  }
  void DataSync(env::SyncCallback done) override {
    ++counts_->data_syncs;
    base_->DataSync(std::move(done));
  }

 private:
  std::unique_ptr<env::File> base_;
  SyncCounts* counts_;
};

class CountingFs final : public env::FileSystem {
 public:
  CountingFs(env::FileSystem& base, SyncCounts* counts) : base_(base), counts_(counts) {}
  absl::StatusOr<std::unique_ptr<env::File>> Open(std::string_view path,
                                                  const env::OpenOptions& options) override {
    absl::StatusOr<std::unique_ptr<env::File>> file = base_.Open(path, options);
    if (!file.ok()) return file.status();
    return std::unique_ptr<env::File>(new CountingFile(std::move(*file), counts_));
  }
  absl::Status CreateDir(std::string_view path) override { return base_.CreateDir(path); }
  absl::Status Rename(std::string_view from, std::string_view to) override {
    return base_.Rename(from, to);
  }
  absl::Status Remove(std::string_view path) override { return base_.Remove(path); }
  absl::StatusOr<std::vector<std::string>> List(std::string_view dir) override {
    return base_.List(dir);
  }
  absl::StatusOr<bool> Exists(std::string_view path) override { return base_.Exists(path); }
  void SyncDir(std::string_view dir, env::SyncCallback done) override {
    ++counts_->dir_syncs;
    base_.SyncDir(dir, std::move(done));
  }

 private:
  env::FileSystem& base_;
  SyncCounts* counts_;
};

// ---- Harness ----

// One simulated node's disk.
struct Rig {
  explicit Rig(uint64_t seed)
      : sim(seed),
        node(sim.AddNode()),
        disk(sim, node, sim.ForkRandom("disk")),
        fs(disk.fs(), &counts) {}

  sim::Simulator sim;
  sim::NodeId node;
  sim::SimDisk disk;
  SyncCounts counts;
  CountingFs fs;
};

// Syncs `wal`, checks that the callback runs once and not inline, and returns its status.
absl::Status AwaitSync(Rig& rig, Wal& wal) {
  int calls = 0;
  absl::Status result = absl::UnknownError("callback never ran");
  wal.Sync([&calls, &result](absl::Status status) {
    ++calls;
    result = std::move(status);
  });
  EXPECT_EQ(calls, 0) << "sync callback ran inline";
  EXPECT_TRUE(rig.sim.RunUntilTrue([&calls] { return calls > 0; }, rig.sim.now_ns() + kSecondNs));
  rig.sim.RunUntil(rig.sim.now_ns() + 10'000'000);  // nothing else may call it
  EXPECT_EQ(calls, 1);
  return result;
}

// The segment files in `dir`, in order.
std::vector<std::string> Segments(Rig& rig, const std::string& dir) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<std::string>> names = rig.disk.fs().List(dir);
  if (!names.ok()) return out;
  for (const std::string& name : *names) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".wal") out.push_back(dir + "/" + name);
  }
  return out;
}

// The offsets of the records in a segment's bytes (framing only, no checks).
std::vector<uint64_t> RecordOffsets(const std::string& data) {
  std::vector<uint64_t> offsets;
  uint64_t at = 0;
  while (at + kHeaderBytes <= data.size()) {
    offsets.push_back(at);
    uint64_t length = 0;
    for (int i = 3; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(data[at + 4 + i]);
    at += (kHeaderBytes + length + 7) / 8 * 8;
  }
  return offsets;
}

uint64_t FileSize(Rig& rig, const std::string& path) {
  return rig.disk.LiveContents(path).value_or("").size();
}

class WalTest : public ::testing::Test {
 protected:
  WalTest() : rig_(42) {}

  absl::StatusOr<std::unique_ptr<Wal>> Open(WalContents* contents) {
    return Wal::Open(rig_.fs, options_, contents);
  }
  std::unique_ptr<Wal> MustOpen(WalContents* contents) {
    absl::StatusOr<std::unique_ptr<Wal>> wal = Open(contents);
    EXPECT_TRUE(wal.ok()) << wal.status();
    return wal.ok() ? std::move(*wal) : nullptr;
  }
  // Appends and syncs, expecting success.
  void AppendSynced(Wal& wal, const std::vector<raftpb::Entry>& entries,
                    const raftpb::HardState* hs = nullptr) {
    ASSERT_TRUE(wal.Append(entries, hs).ok());
    ASSERT_TRUE(AwaitSync(rig_, wal).ok());
  }
  std::vector<std::string> Segments() { return raft::Segments(rig_, options_.dir); }

  Rig rig_;
  WalOptions options_;
};

// ---- Basics ----

TEST_F(WalTest, AppendSyncReopen) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(contents.entries.empty());
  EXPECT_FALSE(contents.hard_state.has_value());
  EXPECT_EQ(wal->last_index(), 0u);
  const raftpb::HardState hs = MakeHardState(3, 2, 4);
  AppendSynced(*wal, Entries(1, 5, 3), &hs);
  EXPECT_EQ(wal->last_index(), 5u);
  wal.reset();

  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 5, 3)));
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(hs));
  EXPECT_FALSE(contents.snapshot.has_value());
  EXPECT_EQ(contents.torn_bytes_cut, 0u);
  EXPECT_EQ(wal->last_index(), 5u);
  // Appending continues after a reopen, and a crash keeps what was synced.
  AppendSynced(*wal, Entries(6, 7, 4));
  rig_.disk.Crash();
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  std::vector<raftpb::Entry> want = Entries(1, 5, 3);
  for (const raftpb::Entry& e : Entries(6, 7, 4)) want.push_back(e);
  EXPECT_EQ(Keys(contents.entries), Keys(want));
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(hs));
}

TEST_F(WalTest, TheFirstSyncMakesWhatOpenCreatedDurable) {
  rig_.disk.faults().tear_on_crash = false;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  ASSERT_TRUE(wal->Append(Entries(1, 2, 1), nullptr).ok());
  rig_.disk.Crash();  // before any sync: the directory itself is gone
  wal.reset();
  EXPECT_FALSE(*rig_.disk.fs().Exists("wal"));
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(contents.entries.empty());
  AppendSynced(*wal, Entries(1, 2, 1));  // syncs the segment, the directory and its parent
  rig_.disk.Crash();
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 2, 1)));
}

TEST_F(WalTest, RecordLayoutMatchesTheHeader) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  AppendSynced(*wal, Entries(1, 1, 1, 3));
  const std::vector<std::string> segments = Segments();
  ASSERT_THAT(segments, SizeIs(1));
  EXPECT_EQ(segments[0], "wal/0000000000000001-0000000000000001.wal");
  const std::string data = *rig_.disk.LiveContents(segments[0]);
  const std::string payload = Entries(1, 1, 1, 3)[0].SerializeAsString();
  ASSERT_EQ(data.size(), (kHeaderBytes + payload.size() + 7) / 8 * 8);
  EXPECT_EQ(static_cast<uint8_t>(data[4]), payload.size());  // length, little-endian
  EXPECT_EQ(data.substr(5, 3), std::string(3, '\0'));
  EXPECT_EQ(data[8], 1);  // type: entry
  EXPECT_EQ(data.substr(9, 3), std::string(3, '\0'));
  EXPECT_EQ(data[12], 1);  // sequence number 1
  EXPECT_EQ(data.substr(13, 7), std::string(7, '\0'));
  EXPECT_EQ(data.substr(kHeaderBytes, payload.size()), payload);
}

TEST_F(WalTest, OverwriteDropsTheConflictingSuffix) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  AppendSynced(*wal, Entries(1, 10, 1));
  AppendSynced(*wal, Entries(6, 8, 2));
  EXPECT_EQ(wal->last_index(), 8u);
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  std::vector<raftpb::Entry> want = Entries(1, 5, 1);
  for (const raftpb::Entry& e : Entries(6, 8, 2)) want.push_back(e);
  EXPECT_EQ(Keys(contents.entries), Keys(want));
  EXPECT_EQ(wal->last_index(), 8u);
}

TEST_F(WalTest, AppendRejectsGapsAndChangesNothing) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(2, 3, 1), nullptr)));  // log is empty
  ASSERT_TRUE(wal->Append(Entries(1, 5, 1), nullptr).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(7, 8, 1), nullptr)));
  std::vector<raftpb::Entry> holey = Entries(6, 7, 1);
  holey.push_back(MakeEntry(9, 1, "x"));
  const raftpb::HardState hs = MakeHardState(1, 0, 0);
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(holey, &hs)));
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append({MakeEntry(0, 1, "")}, nullptr)));
  EXPECT_EQ(wal->last_index(), 5u);
  EXPECT_FALSE(wal->failed());
  ASSERT_TRUE(AwaitSync(rig_, *wal).ok());
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 5, 1)));
  EXPECT_FALSE(contents.hard_state.has_value());  // the refused batch's hard state is not there
}

TEST_F(WalTest, RecordsAboveTheBoundAreRefused) {
  options_.record_bytes_max = 100;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(1, 1, 1, 200), nullptr)));
  EXPECT_TRUE(wal->Append(Entries(1, 1, 1, 50), nullptr).ok());
  options_.record_bytes_max = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(Open(&contents).status()));
}

TEST_F(WalTest, SegmentsRollOverAndReopenReadsThemAll) {
  options_.segment_size_bytes_max = 256;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  raftpb::HardState hs = MakeHardState(1, 0, 0);
  AppendSynced(*wal, {}, &hs);  // so that every later segment starts with one
  for (uint64_t first = 1; first <= 100; first += 10) {
    hs = MakeHardState(2, 1, first);
    AppendSynced(*wal, Entries(first, first + 9, 2, 40), &hs);
  }
  const std::vector<std::string> segments = Segments();
  EXPECT_GE(segments.size(), 10u);
  for (size_t i = 1; i < segments.size(); ++i) {  // each later segment starts with a hard state
    const std::string data = *rig_.disk.LiveContents(segments[i]);
    ASSERT_GT(data.size(), kHeaderBytes);
    EXPECT_EQ(data[8], 2) << segments[i];
  }
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 100, 2, 40)));
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(hs));
  EXPECT_EQ(wal->last_index(), 100u);
  // A record larger than a whole segment still goes in (one per segment).
  AppendSynced(*wal, Entries(101, 102, 2, 1000));
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.entries.size(), 102u);
}

// ---- Group commit and callbacks ----

TEST_F(WalTest, GroupCommitCoalescesSyncs) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  ASSERT_TRUE(AwaitSync(rig_, *wal).ok());  // settle the syncs Open owes
  const int syncs_before = rig_.counts.data_syncs + rig_.counts.dir_syncs;
  constexpr int kCalls = 100;
  std::vector<int> order;
  std::vector<int> calls(kCalls, 0);
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(wal->Append(Entries(i + 1, i + 1, 1), nullptr).ok());
    wal->Sync([&order, &calls, i](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      order.push_back(i);
      ++calls[i];
    });
    ASSERT_TRUE(order.empty()) << "callback ran inline";
  }
  ASSERT_TRUE(rig_.sim.RunUntilTrue([&order] { return order.size() == kCalls; }, kSecondNs));
  rig_.sim.RunUntil(rig_.sim.now_ns() + kSecondNs);
  std::vector<int> want(kCalls);
  for (int i = 0; i < kCalls; ++i) want[i] = i;
  EXPECT_EQ(order, want);
  EXPECT_EQ(calls, std::vector<int>(kCalls, 1));
  const int syncs = rig_.counts.data_syncs + rig_.counts.dir_syncs - syncs_before;
  EXPECT_LE(syncs, 3) << "one sync for the first call, one for the 99 that waited";
  // And it all is durable.
  rig_.disk.faults().tear_on_crash = false;
  rig_.disk.Crash();
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.entries.size(), static_cast<size_t>(kCalls));
}

TEST_F(WalTest, SyncCoversOnlyWhatWasAppendedBeforeIt) {
  rig_.disk.faults().tear_on_crash = false;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  ASSERT_TRUE(wal->Append(Entries(1, 3, 1), nullptr).ok());
  bool done = false;
  wal->Sync([&done](absl::Status status) {
    EXPECT_TRUE(status.ok());
    done = true;
  });
  ASSERT_TRUE(wal->Append(Entries(4, 6, 1), nullptr).ok());  // during the sync, no Sync call
  ASSERT_TRUE(rig_.sim.RunUntilTrue([&done] { return done; }, kSecondNs));
  rig_.sim.RunUntil(rig_.sim.now_ns() + kSecondNs);
  rig_.disk.Crash();
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 3, 1)));
}

TEST_F(WalTest, CallbacksNeverRunInline) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(AwaitSync(rig_, *wal).ok());  // nothing to write
  EXPECT_TRUE(AwaitSync(rig_, *wal).ok());
  rig_.disk.faults().sync_error_probability = 1;
  EXPECT_FALSE(AwaitSync(rig_, *wal).ok());
  ASSERT_TRUE(wal->failed());
  EXPECT_FALSE(AwaitSync(rig_, *wal).ok());  // failed: the error still comes later
}

TEST_F(WalTest, DestroyingTheWalDropsPendingCallbacks) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  int calls = 0;
  ASSERT_TRUE(wal->Append(Entries(1, 2, 1), nullptr).ok());
  wal->Sync([&calls](absl::Status) { ++calls; });
  wal->Sync([&calls](absl::Status) { ++calls; });
  wal.reset();
  rig_.sim.RunUntil(kSecondNs);
  EXPECT_EQ(calls, 0);

  // A callback that destroys the Wal: later callbacks are dropped, nothing crashes.
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  wal->Sync([&wal, &calls](absl::Status) {
    ++calls;
    wal.reset();
  });
  wal->Sync([&calls](absl::Status) { calls += 10; });
  wal->Sync([&calls](absl::Status) { calls += 100; });
  rig_.sim.RunUntil(2 * kSecondNs);
  EXPECT_EQ(calls, 1);
}

TEST_F(WalTest, BufferBoundGivesResourceExhausted) {
  options_.buffer_bytes_max = 1000;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  uint64_t next = 1;
  absl::Status status;
  while (next < 100 && (status = wal->Append(Entries(next, next, 1, 100), nullptr)).ok()) ++next;
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_GT(next, 3u);
  EXPECT_LT(next, 10u);
  EXPECT_FALSE(wal->failed());
  EXPECT_EQ(wal->last_index(), next - 1);
  // A sync takes the buffer: appends fit again while it runs.
  bool done = false;
  wal->Sync([&done](absl::Status s) {
    EXPECT_TRUE(s.ok());
    done = true;
  });
  EXPECT_TRUE(wal->Append(Entries(next, next, 1, 100), nullptr).ok());
  ASSERT_TRUE(rig_.sim.RunUntilTrue([&done] { return done; }, kSecondNs));
  EXPECT_TRUE(AwaitSync(rig_, *wal).ok());
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.entries.size(), next);
}

// ---- Snapshot markers and release ----

TEST_F(WalTest, SnapshotMarkerRoundTrips) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  // A node that starts from a snapshot: the log restarts after it.
  ASSERT_TRUE(wal->AppendSnapshotMarker({.index = 100, .term = 7}).ok());
  EXPECT_EQ(wal->last_index(), 100u);
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(100, 100, 7), nullptr)));
  AppendSynced(*wal, Entries(101, 105, 7));
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{100}, uint64_t{7}));
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(101, 105, 7)));
  EXPECT_EQ(wal->last_index(), 105u);

  // A marker of a prefix of the log keeps the log; markers never go back, nor do entries below.
  ASSERT_TRUE(wal->AppendSnapshotMarker({.index = 103, .term = 7}).ok());
  EXPECT_EQ(wal->last_index(), 105u);
  EXPECT_TRUE(absl::IsInvalidArgument(wal->AppendSnapshotMarker({.index = 102, .term = 7})));
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(103, 103, 8), nullptr)));
  AppendSynced(*wal, Entries(104, 104, 8));  // an overwrite above the marker is fine
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{103}, uint64_t{7}));
  std::vector<raftpb::Entry> want = Entries(101, 103, 7);
  want.push_back(Entries(104, 104, 8)[0]);
  EXPECT_EQ(Keys(contents.entries), Keys(want));

  // A marker of a different term at an index the log holds: the log restarts after it.
  ASSERT_TRUE(wal->AppendSnapshotMarker({.index = 104, .term = 9}).ok());
  EXPECT_EQ(wal->last_index(), 104u);
  ASSERT_TRUE(AwaitSync(rig_, *wal).ok());
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_TRUE(contents.entries.empty());
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{104}, uint64_t{9}));
  EXPECT_EQ(wal->last_index(), 104u);
}

// Whether `entries` are consecutive, end at `last`, and match `want` (by index) where present.
void ExpectSuffixOf(const std::vector<raftpb::Entry>& entries,
                    const std::vector<raftpb::Entry>& want, uint64_t last) {
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back().index(), last);
  for (const raftpb::Entry& e : entries) {
    ASSERT_GE(e.index(), want.front().index());
    ASSERT_LT(e.index() - want.front().index(), want.size());
    EXPECT_EQ(Keys({e}), Keys({want[e.index() - want.front().index()]})) << e.index();
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].index(), entries[i - 1].index() + 1);
  }
}

TEST_F(WalTest, ReleaseToRemovesOldSegments) {
  options_.segment_size_bytes_max = 512;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  std::vector<raftpb::Entry> all;
  raftpb::HardState hs;
  auto append = [&](uint64_t first, uint64_t last, uint64_t term) {
    for (uint64_t i = first; i <= last; i += 5) {
      const std::vector<raftpb::Entry> batch = Entries(i, std::min(i + 4, last), term, 32);
      hs = MakeHardState(term, 1, i);
      AppendSynced(*wal, batch, &hs);
      all.insert(all.end(), batch.begin(), batch.end());
    }
  };
  append(1, 40, 3);
  const size_t before = Segments().size();
  ASSERT_GE(before, 4u);
  EXPECT_TRUE(wal->ReleaseTo(0).ok());
  EXPECT_EQ(Segments().size(), before);
  // Segments of entries up to 20 go (the snapshot lives elsewhere); the last one always stays.
  ASSERT_TRUE(wal->ReleaseTo(20).ok());
  const size_t after_first = Segments().size();
  EXPECT_LT(after_first, before);
  EXPECT_GT(Segments().front(), "wal/0000000000000001");
  // What was released may not be overwritten, and markers may not go below it.
  EXPECT_TRUE(absl::IsInvalidArgument(wal->Append(Entries(5, 5, 9), nullptr)));
  EXPECT_TRUE(absl::IsInvalidArgument(wal->AppendSnapshotMarker({.index = 3, .term = 3})));
  ASSERT_TRUE(wal->AppendSnapshotMarker({.index = 40, .term = 3}).ok());
  ASSERT_TRUE(AwaitSync(rig_, *wal).ok());
  append(41, 60, 4);
  ASSERT_TRUE(wal->ReleaseTo(40).ok());
  const std::vector<std::string> after = Segments();
  EXPECT_LT(after.size(), after_first + 4);  // four segments or so were added
  EXPECT_GE(after.size(), 1u);
  rig_.sim.RunUntil(rig_.sim.now_ns() + kSecondNs);  // the directory sync
  EXPECT_FALSE(wal->failed());
  // The removal is durable, and what remains recovers.
  rig_.disk.Crash();
  wal.reset();
  EXPECT_EQ(Segments(), after);
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(hs));
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{40}, uint64_t{3}));
  ExpectSuffixOf(contents.entries, all, 60);
  EXPECT_LE(contents.entries.front().index(), 41u);
  EXPECT_GT(contents.entries.front().index(), 20u);
  EXPECT_EQ(wal->last_index(), 60u);
  // The WAL keeps working: append, release everything (the last segment stays), reopen.
  append(61, 70, 4);
  ASSERT_TRUE(wal->AppendSnapshotMarker({.index = 70, .term = 4}).ok());
  append(71, 80, 5);
  ASSERT_TRUE(wal->ReleaseTo(UINT64_MAX).ok());
  rig_.sim.RunUntil(rig_.sim.now_ns() + kSecondNs);
  EXPECT_EQ(Segments().size(), 1u);
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(hs));
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{70}, uint64_t{4}));
  ExpectSuffixOf(contents.entries, all, 80);
  EXPECT_EQ(wal->last_index(), 80u);
  append(81, 85, 5);
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  ExpectSuffixOf(contents.entries, all, 85);
}

// ---- Corruption and torn tails ----

class WalCorruptionTest : public WalTest {
 protected:
  // Writes entries 1..9 in three synced batches into one segment; returns the file size after
  // each batch.
  std::vector<uint64_t> WriteThreeBatches() {
    WalContents contents;
    std::unique_ptr<Wal> wal = MustOpen(&contents);
    std::vector<uint64_t> sizes;
    for (uint64_t first = 1; first <= 7; first += 3) {
      EXPECT_TRUE(wal->Append(Entries(first, first + 2, 1, 30), nullptr).ok());
      EXPECT_TRUE(AwaitSync(rig_, *wal).ok());
      sizes.push_back(FileSize(rig_, Segments().back()));
    }
    return sizes;
  }
};

TEST_F(WalCorruptionTest, BitFlipFollowedByValidRecordsIsDataLoss) {
  const std::vector<uint64_t> sizes = WriteThreeBatches();
  const std::string segment = Segments().back();
  ASSERT_TRUE(rig_.disk.FlipBit(segment, sizes[0] + kHeaderBytes + 3, 2).ok());  // entry 4
  const std::string before = *rig_.disk.LiveContents(segment);
  WalContents contents;
  const absl::Status first = Open(&contents).status();
  EXPECT_TRUE(absl::IsDataLoss(first)) << first;
  EXPECT_THAT(Message(first), HasSubstr(segment));
  EXPECT_THAT(Message(first), HasSubstr(absl::StrCat("at offset ", sizes[0], ":")));
  EXPECT_EQ(*rig_.disk.LiveContents(segment), before);  // nothing was modified
  const absl::Status second = Open(&contents).status();
  EXPECT_EQ(second, first);
  EXPECT_EQ(*rig_.disk.LiveContents(segment), before);
}

TEST_F(WalCorruptionTest, DamagedHeaderFollowedByValidRecordsIsDataLoss) {
  const std::vector<uint64_t> sizes = WriteThreeBatches();
  const std::string segment = Segments().back();
  ASSERT_TRUE(rig_.disk.FlipBit(segment, sizes[1] + 6, 1).ok());  // entry 7's length field
  WalContents contents;
  const absl::Status status = Open(&contents).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr(absl::StrCat(segment, " at offset ", sizes[1], ":")));
}

TEST_F(WalCorruptionTest, BitFlipInTheLastRecordIsATornTail) {
  const std::vector<uint64_t> sizes = WriteThreeBatches();
  const std::string segment = Segments().back();
  const uint64_t last_record = RecordOffsets(*rig_.disk.LiveContents(segment)).back();
  ASSERT_TRUE(rig_.disk.FlipBit(segment, last_record + kHeaderBytes + 1, 0).ok());
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.torn_bytes_cut, sizes[2] - last_record);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 8, 1, 30)));
  EXPECT_EQ(FileSize(rig_, segment), last_record);
  // The repair becomes durable with the first sync, and the WAL carries on.
  AppendSynced(*wal, Entries(9, 10, 2, 30));
  rig_.disk.Crash();
  wal.reset();
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.torn_bytes_cut, 0u);
  std::vector<raftpb::Entry> want = Entries(1, 8, 1, 30);
  for (const raftpb::Entry& e : Entries(9, 10, 2, 30)) want.push_back(e);
  EXPECT_EQ(Keys(contents.entries), Keys(want));
}

TEST_F(WalCorruptionTest, BadRecordInAnEarlierSegmentIsDataLoss) {
  options_.segment_size_bytes_max = 200;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  for (uint64_t i = 1; i <= 12; ++i) AppendSynced(*wal, Entries(i, i, 1, 40));
  wal.reset();
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  // The last record of the first segment: nothing valid follows it in that file.
  const uint64_t record = RecordOffsets(*rig_.disk.LiveContents(segments[0])).back();
  ASSERT_TRUE(rig_.disk.FlipBit(segments[0], record + kHeaderBytes + 2, 4).ok());
  const absl::Status status = Open(&contents).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr(segments[0]));
  EXPECT_THAT(Message(status), HasSubstr(absl::StrCat("at offset ", record)));
  EXPECT_THAT(Message(status), HasSubstr("not the last"));
}

TEST_F(WalCorruptionTest, MissingOrMisnamedSegmentIsDataLoss) {
  options_.segment_size_bytes_max = 200;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  for (uint64_t i = 1; i <= 12; ++i) AppendSynced(*wal, Entries(i, i, 1, 40));
  wal.reset();
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  // A stray file with the suffix but not the name.
  ASSERT_TRUE(rig_.disk.fs().Open("wal/junk.wal", {.create = true}).ok());
  absl::Status status = Open(&contents).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr("wal/junk.wal"));
  ASSERT_TRUE(rig_.disk.fs().Remove("wal/junk.wal").ok());
  // Other files are not the WAL's business.
  ASSERT_TRUE(rig_.disk.fs().Open("wal/notes.txt", {.create = true}).ok());
  EXPECT_TRUE(Open(&contents).ok());
  // A segment missing in the middle.
  ASSERT_TRUE(rig_.disk.fs().Remove(segments[1]).ok());
  status = Open(&contents).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr(segments[0]));
  EXPECT_THAT(Message(status), HasSubstr(segments[2]));
  EXPECT_THAT(Message(status), HasSubstr("missing"));
}

TEST_F(WalCorruptionTest, ReadErrorFailsOpen) {
  WriteThreeBatches();
  const std::string segment = Segments().back();
  ASSERT_TRUE(rig_.disk.InjectReadError(segment, 100, 8).ok());
  WalContents contents;
  const absl::Status status = Open(&contents).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(Message(status), HasSubstr(segment));
  rig_.disk.ClearReadErrors();
  EXPECT_TRUE(Open(&contents).ok());
  EXPECT_EQ(contents.entries.size(), 9u);
}

// ---- The format as wal.h describes it, written by the test's own encoder ----

void PutLittleEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// One record framed per wal.h, with leveldb's crc mask. `pad` fills the 3 header pad bytes.
std::string Frame(uint8_t type, uint64_t seq, const std::string& payload, char pad = '\0') {
  std::string body;
  PutLittleEndian(&body, payload.size(), 4);
  body.push_back(static_cast<char>(type));
  body.append(3, pad);
  PutLittleEndian(&body, seq, 8);
  body += payload;
  const uint32_t crc = env::Crc32c(body);
  std::string out;
  PutLittleEndian(&out, ((crc >> 15) | (crc << 17)) + 0xa282ead8u, 4);
  out += body;
  out.append((8 - out.size() % 8) % 8, '\0');
  return out;
}

std::string EntryRecord(uint64_t seq, uint64_t index, uint64_t term = 1) {
  return Frame(1, seq, MakeEntry(index, term, "x").SerializeAsString());
}

class WalFormatTest : public WalTest {
 protected:
  // Writes a segment file with sequence number `seq`; returns its path.
  std::string WriteSegment(uint64_t seq, const std::string& bytes) {
    EXPECT_TRUE(rig_.disk.fs().CreateDir("wal").ok());
    const std::string path = absl::StrCat("wal/", absl::Hex(seq, absl::kZeroPad16), "-",
                                          absl::Hex(1, absl::kZeroPad16), ".wal");
    absl::StatusOr<std::unique_ptr<env::File>> file = rig_.disk.fs().Open(path, {.create = true});
    EXPECT_TRUE(file.ok() && (*file)->Append(bytes).ok());
    return path;
  }
  absl::Status OpenStatus() {
    WalContents contents;
    return Open(&contents).status();
  }
};

TEST_F(WalFormatTest, ReadsRecordsFramedAsTheHeaderSays) {
  std::string marker;
  PutLittleEndian(&marker, 2, 8);
  PutLittleEndian(&marker, 1, 8);
  WriteSegment(1, EntryRecord(1, 1) + EntryRecord(2, 2) + EntryRecord(3, 3) +
                      Frame(2, 4, MakeHardState(1, 2, 3).SerializeAsString()) +
                      Frame(3, 5, marker));
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.entries.size(), 3u);
  EXPECT_EQ(HsKey(contents.hard_state), HsKey(MakeHardState(1, 2, 3)));
  EXPECT_EQ(MarkerKey(contents.snapshot), std::make_pair(uint64_t{2}, uint64_t{1}));
  EXPECT_EQ(contents.torn_bytes_cut, 0u);
  // And what the WAL writes next continues the sequence numbers.
  AppendSynced(*wal, Entries(4, 4, 1, 1));
  const std::string data = *rig_.disk.LiveContents(Segments().back());
  const uint64_t last = RecordOffsets(data).back();
  EXPECT_EQ(data.substr(last, data.size() - last),
            Frame(1, 6, Entries(4, 4, 1, 1)[0].SerializeAsString()));
}

TEST_F(WalFormatTest, OutOfSequenceRecordAtTheTailIsCut) {
  const std::string stale = EntryRecord(1, 1);  // e.g. an old copy: valid, but seq 1 again
  WriteSegment(1, EntryRecord(1, 1) + EntryRecord(2, 2) + stale);
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(contents.entries.size(), 2u);  // not overwritten back to entry 1
  EXPECT_EQ(contents.torn_bytes_cut, stale.size());
}

TEST_F(WalFormatTest, OutOfSequenceRecordFollowedByValidOnesIsDataLoss) {
  const std::string good = EntryRecord(1, 1) + EntryRecord(2, 2);
  const std::string path = WriteSegment(1, good + EntryRecord(7, 3) + EntryRecord(8, 4));
  const absl::Status status = OpenStatus();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr(absl::StrCat(path, " at offset ", good.size(), ":")));
  EXPECT_THAT(Message(status), HasSubstr("sequence number 7"));
}

TEST_F(WalFormatTest, ValidChecksumDoesNotExcuseBadFields) {
  const std::string first = EntryRecord(1, 1);
  const std::string later = EntryRecord(3, 3);
  struct Case {
    std::string bad;
    std::string why;
  };
  std::vector<Case> cases = {
      {Frame(9, 2, "abc"), "unknown record type 9"},
      {Frame(1, 2, MakeEntry(2, 1, "x").SerializeAsString(), 'p'), "non-zero header padding"},
      {Frame(3, 2, "short"), "snapshot marker payload of 5 bytes"},
      {Frame(1, 2, std::string("\xff\xff\xff", 3)), "unparsable entry"},
      {Frame(1, 2, MakeEntry(0, 1, "x").SerializeAsString()), "entry with index 0"},
      {Frame(1, 2, MakeEntry(2, 1, "x").SerializeAsString()), "non-zero payload padding"},
  };
  cases.back().bad.back() = 'z';  // the padding is not covered by the checksum
  for (const Case& c : cases) {
    SCOPED_TRACE(c.why);
    const std::string path = WriteSegment(1, first + c.bad + later);
    const absl::Status status = OpenStatus();
    EXPECT_TRUE(absl::IsDataLoss(status)) << status;
    EXPECT_THAT(Message(status),
                HasSubstr(absl::StrCat(path, " at offset ", first.size(), ": ", c.why)));
    ASSERT_TRUE(rig_.disk.fs().Remove(path).ok());
  }
}

TEST_F(WalFormatTest, EntryGapIsDataLoss) {
  const std::string good = EntryRecord(1, 1) + EntryRecord(2, 2);
  const std::string path = WriteSegment(1, good + EntryRecord(3, 4));
  const absl::Status status = OpenStatus();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status),
              HasSubstr(absl::StrCat("entry 4 in ", path, " at offset ", good.size())));
}

TEST_F(WalFormatTest, ReleasedWalStartsAnywhereButStillHasNoGaps) {
  // Segments before 7 were released: the log may start at any index, and an overwrite may reach
  // below the first entry still here.
  const std::string path =
      WriteSegment(7, EntryRecord(40, 10) + EntryRecord(41, 11) + EntryRecord(42, 8, 2));
  WalContents contents;
  EXPECT_TRUE(MustOpen(&contents) != nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys({MakeEntry(8, 2, "x")}));
  // But a gap is a gap.
  ASSERT_TRUE(rig_.disk.fs().Remove(path).ok());
  WriteSegment(7, EntryRecord(40, 10) + EntryRecord(41, 11) + EntryRecord(42, 13));
  const absl::Status status = OpenStatus();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(Message(status), HasSubstr("entry 13"));
}

// ---- Write and sync errors ----

TEST_F(WalTest, WriteErrorIsSticky) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  AppendSynced(*wal, Entries(1, 3, 1));
  rig_.disk.faults().write_error_probability = 1;
  ASSERT_TRUE(wal->Append(Entries(4, 5, 1), nullptr).ok());  // only buffers
  const absl::Status status = AwaitSync(rig_, *wal);
  EXPECT_TRUE(absl::IsInternal(status)) << status;
  EXPECT_TRUE(wal->failed());
  rig_.disk.faults().write_error_probability = 0;
  EXPECT_EQ(wal->Append(Entries(6, 6, 1), nullptr), status);
  EXPECT_EQ(wal->AppendSnapshotMarker({.index = 1, .term = 1}), status);
  EXPECT_EQ(wal->ReleaseTo(1), status);
  EXPECT_EQ(AwaitSync(rig_, *wal), status);
}

TEST_F(WalTest, FailedSyncIsSticky) {
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  AppendSynced(*wal, Entries(1, 3, 1));
  rig_.disk.faults().sync_error_probability = 1;
  ASSERT_TRUE(wal->Append(Entries(4, 5, 1), nullptr).ok());
  const absl::Status status = AwaitSync(rig_, *wal);
  EXPECT_TRUE(absl::IsInternal(status)) << status;
  rig_.disk.faults().sync_error_probability = 0;
  EXPECT_TRUE(wal->failed());
  EXPECT_EQ(wal->Append(Entries(6, 6, 1), nullptr), status);
  EXPECT_EQ(AwaitSync(rig_, *wal), status);
}

TEST_F(WalTest, DiskFullIsAnError) {
  rig_.disk.faults().capacity_bytes = 500;
  WalContents contents;
  std::unique_ptr<Wal> wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  AppendSynced(*wal, Entries(1, 1, 1, 100));
  ASSERT_TRUE(wal->Append(Entries(2, 5, 1, 200), nullptr).ok());
  const absl::Status status = AwaitSync(rig_, *wal);
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_TRUE(wal->failed());
  EXPECT_EQ(wal->Append(Entries(2, 2, 1), nullptr), status);
  wal.reset();
  rig_.disk.faults().capacity_bytes = UINT64_MAX;
  wal = MustOpen(&contents);
  ASSERT_NE(wal, nullptr);
  EXPECT_EQ(Keys(contents.entries), Keys(Entries(1, 1, 1, 100)));
}

// ---- Crashes ----

// A record the test appended, to replay its own model of the WAL.
struct TestRecord {
  enum Kind { kEntry, kHardState, kMarker } kind = kEntry;
  raftpb::Entry entry = {};
  raftpb::HardState hard_state = {};
  SnapshotMarker marker = {};
};

// The test's model of what a prefix of the record stream means (mirrors wal.h's rules).
struct LogState {
  std::vector<raftpb::Entry> entries;  // contiguous, starting at base + 1
  uint64_t base = 0;
  uint64_t base_term = 0;
  uint64_t floor = 0;  // highest marker index: entries at or below it cannot be appended
  std::optional<raftpb::HardState> hard_state;
  std::optional<SnapshotMarker> marker;

  uint64_t last() const { return base + entries.size(); }
  std::optional<uint64_t> TermAt(uint64_t index) const {
    if (index == base) return base_term;
    if (index > base && index <= last()) return entries[index - base - 1].term();
    return std::nullopt;
  }
  void Apply(const TestRecord& r) {
    if (r.kind == TestRecord::kEntry) {
      entries.resize(r.entry.index() - base - 1);
      entries.push_back(r.entry);
    } else if (r.kind == TestRecord::kHardState) {
      hard_state = r.hard_state;
    } else {
      floor = std::max(floor, r.marker.index);
      marker = r.marker;
      if (TermAt(r.marker.index) != r.marker.term) {
        entries.clear();
        base = r.marker.index;
        base_term = r.marker.term;
      }
    }
  }
  // The state a reopened WAL starts from.
  static LogState FromContents(const WalContents& c) {
    LogState s;
    s.entries = c.entries;
    s.hard_state = c.hard_state;
    s.marker = c.snapshot;
    s.floor = c.snapshot.has_value() ? c.snapshot->index : 0;
    s.base = !c.entries.empty() ? c.entries.front().index() - 1 : s.floor;
    if (c.snapshot.has_value() && c.snapshot->index == s.base) s.base_term = c.snapshot->term;
    return s;
  }
};

// "E<index>t<term>" per entry, then the hard state and marker, for failure messages.
std::string Describe(const std::vector<raftpb::Entry>& entries,
                     const std::optional<raftpb::HardState>& hs,
                     const std::optional<SnapshotMarker>& marker) {
  std::string out;
  for (const raftpb::Entry& e : entries) absl::StrAppend(&out, "E", e.index(), "t", e.term(), " ");
  if (hs.has_value()) absl::StrAppend(&out, "H(", hs->term(), ",", hs->commit(), ") ");
  if (marker.has_value()) absl::StrAppend(&out, "M(", marker->index, ",", marker->term, ")");
  return out;
}

std::string DescribeState(const LogState& base, const std::vector<TestRecord>& records,
                          size_t count) {
  LogState state = base;
  for (size_t i = 0; i < count; ++i) state.Apply(records[i]);
  return Describe(state.entries, state.hard_state, state.marker);
}

// Every record of every segment, decoded without checks, for failure messages.
std::string DescribeWal(Rig& rig, const std::string& dir) {
  std::string out;
  for (const std::string& path : Segments(rig, dir)) {
    const std::string data = *rig.disk.LiveContents(path);
    absl::StrAppend(&out, path, ":");
    for (uint64_t at : RecordOffsets(data)) {
      uint64_t length = 0;
      for (int i = 3; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(data[at + 4 + i]);
      const std::string payload = data.substr(at + kHeaderBytes, length);
      absl::StrAppend(&out, " @", at, ":");
      if (data[at + 8] == 1) {
        raftpb::Entry e;
        e.ParseFromString(payload);
        absl::StrAppend(&out, "E", e.index(), "t", e.term());
      } else if (data[at + 8] == 2) {
        raftpb::HardState hs;
        hs.ParseFromString(payload);
        absl::StrAppend(&out, "H(", hs.term(), ",", hs.commit(), ")");
      } else if (data[at + 8] == 3 && payload.size() >= 1) {
        absl::StrAppend(&out, "M", static_cast<uint8_t>(payload[0]));
      } else {
        absl::StrAppend(&out, "?");
      }
    }
    absl::StrAppend(&out, " (", data.size(), " bytes)\n");
  }
  return out;
}

// Whether recovered contents are `state`, but for a prefix of entries at or below
// `released_index` (given to ReleaseTo) that may be gone.
bool Recovers(const WalContents& got, const LogState& state, uint64_t released_index) {
  if (HsKey(got.hard_state) != HsKey(state.hard_state)) return false;
  if (MarkerKey(got.snapshot) != MarkerKey(state.marker)) return false;
  if (got.entries.size() > state.entries.size()) return false;
  const size_t dropped = state.entries.size() - got.entries.size();
  if (dropped > 0 && state.entries[dropped - 1].index() > released_index) return false;
  return Keys(got.entries) ==
         Keys(std::vector<raftpb::Entry>(state.entries.begin() + dropped, state.entries.end()));
}

struct CrashStats {
  uint64_t torn_bytes_cut = 0;
  int lost_unsynced = 0;  // reopens that did not see everything appended
  int segments_max = 0;
  int releases = 0;
};

// Appends a random batch (sometimes overwriting a suffix) or a marker; records it in `records`.
void RandomAppend(env::Random& rnd, Wal& wal, LogState& model, uint64_t& term,
                  uint64_t released_index, std::vector<TestRecord>& records) {
  const uint64_t floor = std::max({model.floor, model.base, released_index});
  if (rnd.Chance(0.1)) {
    SnapshotMarker marker;
    if (model.last() > floor && rnd.Chance(0.7)) {  // a snapshot of a prefix
      marker.index = static_cast<uint64_t>(rnd.Range(floor + 1, model.last()));
      marker.term = *model.TermAt(marker.index);
    } else {  // a snapshot from the leader, ahead of this log
      marker.index = model.last() + static_cast<uint64_t>(rnd.Range(1, 5));
      marker.term = ++term;
    }
    ASSERT_TRUE(wal.AppendSnapshotMarker(marker).ok());
    records.push_back({.kind = TestRecord::kMarker, .marker = marker});
    model.Apply(records.back());
    return;
  }
  uint64_t first = model.last() + 1;
  const uint64_t lowest = std::max(floor + 1, model.last() > 3 ? model.last() - 3 : 1);
  if (rnd.Chance(0.15) && lowest <= model.last()) {
    first = static_cast<uint64_t>(rnd.Range(lowest, model.last()));
    ++term;
  }
  std::vector<raftpb::Entry> batch;
  const int count = static_cast<int>(rnd.Range(0, 4));
  for (int i = 0; i < count; ++i) {
    std::string data(static_cast<size_t>(rnd.Range(0, 300)), '\0');
    for (char& c : data) c = static_cast<char>(rnd.Next() & 0xff);
    batch.push_back(MakeEntry(first + i, term, std::move(data)));
  }
  std::optional<raftpb::HardState> hs;
  if (rnd.Chance(0.5)) hs = MakeHardState(term, rnd.Uniform(3), rnd.Uniform(first + 4));
  ASSERT_TRUE(wal.Append(batch, hs.has_value() ? &*hs : nullptr).ok());
  for (const raftpb::Entry& e : batch) {
    records.push_back({.kind = TestRecord::kEntry, .entry = e});
    model.Apply(records.back());
  }
  if (hs.has_value()) {
    records.push_back({.kind = TestRecord::kHardState, .hard_state = *hs});
    model.Apply(records.back());
  }
}

// One seed: several incarnations of a node that appends, syncs, sometimes releases, and crashes
// at a random moment with torn writes. Every reopen must succeed and recover the state after
// some prefix of the records that includes every record a successful sync covered.
void RunCrashSeed(uint64_t seed, CrashStats& stats) {
  SCOPED_TRACE(seed);
  Rig rig(seed);
  rig.disk.faults().tear_on_crash = true;
  rig.disk.faults().sync_spike_probability = 0.05;
  rig.disk.faults().sync_spike_latency_ns = 2'000'000;
  env::Random rnd = rig.sim.ForkRandom("workload");
  WalOptions options;
  options.segment_size_bytes_max = 1024 + 512 * rnd.Uniform(4);
  uint64_t released_index = 0;
  uint64_t term = 1;
  LogState base;
  std::vector<TestRecord> records;
  size_t acked = 0;
  for (int incarnation = 0; incarnation < 4; ++incarnation) {
    WalContents contents;
    absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(rig.fs, options, &contents);
    ASSERT_TRUE(opened.ok()) << "incarnation " << incarnation << ": " << opened.status() << "\n"
                             << DescribeWal(rig, options.dir);
    std::unique_ptr<Wal> wal = std::move(*opened);
    stats.torn_bytes_cut += contents.torn_bytes_cut;
    // Find the prefix of the previous incarnation's records this recovers.
    LogState state = base;
    bool found = false;
    for (size_t p = 0; p <= records.size() && !found; ++p) {
      if (p >= acked && Recovers(contents, state, released_index)) {
        found = true;
        if (p < records.size()) ++stats.lost_unsynced;
      }
      if (p < records.size()) state.Apply(records[p]);
    }
    ASSERT_TRUE(found) << "incarnation " << incarnation << " recovered "
                       << Describe(contents.entries, contents.hard_state, contents.snapshot)
                       << ", not a state the appends allow (" << acked << " of " << records.size()
                       << " records were synced)\nthe last synced state: "
                       << DescribeState(base, records, acked)
                       << "\nthe last state: " << DescribeState(base, records, records.size())
                       << "\n"
                       << DescribeWal(rig, options.dir);
    ASSERT_EQ(wal->last_index(), LogState::FromContents(contents).last());
    base = LogState::FromContents(contents);
    records.clear();
    acked = 0;
    LogState model = base;
    const int steps = static_cast<int>(rnd.Range(5, 60));
    for (int step = 0; step < steps; ++step) {
      RandomAppend(rnd, *wal, model, term, released_index, records);
      if (::testing::Test::HasFatalFailure()) return;
      if (rnd.Chance(0.5)) {
        const size_t covered = records.size();
        wal->Sync([&acked, covered](absl::Status status) {
          ASSERT_TRUE(status.ok()) << status;
          ASSERT_GE(covered, acked) << "callbacks out of order";
          acked = covered;
        });
      }
      if (rnd.Chance(0.1) && model.marker.has_value()) {
        ASSERT_TRUE(wal->ReleaseTo(model.marker->index).ok());
        released_index = std::max(released_index, model.marker->index);
        ++stats.releases;
      }
      rig.sim.RunUntil(rig.sim.now_ns() + rnd.Range(0, 400'000));
    }
    stats.segments_max = std::max<int>(stats.segments_max, Segments(rig, options.dir).size());
    rig.sim.Crash(rig.node);
    rig.disk.Crash();
    wal.reset();
  }
}

TEST(WalCrashTest, SyncedRecordsSurviveCrashesAndTornTailsAreCut) {
  CrashStats stats;
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    RunCrashSeed(seed, stats);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(stats.torn_bytes_cut, 0u);
  EXPECT_GT(stats.lost_unsynced, 0);
  EXPECT_GT(stats.segments_max, 3);
  EXPECT_GT(stats.releases, 0);
}

// ---- Garbage ----

// Random damage to a valid WAL: Open returns OK or an error, never crashes, and is idempotent
// (an Open that succeeded leaves a WAL the next Open accepts unchanged; one that failed changed
// nothing).
TEST(WalGarbageTest, OpenNeverCrashesOnGarbage) {
  int opened = 0;
  int refused = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE(seed);
    Rig rig(seed);
    env::Random rnd = rig.sim.ForkRandom("garbage");
    WalOptions options;
    options.segment_size_bytes_max = 300 + rnd.Uniform(600);
    {
      WalContents contents;
      std::unique_ptr<Wal> wal = *Wal::Open(rig.fs, options, &contents);
      const uint64_t n = rnd.Uniform(20);
      for (uint64_t i = 1; i <= n; ++i) {
        const raftpb::HardState hs = MakeHardState(1, 0, i);
        if (!wal->Append(Entries(i, i, 1, rnd.Uniform(100)), &hs).ok()) break;
        if (i % 5 == 0) {
          ASSERT_TRUE(wal->AppendSnapshotMarker({.index = i, .term = 1}).ok());
        }
      }
      ASSERT_TRUE(AwaitSync(rig, *wal).ok());
    }
    // Reading with a smaller record bound turns large records into bad ones.
    if (rnd.Chance(0.2)) options.record_bytes_max = 1 + rnd.Uniform(120);
    const std::vector<std::string> segments = Segments(rig, options.dir);
    ASSERT_FALSE(segments.empty());
    for (int damage = static_cast<int>(rnd.Range(1, 4)); damage > 0; --damage) {
      const std::string& path = segments[rnd.Uniform(segments.size())];
      std::unique_ptr<env::File> file = *rig.disk.fs().Open(path, {});
      const uint64_t size = *file->Size();
      std::string junk(static_cast<size_t>(rnd.Range(1, 64)), '\0');
      for (char& c : junk) c = rnd.Chance(0.3) ? '\0' : static_cast<char>(rnd.Next() & 0xff);
      switch (rnd.Uniform(4)) {
        case 0:
          ASSERT_TRUE(file->WriteAt(rnd.Uniform(size + 1), junk).ok());
          break;
        case 1:
          ASSERT_TRUE(file->Truncate(rnd.Uniform(size + 1)).ok());
          break;
        case 2:
          ASSERT_TRUE(file->Append(junk).ok());
          break;
        default:
          if (size > 0) {
            ASSERT_TRUE(rig.disk.FlipBit(path, rnd.Uniform(size), rnd.Uniform(8)).ok());
          }
      }
    }
    WalContents first;
    const absl::StatusOr<std::unique_ptr<Wal>> a = Wal::Open(rig.fs, options, &first);
    WalContents second;
    const absl::StatusOr<std::unique_ptr<Wal>> b = Wal::Open(rig.fs, options, &second);
    ASSERT_EQ(a.ok(), b.ok()) << a.status() << " then " << b.status();
    if (a.ok()) {
      ++opened;
      EXPECT_EQ(second.torn_bytes_cut, 0u);
      EXPECT_EQ(Keys(second.entries), Keys(first.entries));
      EXPECT_EQ(HsKey(second.hard_state), HsKey(first.hard_state));
      EXPECT_EQ(MarkerKey(second.snapshot), MarkerKey(first.snapshot));
    } else {
      ++refused;
      EXPECT_EQ(a.status(), b.status());
    }
  }
  EXPECT_GT(opened, 0);
  EXPECT_GT(refused, 0);
}

// Whole segments of random bytes.
TEST(WalGarbageTest, RandomSegmentFilesNeverCrashOpen) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    Rig rig(seed);
    env::Random rnd = rig.sim.ForkRandom("garbage");
    ASSERT_TRUE(rig.disk.fs().CreateDir("wal").ok());
    const uint64_t files = rnd.Range(1, 3);
    for (uint64_t i = 1; i <= files; ++i) {
      std::unique_ptr<env::File> file =
          *rig.disk.fs().Open(absl::StrCat("wal/", absl::Hex(i, absl::kZeroPad16), "-",
                                           absl::Hex(1, absl::kZeroPad16), ".wal"),
                              {.create = true});
      std::string junk(static_cast<size_t>(rnd.Range(0, 3000)), '\0');
      for (char& c : junk) c = static_cast<char>(rnd.Next() & (rnd.Chance(0.5) ? 0x03 : 0xff));
      ASSERT_TRUE(file->Append(junk).ok());
    }
    WalContents contents;
    WalOptions options;
    options.record_bytes_max = 1 + rnd.Uniform(1 << 12);
    const absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(rig.fs, options, &contents);
    if (wal.ok()) {
      EXPECT_TRUE(Wal::Open(rig.fs, options, &contents).ok());
    } else {
      EXPECT_TRUE(absl::IsDataLoss(wal.status())) << wal.status();
    }
  }
}

}  // namespace
}  // namespace e2d::raft
