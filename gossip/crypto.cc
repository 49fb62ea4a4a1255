// Copyright e2d authors.

#include "gossip/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "env/openssl_errors.h"

namespace e2d::gossip {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

struct KdfFree {
  void operator()(EVP_KDF* kdf) const { EVP_KDF_free(kdf); }
};
using KdfPtr = std::unique_ptr<EVP_KDF, KdfFree>;

struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* ctx) const { EVP_KDF_CTX_free(ctx); }
};
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;

constexpr std::string_view kHkdfSalt = "e2d-hkdf-salt-v1";
constexpr size_t kSha256Bytes = 32;
constexpr size_t kHkdfLengthMax = 255 * kSha256Bytes;  // RFC 5869 section 2.3.
constexpr std::string_view kAadLabel = "e2d-gossip";
// EVP_CipherUpdate takes an int length: longer inputs go through in pieces of this size.
constexpr size_t kUpdateBytesMax = size_t{1} << 30;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

unsigned char* Bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

using env::DrainOpenSslErrors;

// Feeds `in` through `ctx`, writing as many bytes to `out` (GCM is a stream mode), or
// authenticating `in` as AAD when `out` is null. False if OpenSSL fails.
bool Update(EVP_CIPHER_CTX* ctx, unsigned char* out, std::string_view in) {
  while (!in.empty()) {
    const size_t n = std::min(in.size(), kUpdateBytesMax);
    int written = 0;
    if (EVP_CipherUpdate(ctx, out, &written, Bytes(in), static_cast<int>(n)) != 1) return false;
    if (out != nullptr) {
      E2D_CHECK(static_cast<size_t>(written) == n, "GCM wrote %d of %zu bytes", written, n);
      out += n;
    }
    in.remove_prefix(n);
  }
  return true;
}

// Starts an AES-256-GCM encryption (`encrypt` 1) or decryption (0) and authenticates `aad`.
// False if OpenSSL fails, which no input bytes can cause: only a broken library or no memory.
bool Start(EVP_CIPHER_CTX* ctx, int encrypt, const Key& key, const Nonce& nonce,
           std::string_view aad) {
  return EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr, encrypt) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) ==
             1 &&
         EVP_CipherInit_ex(ctx, nullptr, nullptr, key.data(), nonce.data(), encrypt) == 1 &&
         Update(ctx, nullptr, aad);
}

CipherCtxPtr NewCipherCtx() {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  E2D_CHECK(ctx != nullptr, "EVP_CIPHER_CTX_new: %s", DrainOpenSslErrors().c_str());
  return ctx;
}

// The AAD of a sealed message: what it must not be mistaken for is part of what is authenticated.
std::string Aad(Channel channel) {
  std::string aad;
  aad.push_back(static_cast<char>(kSealVersion));
  aad.push_back(static_cast<char>(channel));
  aad.append(kAadLabel);
  return aad;
}

}  // namespace

absl::StatusOr<std::string> HkdfSha256(std::string_view ikm, std::string_view salt,
                                       std::string_view info, size_t length) {
  if (length == 0 || length > kHkdfLengthMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("HKDF-SHA256 output length ", length, " not in [1, ", kHkdfLengthMax, "]"));
  }
  KdfPtr kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (kdf == nullptr) return absl::InternalError("EVP_KDF_fetch(HKDF): " + DrainOpenSslErrors());
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) return absl::InternalError("EVP_KDF_CTX_new: " + DrainOpenSslErrors());
  // OSSL_PARAM wants non-const pointers but only reads through them. An empty string_view may
  // hold a null pointer, which OpenSSL can take for "parameter absent": point empty inputs at a
  // valid (unread) byte instead.
  char empty = 0;
  auto octets = [&empty](const char* name, std::string_view s) {
    return OSSL_PARAM_construct_octet_string(name, s.empty() ? &empty : const_cast<char*>(s.data()),
                                             s.size());
  };
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      octets(OSSL_KDF_PARAM_KEY, ikm),
      octets(OSSL_KDF_PARAM_SALT, salt),
      octets(OSSL_KDF_PARAM_INFO, info),
      OSSL_PARAM_construct_end(),
  };
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), Bytes(out), out.size(), params) != 1) {
    return absl::InternalError("HKDF-SHA256: " + DrainOpenSslErrors());
  }
  return out;
}

absl::StatusOr<Key> DeriveKey(std::string_view secret, std::string_view label) {
  if (secret.empty()) return absl::InvalidArgumentError("cannot derive a key from an empty secret");
  absl::StatusOr<std::string> okm = HkdfSha256(secret, kHkdfSalt, label, kKeySize);
  if (!okm.ok()) return okm.status();
  E2D_CHECK(okm->size() == kKeySize, "HKDF returned %zu bytes", okm->size());
  Key key;
  std::memcpy(key.data(), okm->data(), kKeySize);
  OPENSSL_cleanse(okm->data(), okm->size());
  return key;
}

std::string Aes256GcmSeal(const Key& key, const Nonce& nonce, std::string_view aad,
                          std::string_view plaintext) {
  CipherCtxPtr ctx = NewCipherCtx();
  std::string out(plaintext.size() + kTagSize, '\0');
  unsigned char* const tag = Bytes(out) + plaintext.size();
  int final_bytes = 0;
  const bool ok =
      Start(ctx.get(), 1, key, nonce, aad) && Update(ctx.get(), Bytes(out), plaintext) &&
      EVP_CipherFinal_ex(ctx.get(), tag, &final_bytes) == 1 && final_bytes == 0 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag) == 1;
  E2D_CHECK(ok, "AES-256-GCM seal: %s", DrainOpenSslErrors().c_str());
  return out;
}

