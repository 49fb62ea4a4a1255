// Copyright e2d authors.
//
// Backup files: round trips in every mode, and every kind of damage refused before a byte of
// payload is handed out.

#include "node/backup.h"

#include <zlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

enum class Mode { kPlain, kGzip, kEncrypted };

std::string ModeName(Mode m) {
  return m == Mode::kPlain ? "plain" : m == Mode::kGzip ? "gzip" : "encrypted";
}

BackupKeys Keys(const std::string& ca_key = "-----BEGIN PRIVATE KEY----- test") {
  absl::StatusOr<BackupKeys> k = DeriveBackupKeys(ca_key);
  EXPECT_TRUE(k.ok()) << k.status();
  return *k;
}

BackupMeta Meta() {
  BackupMeta m;
  m.cluster_id = 0x1234abcd;
  m.revision = 4242;
  m.raft_index = 9000;
  m.created_unix_seconds = 1796347775;
  m.members = {"0ee8e317d634da07 g1 10.0.0.1:2380", "a927dcb2b825e93f g2 10.0.0.2:2380"};
  return m;
}

// Deterministic bytes: half compressible text, half pseudo-random.
std::string Payload(size_t n) {
  std::string p;
  uint64_t x = 88172645463325252ull;
  while (p.size() < n) {
    if ((p.size() / 4096) % 2 == 0) {
      p += "key/0001 value-value-value ";
    } else {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      p.push_back(static_cast<char>(x));
    }
  }
  p.resize(n);
  return p;
}

std::optional<BackupKeys> KeysFor(Mode m) {
  return m == Mode::kEncrypted ? std::optional<BackupKeys>(Keys()) : std::nullopt;
}

std::string Write(Mode mode, const std::string& payload, size_t chunk = 7777) {
  BackupOptions o;
  o.gzip = mode == Mode::kGzip;
  o.keys = KeysFor(mode);
  for (size_t i = 0; i < o.iv.size(); ++i) o.iv[i] = static_cast<uint8_t>(i * 7 + 1);
  std::string file;
  absl::StatusOr<std::unique_ptr<BackupWriter>> w =
      BackupWriter::Start(o, Meta(), [&](std::string_view b) {
        file.append(b);
        return absl::OkStatus();
      });
  EXPECT_TRUE(w.ok()) << w.status();
  for (size_t at = 0; at < payload.size(); at += chunk) {
    EXPECT_TRUE((*w)->Write(std::string_view(payload).substr(at, chunk)).ok());
  }
  EXPECT_TRUE((*w)->Finish().ok());
  return file;
}

BackupSource SourceOf(const std::string& file, size_t* largest_read = nullptr) {
  return [&file, largest_read](uint64_t offset, size_t n) -> absl::StatusOr<std::string> {
    if (largest_read != nullptr) *largest_read = std::max(*largest_read, n);
    if (offset >= file.size()) return std::string();
    return file.substr(offset, n);
  };
}

// Restores `file`; `got` receives the payload; `calls` counts sink calls.
absl::StatusOr<BackupMeta> Restore(const std::string& file, const std::optional<BackupKeys>& keys,
                                   std::string* got, int* calls) {
  return RestoreBackup(SourceOf(file), file.size(), keys, [&](std::string_view b) {
    ++*calls;
    got->append(b);
    return absl::OkStatus();
  });
}

class BackupModeTest : public ::testing::TestWithParam<Mode> {};

TEST_P(BackupModeTest, RoundTripsEverySizeAndReadsInBoundedChunks) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{4096}, size_t{(3 << 20) + 17}}) {
    const std::string payload = Payload(n);
    const std::string file = Write(GetParam(), payload);
    size_t largest = 0;
    absl::StatusOr<BackupMeta> meta = VerifyBackup(SourceOf(file, &largest), file.size(),
                                                   KeysFor(GetParam()));
    ASSERT_TRUE(meta.ok()) << meta.status() << " " << ModeName(GetParam()) << " " << n;
    EXPECT_EQ(*meta, Meta());
    EXPECT_LE(largest, size_t{256 << 10});
    std::string got;
    int calls = 0;
    meta = Restore(file, KeysFor(GetParam()), &got, &calls);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_TRUE(got == payload) << ModeName(GetParam()) << " " << n << ": " << got.size();
  }
}

