// Copyright e2d authors.

#include "env/posix_filesystem.h"

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "env/completion_queue.h"
#include "gtest/gtest.h"

namespace e2d::env {
namespace {

constexpr size_t kQueueMax = 4;

OpenOptions Create() {
  OpenOptions o;
  o.create = true;
  return o;
}

OpenOptions CreateExclusive() {
  OpenOptions o = Create();
  o.exclusive = true;
  return o;
}

bool Contains(const absl::Status& s, const std::string& part) {
  return std::string(s.message()).find(part) != std::string::npos;
}

// Holds the I/O thread inside a job until Release(): a deterministic way to fill the queue.
class IoThreadGate {
 public:
  explicit IoThreadGate(PosixFileSystem& fs,
                        PosixFileSystem::Lane lane = PosixFileSystem::Lane::kNormal) {
    fs.Enqueue(
        "gate",
        [this]() -> absl::Status {
          std::unique_lock<std::mutex> lock(mu_);
          started_ = true;
          cv_.notify_all();
          cv_.wait(lock, [this] { return released_; });
          return absl::OkStatus();
        },
        [this](absl::Status s) {
          EXPECT_TRUE(s.ok()) << s;
          completed_ = true;
        },
        lane);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return started_; });  // the queue behind it is now empty
  }

  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

  bool completed() const { return completed_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;   // guarded by mu_
  bool released_ = false;  // guarded by mu_
  bool completed_ = false;  // only touched on the test thread (through the queue)
};

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    parent_ = absl::StrCat(tmp ? tmp : "/tmp", "/posixfs_",
                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    root_ = parent_ + "/root";
    const std::string cmd = absl::StrCat("rm -rf '", parent_, "' && mkdir -p '", root_, "'");
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    fs_ = std::make_unique<PosixFileSystem>(root_, queue_.poster(), kQueueMax);
  }

  // Starts a sync through `start` and waits for its completion, which must not run inside the
  // call (a flag set right after the call returns is already set when it runs), must run once,
  // and must run on this thread (the poster's), not the I/O thread.
  absl::Status Await(const std::function<void(SyncCallback)>& start) {
    bool returned = false;
    bool ran = false;
    absl::Status result = absl::UnknownError("not run");
    const std::thread::id self = std::this_thread::get_id();
    start([&](absl::Status s) {
      EXPECT_TRUE(returned) << "completion ran inside the call that started it";
      EXPECT_FALSE(ran) << "completion ran twice";
      EXPECT_EQ(std::this_thread::get_id(), self) << "completion ran off the poster's thread";
      ran = true;
      result = std::move(s);
    });
    returned = true;
    queue_.RunUntil([&] { return ran; });
    return result;
  }

  std::unique_ptr<File> MustOpen(const std::string& path, const OpenOptions& options) {
    absl::StatusOr<std::unique_ptr<File>> f = fs_->Open(path, options);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? std::move(*f) : nullptr;
  }

  std::string parent_;  // holds root_, so that escapes from the root can be looked for
  std::string root_;
  CompletionQueue queue_;  // declared before fs_: outlives it, as the poster contract asks
  std::unique_ptr<PosixFileSystem> fs_;
};

TEST_F(PosixFileSystemTest, AppendWriteAtReadAtSizeTruncate) {
  std::unique_ptr<File> f = MustOpen("a.log", Create());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(*f->Size(), 0u);
  ASSERT_TRUE(f->Append("hello ").ok());
  ASSERT_TRUE(f->Append("world").ok());
  ASSERT_TRUE(f->WriteAt(0, "J").ok());
  EXPECT_EQ(*f->ReadAt(0, 100), "Jello world");  // short only at the end of the file
  EXPECT_EQ(*f->ReadAt(6, 3), "wor");
  EXPECT_EQ(*f->ReadAt(11, 5), "");
  EXPECT_EQ(*f->ReadAt(1000, 5), "");
  EXPECT_EQ(*f->Size(), 11u);
  ASSERT_TRUE(f->WriteAt(13, "!").ok());  // past the end: zeros in between
  EXPECT_EQ(*f->ReadAt(11, 3), std::string("\0\0!", 3));
  ASSERT_TRUE(f->Append("?").ok());  // appends after what WriteAt extended
  EXPECT_EQ(*f->ReadAt(13, 10), "!?");
  ASSERT_TRUE(f->Truncate(5).ok());
  EXPECT_EQ(*f->ReadAt(0, 100), "Jello");
  ASSERT_TRUE(f->Truncate(8).ok());  // growing fills with zeros
  EXPECT_EQ(*f->ReadAt(0, 100), std::string("Jello\0\0\0", 8));
  EXPECT_EQ(*f->Size(), 8u);
}

