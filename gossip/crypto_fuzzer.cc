// Copyright e2d authors.
//
// Fuzz target for gossip/crypto: opening arbitrary bytes on either channel must fail cleanly
// (never crash, leak or read out of bounds), and sealing arbitrary bytes must round-trip on its
// own channel and only there. Seeds are valid sealed messages, so mutations reach the tag check.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "env/check.h"
#include "gossip/crypto.h"
#include "tools/fuzz/fuzz.h"

namespace e2d::gossip {
namespace {

constexpr Channel kChannels[] = {Channel::kDatagram, Channel::kStream};

Key FilledKey(uint8_t byte) {
  Key key;
  key.fill(byte);
  return key;
}

// Two keys, as during a rotation: opens try both.
Keyring FixedKeyring() {
  Keyring ring(FilledKey(0x11));
  E2D_CHECK(ring.Add(FilledKey(0x22)).ok(), "a second key fits");
  return ring;
}

Channel Other(Channel channel) {
  return channel == Channel::kDatagram ? Channel::kStream : Channel::kDatagram;
}

// The input's first bytes (zero-padded): any nonce is legal for a round trip.
Nonce NonceFrom(std::string_view input) {
  Nonce nonce{};
  std::memcpy(nonce.data(), input.data(), std::min(input.size(), kNonceSize));
  return nonce;
}

void OpenArbitraryBytes(const Keyring& ring, std::string_view input) {
  for (Channel channel : kChannels) {
    const absl::StatusOr<std::string> opened = ring.Open(channel, input);
    if (opened.ok()) {
      // Only a seed (or a forgery, which would be a finding of its own) opens: its size must
      // still add up.
      E2D_CHECK(opened->size() + kSealOverhead == input.size(), "opened %zu bytes from %zu",
                opened->size(), input.size());
      continue;
    }
    const absl::Status& status = opened.status();
    E2D_CHECK(absl::IsInvalidArgument(status) || absl::IsPermissionDenied(status), "%s",
              status.ToString().c_str());
    E2D_CHECK(!absl::IsPermissionDenied(status) || input.size() >= kSealOverhead,
              "%zu bytes are too short to reach the tag check", input.size());
  }
}

void SealRoundTrips(const Keyring& ring, std::string_view input) {
  for (Channel channel : kChannels) {
    const std::string sealed = ring.Seal(channel, input, NonceFrom(input));
    E2D_CHECK(sealed.size() == input.size() + kSealOverhead, "sealed %zu bytes into %zu",
              input.size(), sealed.size());
    const absl::StatusOr<std::string> opened = ring.Open(channel, sealed);
    E2D_CHECK(opened.ok() && *opened == input, "%s", opened.status().ToString().c_str());
    E2D_CHECK(absl::IsPermissionDenied(ring.Open(Other(channel), sealed).status()),
              "a message opened on the wrong channel");
  }
}

}  // namespace
}  // namespace e2d::gossip

std::vector<std::string> e2d::fuzz::Seeds() {
  using namespace e2d::gossip;  // NOLINT: a two-line helper scope.
  const Keyring ring = FixedKeyring();
  Keyring rotated = ring;
  E2D_CHECK(rotated.Use(FilledKey(0x22)).ok(), "the second key is in the ring");
  std::vector<std::string> seeds;
  uint8_t nonce_byte = 0;
  for (const Keyring& sealer : {ring, rotated}) {
    for (Channel channel : kChannels) {
      for (std::string_view plaintext : {"", "ping", "a gossip datagram of moderate length"}) {
        Nonce nonce;
        nonce.fill(nonce_byte++);
        seeds.push_back(sealer.Seal(channel, plaintext, nonce));
      }
    }
  }
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const e2d::gossip::Keyring ring = e2d::gossip::FixedKeyring();
  e2d::gossip::OpenArbitraryBytes(ring, input);
  e2d::gossip::SealRoundTrips(ring, input);
  return 0;
}
