// Copyright e2d authors.
//
// Implementation notes.
//  - Inodes (files and directories) live in an ordered map keyed by a never-reused id. A
//    directory holds two name -> inode maps: live_children (what lookups see) and
//    durable_children (what a crash leaves). Keying entries by (directory inode, name) rather
//    than by full path keeps a removed-and-recreated directory from reviving old durable entries.
//  - An inode is freed once no live entry, no durable entry and no open handle names it
//    (link counts below). Crash() frees everything the durable tree does not reach.
//  - Syncs form one FIFO per disk (sync_queue_). Each has its own simulator event at its due
//    time; when one fires it completes every sync issued before it that is still queued, so
//    completions stay in issue order even when a stall set later pushes some of them back.
//  - File objects and events hold a shared token (self_) that the Impl nulls on destruction, and
//    the generation the disk had when they were made; Crash()/Wipe() bump the generation, which
//    turns old handles stale and old sync events into no-ops.
//  - std::map (ordered, deterministic) holds the inodes because callers keep references to one
//    inode while others are created or freed, which absl::btree_map would invalidate.

#include "sim/sim_disk.h"

#include <algorithm>
#include <deque>
#include <map>
#include <type_traits>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "env/check.h"

namespace e2d::sim {
namespace {

using InodeId = uint64_t;
using Parts = std::vector<std::string_view>;

constexpr InodeId kNoInode = 0;
constexpr InodeId kRootInode = 1;

// Largest file the simulated disk accepts (EFBIG beyond). Keeps a wild offset from trying to
// allocate the world; far above anything a test or simulation writes.
constexpr uint64_t kMaxFileSizeBytes = uint64_t{1} << 32;

// One not-yet-durable change to a file's content, in issue order.
struct PendingOp {
  uint64_t seq = 0;
  bool is_truncate = false;  // true: resize to `offset`; false: write `data` at `offset`
  uint64_t offset = 0;
  std::string data;
};

struct Inode {
  bool is_dir = false;
  // Files.
  std::string live;
  std::string durable;
  std::vector<PendingOp> pending;  // seq strictly increasing
  uint64_t next_seq = 1;
  std::vector<std::pair<uint64_t, uint64_t>> read_errors;  // [begin, end) byte ranges
  // Directories.
  absl::btree_map<std::string, InodeId, std::less<>> live_children;
  absl::btree_map<std::string, InodeId, std::less<>> durable_children;
  // What keeps the inode alive.
  uint32_t live_links = 0;
  uint32_t durable_links = 0;
  uint32_t handles = 0;
};

// An issued Sync/DataSync/SyncDir waiting for its completion.
struct SyncJob {
  uint64_t id = 0;
  InodeId ino = kNoInode;
  bool is_dir = false;
  uint64_t seq_hi = 0;  // files: covers pending ops with seq <= seq_hi
  std::string path;
  env::SyncCallback done;
};

using ReadyCallbacks = std::vector<std::pair<env::SyncCallback, absl::Status>>;

// Message building. (Debian's Abseil has its own string_view, which absl::StrCat insists on.)
void AppendPiece(std::string& out, std::string_view piece) { out.append(piece); }
template <typename T>
  requires std::is_integral_v<T>
void AppendPiece(std::string& out, T value) {
  out.append(std::to_string(value));
}
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(out, pieces), ...);
  return out;
}

std::string Quote(std::string_view path) { return Cat("'", path, "'"); }

// Splits a relative path into its components; "" (the root) has none.
absl::StatusOr<Parts> SplitPath(std::string_view path) {
  Parts parts;
  if (path.empty()) return parts;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string_view part =
        path.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                           : slash - start);
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(Cat("invalid path ", Quote(path)));
    }
    parts.push_back(part);
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

// Writes `data` at `offset` of `content`, zero-filling any gap. An empty write changes nothing.
void WriteInto(std::string& content, uint64_t offset, std::string_view data) {
  if (data.empty()) return;
  const uint64_t end = offset + data.size();
  if (content.size() < end) content.resize(end, '\0');
  content.replace(offset, data.size(), data);
}

void ApplyOp(std::string& content, const PendingOp& op) {
  if (op.is_truncate) {
    content.resize(op.offset, '\0');
  } else {
    WriteInto(content, op.offset, op.data);
  }
}

uint64_t WriteDetail(std::string_view path, uint64_t offset, std::string_view data) {
  return env::HashCombine(env::HashCombine(env::StableHash(path), offset),
                          env::StableHash(data));
}

}  // namespace

class SimDisk::Impl {
 public:
  Impl(Simulator& sim, NodeId node, env::Random random, const DiskFaults& faults);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  env::FileSystem& fs() { return *fs_; }
  uint64_t generation() const { return generation_; }

  // FileSystem operations.
  absl::StatusOr<std::unique_ptr<env::File>> Open(std::string_view path,
                                                  const env::OpenOptions& options);
  absl::Status CreateDir(std::string_view path);
  absl::Status Rename(std::string_view from, std::string_view to);
  absl::Status Remove(std::string_view path);
  absl::StatusOr<std::vector<std::string>> List(std::string_view dir);
  absl::StatusOr<bool> Exists(std::string_view path);
  void SyncDir(std::string_view dir, env::SyncCallback done);

