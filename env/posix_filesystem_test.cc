// Copyright e2d authors.

#include "env/posix_filesystem.h"

#include "env/completion_queue.h"

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace e2d::env {
namespace {

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(tmp ? tmp : "/tmp", "/posixfs_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::string cmd = absl::StrCat("rm -rf '", root_, "' && mkdir -p '", root_, "'");
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    fs_ = std::make_unique<PosixFileSystem>(root_, poster_.poster(), 4);
  }

  absl::Status SyncFile(File& f) {
    absl::Status result = absl::UnknownError("not run");
    bool returned = false;
    f.DataSync([&](absl::Status s) {
      EXPECT_TRUE(returned) << "completion ran inline";
      result = s;
    });
    returned = true;
    poster_.Run(1);
    return result;
  }

  std::string root_;
  CompletionQueue poster_;
  std::unique_ptr<PosixFileSystem> fs_;
};

OpenOptions Create() {
  OpenOptions o;
  o.create = true;
  return o;
}

TEST_F(PosixFileSystemTest, WritesReadsTruncatesAndSyncs) {
  auto f = fs_->Open("a.log", Create());
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Append("hello ").ok());
  ASSERT_TRUE((*f)->Append("world").ok());
  ASSERT_TRUE((*f)->WriteAt(0, "J").ok());
  EXPECT_EQ(*(*f)->ReadAt(0, 100), "Jello world");
  EXPECT_EQ(*(*f)->ReadAt(6, 3), "wor");
  EXPECT_EQ(*(*f)->Size(), 11u);
  ASSERT_TRUE((*f)->WriteAt(13, "!").ok());  // past the end: zeros in between
  EXPECT_EQ(*(*f)->ReadAt(11, 3), std::string("\0\0!", 3));
  ASSERT_TRUE((*f)->Truncate(5).ok());
  EXPECT_EQ(*(*f)->ReadAt(0, 100), "Jello");
  EXPECT_TRUE(SyncFile(**f).ok());
  absl::Status dir = absl::UnknownError("not run");
  fs_->SyncDir("", [&](absl::Status s) { dir = s; });
  poster_.Run(1);
  EXPECT_TRUE(dir.ok()) << dir;
}

TEST_F(PosixFileSystemTest, DirectoriesRenameListExists) {
  ASSERT_TRUE(fs_->CreateDir("d").ok());
  ASSERT_TRUE(fs_->CreateDir("d").ok());  // idempotent
  for (std::string name : {"c", "a", "b"}) ASSERT_TRUE(fs_->Open("d/" + name, Create()).ok());
  EXPECT_EQ(*fs_->List("d"), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_TRUE(fs_->Rename("d/a", "d/z").ok());
  EXPECT_FALSE(*fs_->Exists("d/a"));
  EXPECT_TRUE(*fs_->Exists("d/z"));
  EXPECT_EQ(fs_->Remove("d").code(), absl::StatusCode::kFailedPrecondition);  // not empty
  for (std::string name : {"b", "c", "z"}) ASSERT_TRUE(fs_->Remove("d/" + name).ok());
  EXPECT_TRUE(fs_->Remove("d").ok());
}

TEST_F(PosixFileSystemTest, ErrorsMapToStatusCodesAndNameThePath) {
  auto missing = fs_->Open("nope", OpenOptions());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos) << missing.status();
  OpenOptions excl = Create();
  excl.exclusive = true;
  ASSERT_TRUE(fs_->Open("x", excl).ok());
  EXPECT_EQ(fs_->Open("x", excl).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(fs_->Open("x/y", Create()).status().code(), absl::StatusCode::kFailedPrecondition);
  for (const char* bad : {"/etc/passwd", "../x", "a/../../x", "a//b", "./x"}) {
    absl::Status s = fs_->Open(bad, Create()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  }
  EXPECT_EQ(ErrnoToStatus(ENOSPC, "w").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(EIO, "w").code(), absl::StatusCode::kInternal);
}

TEST_F(PosixFileSystemTest, SyncQueueIsBoundedAndAFileMayCloseWhileItsSyncWaits) {
  // Hold the I/O thread on a job until released, fill the queue (bound 4), then one more.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  fs_->Enqueue(
      [&]() -> absl::Status {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return release; });
        return absl::OkStatus();
      },
      [](absl::Status) {});
  // The thread may not have taken the blocking job yet: 3 or 4 of the 6 fit, the rest fail.
  std::vector<absl::Status> results;
  auto f = fs_->Open("f", Create());
  ASSERT_TRUE(f.ok());
  for (int i = 0; i < 6; ++i) {
    (*f)->DataSync([&results](absl::Status s) { results.push_back(s); });
  }
  f->reset();  // closed while its syncs wait
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  poster_.Run(7);
  int exhausted = 0, ok = 0;
  for (const absl::Status& s : results) {
    (s.code() == absl::StatusCode::kResourceExhausted ? exhausted : ok) += 1;
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kResourceExhausted) << s;
  }
  EXPECT_GE(exhausted, 2);  // 4 wait (or 3, beside the blocking job); the rest are refused
  EXPECT_GE(ok, 3);
}

}  // namespace
}  // namespace e2d::env
