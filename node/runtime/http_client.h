// Copyright e2d authors.
//
// HttpFetch: one blocking HTTP/1.1 request over a fresh connection (http:// or https://), for
// the S3 backup store and other control-plane calls made from the env's offload worker, never
// from the io_context's thread. `Connection: close`; no redirects, no retries (the caller's
// next period is its retry).
//
// Bounds: the connection, each send and each receive time out after `timeout`, and the whole
// call after `total` (checked between receives); a reply head is
// at most kHttpReplyHeadMax bytes and a reply body at most `max_body` bytes, or the call fails
// naming the bound. A body shorter than its Content-Length, or a chunked body without its last
// chunk, is an error (a cut connection never passes for a whole reply).
//
// TLS: the server's certificate must chain to `ca_file` (PEM) or, if that is empty, to the
// system's trust store, and must name the host (DNS name or IP address). Runtime only.

#ifndef E2D_NODE_RUNTIME_HTTP_CLIENT_H_
#define E2D_NODE_RUNTIME_HTTP_CLIENT_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace e2d::node {

inline constexpr size_t kHttpReplyHeadMax = 64 << 10;

struct HttpTarget {
  bool tls = false;
  std::string host;  // a DNS name or an IP address (IPv6 without brackets)
  int port = 0;
  // What the Host header says: host, with ":port" unless the port is the scheme's default.
  std::string HostHeader() const;
};

struct HttpRequestSpec {
  std::string method = "GET";
  std::string path_and_query = "/";  // already percent-encoded
  // Sent as given after Host; Content-Length and Connection are added.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

struct HttpReply {
  int status = 0;
  // Header names lower-cased, in the order received.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first header of that (lower-case) name, or "" if none.
  std::string Header(std::string_view name) const;
};

struct HttpFetchOptions {
  absl::Duration timeout = absl::Seconds(30);  // each connect, send and receive
  absl::Duration total = absl::Minutes(30);    // the whole call (a server that drips bytes)
  size_t max_body = 64 << 20;
  std::string ca_file;  // TLS only; empty: the system's trust store
};

// "host[:port]" or "[v6][:port]" into `t` (port 443 with TLS, else 80, unless given); `what`
// names the flag or variable in errors.
absl::Status ParseAuthority(std::string_view authority, bool tls, HttpTarget* t,
                            std::string_view what);

// Percent-encodes every byte but A-Z a-z 0-9 - . _ ~ (and '/' unless `encode_slash`).
std::string UriEncode(std::string_view s, bool encode_slash);

absl::StatusOr<HttpReply> HttpFetch(const HttpTarget& target, const HttpRequestSpec& request,
                                    const HttpFetchOptions& options);

// Parses `bytes`, what the connection delivered so far: the reply once it is whole (its head,
// and the body its framing announces), nullopt while more bytes are needed, or an error for a
// malformed reply, a cut one, or one over the bounds. With `at_eof` the connection has ended: a
// body framed by the end of the connection is whole, and anything else incomplete is cut.
// Exposed for tests.
absl::StatusOr<std::optional<HttpReply>> ParseHttpReply(std::string_view bytes, bool at_eof,
                                                        size_t max_body);

// A JSON reply body into `m` (protobuf's JSON parser; unknown fields ignored). InvalidArgument,
// quoting the start of the body, if it is not JSON of m's shape.
absl::Status JsonInto(std::string_view json, google::protobuf::Message* m);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_HTTP_CLIENT_H_
