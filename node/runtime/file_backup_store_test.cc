// Copyright e2d authors.

#include "node/runtime/file_backup_store.h"
#include "node/runtime/backup_stores.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

std::string TempDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/file_backup_store_test";
}

TEST(FileBackupStoreTest, PutListGetDeleteAndTemporaryFilesAreNeverListed) {
  const std::string dir = TempDir() + "/a/b";
  absl::StatusOr<std::unique_ptr<BackupStore>> s = OpenBackupStore("file://" + dir);
  ASSERT_TRUE(s.ok()) << s.status();
  BackupStore& store = **s;
  EXPECT_EQ(store.Describe(), "file://" + dir);
  ASSERT_TRUE(store.Put("e2d-1.bkp", "one").ok());
  ASSERT_TRUE(store.Put("e2d-2.bkp", "two").ok());
  ASSERT_TRUE(store.Put("e2d-2.bkp", "two again").ok());  // replaced whole
  std::ofstream(dir + "/.e2d-3.bkp.part") << "half";      // a crash mid-Put
  std::ofstream(dir + "/notes.txt") << "not ours";
  std::vector<std::string> names = *store.List();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"e2d-1.bkp", "e2d-2.bkp"}));
  EXPECT_EQ(*store.Get("e2d-2.bkp"), "two again");
  struct stat st;
  ASSERT_EQ(::stat((dir + "/e2d-1.bkp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(store.Delete("e2d-1.bkp").ok());
  EXPECT_TRUE(store.Delete("e2d-1.bkp").ok());  // already gone: fine
  EXPECT_EQ(store.Get("e2d-1.bkp").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Put("../escape.bkp", "x").code(), absl::StatusCode::kInvalidArgument);
}

TEST(FileBackupStoreTest, BadUrlsAndPathsAreRefusedClearly) {
  EXPECT_TRUE(absl::StrContains(OpenBackupStore("ftp://x").status().message(), "file://DIR"));
  EXPECT_FALSE(OpenBackupStore("file://").ok());
  const std::string file = TempDir() + "-plain-file";
  std::ofstream(file) << "x";
  absl::StatusOr<std::unique_ptr<BackupStore>> s = OpenBackupStore("file://" + file);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
}

}  // namespace
}  // namespace e2d::node
