// Copyright e2d authors.
//
// Debian 12's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW 0: absl::string_view is its
// own type, and absl::StrCat / StrSplit / SimpleAtoi do not accept a std::string_view. Our
// interfaces use std::string_view; these convert at the boundary without copying.

#ifndef E2D_ENV_STRINGS_H_
#define E2D_ENV_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace e2d::env {

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace e2d::env

#endif  // E2D_ENV_STRINGS_H_
