// Copyright e2d authors.

#include "raft/snapshot_store.h"

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "env/crc32c.h"

namespace e2d::raft {
namespace {

constexpr char kMagic[] = "E2DSNAP1";
constexpr size_t kMagicBytes = 8;
constexpr size_t kHeaderBytes = kMagicBytes + 4 + 4 + 8;
constexpr uint32_t kMetadataBytesMax = 1 << 20;

void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetFixed(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// Parses "%016x-%016x.snap" into (term, index).
bool ParseName(const std::string& name, uint64_t* term, uint64_t* index) {
  if (name.size() != 16 + 1 + 16 + 5 || !absl::EndsWith(name, ".snap") || name[16] != '-') {
    return false;
  }
  return absl::SimpleHexAtoi(name.substr(0, 16), term) &&
         absl::SimpleHexAtoi(name.substr(17, 16), index);
}

}  // namespace

std::string SnapshotStore::FileName(uint64_t index, uint64_t term) {
  return absl::StrFormat("%016x-%016x.snap", term, index);
}

absl::Status SnapshotStore::Open() {
  if (absl::Status s = fs_.CreateDir(dir_); !s.ok()) return s;
  absl::StatusOr<std::vector<std::string>> names = fs_.List(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (absl::EndsWith(name, ".tmp")) {
      if (absl::Status s = fs_.Remove(Path(name)); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void SnapshotStore::Save(const raftpb::SnapshotMetadata& metadata, const std::string& data,
                         std::function<void(absl::Status)> done) {
  const std::string name = FileName(metadata.index(), metadata.term());
  auto fail = [&](absl::Status s) {
    // Completions never run inline: hand the error over through a sync of the directory.
    fs_.SyncDir(dir_, [done, s](absl::Status) { done(s); });
  };
  if (data.size() > data_bytes_max_) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "snapshot ", name, ": ", data.size(), " bytes of data, bound ", data_bytes_max_)));
  }
  // The file: magic, CRC-32C of the rest, meta size, data size, meta, data. The data (which can
  // be hundreds of MiB) is written as it is, never copied.
  const std::string meta = metadata.SerializeAsString();
  std::string head;
  PutFixed32(&head, static_cast<uint32_t>(meta.size()));
  PutFixed64(&head, data.size());
  head += meta;
  std::string file(kMagic, kMagicBytes);
  PutFixed32(&file, env::Crc32c(data, env::Crc32c(head)));
  file += head;
  const std::string tmp = Path(name + ".tmp");
  env::OpenOptions options;
  options.create = true;
  options.truncate = true;
  options.bulk = true;  // its flush must not hold up the WAL's syncs
  absl::StatusOr<std::unique_ptr<env::File>> f = fs_.Open(tmp, options);
  if (!f.ok()) return fail(f.status());
  absl::Status written = (*f)->Append(file);
  if (written.ok()) written = (*f)->Append(data);
  if (absl::Status s = written; !s.ok()) {
    fs_.Remove(tmp).IgnoreError();  // best effort; Open removes leftovers too
    return fail(s);
  }
  std::shared_ptr<env::File> shared(std::move(*f));
  shared->DataSync([this, shared, tmp, name, done](absl::Status s) {
    if (!s.ok()) {
      fs_.Remove(tmp).IgnoreError();
      return done(s);
    }
    if (s = fs_.Rename(tmp, Path(name)); !s.ok()) return done(s);
    fs_.SyncDir(dir_, [this, done](absl::Status s) {
      if (!s.ok() || parent_synced_) return done(s);
      // The directory's own entry (Open may have created it) is durable only once its parent
      // is synced.
      const size_t slash = dir_.rfind('/');
      fs_.SyncDir(slash == std::string::npos ? "" : dir_.substr(0, slash),
                  [this, done](absl::Status s) {
                    if (s.ok()) parent_synced_ = true;
                    done(s);
                  });
    });
  });
}

absl::StatusOr<StoredSnapshot> SnapshotStore::Load(uint64_t index, uint64_t term) {
  const std::string name = FileName(index, term);
  const std::string path = Path(name);
  auto damaged = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("snapshot file ", path, ": ", what));
  };
  absl::StatusOr<std::unique_ptr<env::File>> f = fs_.Open(path, env::OpenOptions());
  if (!f.ok()) return f.status();
  absl::StatusOr<uint64_t> size = (*f)->Size();
  if (!size.ok()) return size.status();
  if (*size < kHeaderBytes) return damaged(absl::StrCat("only ", *size, " bytes"));
  if (*size > kHeaderBytes + kMetadataBytesMax + data_bytes_max_) {
    return damaged(absl::StrCat(*size, " bytes, more than any snapshot may have"));
  }
  absl::StatusOr<std::string> bytes = (*f)->ReadAt(0, *size);
  if (!bytes.ok()) return bytes.status();
  const std::string& b = *bytes;
  if (b.compare(0, kMagicBytes, kMagic) != 0) return damaged("bad magic at offset 0");
  const uint32_t crc = static_cast<uint32_t>(GetFixed(b.data() + kMagicBytes, 4));
  if (env::Crc32c(std::string_view(b).substr(kMagicBytes + 4)) != crc) {
    return damaged("checksum mismatch");
  }
  const uint64_t meta_len = GetFixed(b.data() + kMagicBytes + 4, 4);
  const uint64_t data_len = GetFixed(b.data() + kMagicBytes + 8, 8);
  if (meta_len > kMetadataBytesMax || kHeaderBytes + meta_len + data_len != b.size()) {
    return damaged(absl::StrCat("lengths (metadata ", meta_len, ", data ", data_len,
                                ") do not match the file size ", b.size()));
  }
  StoredSnapshot out;
  if (!out.metadata.ParseFromArray(b.data() + kHeaderBytes, static_cast<int>(meta_len))) {
    return damaged("metadata does not parse");
  }
  if (out.metadata.index() != index || out.metadata.term() != term) {
    return damaged(absl::StrCat("holds snapshot ", out.metadata.index(), "/",
                                out.metadata.term(), ", not what its name says"));
  }
  out.data = b.substr(kHeaderBytes + meta_len);
  return out;
}

absl::Status SnapshotStore::RemoveBelow(uint64_t index) {
  absl::StatusOr<std::vector<std::string>> names = fs_.List(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    uint64_t term = 0, i = 0;
    if (ParseName(name, &term, &i) && i < index) {
      if (absl::Status s = fs_.Remove(Path(name)); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace e2d::raft
