// Copyright e2d authors.
//
// The `e2d` command line: `e2d run`, `e2d pki init`, `e2d pki gencerts`, `e2d version`.
// Flags take `--flag=value` or `--flag value`; `-n` is `--required-cluster-size`. A malformed
// flag, a bad value, an unreadable or mismatched certificate, a data directory from another
// cluster, or a port in use prints one line saying what is wrong and exits non-zero (2 for
// usage errors, 1 for the rest) without touching the data.

#ifndef E2D_NODE_RUNTIME_CLI_H_
#define E2D_NODE_RUNTIME_CLI_H_

namespace e2d::node {

int CliMain(int argc, char** argv);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_CLI_H_