TEST_F(PosixFileSystemTest, OpenOptions) {
  EXPECT_EQ(fs_->Open("f", OpenOptions()).status().code(), absl::StatusCode::kNotFound);
  std::unique_ptr<File> f = MustOpen("f", CreateExclusive());
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->Append("kept").ok());
  f.reset();
  f = MustOpen("f", OpenOptions());  // exists: no create needed, contents kept
  EXPECT_EQ(*f->ReadAt(0, 10), "kept");
  f = MustOpen("f", Create());  // create on an existing file opens it as it is
  EXPECT_EQ(*f->Size(), 4u);
  OpenOptions truncate;
  truncate.truncate = true;
  f = MustOpen("f", truncate);
  EXPECT_EQ(*f->Size(), 0u);
  EXPECT_EQ(fs_->Open("f", CreateExclusive()).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(PosixFileSystemTest, SyncsCompleteThroughThePosterNeverInline) {
  std::unique_ptr<File> f = MustOpen("a.log", Create());
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->Append("x").ok());
  EXPECT_TRUE(Await([&](SyncCallback cb) { f->Sync(std::move(cb)); }).ok());
  ASSERT_TRUE(f->Append("y").ok());
  EXPECT_TRUE(Await([&](SyncCallback cb) { f->DataSync(std::move(cb)); }).ok());
  ASSERT_TRUE(fs_->CreateDir("d").ok());
  EXPECT_TRUE(Await([&](SyncCallback cb) { fs_->SyncDir("", std::move(cb)); }).ok());
  EXPECT_TRUE(Await([&](SyncCallback cb) { fs_->SyncDir("d", std::move(cb)); }).ok());
}