  // File operations on a handle of the current generation (the handle keeps `ino` alive).
  // `offset` empty means append. `path` is the name the file was opened under, for messages.
  absl::Status Write(InodeId ino, std::string_view path, std::optional<uint64_t> offset,
                     std::string_view data);
  absl::StatusOr<std::string> Read(InodeId ino, std::string_view path, uint64_t offset,
                                   size_t n) const;
  uint64_t Size(InodeId ino) const { return At(ino).live.size(); }
  absl::Status Truncate(InodeId ino, std::string_view path, uint64_t size, bool may_fail);
  void SyncFile(InodeId ino, std::string_view path, env::SyncCallback done);
  void ReleaseHandle(InodeId ino);

  // Runs `done(status)` as an event at the current time (errors of calls that never queue).
  void ScheduleFailure(env::SyncCallback done, absl::Status status);

  // SimDisk's own operations.
  CrashReport Crash();
  void Wipe();
  absl::Status InjectReadError(std::string_view path, uint64_t offset, uint64_t length);
  void ClearReadErrors();
  absl::Status FlipBit(std::string_view path, uint64_t offset, int bit);
  std::optional<std::string> LiveContents(std::string_view path) const;
  std::optional<std::string> DurableContents(std::string_view path) const;
  uint64_t used_bytes() const { return used_bytes_; }

 private:
  Inode& At(InodeId ino);
  const Inode& At(InodeId ino) const;
  InodeId NewInode(bool is_dir);

  // The live inode named by the first `count` components of `parts`, kNoInode if missing.
  // FailedPrecondition if a component before those is not a directory.
  absl::StatusOr<InodeId> Walk(const Parts& parts, size_t count, std::string_view path) const;
  // The live directory that holds the last component of `parts`; `missing` is the error code
  // when it does not exist. REQUIRES: !parts.empty().
  absl::StatusOr<InodeId> ParentDir(const Parts& parts, std::string_view path,
                                    absl::StatusCode missing) const;
  // The live regular file at `path`: NotFound if missing, FailedPrecondition if a directory.
  absl::StatusOr<InodeId> ResolveFile(std::string_view path) const;
  InodeId Find(InodeId dir, std::string_view name) const;

  // Bytes of `n` counted against the capacity: live size of a file something still uses.
  uint64_t Charge(const Inode& n) const;
  void Recharge(uint64_t before, const Inode& n) { used_bytes_ = used_bytes_ - before + Charge(n); }
  // ResourceExhausted unless `n` may grow to `new_size`.
  absl::Status CheckSpace(const Inode& n, uint64_t new_size, std::string_view path,
                          uint64_t offset) const;
  bool InjectWriteError() { return random_.Chance(faults_.write_error_probability); }

  void LinkLive(InodeId dir, std::string_view name, InodeId ino);
  void UnlinkLive(InodeId dir, std::string_view name);
  // Frees `ino` and whatever only it kept alive, once nothing names or holds it.
  void MaybeFree(InodeId ino);

  void Enqueue(SyncJob job);
  void ScheduleSyncEvent(int64_t at_ns, uint64_t job_id, uint64_t detail);
  // Completes every queued sync up to and including `job_id` (unless stalled).
  ReadyCallbacks OnSyncDue(uint64_t job_id, uint64_t detail);
  absl::Status CompleteSync(const SyncJob& job);
  void CommitFile(Inode& n, uint64_t seq_hi, bool apply);
  void CommitDir(Inode& dir);

  uint64_t CountRevertedEntries() const;
  absl::btree_set<InodeId> DurablyReachable() const;
  void RecoverFile(Inode& n, CrashReport& report);
  // Applies `op` partially to `content`. Returns true if it counts as torn, false if as kept
  // (`*applied` tells a truncate's fate).
  bool TearOp(std::string& content, const PendingOp& op, bool* applied);
  void RebuildLinksAndUsage();
  void ResetToEmpty();

  Simulator& sim_;
  const NodeId node_;
  env::Random random_;
  const DiskFaults& faults_;
  std::shared_ptr<Impl*> self_;  // handed to files and events; nulled when the disk goes away
  std::unique_ptr<env::FileSystem> fs_;
  uint64_t generation_ = 1;
  InodeId next_inode_ = kRootInode + 1;  // ids are never reused
  std::map<InodeId, Inode> inodes_;
  uint64_t used_bytes_ = 0;
  uint64_t next_sync_id_ = 1;
  std::deque<SyncJob> sync_queue_;  // issued, not completed, in issue order
  int64_t last_sync_due_ns_ = 0;
};

namespace {

// A handle on one inode for one generation of the disk.
class SimFile final : public env::File {
 public:
  SimFile(std::shared_ptr<SimDisk::Impl*> disk, uint64_t generation, InodeId ino,
          std::string path)
      : disk_(std::move(disk)), generation_(generation), ino_(ino), path_(std::move(path)) {}
  ~SimFile() override {
    if (SimDisk::Impl* d = Current()) d->ReleaseHandle(ino_);
  }

