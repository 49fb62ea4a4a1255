"""One test target per scenario, so Bazel runs scenarios in parallel and reports each."""

def scenario_test(name, seeds = 100, size = "medium", tags = []):
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
