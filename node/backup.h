// Copyright e2d authors.
//
// Backup files: the container in which a member's snapshot of the store leaves the cluster (to
// file:// or s3:// URLs), with what a restore needs to trust it.
//
// Layout (integers little-endian):
//   "E2DBKUP" 0x01        magic and format version                        8 bytes
//   flags                 bit 0: gzip, bit 1: encrypted                     1 byte
//   meta length, meta     u32, then BackupMeta as text (bounded)
//   iv                    encrypted only: AES-256-CTR's initial counter    16 bytes
//   body                  the payload: as is, as one gzip stream, or AES-256-CTR of it
//   trailer               32 bytes: encrypted, HMAC-SHA-512/256 under the MAC key of
//                         everything before it (encrypt-then-MAC: header and ciphertext);
//                         otherwise SHA-256 of everything before it (a checksum, not a seal)
//
// Keys: the encryption and the MAC key are separate, both derived with HKDF-SHA256 from the
// cluster CA key under their own labels. Compression is never applied before encryption (the
// length of compressed plaintext leaks its content): the two are exclusive.
//
// Streaming, bounded memory: the writer takes the payload in chunks and hands the file out in
// chunks; the reader reads through a ReadAt-style source. Restoring reads the file twice: once
// to check magic, version, header and trailer (nothing is handed out before the whole file is
// proven intact and, if sealed, authentic), then to decode. A damaged, truncated, tampered or
// wrong-key file is DataLoss (or PermissionDenied for a MAC mismatch) saying what and where.
//
// Pure: no clock, no I/O, no hidden randomness (the caller supplies the IV).

#ifndef E2D_NODE_BACKUP_H_
#define E2D_NODE_BACKUP_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::node {

// What every backup records about itself.
struct BackupMeta {
  uint64_t cluster_id = 0;
  uint64_t revision = 0;    // the store's revision the payload holds
  uint64_t raft_index = 0;  // the Raft index it was taken at
  uint64_t created_unix_seconds = 0;
  std::vector<std::string> members;  // "id name peer-address", one per member
  bool operator==(const BackupMeta& o) const = default;
};

// The two keys of encrypted backups, derived from the CA key.
struct BackupKeys {
  std::array<uint8_t, 32> encryption{};
  std::array<uint8_t, 32> mac{};
};
// HKDF-SHA256 of the CA key file's bytes, under "e2d backup aes-256-ctr v1" and
// "e2d backup hmac-sha512/256 v1". InvalidArgument if `ca_key` is empty.
absl::StatusOr<BackupKeys> DeriveBackupKeys(std::string_view ca_key);

inline constexpr size_t kBackupIvSize = 16;
inline constexpr size_t kBackupTrailerSize = 32;
inline constexpr size_t kBackupMetaMax = 64 << 10;

struct BackupOptions {
  bool gzip = false;
  std::optional<BackupKeys> keys;             // set: encrypted
  std::array<uint8_t, kBackupIvSize> iv{};    // encrypted: never reuse one with the same keys
};

using BackupSink = std::function<absl::Status(std::string_view bytes)>;

class BackupWriter {
 public:
  // Writes the header to `sink`. InvalidArgument for gzip with encryption, or meta too large.
  static absl::StatusOr<std::unique_ptr<BackupWriter>> Start(const BackupOptions& options,
                                                             const BackupMeta& meta,
                                                             BackupSink sink);
  virtual ~BackupWriter() = default;
  // Adds payload bytes; they leave through the sink as they are encoded (at most a few chunks
  // are buffered).
  virtual absl::Status Write(std::string_view payload) = 0;
  // Flushes the body and writes the trailer. Nothing may be written afterwards.
  virtual absl::Status Finish() = 0;
};

// Reads `n` bytes at `offset` (fewer only at the end of the file).
using BackupSource = std::function<absl::StatusOr<std::string>(uint64_t offset, size_t n)>;

// First pass: checks the whole file of `size` bytes (magic, version, header, trailer; the MAC
// with `keys` if it is encrypted) and returns its meta. Nothing of the payload is returned.
absl::StatusOr<BackupMeta> VerifyBackup(const BackupSource& source, uint64_t size,
                                        const std::optional<BackupKeys>& keys);

// Both passes: verifies, then hands the payload to `sink` in chunks. If verification fails the
// sink is never called.
absl::StatusOr<BackupMeta> RestoreBackup(const BackupSource& source, uint64_t size,
                                         const std::optional<BackupKeys>& keys,
                                         const BackupSink& sink);

}  // namespace e2d::node

#endif  // E2D_NODE_BACKUP_H_
