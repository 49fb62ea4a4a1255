// Copyright e2d authors.

#include "node/runtime/http_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "env/openssl_errors.h"
#include "env/strings.h"
#include "google/protobuf/util/json_util.h"

namespace e2d::node {

std::string HttpTarget::HostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  const std::string h = v6 ? absl::StrCat("[", host, "]") : host;
  if ((tls && port == 443) || (!tls && port == 80)) return h;
  return absl::StrCat(h, ":", port);
}

std::string HttpReply::Header(std::string_view name_in) const {
  const absl::string_view name = env::ToAbsl(name_in);
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

namespace {

// Decodes a chunked body starting at `bytes`; nullopt while incomplete.
absl::StatusOr<std::optional<std::string>> DecodeChunked(absl::string_view bytes, bool at_eof,
                                                         size_t max_body) {
  std::string body;
  size_t pos = 0;
  while (true) {
    const size_t eol = bytes.find("\r\n", pos);
    if (eol == absl::string_view::npos) {
      if (bytes.size() - pos > 64) return absl::DataLossError("http: malformed chunk size line");
      break;
    }
    absl::string_view size_text = bytes.substr(pos, eol - pos);
    if (const size_t semi = size_text.find(';'); semi != absl::string_view::npos) {
      size_text = size_text.substr(0, semi);  // chunk extensions are ignored
    }
    size_text = absl::StripAsciiWhitespace(size_text);
    uint64_t size = 0;
    if (size_text.empty() || size_text.size() > 15 || !absl::SimpleHexAtoi(size_text, &size)) {
      return absl::DataLossError(absl::StrCat("http: bad chunk size \"", size_text, "\""));
    }
    if (size > max_body || body.size() + size > max_body) {
      return absl::ResourceExhaustedError(
          absl::StrCat("http: the reply body is over its bound of ", max_body, " bytes"));
    }
    if (size == 0) {
      // Trailers (none expected) end with an empty line.
      const size_t end = bytes.find("\r\n\r\n", eol);
      if (end == absl::string_view::npos) {
        if (bytes.size() - eol > kHttpReplyHeadMax) {
          return absl::DataLossError("http: trailers over their bound");
        }
        break;
      }
      return std::optional<std::string>(std::move(body));
    }
    const size_t data = eol + 2;
    if (bytes.size() < data + size + 2) break;
    if (bytes.substr(data + size, 2) != "\r\n") {
      return absl::DataLossError("http: a chunk does not end with CRLF");
    }
    body.append(bytes.data() + data, size);
    pos = data + size + 2;
  }
  if (at_eof) return absl::DataLossError("http: the connection ended inside a chunked body");
  return std::optional<std::string>();
}

}  // namespace

absl::StatusOr<std::optional<HttpReply>> ParseHttpReply(std::string_view bytes_in, bool at_eof,
                                                        size_t max_body) {
  const absl::string_view bytes = env::ToAbsl(bytes_in);
  const size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == absl::string_view::npos) {
    if (bytes.size() > kHttpReplyHeadMax) {
      return absl::ResourceExhaustedError(
          absl::StrCat("http: the reply head is over its bound of ", kHttpReplyHeadMax, " bytes"));
    }
    if (at_eof) {
      return absl::DataLossError(absl::StrCat("http: the connection ended after ", bytes.size(),
                                              " bytes, inside the reply head"));
    }
    return std::optional<HttpReply>();
  }
  if (head_end > kHttpReplyHeadMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat("http: the reply head is over its bound of ", kHttpReplyHeadMax, " bytes"));
  }
  std::vector<absl::string_view> lines = absl::StrSplit(bytes.substr(0, head_end), "\r\n");
  HttpReply reply;
  // "HTTP/1.1 200 OK"
  const absl::string_view status_line = lines[0];
  if (!absl::StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 ||
      status_line[8] != ' ' || !absl::SimpleAtoi(status_line.substr(9, 3), &reply.status) ||
      reply.status < 100 || reply.status > 599) {
    return absl::DataLossError(
        absl::StrCat("http: bad status line \"", status_line.substr(0, 80), "\""));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::DataLossError(
          absl::StrCat("http: bad header line \"", lines[i].substr(0, 80), "\""));
    }
    reply.headers.emplace_back(absl::AsciiStrToLower(lines[i].substr(0, colon)),
                               std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  const absl::string_view rest = bytes.substr(head_end + 4);
  const std::string te = absl::AsciiStrToLower(reply.Header("transfer-encoding"));
  const std::string cl = reply.Header("content-length");
  if (reply.status == 204 || reply.status == 304 || reply.status < 200) {
    return std::optional<HttpReply>(std::move(reply));
  }
  if (!te.empty()) {
    if (te != "chunked") {
      return absl::DataLossError(absl::StrCat("http: unsupported Transfer-Encoding \"", te, "\""));
    }
    absl::StatusOr<std::optional<std::string>> body = DecodeChunked(rest, at_eof, max_body);
    if (!body.ok()) return body.status();
    if (!body->has_value()) return std::optional<HttpReply>();
    reply.body = std::move(**body);
    return std::optional<HttpReply>(std::move(reply));
  }
  if (!cl.empty()) {
    uint64_t length = 0;
    if (!absl::SimpleAtoi(cl, &length)) {
      return absl::DataLossError(absl::StrCat("http: bad Content-Length \"", cl, "\""));
    }
    if (length > max_body) {
      return absl::ResourceExhaustedError(absl::StrCat("http: the reply body of ", length,
                                                       " bytes is over its bound of ", max_body));
    }
    if (rest.size() < length) {
      if (at_eof) {
        return absl::DataLossError(absl::StrCat("http: the connection ended after ", rest.size(),
                                                " of the ", length, " body bytes announced"));
      }
      return std::optional<HttpReply>();
    }
    reply.body = std::string(rest.substr(0, length));
    return std::optional<HttpReply>(std::move(reply));
  }
  if (rest.size() > max_body) {
    return absl::ResourceExhaustedError(
        absl::StrCat("http: the reply body is over its bound of ", max_body, " bytes"));
  }
  if (!at_eof) return std::optional<HttpReply>();
  reply.body = std::string(rest);
  return std::optional<HttpReply>(std::move(reply));
}