  absl::Status Append(std::string_view data) override {
    SimDisk::Impl* d = Current();
    if (d == nullptr) return Stale();
    return d->Write(ino_, path_, std::nullopt, data);
  }
  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    SimDisk::Impl* d = Current();
    if (d == nullptr) return Stale();
    return d->Write(ino_, path_, offset, data);
  }
  absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t n) override {
    SimDisk::Impl* d = Current();
    if (d == nullptr) return Stale();
    return d->Read(ino_, path_, offset, n);
  }
  absl::StatusOr<uint64_t> Size() override {
    SimDisk::Impl* d = Current();
    if (d == nullptr) return Stale();
    return d->Size(ino_);
  }
  absl::Status Truncate(uint64_t size) override {
    SimDisk::Impl* d = Current();
    if (d == nullptr) return Stale();
    return d->Truncate(ino_, path_, size, /*may_fail=*/true);
  }
  void Sync(env::SyncCallback done) override { DoSync(std::move(done)); }
  void DataSync(env::SyncCallback done) override { DoSync(std::move(done)); }

 private:
  // The disk if this handle is still valid, else nullptr.
  SimDisk::Impl* Current() const {
    SimDisk::Impl* d = *disk_;
    return d != nullptr && d->generation() == generation_ ? d : nullptr;
  }
  absl::Status Stale() const {
    return absl::FailedPreconditionError(
        Cat("stale file handle for ", Quote(path_), " (disk crashed or wiped)"));
  }
  void DoSync(env::SyncCallback done) {
    SimDisk::Impl* d = *disk_;
    if (d == nullptr) return;  // the disk is gone: like a crash, the callback never runs
    if (d->generation() != generation_) {
      d->ScheduleFailure(std::move(done), Stale());
      return;
    }
    d->SyncFile(ino_, path_, std::move(done));
  }

  const std::shared_ptr<SimDisk::Impl*> disk_;
  const uint64_t generation_;
  const InodeId ino_;
  const std::string path_;
};

// The env::FileSystem face of a disk.
class FsView final : public env::FileSystem {
 public:
  explicit FsView(SimDisk::Impl* disk) : disk_(disk) {}

  absl::StatusOr<std::unique_ptr<env::File>> Open(std::string_view path,
                                                  const env::OpenOptions& options) override {
    return disk_->Open(path, options);
  }
  absl::Status CreateDir(std::string_view path) override { return disk_->CreateDir(path); }
  absl::Status Rename(std::string_view from, std::string_view to) override {
    return disk_->Rename(from, to);
  }
  absl::Status Remove(std::string_view path) override { return disk_->Remove(path); }
  absl::StatusOr<std::vector<std::string>> List(std::string_view dir) override {
    return disk_->List(dir);
  }
  absl::StatusOr<bool> Exists(std::string_view path) override { return disk_->Exists(path); }
  void SyncDir(std::string_view dir, env::SyncCallback done) override {
    disk_->SyncDir(dir, std::move(done));
  }

 private:
  SimDisk::Impl* const disk_;
};

}  // namespace

// ---- Construction and lookup ----

SimDisk::Impl::Impl(Simulator& sim, NodeId node, env::Random random, const DiskFaults& faults)
    : sim_(sim),
      node_(node),
      random_(std::move(random)),
      faults_(faults),
      self_(std::make_shared<Impl*>(this)),
      fs_(std::make_unique<FsView>(this)) {
  ResetToEmpty();
}

SimDisk::Impl::~Impl() { *self_ = nullptr; }

void SimDisk::Impl::ResetToEmpty() {
  inodes_.clear();
  sync_queue_.clear();
  used_bytes_ = 0;
  last_sync_due_ns_ = 0;
  inodes_[kRootInode].is_dir = true;
}

Inode& SimDisk::Impl::At(InodeId ino) {
  auto it = inodes_.find(ino);
  E2D_CHECK(it != inodes_.end(), "no inode %llu", static_cast<unsigned long long>(ino));
  return it->second;
}

const Inode& SimDisk::Impl::At(InodeId ino) const {
  auto it = inodes_.find(ino);
  E2D_CHECK(it != inodes_.end(), "no inode %llu", static_cast<unsigned long long>(ino));
  return it->second;
}

InodeId SimDisk::Impl::NewInode(bool is_dir) {
  const InodeId ino = next_inode_++;
  inodes_[ino].is_dir = is_dir;
  return ino;
}

InodeId SimDisk::Impl::Find(InodeId dir, std::string_view name) const {
  const Inode& d = At(dir);
  auto it = d.live_children.find(name);
  return it == d.live_children.end() ? kNoInode : it->second;
}

absl::StatusOr<InodeId> SimDisk::Impl::Walk(const Parts& parts, size_t count,
                                            std::string_view path) const {
  InodeId ino = kRootInode;
  for (size_t i = 0; i < count; ++i) {
    if (!At(ino).is_dir) {
      return absl::FailedPreconditionError(
          Cat("not a directory: component ", i, " of ", Quote(path)));
    }
    ino = Find(ino, parts[i]);
    if (ino == kNoInode) return kNoInode;
  }
  return ino;
}

absl::StatusOr<InodeId> SimDisk::Impl::ParentDir(const Parts& parts, std::string_view path,
                                                 absl::StatusCode missing) const {
  E2D_CHECK(!parts.empty(), "the root has no parent");
  absl::StatusOr<InodeId> dir = Walk(parts, parts.size() - 1, path);
  if (!dir.ok()) return dir.status();
  if (*dir == kNoInode) {
    return absl::Status(missing, Cat("parent directory of ", Quote(path),
                                              " does not exist"));
  }
  if (!At(*dir).is_dir) {
    return absl::FailedPreconditionError(
        Cat("parent of ", Quote(path), " is not a directory"));
  }
  return dir;
}

