// Copyright e2d authors.

#include "gossip/crypto.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace e2d::gossip {
namespace {

std::string Hex(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

std::string Unhex(std::string_view hex) {
  return absl::HexStringToBytes(absl::string_view(hex.data(), hex.size()));
}

Key KeyFromHex(std::string_view hex) {
  const std::string bytes = Unhex(hex);
  Key key;
  EXPECT_EQ(bytes.size(), key.size());
  std::memcpy(key.data(), bytes.data(), key.size());
  return key;
}

Key FilledKey(uint8_t byte) {
  Key key;
  key.fill(byte);
  return key;
}

Nonce FilledNonce(uint8_t byte) {
  Nonce nonce;
  nonce.fill(byte);
  return nonce;
}

std::string Plaintext(size_t size) {
  std::string text(size, '\0');
  for (size_t i = 0; i < size; ++i) text[i] = static_cast<char>(i * 31 + 7);
  return text;
}

// RFC 5869 appendix A.1, test case 1: basic test case with SHA-256.
TEST(HkdfTest, Rfc5869TestCase1) {
  absl::StatusOr<std::string> okm =
      HkdfSha256(std::string(22, '\x0b'), Unhex("000102030405060708090a0b0c"),
                 Unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(Hex(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

// RFC 5869 appendix A.3, test case 3: zero-length salt and info.
TEST(HkdfTest, Rfc5869TestCase3EmptySaltAndInfo) {
  absl::StatusOr<std::string> okm = HkdfSha256(std::string(22, '\x0b'), "", "", 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(Hex(*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

// RFC 5869 allows an empty IKM (value cross-checked with Python's cryptography package).
TEST(HkdfTest, EmptyIkm) {
  absl::StatusOr<std::string> okm = HkdfSha256("", "salt", "info", 32);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(Hex(*okm), "7aac7b8120501c2c8e1ee50e6cde135361e99ceb9d8d406ac528b9e9175614c0");
}

// RFC 5869 section 2.3: L <= 255 * HashLen.
TEST(HkdfTest, RejectsLengthsOutsideRfcBounds) {
  EXPECT_TRUE(absl::IsInvalidArgument(HkdfSha256("ikm", "salt", "info", 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(HkdfSha256("ikm", "salt", "info", 255 * 32 + 1).status()));
  absl::StatusOr<std::string> longest = HkdfSha256("ikm", "salt", "info", 255 * 32);
  ASSERT_TRUE(longest.ok()) << longest.status();
  EXPECT_EQ(longest->size(), 255u * 32);
}

TEST(DeriveKeyTest, IsHkdfWithTheE2dSaltAndTheLabel) {
  const std::string secret = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n";
  absl::StatusOr<Key> key = DeriveKey(secret, kGossipKeyLabel);
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<std::string> okm = HkdfSha256(secret, "e2d-hkdf-salt-v1", kGossipKeyLabel, 32);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(std::string(key->begin(), key->end()), *okm);
  absl::StatusOr<Key> again = DeriveKey(secret, kGossipKeyLabel);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*key, *again);
}

TEST(DeriveKeyTest, DifferentLabelsOrSecretsGiveDifferentKeys) {
  absl::StatusOr<Key> gossip = DeriveKey("ca key bytes", kGossipKeyLabel);
  absl::StatusOr<Key> other = DeriveKey("ca key bytes", "e2d snapshot aes-256-gcm v1");
  absl::StatusOr<Key> other_secret = DeriveKey("other ca key bytes", kGossipKeyLabel);
  ASSERT_TRUE(gossip.ok() && other.ok() && other_secret.ok());
  EXPECT_NE(*gossip, *other);
  EXPECT_NE(*gossip, *other_secret);
}

TEST(DeriveKeyTest, EmptySecretIsInvalidArgument) {
  EXPECT_TRUE(absl::IsInvalidArgument(DeriveKey("", kGossipKeyLabel).status()));
}

// McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test case 16 (AES-256, 96-bit
// IV, with AAD); the same vector is in NIST's GCM validation suite.
TEST(Aes256GcmTest, McGrewViegaTestCase16) {
  const Key key = KeyFromHex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  Nonce nonce;
  std::memcpy(nonce.data(), Unhex("cafebabefacedbaddecaf888").data(), nonce.size());
  const std::string plaintext = Unhex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  const std::string aad = Unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string sealed = Aes256GcmSeal(key, nonce, aad, plaintext);
  EXPECT_EQ(Hex(sealed),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b");
  absl::StatusOr<std::string> opened = Aes256GcmOpen(key, nonce, aad, sealed);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plaintext);
  EXPECT_TRUE(absl::IsPermissionDenied(Aes256GcmOpen(key, nonce, "", sealed).status()));
}

// McGrew and Viega test cases 13 and 14: zero key and IV, empty and one-block plaintexts.
TEST(Aes256GcmTest, McGrewViegaTestCases13And14) {
  const Key zero_key{};
  const Nonce zero_nonce{};
  EXPECT_EQ(Hex(Aes256GcmSeal(zero_key, zero_nonce, "", "")), "530f8afbc74536b9a963b4f1c4cb738b");
  EXPECT_EQ(Hex(Aes256GcmSeal(zero_key, zero_nonce, "", std::string(16, '\0'))),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
  EXPECT_TRUE(absl::IsInvalidArgument(
      Aes256GcmOpen(zero_key, zero_nonce, "", std::string(kTagSize - 1, '\0')).status()));
}

// The sealed format, built by hand from the primitive: [version][nonce][AES-GCM(aad)].
TEST(KeyringTest, SealMatchesTheDocumentedLayout) {
  const Key key = FilledKey(0x42);
  const Nonce nonce = FilledNonce(0x07);
  const std::string plaintext = Plaintext(100);
  std::string expected(1, '\x01');
  expected.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  expected.append(Aes256GcmSeal(key, nonce, std::string("\x01\x02", 2) + "e2d-gossip", plaintext));
  EXPECT_EQ(Keyring(key).Seal(Channel::kStream, plaintext, nonce), expected);
  EXPECT_EQ(expected.size(), plaintext.size() + kSealOverhead);
}

TEST(KeyringTest, RoundTripsEmptyAndFullDatagrams) {
  const Keyring ring(FilledKey(1));
  for (size_t size : {size_t{0}, size_t{1}, size_t{1400}}) {
    for (Channel channel : {Channel::kDatagram, Channel::kStream}) {
      const std::string plaintext = Plaintext(size);
      const std::string sealed = ring.Seal(channel, plaintext, FilledNonce(9));
      ASSERT_EQ(sealed.size(), size + kSealOverhead);
      absl::StatusOr<std::string> opened = ring.Open(channel, sealed);
      ASSERT_TRUE(opened.ok()) << opened.status();
      EXPECT_EQ(*opened, plaintext);
    }
  }
}

TEST(KeyringTest, DifferentNoncesGiveDifferentMessages) {
  const Keyring ring(FilledKey(1));
  EXPECT_NE(ring.Seal(Channel::kDatagram, "hello", FilledNonce(1)),
            ring.Seal(Channel::kDatagram, "hello", FilledNonce(2)));
}

TEST(KeyringTest, EverySingleBitFlipFailsToOpen) {
  const Keyring ring(FilledKey(3));
  for (size_t size : {size_t{0}, size_t{1400}}) {
    const std::string sealed = ring.Seal(Channel::kDatagram, Plaintext(size), FilledNonce(5));
    for (size_t bit = 0; bit < sealed.size() * 8; ++bit) {
      std::string flipped = sealed;
      flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
      const absl::Status status = ring.Open(Channel::kDatagram, flipped).status();
      if (bit < 8) {
        ASSERT_TRUE(absl::IsInvalidArgument(status)) << "bit " << bit << ": " << status;
        EXPECT_EQ(status.message(), "unknown seal version " + std::to_string(1 ^ (1 << bit)));
      } else {
        ASSERT_TRUE(absl::IsPermissionDenied(status)) << "bit " << bit << ": " << status;
      }
    }
  }
}

TEST(KeyringTest, EveryTruncationFailsToOpen) {
  const Keyring ring(FilledKey(3));
  const std::string sealed = ring.Seal(Channel::kStream, Plaintext(200), FilledNonce(5));
  for (size_t length = 0; length < sealed.size(); ++length) {
    const absl::Status status = ring.Open(Channel::kStream, sealed.substr(0, length)).status();
    if (length < kSealOverhead) {
      ASSERT_TRUE(absl::IsInvalidArgument(status)) << length << ": " << status;
      EXPECT_EQ(status.message(), "sealed message too short: " + std::to_string(length) + " bytes");
    } else {
      ASSERT_TRUE(absl::IsPermissionDenied(status)) << length << ": " << status;
    }
  }
}

TEST(KeyringTest, WrongKeyFailsToOpen) {
  const std::string sealed = Keyring(FilledKey(1)).Seal(Channel::kDatagram, "x", FilledNonce(0));
  const absl::Status status = Keyring(FilledKey(2)).Open(Channel::kDatagram, sealed).status();
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_EQ(status.message(), "authentication failed with all 1 keys");
}

TEST(KeyringTest, WrongChannelFailsToOpen) {
  const Keyring ring(FilledKey(1));
  const std::string datagram = ring.Seal(Channel::kDatagram, "ping", FilledNonce(0));
  const std::string stream = ring.Seal(Channel::kStream, "ping", FilledNonce(0));
  EXPECT_TRUE(absl::IsPermissionDenied(ring.Open(Channel::kStream, datagram).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(ring.Open(Channel::kDatagram, stream).status()));
  EXPECT_TRUE(ring.Open(Channel::kDatagram, datagram).ok());
  EXPECT_TRUE(ring.Open(Channel::kStream, stream).ok());
}

// Rotation: every node adds the new key, then every node Uses it, then every node Removes the
// old one. In between, messages sealed under either key open everywhere.
TEST(KeyringTest, RotationKeepsOldMessagesUntilTheOldKeyIsRemoved) {
  const Key old_key = FilledKey(0xaa);
  const Key new_key = FilledKey(0xbb);
  Keyring ring(old_key);
  const std::string old_message = ring.Seal(Channel::kStream, "old", FilledNonce(1));

  ASSERT_TRUE(ring.Add(new_key).ok());
  EXPECT_EQ(ring.size(), 2u);
  EXPECT_EQ(ring.primary(), old_key);
  ASSERT_TRUE(ring.Use(new_key).ok());
  EXPECT_EQ(ring.primary(), new_key);
  const std::string new_message = ring.Seal(Channel::kStream, "new", FilledNonce(1));
  EXPECT_NE(new_message.substr(1 + kNonceSize), old_message.substr(1 + kNonceSize));
  EXPECT_EQ(*ring.Open(Channel::kStream, old_message), "old");
  EXPECT_EQ(*ring.Open(Channel::kStream, new_message), "new");

  EXPECT_TRUE(absl::IsFailedPrecondition(ring.Remove(new_key)));
  ASSERT_TRUE(ring.Remove(old_key).ok());
  EXPECT_EQ(ring.size(), 1u);
  const absl::Status status = ring.Open(Channel::kStream, old_message).status();
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_EQ(*ring.Open(Channel::kStream, new_message), "new");
}

TEST(KeyringTest, ManagementErrors) {
  Keyring ring(FilledKey(0));
  EXPECT_TRUE(absl::IsAlreadyExists(ring.Add(FilledKey(0))));
  EXPECT_TRUE(absl::IsNotFound(ring.Use(FilledKey(1))));
  EXPECT_TRUE(absl::IsNotFound(ring.Remove(FilledKey(1))));
  EXPECT_TRUE(absl::IsFailedPrecondition(ring.Remove(FilledKey(0))));
  for (uint8_t i = 1; i < Keyring::kKeysMax; ++i) ASSERT_TRUE(ring.Add(FilledKey(i)).ok());
  EXPECT_EQ(ring.size(), Keyring::kKeysMax);
  EXPECT_TRUE(absl::IsResourceExhausted(ring.Add(FilledKey(100))));
  EXPECT_TRUE(absl::IsAlreadyExists(ring.Add(FilledKey(3))));
  EXPECT_EQ(ring.size(), Keyring::kKeysMax);
  EXPECT_EQ(ring.primary(), FilledKey(0));
}

// Open tries every key: a message sealed by any of the eight opens, and a failure names them all.
TEST(KeyringTest, OpensWithAnyOfEightKeys) {
  Keyring ring(FilledKey(0));
  for (uint8_t i = 1; i < Keyring::kKeysMax; ++i) ASSERT_TRUE(ring.Add(FilledKey(i)).ok());
  for (uint8_t i = 0; i < Keyring::kKeysMax; ++i) {
    const std::string sealed = Keyring(FilledKey(i)).Seal(Channel::kDatagram, "m", FilledNonce(i));
    absl::StatusOr<std::string> opened = ring.Open(Channel::kDatagram, sealed);
    ASSERT_TRUE(opened.ok()) << int{i} << ": " << opened.status();
    EXPECT_EQ(*opened, "m");
  }
  const std::string foreign = Keyring(FilledKey(99)).Seal(Channel::kDatagram, "m", FilledNonce(0));
  EXPECT_EQ(ring.Open(Channel::kDatagram, foreign).status().message(),
            "authentication failed with all 8 keys");
}

TEST(KeyringTest, IsACopyableValue) {
  Keyring original(FilledKey(1));
  Keyring copy = original;
  ASSERT_TRUE(copy.Add(FilledKey(2)).ok());
  ASSERT_TRUE(copy.Use(FilledKey(2)).ok());
  EXPECT_EQ(original.size(), 1u);
  EXPECT_EQ(original.primary(), FilledKey(1));
  original = copy;
  EXPECT_EQ(original.size(), 2u);
  EXPECT_EQ(original.primary(), FilledKey(2));
}

}  // namespace
}  // namespace e2d::gossip