namespace {

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

struct SslFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  void operator()(SSL* s) const { SSL_free(s); }
};

absl::StatusOr<int> Connect(const HttpTarget& t, absl::Duration timeout) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  const std::string port = absl::StrCat(t.port);
  if (const int r = ::getaddrinfo(t.host.c_str(), port.c_str(), &hints, &res); r != 0) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot resolve ", t.host, ": ", ::gai_strerror(r)));
  }
  std::string last_error = "no address";
  int fd = -1;
  struct timeval tv = absl::ToTimeval(timeout);
  for (struct addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    // On Linux SO_SNDTIMEO bounds connect() too.
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    last_error = errno == EINPROGRESS ? "timed out" : std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot connect to ", t.host, ":", t.port, ": ", last_error));
  }
  return fd;
}

// The transport: a socket, or TLS over it.
class Conn {
 public:
  Conn(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  absl::Status WriteAll(absl::string_view data, const std::string& where) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl_ != nullptr) {
        n = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 20)));
        if (n <= 0) {
          return absl::UnavailableError(
              absl::StrCat("http: cannot send to ", where, ": ", env::DrainOpenSslErrors()));
        }
      } else {
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          return absl::UnavailableError(
              absl::StrCat("http: cannot send to ", where, ": ",
                           errno == EAGAIN ? "timed out" : std::strerror(errno)));
        }
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  // Bytes read (0 at the end of the stream).
  absl::StatusOr<size_t> Read(char* buf, size_t len, const std::string& where) {
    while (true) {
      if (ssl_ != nullptr) {
        const int n = SSL_read(ssl_, buf, static_cast<int>(len));
        if (n > 0) return static_cast<size_t>(n);
        const int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_ZERO_RETURN) return 0;
        // The socket's receive timeout: OpenSSL reports the EAGAIN as "want read".
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
            (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) {
          env::DrainOpenSslErrors();
          return absl::DeadlineExceededError(absl::StrCat("http: ", where, " timed out"));
        }
        if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;  // EOF without notify
        return absl::UnavailableError(
            absl::StrCat("http: cannot read from ", where, ": ", env::DrainOpenSslErrors()));
      }
      const ssize_t n = ::recv(fd_, buf, len, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrCat("http: ", where, " timed out"));
      }
      return absl::UnavailableError(
          absl::StrCat("http: cannot read from ", where, ": ", std::strerror(errno)));
    }
  }

 private:
  int fd_;
  SSL* ssl_;
};

}  // namespace

