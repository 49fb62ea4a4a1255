// Copyright e2d authors.

#include "node/runtime/http_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

absl::StatusOr<std::optional<HttpReply>> Parse(std::string_view bytes, bool eof = false,
                                               size_t max_body = 1 << 20) {
  return ParseHttpReply(bytes, eof, max_body);
}

TEST(ParseHttpReplyTest, ContentLengthFraming) {
  const std::string whole = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b \r\n\r\nhello";
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    absl::StatusOr<std::optional<HttpReply>> r = Parse(whole.substr(0, cut));
    ASSERT_TRUE(r.ok()) << cut << ": " << r.status();
    EXPECT_FALSE(r->has_value()) << cut;
    // The connection ending there is a cut reply, never a whole one.
    EXPECT_EQ(Parse(whole.substr(0, cut), true).status().code(), absl::StatusCode::kDataLoss)
        << cut;
  }
  absl::StatusOr<std::optional<HttpReply>> r = Parse(whole);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->status, 200);
  EXPECT_EQ((*r)->body, "hello");
  EXPECT_EQ((*r)->Header("x-a"), "b");
  EXPECT_EQ((*r)->Header("missing"), "");
}

TEST(ParseHttpReplyTest, ChunkedAndEofFraming) {
  const std::string chunked =
      "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0a;ext=1\r\n0123456789\r\n0\r\n\r\n";
  absl::StatusOr<std::optional<HttpReply>> r = Parse(chunked);
  ASSERT_TRUE(r.ok() && r->has_value()) << r.status();
  EXPECT_EQ((*r)->status, 404);
  EXPECT_EQ((*r)->body, "abc0123456789");
  for (size_t cut = 0; cut < chunked.size(); ++cut) {
    r = Parse(chunked.substr(0, cut));
    ASSERT_TRUE(r.ok()) << cut << ": " << r.status();
    EXPECT_FALSE(r->has_value()) << cut;
  }
  EXPECT_EQ(Parse(chunked.substr(0, chunked.size() - 7), true).status().code(),
            absl::StatusCode::kDataLoss);

  const std::string eof_framed = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
  r = Parse(eof_framed);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  r = Parse(eof_framed, true);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->body, "until the end");
}

TEST(ParseHttpReplyTest, MalformedAndOversizedRepliesAreRefused) {
  EXPECT_EQ(Parse("SMTP ready\r\n\r\n").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 2x0 OK\r\n\r\n").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nno colon\r\n\r\n").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", false, 10).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", false, 10)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Parse(std::string(kHttpReplyHeadMax + 1, 'x')).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// A one-connection server on loopback: reads the request head, then writes `reply` and closes
// (or, with `hold`, keeps the connection open without answering until the client gives up).
class OneShotServer {
 public:
  // `drip`: the reply goes out a byte every 20 ms (a server too slow to ever finish).
  OneShotServer(std::string reply, bool hold, std::string* seen = nullptr, bool drip = false) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, reply = std::move(reply), hold, seen, drip] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      while (!absl::StrContains(request_, "\r\n\r\n")) {
        const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      if (drip) {
        for (const char ch : reply) {
          if (::send(c, &ch, 1, MSG_NOSIGNAL) != 1) break;  // the client gave up
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      } else if (hold) {
        while (::recv(c, buf, sizeof(buf), 0) > 0) {
        }  // until the client closes
      } else {
        ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      }
      ::close(c);
      if (seen != nullptr) *seen = request_;
    });
  }
  ~OneShotServer() {
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(HttpFetchTest, SendsTheRequestAndReadsAChunkedReply) {
  HttpReply got;
  std::string request;
  {
    OneShotServer server(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false,
        &request);
    HttpRequestSpec req;
    req.method = "PUT";
    req.path_and_query = "/b/k?x=1";
    req.headers = {{"X-Amz-Date", "20260101T000000Z"}};
    req.body = "payload";
    absl::StatusOr<HttpReply> r =
        HttpFetch(HttpTarget{false, "127.0.0.1", server.port()}, req, HttpFetchOptions{});
    ASSERT_TRUE(r.ok()) << r.status();
    got = *r;
  }
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, "ok");
  // The server thread is joined: what it read is the whole head (the body may follow it).
  EXPECT_TRUE(absl::StartsWith(request, "PUT /b/k?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")) << request;
  EXPECT_TRUE(absl::StrContains(request, "X-Amz-Date: 20260101T000000Z\r\n")) << request;
  EXPECT_TRUE(absl::StrContains(request, "Content-Length: 7\r\nConnection: close\r\n\r\n"))
      << request;
}

TEST(HttpFetchTest, ACutReplyASilentServerAndNoServerAreErrors) {
  {
    OneShotServer server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", false);
    absl::StatusOr<HttpReply> r = HttpFetch(HttpTarget{false, "127.0.0.1", server.port()},
                                            HttpRequestSpec{}, HttpFetchOptions{});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "5 of the 100 body bytes")) << r.status();
  }
  {
    OneShotServer server("", true);
    HttpFetchOptions o;
    o.timeout = absl::Milliseconds(200);
    absl::StatusOr<HttpReply> r =
        HttpFetch(HttpTarget{false, "127.0.0.1", server.port()}, HttpRequestSpec{}, o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  }
  {
    // Every byte comes within the receive timeout, but the reply never ends.
    OneShotServer server(absl::StrCat("HTTP/1.1 200 OK\r\nX-Slow: ", std::string(500, 'a')),
                         false, nullptr, /*drip=*/true);
    HttpFetchOptions o;
    o.timeout = absl::Seconds(5);
    o.total = absl::Milliseconds(300);
    absl::StatusOr<HttpReply> r =
        HttpFetch(HttpTarget{false, "127.0.0.1", server.port()}, HttpRequestSpec{}, o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "in all")) << r.status();
  }
  // A port nothing listens on: the server above is gone, and its port with it.
  int closed_port;
  {
    OneShotServer server("HTTP/1.1 204 No Content\r\n\r\n", false);
    closed_port = server.port();
    absl::StatusOr<HttpReply> r = HttpFetch(HttpTarget{false, "127.0.0.1", closed_port},
                                            HttpRequestSpec{}, HttpFetchOptions{});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 204);
  }
  absl::StatusOr<HttpReply> r =
      HttpFetch(HttpTarget{false, "127.0.0.1", closed_port}, HttpRequestSpec{}, HttpFetchOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "cannot connect")) << r.status();
}

}  // namespace
}  // namespace e2d::node
