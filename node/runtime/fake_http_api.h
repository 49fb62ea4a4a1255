// Copyright e2d authors.
//
// FakeHttpApi: a one-request-at-a-time HTTP server on loopback for unit tests of HTTP clients
// (discovery providers, the instance metadata service). Each connection's request head goes to
// the handler, whose return value is sent back whole; then the connection closes.

#ifndef E2D_NODE_RUNTIME_FAKE_HTTP_API_H_
#define E2D_NODE_RUNTIME_FAKE_HTTP_API_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace e2d::node {

class FakeHttpApi {
 public:
  explicit FakeHttpApi(std::function<std::string(const std::string& head)> handler)
      : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 8), 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeHttpApi() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }

  static std::string Reply(int status, const std::string& body) {
    return absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Type: application/json\r\n",
                        "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;  // wakes to see stop_
      const int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) continue;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
        const ssize_t n = recv(conn, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      const std::string reply = handler_(head);
      send(conn, reply.data(), reply.size(), MSG_NOSIGNAL);
      close(conn);
    }
  }

  std::function<std::string(const std::string&)> handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_FAKE_HTTP_API_H_
