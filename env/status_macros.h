// Copyright e2d authors.
//
// Early-return helpers for absl::Status and absl::StatusOr.

#ifndef E2D_ENV_STATUS_MACROS_H_
#define E2D_ENV_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status of `expr` from the enclosing function if it is not OK.
#define E2D_RETURN_IF_ERROR(expr)                         \
  do {                                                    \
    if (absl::Status e2d_status_ = (expr); !e2d_status_.ok()) return e2d_status_; \
  } while (0)

#define E2D_STATUS_CONCAT_INNER_(a, b) a##b
#define E2D_STATUS_CONCAT_(a, b) E2D_STATUS_CONCAT_INNER_(a, b)

// Declares `lhs` (e.g. `auto x`) from the value of StatusOr `expr`, or returns its status.
#define E2D_ASSIGN_OR_RETURN(lhs, expr) \
  E2D_ASSIGN_OR_RETURN_IMPL_(E2D_STATUS_CONCAT_(e2d_statusor_, __LINE__), lhs, expr)
#define E2D_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = *std::move(tmp)

#endif  // E2D_ENV_STATUS_MACROS_H_
