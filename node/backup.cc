// Copyright e2d authors.

#include "node/backup.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "env/check.h"
#include "env/openssl_errors.h"
#include "env/status_macros.h"
#include "gossip/crypto.h"

namespace e2d::node {

namespace {

constexpr char kMagic[8] = {'E', '2', 'D', 'B', 'K', 'U', 'P', 0x01};
constexpr uint8_t kFlagGzip = 1, kFlagEncrypted = 2;
constexpr size_t kFixedHeader = sizeof(kMagic) + 1 + 4;  // magic, flags, meta length
constexpr size_t kChunk = 256 << 10;                     // read and encode granularity

using env::DrainOpenSslErrors;

absl::Status Bad(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("backup: ", what));
}

// SHA-256, or HMAC-SHA-512/256 under a key: what the trailer holds.
class Digest {
 public:
  static absl::StatusOr<std::unique_ptr<Digest>> Make(const std::optional<BackupKeys>& keys) {
    auto d = std::unique_ptr<Digest>(new Digest());
    if (keys.has_value()) {
      d->mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
      if (d->mac_ != nullptr) d->mac_ctx_ = EVP_MAC_CTX_new(d->mac_);
      char digest[] = "SHA512-256";
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                             OSSL_PARAM_construct_end()};
      if (d->mac_ctx_ == nullptr ||
          EVP_MAC_init(d->mac_ctx_, keys->mac.data(), keys->mac.size(), params) != 1) {
        return absl::InternalError(
            absl::StrCat("backup: HMAC-SHA-512/256 unavailable: ", DrainOpenSslErrors()));
      }
    } else {
      d->md_ctx_ = EVP_MD_CTX_new();
      if (d->md_ctx_ == nullptr || EVP_DigestInit_ex(d->md_ctx_, EVP_sha256(), nullptr) != 1) {
        return absl::InternalError(
            absl::StrCat("backup: SHA-256 unavailable: ", DrainOpenSslErrors()));
      }
    }
    return d;
  }
  ~Digest() {
    EVP_MAC_CTX_free(mac_ctx_);
    EVP_MAC_free(mac_);
    EVP_MD_CTX_free(md_ctx_);
  }
  void Update(std::string_view bytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const int ok = mac_ctx_ != nullptr ? EVP_MAC_update(mac_ctx_, p, bytes.size())
                                       : EVP_DigestUpdate(md_ctx_, p, bytes.size());
    E2D_CHECK(ok == 1, "digest update failed: %s", DrainOpenSslErrors().c_str());
  }
  std::string Final() {
    std::string out(kBackupTrailerSize, '\0');
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    size_t mac_len = 0;
    unsigned int md_len = 0;
    const int ok = mac_ctx_ != nullptr ? EVP_MAC_final(mac_ctx_, p, &mac_len, out.size())
                                       : EVP_DigestFinal_ex(md_ctx_, p, &md_len);
    E2D_CHECK(ok == 1 && (mac_len == out.size() || md_len == out.size()),
              "digest final failed: %s", DrainOpenSslErrors().c_str());
    return out;
  }

 private:
  Digest() = default;
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* mac_ctx_ = nullptr;
  EVP_MD_CTX* md_ctx_ = nullptr;
};

// AES-256-CTR (encryption and decryption are the same operation).
class Ctr {
 public:
  static absl::StatusOr<std::unique_ptr<Ctr>> Make(const BackupKeys& keys,
                                                   const std::array<uint8_t, kBackupIvSize>& iv) {
    auto c = std::unique_ptr<Ctr>(new Ctr());
    c->ctx_ = EVP_CIPHER_CTX_new();
    if (c->ctx_ == nullptr || EVP_EncryptInit_ex(c->ctx_, EVP_aes_256_ctr(), nullptr,
                                                 keys.encryption.data(), iv.data()) != 1) {
      return absl::InternalError(
          absl::StrCat("backup: AES-256-CTR unavailable: ", DrainOpenSslErrors()));
    }
    return c;
  }
  ~Ctr() { EVP_CIPHER_CTX_free(ctx_); }
  std::string Apply(std::string_view in) {
    std::string out(in.size(), '\0');
    int len = 0;
    const int ok = EVP_EncryptUpdate(ctx_, reinterpret_cast<unsigned char*>(out.data()), &len,
                                     reinterpret_cast<const unsigned char*>(in.data()),
                                     static_cast<int>(in.size()));
    E2D_CHECK(ok == 1 && static_cast<size_t>(len) == in.size(), "AES-256-CTR failed: %s",
              DrainOpenSslErrors().c_str());
    return out;
  }