absl::StatusOr<InodeId> SimDisk::Impl::ResolveFile(std::string_view path) const {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<InodeId> ino = Walk(*parts, parts->size(), path);
  if (!ino.ok()) return ino.status();
  if (*ino == kNoInode) return absl::NotFoundError(Cat("no such file ", Quote(path)));
  if (At(*ino).is_dir) {
    return absl::FailedPreconditionError(Cat(Quote(path), " is a directory"));
  }
  return ino;
}

// ---- Space accounting and links ----

uint64_t SimDisk::Impl::Charge(const Inode& n) const {
  if (n.is_dir || (n.live_links == 0 && n.handles == 0)) return 0;
  return n.live.size();
}

absl::Status SimDisk::Impl::CheckSpace(const Inode& n, uint64_t new_size, std::string_view path,
                                       uint64_t offset) const {
  if (new_size <= n.live.size()) return absl::OkStatus();
  const uint64_t growth = new_size - n.live.size();
  const uint64_t capacity = faults_.capacity_bytes;
  if (used_bytes_ <= capacity && growth <= capacity - used_bytes_) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      Cat("no space left writing ", Quote(path), " at offset ", offset, " (",
                   growth, " more bytes, ", used_bytes_, " of ", capacity, " used)"));
}

void SimDisk::Impl::LinkLive(InodeId dir, std::string_view name, InodeId ino) {
  Inode& n = At(ino);
  const uint64_t before = Charge(n);
  auto [it, inserted] = At(dir).live_children.emplace(std::string(name), ino);
  E2D_CHECK(inserted, "entry already exists");
  ++n.live_links;
  Recharge(before, n);
}

void SimDisk::Impl::UnlinkLive(InodeId dir, std::string_view name) {
  Inode& d = At(dir);
  auto it = d.live_children.find(name);
  E2D_CHECK(it != d.live_children.end(), "unlinking a missing entry");
  const InodeId ino = it->second;
  d.live_children.erase(it);
  Inode& n = At(ino);
  const uint64_t before = Charge(n);
  E2D_CHECK(n.live_links > 0, "live link count underflow");
  --n.live_links;
  Recharge(before, n);
  MaybeFree(ino);
}

void SimDisk::Impl::MaybeFree(InodeId ino) {
  std::vector<InodeId> work{ino};
  while (!work.empty()) {
    const InodeId id = work.back();
    work.pop_back();
    auto it = inodes_.find(id);
    if (id == kRootInode || it == inodes_.end()) continue;
    const Inode& n = it->second;
    if (n.live_links > 0 || n.durable_links > 0 || n.handles > 0) continue;
    E2D_CHECK(n.live_children.empty(), "freeing a directory with live entries");
    E2D_CHECK(Charge(n) == 0, "freeing a charged inode");
    for (const auto& [name, child] : n.durable_children) {
      Inode& c = At(child);
      E2D_CHECK(c.durable_links > 0, "durable link count underflow");
      --c.durable_links;
      work.push_back(child);
    }
    inodes_.erase(it);
  }
}

void SimDisk::Impl::ReleaseHandle(InodeId ino) {
  Inode& n = At(ino);
  const uint64_t before = Charge(n);
  E2D_CHECK(n.handles > 0, "handle count underflow");
  --n.handles;
  Recharge(before, n);
  MaybeFree(ino);
}

// ---- FileSystem operations ----

absl::StatusOr<std::unique_ptr<env::File>> SimDisk::Impl::Open(std::string_view path,
                                                                const env::OpenOptions& options) {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return parts.status();
  if (parts->empty()) return absl::FailedPreconditionError("cannot open the root directory");
  absl::StatusOr<InodeId> dir = ParentDir(
      *parts, path,
      options.create ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kNotFound);
  if (!dir.ok()) return dir.status();
  InodeId ino = Find(*dir, parts->back());
  if (ino != kNoInode && At(ino).is_dir) {
    return absl::FailedPreconditionError(Cat(Quote(path), " is a directory"));
  }
  if (ino != kNoInode && options.create && options.exclusive) {
    return absl::AlreadyExistsError(Cat(Quote(path), " already exists"));
  }
  if (ino == kNoInode && !options.create) {
    return absl::NotFoundError(Cat("no such file ", Quote(path)));
  }
  if (ino == kNoInode) {
    ino = NewInode(/*is_dir=*/false);
    LinkLive(*dir, parts->back(), ino);
    sim_.Record(node_, "disk.create", env::StableHash(path));
  } else if (options.truncate) {
    absl::Status status = Truncate(ino, path, 0, /*may_fail=*/false);
    E2D_CHECK(status.ok(), "truncating to zero cannot fail");
  }
  ++At(ino).handles;  // charge unchanged: the inode is linked
  return std::unique_ptr<env::File>(
      std::make_unique<SimFile>(self_, generation_, ino, std::string(path)));
}

absl::Status SimDisk::Impl::CreateDir(std::string_view path) {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return parts.status();
  if (parts->empty()) return absl::OkStatus();  // the root always exists
  absl::StatusOr<InodeId> dir = ParentDir(*parts, path, absl::StatusCode::kFailedPrecondition);
  if (!dir.ok()) return dir.status();
  const InodeId existing = Find(*dir, parts->back());
  if (existing != kNoInode) {
    if (At(existing).is_dir) return absl::OkStatus();
    return absl::AlreadyExistsError(Cat(Quote(path), " exists and is a file"));
  }
  LinkLive(*dir, parts->back(), NewInode(/*is_dir=*/true));
  sim_.Record(node_, "disk.mkdir", env::StableHash(path));
  return absl::OkStatus();
}

