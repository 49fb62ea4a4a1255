// Copyright e2d authors.
//
// Choosing the backup to restore: names, decoding, and the newest backup that checks out.

#include "node/backup_store.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/backup.h"

namespace e2d::node {
namespace {

std::string Encode(uint64_t cluster, uint64_t revision, const std::string& store,
                   const std::optional<BackupKeys>& keys) {
  BackupMeta meta;
  meta.cluster_id = cluster;
  meta.revision = revision;
  meta.raft_index = revision + 3;
  BackupOptions options;
  options.keys = keys;
  options.iv[0] = static_cast<uint8_t>(revision);
  std::string file;
  auto w = BackupWriter::Start(options, meta, [&file](std::string_view b) {
    file.append(b);
    return absl::OkStatus();
  });
  EXPECT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->Write(store).ok());
  EXPECT_TRUE((*w)->Finish().ok());
  return file;
}

TEST(BackupNameTest, RoundTripsAndRefusesOtherNames) {
  uint64_t cluster = 0, revision = 0;
  ASSERT_TRUE(ParseBackupName(BackupName(0xabcdef0123456789, 42), &cluster, &revision));
  EXPECT_EQ(cluster, 0xabcdef0123456789u);
  EXPECT_EQ(revision, 42u);
  for (const std::string& bad : std::vector<std::string>{"", "e2d-.bkp",
                          BackupName(1, 2) + ".tmp", "x" + BackupName(1, 2).substr(1),
                          "e2d-000000000000000g-00000000000000000001.bkp",
                          "e2d-0000000000000001-0000000000000000000x.bkp",
                          "e2d-0000000000000001-99999999999999999999.bkp"}) {
    EXPECT_FALSE(ParseBackupName(bad, &cluster, &revision)) << bad;
  }
}

TEST(NewestBackupTest, TakesTheHighestRevisionOfAnyClusterThatChecksOut) {
  const BackupKeys keys = *DeriveBackupKeys("the CA key");
  MemBackupStore store;
  ASSERT_TRUE(store.Put(BackupName(1, 10), Encode(1, 10, "old", keys)).ok());
  ASSERT_TRUE(store.Put(BackupName(1, 20), Encode(1, 20, "older cluster, newest", keys)).ok());
  // Cluster 2 was restored from cluster 1's revision 20 and went on.
  ASSERT_TRUE(store.Put(BackupName(2, 25), Encode(2, 25, "restored, went on", keys)).ok());
  std::string tampered = Encode(2, 30, "tampered", keys);
  tampered[tampered.size() / 2] ^= 1;
  ASSERT_TRUE(store.Put(BackupName(2, 30), tampered).ok());
  ASSERT_TRUE(store.Put(BackupName(2, 31), Encode(2, 29, "misnamed", keys)).ok());
  ASSERT_TRUE(store.Put("notes.txt", "not a backup").ok());

  std::vector<std::string> refused;
  auto note = [&refused](const std::string& name, const absl::Status& why) {
    refused.push_back(name);
    EXPECT_NE(why.message().find(name), std::string::npos) << why;
  };
  absl::StatusOr<LoadedBackup> got = NewestBackup(store, keys, note);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name, BackupName(2, 25));
  EXPECT_EQ(got->store, "restored, went on");
  EXPECT_EQ(got->meta.revision, 25u);
  EXPECT_EQ(got->meta.cluster_id, 2u);
  EXPECT_EQ(refused, (std::vector<std::string>{BackupName(2, 31), BackupName(2, 30)}));

  // Another CA's key: nothing checks out, and nothing is returned.
  refused.clear();
  got = NewestBackup(store, *DeriveBackupKeys("another CA key"), note);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(refused.size(), 5u);
  // An encrypted backup read without keys is refused too.
  refused.clear();
  EXPECT_FALSE(NewestBackup(store, std::nullopt, note).ok());

  MemBackupStore empty;
  got = NewestBackup(empty, keys, note);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "no backup under mem://");
}

TEST(NewestBackupTest, OfOneClusterWeighsOnlyItsBackupsAndRefusesOneOfAnotherUnderItsName) {
  const BackupKeys keys = *DeriveBackupKeys("the CA key");
  MemBackupStore store;
  ASSERT_TRUE(store.Put(BackupName(1, 10), Encode(1, 10, "one, older", keys)).ok());
  ASSERT_TRUE(store.Put(BackupName(1, 20), Encode(1, 20, "one, newest", keys)).ok());
  ASSERT_TRUE(store.Put(BackupName(2, 50), Encode(2, 50, "another cluster", keys)).ok());
  // Cluster 2's content under cluster 1's name.
  ASSERT_TRUE(store.Put(BackupName(1, 30), Encode(2, 30, "mislabelled", keys)).ok());
  std::vector<std::string> refused;
  auto note = [&refused](const std::string& name, const absl::Status& why) {
    refused.push_back(name);
    EXPECT_TRUE(absl::StrContains(why.message(), "holds cluster")) << why;
  };
  absl::StatusOr<LoadedBackup> got = NewestBackupOf(store, keys, 1, note);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name, BackupName(1, 20));
  EXPECT_EQ(got->store, "one, newest");
  EXPECT_EQ(refused, std::vector<std::string>{BackupName(1, 30)});
  refused.clear();
  got = NewestBackupOf(store, keys, 2, note);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name, BackupName(2, 50));
  EXPECT_TRUE(refused.empty());
  got = NewestBackupOf(store, keys, 3, note);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "no backup of cluster 0000000000000003 under mem://");
}