 private:
  Ctr() = default;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

std::string MetaText(const BackupMeta& m) {
  std::string out = absl::StrCat("e2d-backup-meta v1\ncluster_id=", absl::Hex(m.cluster_id),
                                 "\nrevision=", m.revision, "\nraft_index=", m.raft_index,
                                 "\ncreated=", m.created_unix_seconds, "\n");
  for (const std::string& member : m.members) absl::StrAppend(&out, "member=", member, "\n");
  return out;
}

absl::StatusOr<BackupMeta> ParseMeta(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.size() < 5 || lines[0] != "e2d-backup-meta v1") {
    return Bad("the header's metadata does not start with \"e2d-backup-meta v1\"");
  }
  BackupMeta m;
  auto field = [&](size_t i, absl::string_view key, uint64_t* v, bool hex) -> absl::Status {
    absl::string_view line = lines[i];
    const std::string prefix = absl::StrCat(key, "=");
    if (line.substr(0, prefix.size()) != prefix ||
        !(hex ? absl::SimpleHexAtoi(line.substr(prefix.size()), v)
              : absl::SimpleAtoi(line.substr(prefix.size()), v))) {
      return Bad(absl::StrCat("the header's metadata line ", i + 1, " is not ", key, "=..."));
    }
    return absl::OkStatus();
  };
  E2D_RETURN_IF_ERROR(field(1, "cluster_id", &m.cluster_id, true));
  E2D_RETURN_IF_ERROR(field(2, "revision", &m.revision, false));
  E2D_RETURN_IF_ERROR(field(3, "raft_index", &m.raft_index, false));
  E2D_RETURN_IF_ERROR(field(4, "created", &m.created_unix_seconds, false));
  for (size_t i = 5; i < lines.size(); ++i) {
    if (lines[i].substr(0, 7) != "member=") {
      return Bad(absl::StrCat("the header's metadata line ", i + 1, " is not member=..."));
    }
    m.members.emplace_back(std::string(lines[i].substr(7)));
  }
  return m;
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(std::string_view b) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(b[i])) << (8 * i);
  return v;
}

class Writer final : public BackupWriter {
 public:
  Writer(const BackupOptions& o, BackupSink sink, std::unique_ptr<Digest> digest)
      : options_(o), sink_(std::move(sink)), digest_(std::move(digest)) {}
  ~Writer() override {
    if (gzip_started_) deflateEnd(&z_);
  }

  absl::Status Init(const BackupMeta& meta) {
    const std::string text = MetaText(meta);
    if (text.size() > kBackupMetaMax) {
      return absl::InvalidArgumentError(absl::StrCat("backup: metadata of ", text.size(),
                                                     " bytes exceeds ", kBackupMetaMax));
    }
    std::string header(kMagic, sizeof(kMagic));
    header.push_back(static_cast<char>((options_.gzip ? kFlagGzip : 0) |
                                       (options_.keys.has_value() ? kFlagEncrypted : 0)));
    PutU32(&header, static_cast<uint32_t>(text.size()));
    header += text;
    if (options_.keys.has_value()) {
      header.append(reinterpret_cast<const char*>(options_.iv.data()), options_.iv.size());
      E2D_ASSIGN_OR_RETURN(ctr_, Ctr::Make(*options_.keys, options_.iv));
    }
    if (options_.gzip) {
      std::memset(&z_, 0, sizeof(z_));
      // windowBits 15 + 16: a gzip wrapper (gunzip reads the body as it is).
      if (deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                       Z_DEFAULT_STRATEGY) != Z_OK) {
        return absl::InternalError("backup: zlib deflateInit2 failed");
      }
      gzip_started_ = true;
    }
    return Emit(header);
  }

  absl::Status Write(std::string_view payload) override {
    E2D_CHECK(!finished_, "backup written after Finish");
    for (size_t at = 0; at < payload.size(); at += kChunk) {
      std::string_view part = payload.substr(at, kChunk);
      if (options_.gzip) {
        E2D_RETURN_IF_ERROR(Deflate(part, Z_NO_FLUSH));
      } else if (ctr_ != nullptr) {
        E2D_RETURN_IF_ERROR(Emit(ctr_->Apply(part)));
      } else {
        E2D_RETURN_IF_ERROR(Emit(part));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    E2D_CHECK(!finished_, "backup finished twice");
    finished_ = true;
    if (options_.gzip) E2D_RETURN_IF_ERROR(Deflate({}, Z_FINISH));
    return sink_(digest_->Final());
  }

 private:
  absl::Status Emit(std::string_view bytes) {
    digest_->Update(bytes);
    return sink_(bytes);
  }

  absl::Status Deflate(std::string_view in, int flush) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    std::string out(kChunk, '\0');
    while (true) {
      z_.next_out = reinterpret_cast<Bytef*>(out.data());
      z_.avail_out = static_cast<uInt>(out.size());
      const int r = deflate(&z_, flush);
      if (r == Z_STREAM_ERROR) return absl::InternalError("backup: zlib deflate failed");
      const size_t produced = out.size() - z_.avail_out;
      if (produced > 0) E2D_RETURN_IF_ERROR(Emit(std::string_view(out.data(), produced)));
      if (flush == Z_FINISH ? r == Z_STREAM_END : z_.avail_in == 0 && z_.avail_out != 0) break;
    }
    return absl::OkStatus();
  }

  const BackupOptions options_;
  BackupSink sink_;
  std::unique_ptr<Digest> digest_;
  std::unique_ptr<Ctr> ctr_;
  z_stream z_;
  bool gzip_started_ = false;
  bool finished_ = false;
};