absl::Status SimDisk::Impl::Rename(std::string_view from, std::string_view to) {
  absl::StatusOr<Parts> from_parts = SplitPath(from);
  if (!from_parts.ok()) return from_parts.status();
  absl::StatusOr<Parts> to_parts = SplitPath(to);
  if (!to_parts.ok()) return to_parts.status();
  if (from_parts->empty()) return absl::UnimplementedError("cannot rename the root directory");
  if (to_parts->empty()) return absl::FailedPreconditionError("cannot rename onto the root");
  absl::StatusOr<InodeId> from_dir = ParentDir(*from_parts, from, absl::StatusCode::kNotFound);
  if (!from_dir.ok()) return from_dir.status();
  const InodeId ino = Find(*from_dir, from_parts->back());
  if (ino == kNoInode) return absl::NotFoundError(Cat("no such file ", Quote(from)));
  if (At(ino).is_dir) {
    return absl::UnimplementedError(Cat("renaming directory ", Quote(from)));
  }
  absl::StatusOr<InodeId> to_dir =
      ParentDir(*to_parts, to, absl::StatusCode::kFailedPrecondition);
  if (!to_dir.ok()) return to_dir.status();
  const InodeId replaced = Find(*to_dir, to_parts->back());
  if (replaced != kNoInode && At(replaced).is_dir) {
    return absl::FailedPreconditionError(Cat("rename target ", Quote(to),
                                                      " is a directory"));
  }
  if (replaced == ino) return absl::OkStatus();  // same file (POSIX: nothing happens)
  if (replaced != kNoInode) UnlinkLive(*to_dir, to_parts->back());
  LinkLive(*to_dir, to_parts->back(), ino);
  UnlinkLive(*from_dir, from_parts->back());
  sim_.Record(node_, "disk.rename",
              env::HashCombine(env::StableHash(from), env::StableHash(to)));
  return absl::OkStatus();
}

