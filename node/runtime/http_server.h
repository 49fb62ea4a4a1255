// Copyright e2d authors.
//
// HttpServer: a minimal HTTP/1.1 server for /metrics and /health on the io_context. One request
// per connection (GET only; the answer closes the connection). Bounds: a request head of at
// most kHttpRequestBytesMax bytes, kHttpConnectionsMax connections at once (later ones are
// closed at once), and kHttpConnectionTimeout per connection. Plain HTTP: bind it to loopback or
// a management network.
//
// Threading: the handler runs on the io_context's thread, like everything else in the node.

#ifndef E2D_NODE_RUNTIME_HTTP_SERVER_H_
#define E2D_NODE_RUNTIME_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"

namespace e2d::node {

inline constexpr size_t kHttpRequestBytesMax = 8 << 10;
inline constexpr size_t kHttpConnectionsMax = 64;
inline constexpr absl::Duration kHttpConnectionTimeout = absl::Seconds(5);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // Called with the request path (query string included) of each GET.
  using Handler = std::function<HttpResponse(const std::string& path)>;

  // Listens on `address` ("host:port", port 0 picks one). Errors name the address.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(boost::asio::io_context& io,
                                                            const std::string& address,
                                                            Handler handler);
  ~HttpServer();

  const std::string& local_address() const { return local_; }

 private:
  HttpServer(boost::asio::io_context& io, Handler handler);
  void Accept();

  boost::asio::io_context& io_;
  Handler handler_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string local_;
  std::shared_ptr<size_t> open_ = std::make_shared<size_t>(0);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_HTTP_SERVER_H_