TEST_F(PosixFileSystemTest, SyncErrorsAlsoComeThroughThePoster) {
  absl::Status s = Await([&](SyncCallback cb) { fs_->SyncDir("missing", std::move(cb)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(Contains(s, root_ + "/missing")) << s;
  ASSERT_NE(MustOpen("file", Create()), nullptr);
  s = Await([&](SyncCallback cb) { fs_->SyncDir("file", std::move(cb)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;  // ENOTDIR
  s = Await([&](SyncCallback cb) { fs_->SyncDir("../x", std::move(cb)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(PosixFileSystemTest, DirectoriesRenameRemoveListExists) {
  EXPECT_TRUE(*fs_->Exists(""));
  ASSERT_TRUE(fs_->CreateDir("d").ok());
  ASSERT_TRUE(fs_->CreateDir("d").ok());  // already there: OK
  ASSERT_TRUE(fs_->CreateDir("d/e").ok());
  EXPECT_EQ(*fs_->List("d/e"), std::vector<std::string>{});
  for (std::string name : {"b", "a9", "B", "a10"}) {
    ASSERT_NE(MustOpen("d/" + name, Create()), nullptr);
  }
  // Sorted bytewise: upper case first, "a10" before "a9".
  EXPECT_EQ(*fs_->List("d"), (std::vector<std::string>{"B", "a10", "a9", "b", "e"}));
  EXPECT_EQ(*fs_->List(""), std::vector<std::string>{"d"});

  std::unique_ptr<File> b = MustOpen("d/b", OpenOptions());
  ASSERT_TRUE(b->Append("new").ok());
  ASSERT_TRUE(fs_->Rename("d/b", "d/B").ok());  // replaces the existing "B"
  EXPECT_FALSE(*fs_->Exists("d/b"));
  EXPECT_EQ(*MustOpen("d/B", OpenOptions())->ReadAt(0, 10), "new");
  EXPECT_FALSE(*fs_->Exists("d/B/x"));  // below a file: nothing exists

  EXPECT_EQ(fs_->Remove("d").code(), absl::StatusCode::kFailedPrecondition);  // not empty
  for (std::string name : {"B", "a9", "a10", "e"}) ASSERT_TRUE(fs_->Remove("d/" + name).ok());
  EXPECT_TRUE(fs_->Remove("d").ok());
  EXPECT_FALSE(*fs_->Exists("d"));
  EXPECT_EQ(*fs_->List(""), std::vector<std::string>{});
}

TEST_F(PosixFileSystemTest, ErrorsMapToStatusCodesAndNameOperationPathAndCause) {
  absl::Status s = fs_->Open("nope", OpenOptions()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, "opening " + root_ + "/nope")) << s;
  EXPECT_TRUE(Contains(s, std::strerror(ENOENT))) << s;

  ASSERT_NE(MustOpen("x", CreateExclusive()), nullptr);
  s = fs_->Open("x", CreateExclusive()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_TRUE(Contains(s, std::strerror(EEXIST))) << s;

  ASSERT_TRUE(fs_->CreateDir("d").ok());
  ASSERT_NE(MustOpen("d/f", Create()), nullptr);
  s = fs_->Remove("d");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(Contains(s, "removing " + root_ + "/d")) << s;

  EXPECT_EQ(fs_->Open("x/y", Create()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fs_->Open("d", OpenOptions()).status().code(),  // EISDIR
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fs_->List("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->List("x").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fs_->Remove("missing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->Rename("missing", "y").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->CreateDir("missing/d").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->CreateDir("x").code(), absl::StatusCode::kAlreadyExists);  // a file
  EXPECT_EQ(fs_->Remove("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs_->Rename("x", "").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PosixFileSystemTest, PathsThatCouldLeaveTheRootAreInvalidArgument) {
  ASSERT_TRUE(fs_->CreateDir("a").ok());
  for (const std::string bad :
       {"/etc/passwd", "/", "..", "../escape", "a/..", "a/../../escape", "a//b", "./x", "a/"}) {
    SCOPED_TRACE(bad);
    std::vector<absl::Status> results = {
        fs_->Open(bad, Create()).status(),
        fs_->CreateDir(bad),
        fs_->Rename("a", bad),
        fs_->Rename(bad, "b"),
        fs_->Remove(bad),
        fs_->List(bad).status(),
        fs_->Exists(bad).status(),
        Await([&](SyncCallback cb) { fs_->SyncDir(bad, std::move(cb)); }),
    };
    for (const absl::Status& s : results) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      EXPECT_TRUE(Contains(s, "'" + bad + "'")) << s;
    }
  }
  EXPECT_NE(::access((parent_ + "/escape").c_str(), F_OK), 0) << "a file escaped the root";
  EXPECT_TRUE(*fs_->Exists("a"));  // nothing was renamed away
}

TEST(ErrnoToStatus, MapsTheDocumentedCodes) {
  const std::vector<std::pair<int, absl::StatusCode>> table = {
      {ENOENT, absl::StatusCode::kNotFound},
      {EEXIST, absl::StatusCode::kAlreadyExists},
      {ENOTDIR, absl::StatusCode::kFailedPrecondition},
      {EISDIR, absl::StatusCode::kFailedPrecondition},
      {ENOTEMPTY, absl::StatusCode::kFailedPrecondition},
      {ENOSPC, absl::StatusCode::kResourceExhausted},
      {EDQUOT, absl::StatusCode::kResourceExhausted},
      {EIO, absl::StatusCode::kInternal},
      {EACCES, absl::StatusCode::kPermissionDenied},
      {EPERM, absl::StatusCode::kPermissionDenied},
      {EBADF, absl::StatusCode::kInternal},
  };
  for (const auto& [err, code] : table) {
    const absl::Status s = ErrnoToStatus(err, "writing wal/1.wal");
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_EQ(s.message(), absl::StrCat("writing wal/1.wal: ", std::strerror(err)));
  }
}

TEST_F(PosixFileSystemTest, SyncQueueIsBoundedAndRefusalsArePostedAtOnce) {
  std::unique_ptr<File> f = MustOpen("f", Create());
  ASSERT_NE(f, nullptr);
  IoThreadGate gate(*fs_);  // the I/O thread is busy; the queue is empty
  std::vector<absl::Status> results(kQueueMax + 2, absl::UnknownError("not run"));
  std::vector<size_t> order;
  size_t completed = 0;
  bool returned = false;
  for (size_t i = 0; i < results.size(); ++i) {
    f->DataSync([&, i](absl::Status s) {
      EXPECT_TRUE(returned) << "completion " << i << " ran inline";
      results[i] = std::move(s);
      order.push_back(i);
      ++completed;
    });
  }
  returned = true;
  // The two refusals arrive while the disk is still held: they wait for nothing.
  queue_.RunUntil([&] { return completed == 2; });
  EXPECT_EQ(order, (std::vector<size_t>{kQueueMax, kQueueMax + 1}));
  for (size_t i = kQueueMax; i < results.size(); ++i) {
    EXPECT_EQ(results[i].code(), absl::StatusCode::kResourceExhausted) << results[i];
    EXPECT_TRUE(Contains(results[i], "fdatasync " + root_ + "/f")) << results[i];
  }
  f.reset();  // closed while its syncs wait: the descriptor lives until they ran
  gate.Release();
  queue_.RunUntil([&] { return completed == results.size() && gate.completed(); });
  EXPECT_EQ(order, (std::vector<size_t>{4, 5, 0, 1, 2, 3}));  // accepted ones in FIFO order
  for (size_t i = 0; i < kQueueMax; ++i) EXPECT_TRUE(results[i].ok()) << results[i];
  // Room again once the queue drained.
  EXPECT_TRUE(Await([&](SyncCallback cb) { fs_->SyncDir("", std::move(cb)); }).ok());
}

// A held bulk lane (a snapshot's long flush) holds up bulk files' syncs only: the WAL's and the
// directories' complete meanwhile; and the other way round.
TEST_F(PosixFileSystemTest, BulkFilesSyncApartFromTheOthers) {
  OpenOptions bulk = Create();
  bulk.bulk = true;
  std::unique_ptr<File> snap = MustOpen("snap", bulk);
  std::unique_ptr<File> wal = MustOpen("wal", Create());
  ASSERT_NE(snap, nullptr);
  ASSERT_NE(wal, nullptr);
  {
    IoThreadGate gate(*fs_, PosixFileSystem::Lane::kBulk);
    bool snap_synced = false;
    snap->DataSync([&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      snap_synced = true;
    });
    EXPECT_TRUE(Await([&](SyncCallback cb) { wal->DataSync(std::move(cb)); }).ok());
    EXPECT_TRUE(Await([&](SyncCallback cb) { fs_->SyncDir("", std::move(cb)); }).ok());
    EXPECT_FALSE(snap_synced);  // still behind the gate
    gate.Release();
    queue_.RunUntil([&] { return snap_synced && gate.completed(); });
  }
  IoThreadGate gate(*fs_);
  EXPECT_TRUE(Await([&](SyncCallback cb) { snap->DataSync(std::move(cb)); }).ok());
  gate.Release();
  queue_.RunUntil([&] { return gate.completed(); });
}

TEST_F(PosixFileSystemTest, DestructorFinishesQueuedSyncsAndPostsTheirCompletions) {
  std::unique_ptr<File> f = MustOpen("f", Create());
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(f->Append("data").ok());
  std::vector<absl::Status> results;
  for (int i = 0; i < 3; ++i) {
    f->DataSync([&results](absl::Status s) { results.push_back(std::move(s)); });
  }
  f.reset();
  fs_.reset();  // joins the I/O thread after the three syncs ran
  EXPECT_TRUE(results.empty()) << "a completion ran on the I/O thread";
  queue_.Run(3);
  ASSERT_EQ(results.size(), 3u);
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace e2d::env
