// Copyright e2d authors.

#include "env/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace e2d::env {
namespace {

std::string RfcVector() { return "123456789"; }

// Check values from RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32cTest, MatchesRfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46dd794eu);
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  EXPECT_EQ(Crc32c("world", Crc32c("hello ")), Crc32c("hello world"));
}

// The instruction path and the table agree on every length and alignment around the 8-byte
// steps, and when extending.
TEST(Crc32cTest, FastPathMatchesTheTable) {
  std::string data;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 4096; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    data.push_back(static_cast<char>(x));
  }
  EXPECT_EQ(Crc32c(RfcVector()), Crc32cPortable(RfcVector()));
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t len = 0; len < 70; ++len) {
      const std::string_view piece = std::string_view(data).substr(offset, len);
      ASSERT_EQ(Crc32c(piece), Crc32cPortable(piece)) << offset << " " << len;
      ASSERT_EQ(Crc32c(piece, 0x12345678u), Crc32cPortable(piece, 0x12345678u));
    }
  }
  EXPECT_EQ(Crc32c(data), Crc32cPortable(data));
}

}  // namespace
}  // namespace e2d::env
