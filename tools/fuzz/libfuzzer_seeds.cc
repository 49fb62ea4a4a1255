// Copyright e2d authors.
//
// Linked into a fuzz_target's libFuzzer binary only (--config=fuzz). libFuzzer never asks for
// Seeds(), so this writes them as files into the directory named by $E2D_FUZZ_SEED_DIR (if set)
// before libFuzzer reads its corpus directories; tools/fuzz/run passes that directory as one.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tools/fuzz/fuzz.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const char* dir = std::getenv("E2D_FUZZ_SEED_DIR");
  if (dir == nullptr || e2d::fuzz::Seeds == nullptr) return 0;
  const std::vector<std::string> seeds = e2d::fuzz::Seeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    const std::string path = std::string(dir) + "/seed-" + std::to_string(i);
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(seeds[i].data(), static_cast<std::streamsize>(seeds[i].size()));
    if (!file) {
      std::fprintf(stderr, "libfuzzer_seeds: cannot write %s\n", path.c_str());
      std::exit(1);
    }
  }
  std::fprintf(stderr, "libfuzzer_seeds: wrote %zu seeds to %s\n", seeds.size(), dir);
  return 0;
}