absl::StatusOr<HttpReply> HttpFetch(const HttpTarget& target, const HttpRequestSpec& request,
                                    const HttpFetchOptions& options) {
  const std::string where = absl::StrCat(target.tls ? "https://" : "http://", target.HostHeader());
  absl::StatusOr<int> fd = Connect(target, options.timeout);
  if (!fd.ok()) return fd.status();
  FdCloser closer{*fd};
  std::unique_ptr<SSL_CTX, SslFree> ctx;
  std::unique_ptr<SSL, SslFree> ssl;
  if (target.tls) {
    env::DrainOpenSslErrors();
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (ctx == nullptr) {
      return absl::InternalError(absl::StrCat("http: TLS: ", env::DrainOpenSslErrors()));
    }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    const int loaded = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                               : SSL_CTX_load_verify_locations(
                                                     ctx.get(), options.ca_file.c_str(), nullptr);
    if (loaded != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("http: cannot load the CA certificates ",
                       options.ca_file.empty() ? "of the system" : options.ca_file, ": ",
                       env::DrainOpenSslErrors()));
    }
    ssl.reset(SSL_new(ctx.get()));
    if (ssl == nullptr || SSL_set_fd(ssl.get(), *fd) != 1) {
      return absl::InternalError(absl::StrCat("http: TLS: ", env::DrainOpenSslErrors()));
    }
    struct in6_addr addr6;
    struct in_addr addr4;
    const bool is_ip = ::inet_pton(AF_INET, target.host.c_str(), &addr4) == 1 ||
                       ::inet_pton(AF_INET6, target.host.c_str(), &addr6) == 1;
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), target.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl.get(), target.host.c_str());
      SSL_set1_host(ssl.get(), target.host.c_str());
    }
    if (SSL_connect(ssl.get()) != 1) {
      const long verify = SSL_get_verify_result(ssl.get());
      std::string why = verify != X509_V_OK
                            ? absl::StrCat("certificate: ", X509_verify_cert_error_string(verify))
                            : env::DrainOpenSslErrors();
      env::DrainOpenSslErrors();
      return absl::UnavailableError(
          absl::StrCat("http: TLS handshake with ", where, " failed: ", why));
    }
  }
  Conn conn(*fd, ssl.get());
  std::string head = absl::StrCat(request.method, " ", request.path_and_query,
                                  " HTTP/1.1\r\nHost: ", target.HostHeader(), "\r\n");
  for (const auto& [k, v] : request.headers) absl::StrAppend(&head, k, ": ", v, "\r\n");
  absl::StrAppend(&head, "Content-Length: ", request.body.size(), "\r\nConnection: close\r\n\r\n");
  if (absl::Status s = conn.WriteAll(head, where); !s.ok()) return s;
  if (absl::Status s = conn.WriteAll(env::ToAbsl(request.body), where); !s.ok()) return s;
  std::string in;
  char buf[1 << 16];
  bool eof = false;
  const absl::Time deadline = absl::Now() + options.total;  // runtime only: the real clock
  while (true) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "http: ", where, " took over ", absl::FormatDuration(options.total), " in all"));
    }
    absl::StatusOr<std::optional<HttpReply>> reply = ParseHttpReply(in, eof, options.max_body);
    if (!reply.ok()) {
      return absl::Status(reply.status().code(),
                          absl::StrCat(reply.status().message(), " (", where, ")"));
    }
    if (reply->has_value()) return std::move(**reply);
    if (eof) return absl::InternalError("http: reply incomplete at EOF");  // not reached
    absl::StatusOr<size_t> n = conn.Read(buf, sizeof(buf), where);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      eof = true;
    } else {
      in.append(buf, *n);
    }
  }
}

absl::Status ParseAuthority(std::string_view authority_in, bool tls, HttpTarget* t,
                            std::string_view what_in) {
  const absl::string_view authority = env::ToAbsl(authority_in);
  const absl::string_view what = env::ToAbsl(what_in);
  t->tls = tls;
  t->port = tls ? 443 : 80;
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": unclosed [ in \"", authority, "\""));
    }
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return absl::InvalidArgumentError(absl::StrCat(what, ": bad host \"", authority, "\""));
      }
      port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no host in \"", authority, "\""));
  }
  for (const char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != ':' && c != '_') {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad host \"", host, "\""));
    }
  }
  t->host = std::string(host);
  if (!port.empty() || absl::EndsWith(authority, ":")) {
    if (!absl::SimpleAtoi(port, &t->port) || t->port < 1 || t->port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad port \"", port, "\""));
    }
  }
  return absl::OkStatus();
}

constexpr char kHexUpper[] = "0123456789ABCDEF";  // percent-encoding

std::string UriEncode(std::string_view s_in, bool encode_slash) {
  const absl::string_view s = env::ToAbsl(s_in);
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 15]);
    }
  }
  return out;
}

absl::Status JsonInto(std::string_view json, google::protobuf::Message* m) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto s = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), m, options);
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "not JSON of the expected shape: ", std::string(s.message().data(), s.message().size()),
      ": \"", std::string(json.substr(0, 80)), "\""));
}

}  // namespace e2d::node
