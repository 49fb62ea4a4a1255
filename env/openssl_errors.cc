// Copyright e2d authors.

#include "env/openssl_errors.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"

namespace e2d::env {

std::string DrainOpenSslErrors() {
  std::string text;
  while (const unsigned long error = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    absl::StrAppend(&text, text.empty() ? "" : "; ", buffer);
  }
  return text.empty() ? "no OpenSSL error recorded" : text;
}

}  // namespace e2d::env