absl::StatusOr<std::string> Aes256GcmOpen(const Key& key, const Nonce& nonce, std::string_view aad,
                                          std::string_view ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kTagSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AES-256-GCM input too short for a tag: ", ciphertext_and_tag.size(), " bytes"));
  }
  const std::string_view ciphertext =
      ciphertext_and_tag.substr(0, ciphertext_and_tag.size() - kTagSize);
  std::array<unsigned char, kTagSize> tag;
  std::memcpy(tag.data(), ciphertext_and_tag.data() + ciphertext.size(), kTagSize);

  CipherCtxPtr ctx = NewCipherCtx();
  std::string out(ciphertext.size(), '\0');
  const bool started = Start(ctx.get(), 0, key, nonce, aad) &&
                       Update(ctx.get(), Bytes(out), ciphertext) &&
                       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG,
                                           static_cast<int>(kTagSize), tag.data()) == 1;
  E2D_CHECK(started, "AES-256-GCM open: %s", DrainOpenSslErrors().c_str());
  int final_bytes = 0;
  if (EVP_CipherFinal_ex(ctx.get(), Bytes(out) + out.size(), &final_bytes) != 1) {
    ERR_clear_error();
    OPENSSL_cleanse(out.data(), out.size());  // Unauthenticated plaintext never escapes.
    return absl::PermissionDeniedError("AES-256-GCM authentication failed");
  }
  E2D_CHECK(final_bytes == 0, "GCM final wrote %d bytes", final_bytes);
  return out;
}

Keyring::Keyring(const Key& primary) : size_(1) { keys_[0] = primary; }

size_t Keyring::Find(const Key& key) const {
  for (size_t i = 0; i < size_; ++i) {
    if (keys_[i] == key) return i;
  }
  return size_;
}

absl::Status Keyring::Add(const Key& key) {
  if (Find(key) != size_) return absl::AlreadyExistsError("key already in the keyring");
  if (size_ == kKeysMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat("keyring full: ", kKeysMax, " keys; Remove one first"));
  }
  keys_[size_++] = key;
  return absl::OkStatus();
}

absl::Status Keyring::Use(const Key& key) {
  const size_t i = Find(key);
  if (i == size_) return absl::NotFoundError("key not in the keyring; Add it first");
  // Moves keys_[i] to the front; the old primary and the rest keep their order behind it.
  std::rotate(keys_.begin(), keys_.begin() + i, keys_.begin() + i + 1);
  E2D_CHECK(keys_[0] == key, "Use did not make the key primary");
  return absl::OkStatus();
}

absl::Status Keyring::Remove(const Key& key) {
  const size_t i = Find(key);
  if (i == 0) {
    return absl::FailedPreconditionError("cannot remove the primary key; Use another key first");
  }
  if (i == size_) return absl::NotFoundError("key not in the keyring");
  std::copy(keys_.begin() + i + 1, keys_.begin() + size_, keys_.begin() + i);
  --size_;
  OPENSSL_cleanse(keys_[size_].data(), kKeySize);
  E2D_CHECK(size_ >= 1 && Find(key) == size_, "Remove left %zu keys", size_);
  return absl::OkStatus();
}

const Key& Keyring::primary() const { return keys_[0]; }

size_t Keyring::size() const { return size_; }

std::string Keyring::Seal(Channel channel, std::string_view plaintext, const Nonce& nonce) const {
  std::string sealed;
  sealed.reserve(plaintext.size() + kSealOverhead);
  sealed.push_back(static_cast<char>(kSealVersion));
  sealed.append(reinterpret_cast<const char*>(nonce.data()), kNonceSize);
  sealed.append(Aes256GcmSeal(keys_[0], nonce, Aad(channel), plaintext));
  E2D_CHECK(sealed.size() == plaintext.size() + kSealOverhead, "sealed %zu bytes into %zu",
            plaintext.size(), sealed.size());
  return sealed;
}

absl::StatusOr<std::string> Keyring::Open(Channel channel, std::string_view sealed) const {
  if (sealed.size() < kSealOverhead) {
    return absl::InvalidArgumentError(
        absl::StrCat("sealed message too short: ", sealed.size(), " bytes"));
  }
  const uint8_t version = static_cast<uint8_t>(sealed[0]);
  if (version != kSealVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown seal version ", static_cast<int>(version)));
  }
  Nonce nonce;
  std::memcpy(nonce.data(), sealed.data() + 1, kNonceSize);
  const std::string aad = Aad(channel);
  const std::string_view ciphertext_and_tag = sealed.substr(1 + kNonceSize);
  for (size_t i = 0; i < size_; ++i) {
    absl::StatusOr<std::string> opened = Aes256GcmOpen(keys_[i], nonce, aad, ciphertext_and_tag);
    if (opened.ok()) return opened;
    // The length was checked above, so only the tag can have failed.
    E2D_CHECK(absl::IsPermissionDenied(opened.status()), "%s", opened.status().ToString().c_str());
  }
  return absl::PermissionDeniedError(
      absl::StrCat("authentication failed with all ", size_, " keys"));
}

}  // namespace e2d::gossip
