// Copyright e2d authors.
//
// main() of a fuzz target's deterministic cc_test (the `<name>_test` of fuzz_target): feeds
// LLVMFuzzerTestOneInput the target's seeds, then a fixed number of inputs drawn from a fixed
// seed: random bytes, and mutations of the seeds (bit flips, byte writes, truncations, insertions,
// splices). Same inputs on every run and machine; no coverage feedback, so it is a regression net
// under gcc and the sanitizer configs, not a substitute for tools/fuzz/run.
//
// With file arguments it runs exactly those files instead: replays a libFuzzer crash artifact.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "env/random.h"
#include "tools/fuzz/fuzz.h"

namespace e2d::fuzz {
namespace {

constexpr uint64_t kRandomSeed = 0xe2df022;
constexpr int kGeneratedInputs = 20000;
constexpr size_t kShortInputBytesMax = 64;
constexpr size_t kInputBytesMax = 4096;
constexpr int kMutationsMax = 4;

std::string RandomBytes(env::Random& random, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random.Next());
  return bytes;
}

// One to kMutationsMax random edits of a random seed. REQUIRES: !seeds.empty().
std::string Mutate(env::Random& random, const std::vector<std::string>& seeds) {
  std::string input = seeds[random.Uniform(seeds.size())];
  const uint64_t edits = 1 + random.Uniform(kMutationsMax);
  for (uint64_t edit = 0; edit < edits; ++edit) {
    switch (random.Uniform(5)) {
      case 0:  // Flip one bit.
        if (!input.empty()) {
          const uint64_t bit = random.Uniform(input.size() * 8);
          input[bit / 8] = static_cast<char>(input[bit / 8] ^ (1 << (bit % 8)));
        }
        break;
      case 1:  // Overwrite one byte.
        if (!input.empty()) input[random.Uniform(input.size())] = static_cast<char>(random.Next());
        break;
      case 2:  // Truncate.
        input.resize(random.Uniform(input.size() + 1));
        break;
      case 3:  // Insert a few random bytes anywhere.
        input.insert(random.Uniform(input.size() + 1), RandomBytes(random, 1 + random.Uniform(16)));
        break;
      default: {  // Splice: this input's prefix, another seed's suffix.
        const std::string& other = seeds[random.Uniform(seeds.size())];
        input.resize(random.Uniform(input.size() + 1));
        input.append(other, random.Uniform(other.size() + 1));
        break;
      }
    }
  }
  return input;
}

// Copies into a heap buffer of exactly the input's size, as libFuzzer does, so that the address
// sanitizer catches a read one past the end.
void RunOne(std::string_view input) {
  std::unique_ptr<uint8_t[]> bytes(new uint8_t[input.size()]);
  if (!input.empty()) std::memcpy(bytes.get(), input.data(), input.size());
  LLVMFuzzerTestOneInput(bytes.get(), input.size());
}

int RunFiles(int count, char** paths) {
  for (int i = 0; i < count; ++i) {
    std::ifstream file(paths[i], std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "fuzz_test_main: cannot read %s\n", paths[i]);
      return 1;
    }
    const std::string input((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
    RunOne(input);
    std::printf("fuzz_test_main: ran %s (%zu bytes)\n", paths[i], input.size());
  }
  return 0;
}

int RunGenerated() {
  const std::vector<std::string> seeds = Seeds != nullptr ? Seeds() : std::vector<std::string>();
  for (const std::string& seed : seeds) RunOne(seed);
  env::Random random(kRandomSeed);
  for (int i = 0; i < kGeneratedInputs; ++i) {
    if (seeds.empty() || random.Chance(0.5)) {
      const size_t size_max = random.Chance(0.5) ? kShortInputBytesMax : kInputBytesMax;
      RunOne(RandomBytes(random, random.Uniform(size_max + 1)));
    } else {
      RunOne(Mutate(random, seeds));
    }
  }
  std::printf("fuzz_test_main: %zu seeds and %d generated inputs, no findings\n", seeds.size(),
              kGeneratedInputs);
  return 0;
}

}  // namespace
}  // namespace e2d::fuzz

int main(int argc, char** argv) {
  if (argc > 1) return e2d::fuzz::RunFiles(argc - 1, argv + 1);
  return e2d::fuzz::RunGenerated();
}
