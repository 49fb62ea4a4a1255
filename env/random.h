// Copyright e2d authors.
//
// The only source of randomness for code the simulator runs. A run has one seed; each node and
// each simulator component draws from its own stream, split from that seed by a stable id, so
// adding a consumer of randomness in one place does not perturb every other stream.

#ifndef E2D_ENV_RANDOM_H_
#define E2D_ENV_RANDOM_H_

#include <cstdint>
#include <string_view>

namespace e2d::env {

// xoshiro256** seeded through SplitMix64. Same seed, same sequence, on every machine and build.
// Not thread-safe; not for cryptography.
class Random {
 public:
  explicit Random(uint64_t seed);

  // A uniformly distributed 64-bit value.
  uint64_t Next();

  // Uniform in [0, n). REQUIRES: n > 0 (crashes otherwise).
  uint64_t Uniform(uint64_t n);

  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  int64_t Range(int64_t lo, int64_t hi);

  // Uniform in [0, 1).
  double UniformDouble();

  // True with probability p (p <= 0 never, p >= 1 always).
  bool Chance(double p);

  // An independent stream derived from this one's seed and `stream_id`, without advancing this
  // stream. Fork(x) of two generators with equal seeds gives equal streams.
  Random Fork(uint64_t stream_id) const;
  Random Fork(std::string_view stream_name) const;

  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  uint64_t s_[4];
};

// A stable 64-bit hash (FNV-1a folded through a SplitMix64 finalizer). Unlike absl::Hash, which
// is seeded per process, it gives the same value on every run: use it for digests and stream ids.
uint64_t StableHash(std::string_view bytes, uint64_t seed = 0);

// Mixes `value` into `state`; the building block of run digests.
uint64_t HashCombine(uint64_t state, uint64_t value);

}  // namespace e2d::env

#endif  // E2D_ENV_RANDOM_H_