// The parsed header of a file.
struct Header {
  uint8_t flags = 0;
  std::string meta_text;  // parsed only once the trailer proved it
  std::array<uint8_t, kBackupIvSize> iv{};
  uint64_t body_start = 0;
};

absl::StatusOr<std::string> ReadExactly(const BackupSource& source, uint64_t offset, size_t n,
                                        absl::string_view what) {
  E2D_ASSIGN_OR_RETURN(std::string bytes, source(offset, n));
  if (bytes.size() != n) {
    return Bad(absl::StrCat("truncated: the ", what, " at byte ", offset, " is cut short"));
  }
  return bytes;
}

absl::StatusOr<Header> ReadHeader(const BackupSource& source, uint64_t size,
                                  const std::optional<BackupKeys>& keys) {
  if (size < kFixedHeader + kBackupTrailerSize) {
    return Bad(absl::StrCat("truncated: ", size, " bytes cannot hold a header and a trailer"));
  }
  E2D_ASSIGN_OR_RETURN(std::string fixed, ReadExactly(source, 0, kFixedHeader, "header"));
  if (fixed.compare(0, 7, kMagic, 7) != 0) return Bad("not an e2d backup (bad magic)");
  if (fixed[7] != kMagic[7]) {
    return Bad(absl::StrCat("format version ", static_cast<int>(static_cast<uint8_t>(fixed[7])),
                            " is not known to this e2d (it reads version 1)"));
  }
  Header h;
  h.flags = static_cast<uint8_t>(fixed[8]);
  if ((h.flags & ~(kFlagGzip | kFlagEncrypted)) != 0 ||
      h.flags == (kFlagGzip | kFlagEncrypted)) {
    return Bad(absl::StrCat("unknown flags ", static_cast<int>(h.flags), " at byte 8"));
  }
  const bool encrypted = (h.flags & kFlagEncrypted) != 0;
  if (encrypted && !keys.has_value()) {
    return absl::FailedPreconditionError(
        "backup: the file is encrypted: the CA key (--ca-key) is needed to read it");
  }
  const uint32_t meta_len = GetU32(std::string_view(fixed).substr(9));
  if (meta_len > kBackupMetaMax) {
    return Bad(absl::StrCat("the metadata length ", meta_len, " at byte 9 exceeds ",
                            kBackupMetaMax));
  }
  h.body_start = kFixedHeader + meta_len + (encrypted ? kBackupIvSize : 0);
  if (h.body_start + kBackupTrailerSize > size) {
    return Bad(absl::StrCat("truncated: the header needs ", h.body_start, " bytes and the "
                            "trailer ", kBackupTrailerSize, ", the file has ", size));
  }
  E2D_ASSIGN_OR_RETURN(std::string meta, ReadExactly(source, kFixedHeader, meta_len, "metadata"));
  if (encrypted) {
    E2D_ASSIGN_OR_RETURN(std::string iv, ReadExactly(source, kFixedHeader + meta_len,
                                                     kBackupIvSize, "IV"));
    std::memcpy(h.iv.data(), iv.data(), kBackupIvSize);
  }
  h.meta_text = std::move(meta);
  return h;
}

}  // namespace

absl::StatusOr<BackupKeys> DeriveBackupKeys(std::string_view ca_key) {
  BackupKeys k;
  E2D_ASSIGN_OR_RETURN(gossip::Key enc, gossip::DeriveKey(ca_key, "e2d backup aes-256-ctr v1"));
  E2D_ASSIGN_OR_RETURN(gossip::Key mac,
                       gossip::DeriveKey(ca_key, "e2d backup hmac-sha512/256 v1"));
  std::copy(enc.begin(), enc.end(), k.encryption.begin());
  std::copy(mac.begin(), mac.end(), k.mac.begin());
  return k;
}

