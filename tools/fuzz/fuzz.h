// Copyright e2d authors.
//
// The interface of a fuzz target (tools/fuzz/fuzz.bzl's fuzz_target). A target defines
// LLVMFuzzerTestOneInput and, optionally, Seeds(). The same source then builds two ways: under
// `--config=fuzz` as a libFuzzer binary (clang, coverage-guided, run by tools/fuzz/run), and under
// the default config as a deterministic cc_test (fuzz_test_main.cc) that `bazel test //...` runs.

#ifndef E2D_TOOLS_FUZZ_FUZZ_H_
#define E2D_TOOLS_FUZZ_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

// Runs one input. Must return 0 and must not crash, leak or read out of bounds for ANY bytes;
// checks that fail (E2D_CHECK, sanitizers) are the findings. The bytes live only for the call.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace e2d::fuzz {

// Optional: interesting well-formed inputs (e.g. valid messages) that mutations start from.
// Weak: a target that does not define it has no seeds. Deterministic: same list on every call.
__attribute__((weak)) std::vector<std::string> Seeds();

}  // namespace e2d::fuzz

#endif  // E2D_TOOLS_FUZZ_FUZZ_H_
