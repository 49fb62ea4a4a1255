// Copyright e2d authors.
//
// Gossip encryption: every gossip datagram and stream message travels sealed with AES-256-GCM
// under a key derived from the cluster CA's private key, so only members holding the CA key can
// read or forge gossip. A Keyring holds the sealing key plus older keys that still open, which is
// how keys rotate without a flag day. Pure: no clock, no I/O, no hidden randomness (the caller
// supplies every nonce), so the simulator runs exactly this code.

#ifndef E2D_GOSSIP_CRYPTO_H_
#define E2D_GOSSIP_CRYPTO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace e2d::gossip {

inline constexpr size_t kKeySize = 32;
using Key = std::array<uint8_t, kKeySize>;

// HKDF labels: each use of the CA key gets its own label so keys never coincide.
inline constexpr std::string_view kGossipKeyLabel = "e2d gossip aes-256-gcm v1";

// HKDF-SHA256 (RFC 5869): extract with `salt` (empty means HashLen zero bytes), then expand `ikm`
// to `length` bytes bound to `info`. InvalidArgument if `length` is 0 or above 255 * 32 (the RFC's
// limit); Internal if OpenSSL fails (out of memory, HKDF provider missing).
absl::StatusOr<std::string> HkdfSha256(std::string_view ikm, std::string_view salt,
                                       std::string_view info, size_t length);

// Derives a 32-byte key from `secret` (the cluster CA private key file's bytes, PEM or DER) with
// HKDF-SHA256, salt = "e2d-hkdf-salt-v1", info = `label`. The same secret and label give the same
// key on every node and every run. InvalidArgument if `secret` is empty.
absl::StatusOr<Key> DeriveKey(std::string_view secret, std::string_view label);

// Which channel a sealed message belongs to; bound into the authentication (AAD), so a stream
// message replayed as a datagram (or the reverse) fails to open.
enum class Channel : uint8_t { kDatagram = 1, kStream = 2 };

inline constexpr uint8_t kSealVersion = 1;
inline constexpr size_t kNonceSize = 12, kTagSize = 16;
inline constexpr size_t kSealOverhead = 1 + kNonceSize + kTagSize;  // version + nonce + tag
using Nonce = std::array<uint8_t, kNonceSize>;

// AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag: returns ciphertext || tag,
// exactly plaintext.size() + kTagSize bytes. The building block of Keyring::Seal, exposed for
// known-answer tests. REQUIRES: `nonce` never used before with `key` (reuse reveals the XOR of
// the plaintexts and lets anyone forge tags). Crashes only if OpenSSL cannot allocate.
std::string Aes256GcmSeal(const Key& key, const Nonce& nonce, std::string_view aad,
                          std::string_view plaintext);

// Inverse of Aes256GcmSeal. Never crashes for any input bytes. InvalidArgument if
// `ciphertext_and_tag` is shorter than a tag; PermissionDenied if the tag does not verify (wrong
// key, nonce or aad, or altered bytes): no plaintext is returned then.
absl::StatusOr<std::string> Aes256GcmOpen(const Key& key, const Nonce& nonce, std::string_view aad,
                                          std::string_view ciphertext_and_tag);

// Up to kKeysMax keys; one is primary (used to seal); all are tried to open (rotation). A value:
// copyable, not thread-safe, no OpenSSL state held between calls.
class Keyring {
 public:
  static constexpr size_t kKeysMax = 8;

  // A ring holding only `primary`.
  explicit Keyring(const Key& primary);

  // Adds a key used only to open. AlreadyExists if present, ResourceExhausted beyond kKeysMax.
  absl::Status Add(const Key& key);

  // Makes a key already in the ring primary; the previous primary stays, open-only. NotFound
  // otherwise (the ring is unchanged).
  absl::Status Use(const Key& key);

  // Removes a non-primary key. FailedPrecondition for the primary, NotFound if absent.
  absl::Status Remove(const Key& key);

  // The key Seal uses.
  const Key& primary() const;

  // Number of keys, primary included: in [1, kKeysMax].
  size_t size() const;

  // AES-256-GCM with the primary key. Output: [kSealVersion][nonce 12][ciphertext][tag 16], i.e.
  // plaintext.size() + kSealOverhead bytes. AAD = the version byte, the channel byte and the ASCII
  // label "e2d-gossip". `nonce` is supplied by the caller (the caller draws it from its random
  // stream; pure, no hidden randomness). REQUIRES: `nonce` never used before with the primary key:
  // in the real runtime that stream must be seeded afresh from the OS on every process start.
  std::string Seal(Channel channel, std::string_view plaintext, const Nonce& nonce) const;

  // Tries every key, primary first. Errors (never crashes, for ANY input bytes): InvalidArgument
  // "sealed message too short: N bytes", "unknown seal version V", PermissionDenied
  // "authentication failed with all K keys" (wrong key, tampered, truncated, wrong channel).
  absl::StatusOr<std::string> Open(Channel channel, std::string_view sealed) const;

 private:
  // Index of `key` in keys_, or size_ if absent.
  size_t Find(const Key& key) const;

  // keys_[0] is the primary; keys_[1, size_) open only, oldest first. Slots from size_ on are
  // zero. Bounded so that a misbehaving rotation cannot make every Open slower without limit.
  std::array<Key, kKeysMax> keys_{};
  size_t size_ = 0;
};

}  // namespace e2d::gossip

#endif  // E2D_GOSSIP_CRYPTO_H_
