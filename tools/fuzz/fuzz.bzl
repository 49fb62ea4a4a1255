"""fuzz_target: one fuzzer source, built as a libFuzzer binary and as a deterministic test."""

def fuzz_target(name, srcs, deps = [], **kwargs):
    """Declares `name` (the fuzzer) and `name + "_test"` (its deterministic cc_test).

    `srcs` define LLVMFuzzerTestOneInput and optionally e2d::fuzz::Seeds() (tools/fuzz/fuzz.h).

    `name` is a cc_binary tagged manual: under --config=fuzz it links libFuzzer's main (run it
    with tools/fuzz/run SECONDS //pkg:name); under any other config it links fuzz_test_main, so a
    plain build of it still works. `name + "_test"` always links fuzz_test_main and runs in
    `bazel test //...`.

    Args:
      name: the fuzzer's name; the test is `name + "_test"`.
      srcs: sources of the fuzz target.
      deps: libraries the sources use (tools/fuzz:fuzz is added).
      **kwargs: passed to both rules (e.g. visibility).
    """
    native.cc_binary(
        name = name,
        srcs = srcs,
        deps = deps + ["//tools/fuzz:fuzz"] + select({
            "//tools/fuzz:libfuzzer": ["//tools/fuzz:libfuzzer_seeds"],
            "//conditions:default": ["//tools/fuzz:fuzz_test_main"],
        }),
        linkopts = select({
            "//tools/fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = ["manual"],
        **kwargs
    )
    native.cc_test(
        name = name + "_test",
        size = "small",
        srcs = srcs,
        deps = deps + [
            "//tools/fuzz:fuzz",
            "//tools/fuzz:fuzz_test_main",
        ],
        **kwargs
    )