TEST_P(BackupModeTest, EveryTruncationIsRefusedBeforeAnythingIsRestored) {
  const std::string file = Write(GetParam(), Payload(3000));
  for (size_t len = 0; len < file.size(); ++len) {
    std::string got;
    int calls = 0;
    absl::StatusOr<BackupMeta> r = Restore(file.substr(0, len), KeysFor(GetParam()), &got, &calls);
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(calls, 0) << len;
    EXPECT_TRUE(r.status().code() == absl::StatusCode::kDataLoss ||
                r.status().code() == absl::StatusCode::kPermissionDenied)
        << r.status();
  }
}

TEST_P(BackupModeTest, EveryFlippedByteIsRefusedBeforeAnythingIsRestored) {
  const std::string file = Write(GetParam(), Payload(2000));
  for (size_t at = 0; at < file.size(); ++at) {
    std::string bad = file;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    std::string got;
    int calls = 0;
    absl::StatusOr<BackupMeta> r = Restore(bad, KeysFor(GetParam()), &got, &calls);
    ASSERT_FALSE(r.ok()) << "byte " << at;
    EXPECT_EQ(calls, 0) << "byte " << at;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), "backup: ")) << r.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, BackupModeTest,
                         ::testing::Values(Mode::kPlain, Mode::kGzip, Mode::kEncrypted),
                         [](const auto& info) { return ModeName(info.param); });

TEST(BackupTest, EncryptedFilesNeedTheRightKeyAndHideThePayload) {
  const std::string payload = Payload(100000);
  const std::string file = Write(Mode::kEncrypted, payload);
  EXPECT_FALSE(absl::StrContains(file, "key/0001 value"));
  std::string got;
  int calls = 0;
  absl::StatusOr<BackupMeta> r = Restore(file, Keys("another CA key"), &got, &calls);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "another CA key")) << r.status();
  EXPECT_EQ(calls, 0);
  r = Restore(file, std::nullopt, &got, &calls);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_EQ(calls, 0);
  // The keys differ per use: the MAC key is not the encryption key.
  const BackupKeys k = Keys();
  EXPECT_NE(k.encryption, k.mac);
}

TEST(BackupTest, GzipBodiesAreGzipStreamsThatShrinkText) {
  const std::string payload(1 << 20, 'a');
  const std::string file = Write(Mode::kGzip, payload);
  EXPECT_LT(file.size(), payload.size() / 50);
  // The body is what gunzip reads: find the gzip magic right after the header.
  const size_t body = file.find("\x1f\x8b");
  ASSERT_NE(body, std::string::npos);
  std::string out(payload.size(), '\0');
  uLongf out_len = out.size();
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(file.data() + body));
  z.avail_in = static_cast<uInt>(file.size() - body - kBackupTrailerSize);
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out_len);
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  EXPECT_EQ(z.total_out, payload.size());
  inflateEnd(&z);
  EXPECT_TRUE(out == payload);
}

TEST(BackupTest, RefusesWhatItCannotDoSafely) {
  BackupOptions o;
  o.gzip = true;
  o.keys = Keys();
  absl::StatusOr<std::unique_ptr<BackupWriter>> w =
      BackupWriter::Start(o, Meta(), [](std::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  BackupMeta huge = Meta();
  huge.members.assign(10000, std::string(20, 'm'));
  w = BackupWriter::Start(BackupOptions(), huge,
                          [](std::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(DeriveBackupKeys("").ok());
  // A later format version is named, not misread.
  std::string file = Write(Mode::kPlain, "x");
  file[7] = 2;
  absl::StatusOr<BackupMeta> r = VerifyBackup(SourceOf(file), file.size(), std::nullopt);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "format version 2")) << r.status();
}

TEST(BackupTest, TheWriterHandsBytesOutAsItGoes) {
  BackupOptions o;
  size_t out = 0;
  absl::StatusOr<std::unique_ptr<BackupWriter>> w =
      BackupWriter::Start(o, Meta(), [&](std::string_view b) {
        out += b.size();
        return absl::OkStatus();
      });
  ASSERT_TRUE(w.ok());
  const std::string chunk(1 << 20, 'z');
  for (int i = 0; i < 8; ++i) ASSERT_TRUE((*w)->Write(chunk).ok());
  EXPECT_GE(out, size_t{8} << 20);  // nothing held back for Finish
  ASSERT_TRUE((*w)->Finish().ok());
}

}  // namespace
}  // namespace e2d::node