absl::StatusOr<std::unique_ptr<BackupWriter>> BackupWriter::Start(const BackupOptions& options,
                                                                  const BackupMeta& meta,
                                                                  BackupSink sink) {
  if (options.gzip && options.keys.has_value()) {
    return absl::InvalidArgumentError(
        "backup: compression and encryption exclude each other (compressing before encrypting "
        "leaks the content through the length)");
  }
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<Digest> digest, Digest::Make(options.keys));
  auto w = std::make_unique<Writer>(options, std::move(sink), std::move(digest));
  E2D_RETURN_IF_ERROR(w->Init(meta));
  return std::unique_ptr<BackupWriter>(std::move(w));
}

absl::StatusOr<BackupMeta> VerifyBackup(const BackupSource& source, uint64_t size,
                                        const std::optional<BackupKeys>& keys) {
  E2D_ASSIGN_OR_RETURN(Header h, ReadHeader(source, size, keys));
  const bool encrypted = (h.flags & kFlagEncrypted) != 0;
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<Digest> digest,
                       Digest::Make(encrypted ? keys : std::nullopt));
  const uint64_t end = size - kBackupTrailerSize;
  for (uint64_t at = 0; at < end; at += kChunk) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, end - at));
    E2D_ASSIGN_OR_RETURN(std::string bytes, ReadExactly(source, at, n, "body"));
    digest->Update(bytes);
  }
  E2D_ASSIGN_OR_RETURN(std::string trailer,
                       ReadExactly(source, end, kBackupTrailerSize, "trailer"));
  const std::string want = digest->Final();
  if (CRYPTO_memcmp(want.data(), trailer.data(), kBackupTrailerSize) != 0) {
    if (encrypted) {
      return absl::PermissionDeniedError(
          "backup: the HMAC does not verify: the file was altered or cut, or it was sealed "
          "under another CA key");
    }
    return Bad("the SHA-256 trailer does not match: the file was altered or cut");
  }
  return ParseMeta(h.meta_text);
}

absl::StatusOr<BackupMeta> RestoreBackup(const BackupSource& source, uint64_t size,
                                         const std::optional<BackupKeys>& keys,
                                         const BackupSink& sink) {
  E2D_ASSIGN_OR_RETURN(BackupMeta meta, VerifyBackup(source, size, keys));
  E2D_ASSIGN_OR_RETURN(Header h, ReadHeader(source, size, keys));
  std::unique_ptr<Ctr> ctr;
  if ((h.flags & kFlagEncrypted) != 0) {
    E2D_ASSIGN_OR_RETURN(ctr, Ctr::Make(*keys, h.iv));
  }
  const bool gzip = (h.flags & kFlagGzip) != 0;
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  if (gzip && inflateInit2(&z, 15 + 16) != Z_OK) {
    return absl::InternalError("backup: zlib inflateInit2 failed");
  }
  struct InflateEnd {
    z_stream* z;
    bool on;
    ~InflateEnd() {
      if (on) inflateEnd(z);
    }
  } inflate_end{&z, gzip};
  bool stream_end = false;
  const uint64_t end = size - kBackupTrailerSize;
  std::string out(kChunk, '\0');
  for (uint64_t at = h.body_start; at < end; at += kChunk) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, end - at));
    E2D_ASSIGN_OR_RETURN(std::string bytes, ReadExactly(source, at, n, "body"));
    if (ctr != nullptr) {
      E2D_RETURN_IF_ERROR(sink(ctr->Apply(bytes)));
      continue;
    }
    if (!gzip) {
      E2D_RETURN_IF_ERROR(sink(bytes));
      continue;
    }
    if (stream_end) {
      return Bad(absl::StrCat("bytes after the end of the gzip stream, at byte ", at));
    }
    z.next_in = reinterpret_cast<Bytef*>(bytes.data());
    z.avail_in = static_cast<uInt>(bytes.size());
    while (true) {
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      z.avail_out = static_cast<uInt>(out.size());
      const int r = inflate(&z, Z_NO_FLUSH);
      if (r == Z_BUF_ERROR && z.avail_in == 0) break;  // all input taken: read more
      if (r != Z_OK && r != Z_STREAM_END) {
        return Bad(absl::StrCat("the gzip stream is damaged near byte ",
                                at + (bytes.size() - z.avail_in), ": ",
                                z.msg != nullptr ? z.msg : "inflate failed"));
      }
      const size_t produced = out.size() - z.avail_out;
      if (produced > 0) E2D_RETURN_IF_ERROR(sink(std::string_view(out.data(), produced)));
      if (r == Z_STREAM_END) {
        stream_end = true;
        if (z.avail_in > 0) {
          return Bad(absl::StrCat("bytes after the end of the gzip stream, at byte ",
                                  at + (bytes.size() - z.avail_in)));
        }
        break;
      }
      if (z.avail_in == 0 && z.avail_out != 0) break;
    }
  }
  if (gzip && !stream_end) return Bad("the gzip stream ends early");
  return meta;
}

}  // namespace e2d::node
