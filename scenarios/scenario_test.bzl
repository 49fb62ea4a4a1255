"""One test target per scenario, so Bazel runs scenarios in parallel and reports each."""

# "large" (a 900 s timeout): a scenario runs 100 seeds twice, and under the sanitizers on a
# shared 2-core machine a medium test's 300 s were not enough once heavier tests ran beside it.
def scenario_test(name, seeds = 100, size = "large", tags = []):
    native.cc_test(
        name = name + "_test",
        srcs = ["scenario_test_main.cc"],
        args = ["--scenario=" + name, "--seeds=%d" % seeds],
        size = size,
        tags = tags,
        deps = [
            ":registry",
            "//third_party:absl",
            "//third_party:gtest",
        ],
    )
