// Copyright e2d authors.
//
// CRC-32C (Castagnoli), the checksum of every record e2d writes to disk. Same polynomial and
// bit order as iSCSI, ext4 and leveldb, so values can be cross-checked with other tools.

#ifndef E2D_ENV_CRC32C_H_
#define E2D_ENV_CRC32C_H_

#include <cstdint>
#include <string_view>

namespace e2d::env {

// The CRC-32C of `data`, continuing from `crc` (the value returned for the preceding bytes).
// CRC-32C (Castagnoli) of `data`, extending `crc` (the CRC of what came before). Uses the CPU's
// crc32 instruction where there is one.
uint32_t Crc32c(std::string_view data, uint32_t crc = 0);
// The same, by table, on any CPU (for tests comparing the two).
uint32_t Crc32cPortable(std::string_view data, uint32_t crc = 0);

}  // namespace e2d::env

#endif  // E2D_ENV_CRC32C_H_
