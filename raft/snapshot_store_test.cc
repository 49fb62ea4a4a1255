// Copyright e2d authors.

#include "raft/snapshot_store.h"

#include <optional>

#include "gtest/gtest.h"
#include "sim/sim_disk.h"
#include "sim/simulator.h"

namespace e2d::raft {
namespace {

constexpr int64_t kSecondNs = 1'000'000'000;

struct Rig {
  explicit Rig(uint64_t seed)
      : sim(seed), node(sim.AddNode()), disk(sim, node, sim.ForkRandom("disk")) {}
  sim::Simulator sim;
  sim::NodeId node;
  sim::SimDisk disk;
};

raftpb::SnapshotMetadata Meta(uint64_t index, uint64_t term) {
  raftpb::SnapshotMetadata m;
  m.set_index(index);
  m.set_term(term);
  m.mutable_conf_state()->add_voters(1);
  m.mutable_conf_state()->add_voters(2);
  return m;
}

absl::Status SaveAndWait(Rig& rig, SnapshotStore& store, const raftpb::SnapshotMetadata& meta,
                         const std::string& data) {
  std::optional<absl::Status> result;
  bool returned = false;
  store.Save(meta, data, [&](absl::Status s) {
    EXPECT_TRUE(returned) << "Save ran its callback inline";
    result = s;
  });
  returned = true;
  EXPECT_TRUE(rig.sim.RunUntilTrue([&] { return result.has_value(); }, rig.sim.now_ns() + kSecondNs));
  return result.value_or(absl::UnknownError("no callback"));
}

TEST(SnapshotStoreTest, SavedSnapshotSurvivesACrashAndLoadsBack) {
  Rig rig(1);
  SnapshotStore store(rig.disk.fs(), "snap", 1 << 20);
  ASSERT_TRUE(store.Open().ok());
  const std::string data(5000, 'x');
  ASSERT_TRUE(SaveAndWait(rig, store, Meta(42, 7), data).ok());
  rig.disk.Crash();
  SnapshotStore again(rig.disk.fs(), "snap", 1 << 20);
  ASSERT_TRUE(again.Open().ok());
  absl::StatusOr<StoredSnapshot> s = again.Load(42, 7);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->data, data);
  EXPECT_EQ(s->metadata.conf_state().voters_size(), 2);
  EXPECT_EQ(again.Load(43, 7).status().code(), absl::StatusCode::kNotFound);
}

TEST(SnapshotStoreTest, ACrashBeforeSaveCompletesLeavesNoSnapshot) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Rig rig(seed);
    SnapshotStore store(rig.disk.fs(), "snap", 1 << 20);
    ASSERT_TRUE(store.Open().ok());
    bool done = false;
    store.Save(Meta(9, 2), std::string(3000, 'y'), [&](absl::Status) { done = true; });
    // Crash at a random point of the save: the snapshot is there whole, or not at all.
    rig.sim.RunUntil(rig.sim.now_ns() + static_cast<int64_t>(seed) * 20'000);
    rig.disk.Crash();
    SnapshotStore again(rig.disk.fs(), "snap", 1 << 20);
    ASSERT_TRUE(again.Open().ok());
    absl::StatusOr<StoredSnapshot> s = again.Load(9, 2);
    if (s.ok()) {
      EXPECT_EQ(s->data, std::string(3000, 'y')) << "seed " << seed;
    } else {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << "seed " << seed << s.status();
      EXPECT_FALSE(done) << "seed " << seed << ": reported saved, then lost";
    }
    absl::StatusOr<std::vector<std::string>> names = rig.disk.fs().List("snap");
    ASSERT_TRUE(names.ok());
    for (const std::string& n : *names) EXPECT_EQ(n.find(".tmp"), std::string::npos) << n;
  }
}

TEST(SnapshotStoreTest, DamageIsReportedWithTheFileName) {
  Rig rig(3);
  SnapshotStore store(rig.disk.fs(), "snap", 1 << 20);
  ASSERT_TRUE(store.Open().ok());
  ASSERT_TRUE(SaveAndWait(rig, store, Meta(5, 1), "hello snapshot").ok());
  const std::string path = "snap/" + SnapshotStore::FileName(5, 1);
  absl::StatusOr<std::unique_ptr<env::File>> f = rig.disk.fs().Open(path, env::OpenOptions());
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteAt(30, "X").ok());
  absl::StatusOr<StoredSnapshot> s = store.Load(5, 1);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find(path), std::string::npos) << s.status();
  ASSERT_TRUE((*f)->Truncate(10).ok());
  EXPECT_EQ(store.Load(5, 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SaveAndWait(rig, store, Meta(6, 1), std::string(2 << 20, 'z')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotStoreTest, RemoveBelowKeepsNewerOnes) {
  Rig rig(4);
  SnapshotStore store(rig.disk.fs(), "snap", 1 << 20);
  ASSERT_TRUE(store.Open().ok());
  for (uint64_t i : {10, 20, 30}) ASSERT_TRUE(SaveAndWait(rig, store, Meta(i, 1), "d").ok());
  ASSERT_TRUE(store.RemoveBelow(30).ok());
  EXPECT_EQ(store.Load(10, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Load(20, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Load(30, 1).ok());
}

}  // namespace
}  // namespace e2d::raft