absl::Status SimDisk::Impl::Remove(std::string_view path) {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return parts.status();
  if (parts->empty()) return absl::InvalidArgumentError("cannot remove the root directory");
  absl::StatusOr<InodeId> dir = ParentDir(*parts, path, absl::StatusCode::kNotFound);
  if (!dir.ok()) return dir.status();
  const InodeId ino = Find(*dir, parts->back());
  if (ino == kNoInode) return absl::NotFoundError(Cat("no such file ", Quote(path)));
  if (At(ino).is_dir && !At(ino).live_children.empty()) {
    return absl::FailedPreconditionError(Cat("directory ", Quote(path),
                                                      " is not empty"));
  }
  UnlinkLive(*dir, parts->back());
  sim_.Record(node_, "disk.remove", env::StableHash(path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SimDisk::Impl::List(std::string_view dir) {
  absl::StatusOr<Parts> parts = SplitPath(dir);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<InodeId> ino = Walk(*parts, parts->size(), dir);
  if (!ino.ok()) return ino.status();
  if (*ino == kNoInode) return absl::NotFoundError(Cat("no such directory ", Quote(dir)));
  const Inode& d = At(*ino);
  if (!d.is_dir) return absl::FailedPreconditionError(Cat(Quote(dir), " is a file"));
  std::vector<std::string> names;
  names.reserve(d.live_children.size());
  for (const auto& [name, child] : d.live_children) names.push_back(name);
  return names;
}

absl::StatusOr<bool> SimDisk::Impl::Exists(std::string_view path) {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<InodeId> ino = Walk(*parts, parts->size(), path);
  if (!ino.ok()) return false;  // an ancestor is a file: nothing below it exists
  return *ino != kNoInode;
}

// ---- File operations ----

absl::Status SimDisk::Impl::Write(InodeId ino, std::string_view path,
                                  std::optional<uint64_t> offset, std::string_view data) {
  Inode& n = At(ino);
  const uint64_t at = offset.has_value() ? *offset : n.live.size();
  if (data.size() > kMaxFileSizeBytes || at > kMaxFileSizeBytes - data.size()) {
    return absl::OutOfRangeError(Cat("write to ", Quote(path), " at offset ", at,
                                              " of ", data.size(),
                                              " bytes exceeds the maximum file size"));
  }
  const uint64_t new_size =
      data.empty() ? n.live.size() : std::max<uint64_t>(n.live.size(), at + data.size());
  absl::Status space = CheckSpace(n, new_size, path, at);
  if (!space.ok()) return space;
  if (InjectWriteError()) {
    return absl::InternalError(
        Cat("EIO writing ", Quote(path), " at offset ", at, " (injected)"));
  }
  const uint64_t before = Charge(n);
  WriteInto(n.live, at, data);
  Recharge(before, n);
  n.pending.push_back(PendingOp{n.next_seq++, /*is_truncate=*/false, at, std::string(data)});
  sim_.Record(node_, offset.has_value() ? "disk.writeat" : "disk.append",
              WriteDetail(path, at, data));
  return absl::OkStatus();
}

absl::StatusOr<std::string> SimDisk::Impl::Read(InodeId ino, std::string_view path,
                                                uint64_t offset, size_t n) const {
  const Inode& node = At(ino);
  if (offset >= node.live.size() || n == 0) return std::string();
  const uint64_t end = offset + std::min<uint64_t>(n, node.live.size() - offset);
  for (const auto& [bad_begin, bad_end] : node.read_errors) {
    if (bad_begin < end && offset < bad_end) {
      return absl::DataLossError(Cat("read error in ", Quote(path), " at offset ",
                                              offset, " (unreadable bytes [", bad_begin, ", ",
                                              bad_end, "))"));
    }
  }
  return node.live.substr(offset, end - offset);
}

absl::Status SimDisk::Impl::Truncate(InodeId ino, std::string_view path, uint64_t size,
                                     bool may_fail) {
  Inode& n = At(ino);
  if (size > kMaxFileSizeBytes) {
    return absl::OutOfRangeError(Cat("truncate of ", Quote(path), " to ", size,
                                              " bytes exceeds the maximum file size"));
  }
  absl::Status space = CheckSpace(n, size, path, n.live.size());
  if (!space.ok()) return space;
  if (may_fail && InjectWriteError()) {
    return absl::InternalError(
        Cat("EIO truncating ", Quote(path), " at offset ", size, " (injected)"));
  }
  const uint64_t before = Charge(n);
  n.live.resize(size, '\0');
  Recharge(before, n);
  n.pending.push_back(PendingOp{n.next_seq++, /*is_truncate=*/true, size, std::string()});
  sim_.Record(node_, "disk.truncate", env::HashCombine(env::StableHash(path), size));
  return absl::OkStatus();
}

// ---- Syncs ----

void SimDisk::Impl::SyncFile(InodeId ino, std::string_view path, env::SyncCallback done) {
  SyncJob job;
  job.ino = ino;
  job.seq_hi = At(ino).next_seq - 1;
  job.path = std::string(path);
  job.done = std::move(done);
  Enqueue(std::move(job));
}

void SimDisk::Impl::SyncDir(std::string_view dir, env::SyncCallback done) {
  absl::StatusOr<Parts> parts = SplitPath(dir);
  absl::StatusOr<InodeId> ino =
      parts.ok() ? Walk(*parts, parts->size(), dir) : absl::StatusOr<InodeId>(parts.status());
  if (ino.ok() && *ino == kNoInode) {
    ino = absl::NotFoundError(Cat("no such directory ", Quote(dir)));
  } else if (ino.ok() && !At(*ino).is_dir) {
    ino = absl::FailedPreconditionError(Cat(Quote(dir), " is not a directory"));
  }
  if (!ino.ok()) {
    ScheduleFailure(std::move(done), ino.status());
    return;
  }
  SyncJob job;
  job.ino = *ino;
  job.is_dir = true;
  job.path = std::string(dir);
  job.done = std::move(done);
  Enqueue(std::move(job));
}

void SimDisk::Impl::ScheduleFailure(env::SyncCallback done, absl::Status status) {
  std::shared_ptr<Impl*> self = self_;
  const uint64_t generation = generation_;
  sim_.Schedule(sim_.now_ns(), node_, "disk.sync", env::StableHash(std::string(status.message())),
                [self, generation, done = std::move(done), status = std::move(status)] {
                  if (*self == nullptr || (*self)->generation_ != generation) return;
                  done(status);
                });
}

void SimDisk::Impl::Enqueue(SyncJob job) {
  int64_t due_ns = sim_.now_ns() + faults_.sync_latency_ns;
  if (faults_.sync_jitter_ns > 0) due_ns += random_.Range(0, faults_.sync_jitter_ns);
  if (random_.Chance(faults_.sync_spike_probability)) due_ns += faults_.sync_spike_latency_ns;
  due_ns = std::max({due_ns, last_sync_due_ns_, faults_.stall_until_ns});
  last_sync_due_ns_ = due_ns;
  job.id = next_sync_id_++;
  const uint64_t detail =
      env::HashCombine(env::HashCombine(env::StableHash(job.path), job.seq_hi), job.is_dir);
  const uint64_t id = job.id;
  sync_queue_.push_back(std::move(job));
  ScheduleSyncEvent(due_ns, id, detail);
}

void SimDisk::Impl::ScheduleSyncEvent(int64_t at_ns, uint64_t job_id, uint64_t detail) {
  std::shared_ptr<Impl*> self = self_;
  const uint64_t generation = generation_;
  sim_.Schedule(at_ns, node_, "disk.sync", detail, [self, generation, job_id, detail] {
    if (*self == nullptr || (*self)->generation_ != generation) return;
    ReadyCallbacks ready = (*self)->OnSyncDue(job_id, detail);
    for (auto& [done, status] : ready) {
      // A callback may crash, wipe or destroy the disk: later ones then must not run.
      if (*self == nullptr || (*self)->generation_ != generation) return;
      if (done) done(status);
    }
  });
}

ReadyCallbacks SimDisk::Impl::OnSyncDue(uint64_t job_id, uint64_t detail) {
  ReadyCallbacks ready;
  if (sim_.now_ns() < faults_.stall_until_ns) {  // a stall set after the sync was issued
    last_sync_due_ns_ = std::max(last_sync_due_ns_, faults_.stall_until_ns);
    ScheduleSyncEvent(faults_.stall_until_ns, job_id, detail);
    return ready;
  }
  auto it = std::find_if(sync_queue_.begin(), sync_queue_.end(),
                         [job_id](const SyncJob& job) { return job.id == job_id; });
  if (it == sync_queue_.end()) return ready;  // completed along with a later one
  const size_t count = static_cast<size_t>(it - sync_queue_.begin()) + 1;
  for (size_t i = 0; i < count; ++i) {
    SyncJob job = std::move(sync_queue_.front());
    sync_queue_.pop_front();
    absl::Status status = CompleteSync(job);
    ready.emplace_back(std::move(job.done), std::move(status));
  }
  return ready;
}

absl::Status SimDisk::Impl::CompleteSync(const SyncJob& job) {
  const bool failed = random_.Chance(faults_.sync_error_probability);
  if (failed) sim_.Record(node_, "disk.sync_failed", env::StableHash(job.path));
  auto it = inodes_.find(job.ino);
  if (it != inodes_.end()) {  // else freed meanwhile: nothing left to make durable
    if (job.is_dir) {
      if (!failed) CommitDir(it->second);
    } else {
      CommitFile(it->second, job.seq_hi, /*apply=*/!failed);
    }
  }
  if (!failed) return absl::OkStatus();
  return absl::InternalError(Cat("EIO syncing ", Quote(job.path), " (injected)"));
}

void SimDisk::Impl::CommitFile(Inode& n, uint64_t seq_hi, bool apply) {
  size_t covered = 0;
  while (covered < n.pending.size() && n.pending[covered].seq <= seq_hi) {
    if (apply) ApplyOp(n.durable, n.pending[covered]);
    ++covered;
  }
  n.pending.erase(n.pending.begin(), n.pending.begin() + static_cast<ptrdiff_t>(covered));
}

void SimDisk::Impl::CommitDir(Inode& dir) {
  // Count the new durable entries before dropping the old ones, so an inode in both stays alive.
  for (const auto& [name, child] : dir.live_children) ++At(child).durable_links;
  std::vector<InodeId> old;
  old.reserve(dir.durable_children.size());
  for (const auto& [name, child] : dir.durable_children) {
    Inode& c = At(child);
    E2D_CHECK(c.durable_links > 0, "durable link count underflow");
    --c.durable_links;
    old.push_back(child);
  }
  dir.durable_children = dir.live_children;
  for (InodeId child : old) MaybeFree(child);
}

// ---- Crash and wipe ----

uint64_t SimDisk::Impl::CountRevertedEntries() const {
  uint64_t reverted = 0;
  for (const auto& [id, n] : inodes_) {
    if (!n.is_dir) continue;
    for (const auto& [name, child] : n.live_children) {
      auto it = n.durable_children.find(name);
      if (it == n.durable_children.end() || it->second != child) ++reverted;
    }
    for (const auto& [name, child] : n.durable_children) {
      if (!n.live_children.contains(name)) ++reverted;
    }
  }
  return reverted;
}

absl::btree_set<InodeId> SimDisk::Impl::DurablyReachable() const {
  absl::btree_set<InodeId> reached = {kRootInode};
  std::vector<InodeId> work = {kRootInode};
  while (!work.empty()) {
    const Inode& n = At(work.back());
    work.pop_back();
    for (const auto& [name, child] : n.durable_children) {
      if (reached.insert(child).second) work.push_back(child);
    }
  }
  return reached;
}

bool SimDisk::Impl::TearOp(std::string& content, const PendingOp& op, bool* applied) {
  *applied = true;
  if (op.is_truncate) {
    *applied = random_.Chance(0.5);
    if (*applied) ApplyOp(content, op);
    return false;
  }
  if (op.data.empty()) return false;
  const uint64_t begin = op.offset;
  const uint64_t end = begin + op.data.size();
  // Cut points: the write's start, then every sector boundary strictly inside the write.
  const uint64_t first_boundary = (begin / kSectorSizeBytes + 1) * kSectorSizeBytes;
  const uint64_t boundaries =
      end > first_boundary ? (end - first_boundary + kSectorSizeBytes - 1) / kSectorSizeBytes
                           : 0;
  const uint64_t choice = random_.Uniform(boundaries + 1);
  const uint64_t cut = choice == 0 ? begin : first_boundary + (choice - 1) * kSectorSizeBytes;
  const bool garbage = random_.Chance(0.5);
  const bool full_size = random_.Chance(0.5);
  const uint64_t old_size = content.size();
  WriteInto(content, begin, std::string_view(op.data).substr(0, cut - begin));
  std::string rest(end - cut, '\0');
  if (garbage) {
    for (char& c : rest) c = static_cast<char>(random_.Next() & 0xff);
  }
  WriteInto(content, cut, rest);
  const uint64_t prefix_size = cut > begin ? std::max(old_size, cut) : old_size;
  content.resize(full_size ? std::max(old_size, end) : prefix_size, '\0');
  return true;
}

void SimDisk::Impl::RecoverFile(Inode& n, CrashReport& report) {
  std::string content = n.durable;
  const size_t count = n.pending.size();
  if (faults_.tear_on_crash && count > 0) {
    const size_t kept = static_cast<size_t>(random_.Uniform(count + 1));
    for (size_t i = 0; i < kept; ++i) ApplyOp(content, n.pending[i]);
    report.pending_ops_kept += kept;
    report.pending_ops_lost += count - kept;
    if (kept < count) {
      bool applied = false;
      if (TearOp(content, n.pending[kept], &applied)) {
        ++report.torn_writes;
        --report.pending_ops_lost;
      } else if (applied) {
        ++report.pending_ops_kept;
        --report.pending_ops_lost;
      }
    }
  } else {
    report.pending_ops_lost += count;
  }
  n.live = content;
  n.durable = std::move(content);
  n.pending.clear();
}

void SimDisk::Impl::RebuildLinksAndUsage() {
  for (auto& [id, n] : inodes_) {
    n.live_links = 0;
    n.durable_links = 0;
    n.handles = 0;
  }
  for (const auto& [id, n] : inodes_) {
    for (const auto& [name, child] : n.durable_children) {
      Inode& c = At(child);
      ++c.live_links;
      ++c.durable_links;
    }
  }
  used_bytes_ = 0;
  for (const auto& [id, n] : inodes_) used_bytes_ += Charge(n);
}

CrashReport SimDisk::Impl::Crash() {
  CrashReport report;
  ++generation_;  // every handle and queued sync of the old generation is dead
  sync_queue_.clear();
  last_sync_due_ns_ = 0;
  report.entries_reverted = CountRevertedEntries();
  const absl::btree_set<InodeId> reachable = DurablyReachable();
  for (auto it = inodes_.begin(); it != inodes_.end();) {
    Inode& n = it->second;
    if (!reachable.contains(it->first)) {
      report.pending_ops_lost += n.pending.size();
      it = inodes_.erase(it);
      continue;
    }
    if (n.is_dir) {
      n.live_children = n.durable_children;
    } else {
      RecoverFile(n, report);
    }
    ++it;
  }
  RebuildLinksAndUsage();
  uint64_t detail = env::HashCombine(report.pending_ops_lost, report.pending_ops_kept);
  detail = env::HashCombine(detail, report.torn_writes);
  detail = env::HashCombine(detail, report.entries_reverted);
  for (const auto& [id, n] : inodes_) detail = env::HashCombine(detail, env::StableHash(n.live));
  sim_.Record(node_, "disk.crash", detail);
  return report;
}

void SimDisk::Impl::Wipe() {
  ++generation_;
  ResetToEmpty();
  sim_.Record(node_, "disk.wipe", generation_);
}

// ---- Fault injection and inspection ----

absl::Status SimDisk::Impl::InjectReadError(std::string_view path, uint64_t offset,
                                            uint64_t length) {
  absl::StatusOr<InodeId> ino = ResolveFile(path);
  if (!ino.ok()) return ino.status();
  const uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
  At(*ino).read_errors.emplace_back(offset, end);
  return absl::OkStatus();
}

void SimDisk::Impl::ClearReadErrors() {
  for (auto& [id, n] : inodes_) n.read_errors.clear();
}

absl::Status SimDisk::Impl::FlipBit(std::string_view path, uint64_t offset, int bit) {
  if (bit < 0 || bit > 7) {
    return absl::InvalidArgumentError(Cat("bit ", bit, " is not in 0..7"));
  }
  absl::StatusOr<InodeId> ino = ResolveFile(path);
  if (!ino.ok()) return ino.status();
  Inode& n = At(*ino);
  if (offset >= n.live.size() && offset >= n.durable.size()) {
    return absl::OutOfRangeError(
        Cat("no byte at offset ", offset, " of ", Quote(path), " to flip"));
  }
  const char mask = static_cast<char>(1 << bit);
  if (offset < n.live.size()) n.live[offset] ^= mask;
  if (offset < n.durable.size()) n.durable[offset] ^= mask;
  sim_.Record(node_, "disk.flipbit",
              env::HashCombine(env::HashCombine(env::StableHash(path), offset), bit));
  return absl::OkStatus();
}

std::optional<std::string> SimDisk::Impl::LiveContents(std::string_view path) const {
  absl::StatusOr<InodeId> ino = ResolveFile(path);
  if (!ino.ok()) return std::nullopt;
  return At(*ino).live;
}

std::optional<std::string> SimDisk::Impl::DurableContents(std::string_view path) const {
  absl::StatusOr<Parts> parts = SplitPath(path);
  if (!parts.ok()) return std::nullopt;
  InodeId ino = kRootInode;
  for (std::string_view part : *parts) {
    const Inode& dir = At(ino);
    auto it = dir.durable_children.find(part);
    if (!dir.is_dir || it == dir.durable_children.end()) return std::nullopt;
    ino = it->second;
  }
  const Inode& n = At(ino);
  if (n.is_dir) return std::nullopt;
  return n.durable;
}

// ---- SimDisk ----

SimDisk::SimDisk(Simulator& sim, NodeId node, env::Random random)
    : sim_(sim), impl_(std::make_unique<Impl>(sim, node, std::move(random), faults_)) {}

SimDisk::~SimDisk() = default;

env::FileSystem& SimDisk::fs() { return impl_->fs(); }

CrashReport SimDisk::Crash() { return impl_->Crash(); }

void SimDisk::Wipe() { impl_->Wipe(); }

absl::Status SimDisk::InjectReadError(std::string_view path, uint64_t offset, uint64_t length) {
  return impl_->InjectReadError(path, offset, length);
}

void SimDisk::ClearReadErrors() { impl_->ClearReadErrors(); }

absl::Status SimDisk::FlipBit(std::string_view path, uint64_t offset, int bit) {
  return impl_->FlipBit(path, offset, bit);
}

std::optional<std::string> SimDisk::LiveContents(std::string_view path) const {
  return impl_->LiveContents(path);
}

std::optional<std::string> SimDisk::DurableContents(std::string_view path) const {
  return impl_->DurableContents(path);
}

uint64_t SimDisk::used_bytes() const { return impl_->used_bytes(); }

}  // namespace e2d::sim
