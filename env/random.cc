// Copyright e2d authors.

#include "env/random.h"

#include <cstdlib>
#include <cstdio>

namespace e2d::env {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  x += 0x9e3779b97f4a7c15ULL;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Mix(uint64_t x) {
  uint64_t state = x;
  return SplitMix64(state);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Random::Random(uint64_t seed) : seed_(seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = SplitMix64(x);
}

uint64_t Random::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

uint64_t Random::Uniform(uint64_t n) {
  if (n == 0) {
    std::fprintf(stderr, "e2d: Random::Uniform(0)\n");
    std::abort();
  }
  // Rejection sampling keeps the distribution exactly uniform.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do {
    v = Next();
  } while (v >= limit);
  return v % n;
}

int64_t Random::Range(int64_t lo, int64_t hi) {
  if (lo > hi) {
    std::fprintf(stderr, "e2d: Random::Range(%lld, %lld)\n", static_cast<long long>(lo),
                 static_cast<long long>(hi));
    std::abort();
  }
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == UINT64_MAX) return static_cast<int64_t>(Next());
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + Uniform(span + 1));
}

double Random::UniformDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

bool Random::Chance(double p) {
  if (p <= 0) return false;
  if (p >= 1) return true;
  return UniformDouble() < p;
}

Random Random::Fork(uint64_t stream_id) const {
  return Random(HashCombine(Mix(seed_), stream_id));
}

Random Random::Fork(std::string_view stream_name) const {
  return Fork(StableHash(stream_name));
}

uint64_t StableHash(std::string_view bytes, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ Mix(seed);
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h ^ bytes.size());
}

uint64_t HashCombine(uint64_t state, uint64_t value) {
  return Mix(state ^ (Mix(value) + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2)));
}

}  // namespace e2d::env
