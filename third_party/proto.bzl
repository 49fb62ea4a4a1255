"""protoc as a genrule: Bazel 4.2.3's native proto rules would need the protobuf repository,
which cannot be fetched offline, so we run Debian's protoc and grpc_cpp_plugin directly."""

def _base(src):
    if not src.endswith(".proto"):
        fail("expected a .proto file, got " + src)
    return src[:-len(".proto")]

def cc_proto(name, src, deps = [], imports = [], testonly = False, visibility = None):
    """A cc_library `name` holding the C++ messages generated from one .proto file `src`.

    `imports`: the .proto files `src` imports (protoc reads them); their cc_proto goes in `deps`.
    """
    base = _base(src)
    native.genrule(
        name = name + "_gen",
        srcs = [src] + imports,
        outs = [base + ".pb.h", base + ".pb.cc"],
        cmd = "protoc -I. --cpp_out=$(GENDIR) $(location " + src + ")",
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc"],
        hdrs = [base + ".pb.h"],
        copts = ["-Wno-error", "-w"],
        deps = deps + ["//third_party:protobuf"],
        testonly = testonly,
        visibility = visibility,
    )

def cc_grpc_library(name, src, deps = [], imports = [], testonly = False, visibility = None):
    """Like cc_proto, plus the gRPC service stubs (.grpc.pb.h/.cc) of the same file."""
    base = _base(src)
    native.genrule(
        name = name + "_gen",
        srcs = [src] + imports,
        outs = [
            base + ".pb.h",
            base + ".pb.cc",
            base + ".grpc.pb.h",
            base + ".grpc.pb.cc",
        ],
        cmd = ("protoc -I. --cpp_out=$(GENDIR) --grpc_out=$(GENDIR) " +
               "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) $(location " + src + ")"),
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc", base + ".grpc.pb.cc"],
        hdrs = [base + ".pb.h", base + ".grpc.pb.h"],
        copts = ["-Wno-error", "-w"],
        deps = deps + ["//third_party:grpc", "//third_party:protobuf"],
        testonly = testonly,
        visibility = visibility,
    )
