// Copyright e2d authors.
//
// OpenSSL reports failures through a thread-local queue of error codes. Every caller that turns
// an OpenSSL failure into a message (PKI, gossip encryption, snapshot encryption) drains the
// whole queue, so that a stale entry cannot be misread by a later, unrelated call.

#ifndef E2D_ENV_OPENSSL_ERRORS_H_
#define E2D_ENV_OPENSSL_ERRORS_H_

#include <string>

namespace e2d::env {

// Empties this thread's OpenSSL error queue into one line ("; "-separated), or "no OpenSSL error
// recorded" if it was empty.
std::string DrainOpenSslErrors();

}  // namespace e2d::env

#endif  // E2D_ENV_OPENSSL_ERRORS_H_
