// Copyright e2d authors.
//
// Always-on invariant checks. A broken invariant crashes loudly with file, line and message, in
// every build mode and in the simulator too: continuing would only corrupt state or hide the bug.

#ifndef E2D_ENV_CHECK_H_
#define E2D_ENV_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define E2D_CHECK(cond, ...)                                                      \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "" __VA_ARGS__);                                       \
      std::fprintf(stderr, "\n");                                                 \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

#endif  // E2D_ENV_CHECK_H_