TEST(DecodeBackupTest, PlainBackupsNeedNoKeyAndErrorsNameTheBackup) {
  const std::string file = Encode(7, 3, "payload", std::nullopt);
  absl::StatusOr<LoadedBackup> got = DecodeBackup("b.bkp", file, std::nullopt);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->store, "payload");
  got = DecodeBackup("b.bkp", file.substr(0, file.size() - 1), std::nullopt);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(absl::StartsWith(got.status().message(), "backup b.bkp: ")) << got.status();
}

TEST(BackupRetentionTest, KeepsTheNewestAndTheNewestOfEachHourAndDay) {
  constexpr int64_t kHour = 3600, kDay = 86400;
  // Revision r at time t; names sort by revision.
  auto b = [](uint64_t r, int64_t t) { return BackupObject{BackupName(7, r), t}; };
  const std::vector<BackupObject> ours = {
      b(1, 0 * kDay + 1 * kHour),  b(2, 0 * kDay + 5 * kHour),  // day 0
      b(3, 1 * kDay + 1 * kHour),  b(4, 1 * kDay + 1 * kHour + 60),  // day 1, one hour
      b(5, 2 * kDay + 3 * kHour),  b(6, 2 * kDay + 4 * kHour),       // day 2, two hours
      b(7, 2 * kDay + 4 * kHour + 30), b(8, 2 * kDay + 4 * kHour + 90)};
  auto kept = [&](int keep, int hourly, int daily) {
    const std::vector<std::string> doomed = BackupsToDelete(ours, {keep, hourly, daily});
    std::vector<uint64_t> revisions;
    for (const BackupObject& o : ours) {
      if (std::find(doomed.begin(), doomed.end(), o.name) == doomed.end()) {
        uint64_t c = 0, r = 0;
        EXPECT_TRUE(ParseBackupName(o.name, &c, &r));
        revisions.push_back(r);
      }
    }
    // Oldest first, and every name deleted is one of ours.
    for (size_t i = 1; i < doomed.size(); ++i) EXPECT_LT(doomed[i - 1], doomed[i]);
    EXPECT_EQ(doomed.size() + revisions.size(), ours.size());
    return revisions;
  };
  EXPECT_EQ(kept(2, 0, 0), (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(kept(1, 3, 0), (std::vector<uint64_t>{4, 5, 8}));  // hours: d2h4, d2h3, d1h1
  EXPECT_EQ(kept(1, 0, 2), (std::vector<uint64_t>{4, 8}));     // days: 2, 1
  EXPECT_EQ(kept(1, 1, 3), (std::vector<uint64_t>{2, 4, 8}));
  EXPECT_EQ(kept(3, 2, 5), (std::vector<uint64_t>{2, 4, 5, 6, 7, 8}));
  EXPECT_EQ(kept(100, 0, 0).size(), ours.size());
  EXPECT_EQ(kept(0, 0, 0), (std::vector<uint64_t>{8}));  // the newest is always kept
  EXPECT_TRUE(BackupsToDelete({}, {1, 1, 1}).empty());
  // The order given does not matter.
  std::vector<BackupObject> shuffled(ours.rbegin(), ours.rend());
  EXPECT_EQ(BackupsToDelete(shuffled, {1, 3, 0}), BackupsToDelete(ours, {1, 3, 0}));
}

// A store whose reads fail: listing, or reading one named backup.
class FailingStore final : public BackupStore {
 public:
  absl::Status list_error;
  std::string get_fails;
  absl::Status get_error;
  MemBackupStore inner;
  absl::Status Put(const std::string& n, std::string_view b) override { return inner.Put(n, b); }
  absl::StatusOr<std::vector<BackupObject>> ListObjects() override {
    if (!list_error.ok()) return list_error;
    return inner.ListObjects();
  }
  absl::StatusOr<std::string> Get(const std::string& name) override {
    if (name == get_fails) return get_error;
    return inner.Get(name);
  }
  absl::Status Delete(const std::string& n) override { return inner.Delete(n); }
  std::string Describe() const override { return "failing://"; }
};

TEST(NewestBackupTest, AStoreThatCannotBeReadIsNeverTakenForOneWithoutNewerBackups) {
  const BackupKeys keys = *DeriveBackupKeys("the CA key");
  FailingStore store;
  ASSERT_TRUE(store.Put(BackupName(1, 10), Encode(1, 10, "older", keys)).ok());
  ASSERT_TRUE(store.Put(BackupName(1, 20), Encode(1, 20, "newest", keys)).ok());
  std::vector<std::string> refused;
  auto note = [&refused](const std::string& name, const absl::Status&) {
    refused.push_back(name);
  };
  // No bucket is not "no backup" (with gossip bootstrap, that would start an empty cluster).
  store.list_error = absl::NotFoundError("backup: cannot list s3://b: HTTP 404 NoSuchBucket");
  absl::StatusOr<LoadedBackup> got = NewestBackup(store, keys, note);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << got.status();
  EXPECT_TRUE(absl::StrContains(got.status().message(), "NoSuchBucket"));
  store.list_error = absl::UnavailableError("s3 is down");
  EXPECT_EQ(NewestBackup(store, keys, note).status().code(), absl::StatusCode::kUnavailable);
  store.list_error = absl::OkStatus();
  // The newest cannot be read now: the older one is not restored in its place.
  store.get_fails = BackupName(1, 20);
  store.get_error = absl::UnavailableError("connection reset");
  got = NewestBackup(store, keys, note);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_TRUE(refused.empty());
  // Deleted since the listing (retention): the next one is the newest there is.
  store.get_error = absl::NotFoundError("gone");
  got = NewestBackup(store, keys, note);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->store, "older");
  EXPECT_EQ(refused, std::vector<std::string>{BackupName(1, 20)});
}

}  // namespace
}  // namespace e2d::node
