// Copyright e2d authors.

#include "node/runtime/http_server.h"

#include <string>
#include <thread>

#include "boost/asio/connect.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/write.hpp"
#include "gtest/gtest.h"
#include "node/runtime/asio_env.h"

namespace e2d::node {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Sends `request` from a client thread while the server's io_context runs, and returns every
// byte the server sent before closing.
std::string Exchange(asio::io_context& io, const std::string& address, const std::string& request) {
  std::string host;
  uint16_t port = 0;
  EXPECT_TRUE(SplitHostPort(address, &host, &port).ok());
  std::string reply;
  bool done = false;
  std::thread client([&] {
    asio::io_context cio;
    tcp::socket s(cio);
    s.connect({asio::ip::make_address(host), port});
    asio::write(s, asio::buffer(request));
    boost::system::error_code ec;
    asio::read(s, asio::dynamic_buffer(reply), ec);  // until the server closes
    asio::post(io, [&] { done = true; });
  });
  while (!done) io.run_one();
  client.join();
  io.restart();
  return reply;
}

TEST(HttpServer, AnswersGetsAndRefusesTheRest) {
  asio::io_context io;
  auto server = HttpServer::Listen(io, "127.0.0.1:0", [](const std::string& path) {
    if (path == "/health") return HttpResponse{200, "application/json", "{\"health\":\"true\"}"};
    return HttpResponse{404, "text/plain", "not found\n"};
  });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string a = (*server)->local_address();
  std::string r = Exchange(io, a, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Length: 17\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.substr(r.size() - 17), "{\"health\":\"true\"}");
  r = Exchange(io, a, "GET /nope HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << r;
  r = Exchange(io, a, "POST /health HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << r;
  r = Exchange(io, a, "garbage\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  // A head over the bound is refused without waiting for its end.
  r = Exchange(io, a, "GET /" + std::string(kHttpRequestBytesMax + 10, 'a'));
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r.substr(0, 40);
}

TEST(HttpServer, ListenNamesABadAddress) {
  asio::io_context io;
  auto bad = HttpServer::Listen(io, "nothost:1", [](const std::string&) { return HttpResponse{}; });
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nothost"), std::string::npos);
}

}  // namespace
}  // namespace e2d::node
