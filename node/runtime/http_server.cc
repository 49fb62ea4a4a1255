// Copyright e2d authors.

#include "node/runtime/http_server.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/read_until.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/streambuf.hpp"
#include "boost/asio/write.hpp"
#include "node/runtime/asio_env.h"

namespace e2d::node {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

// One connection: read the head, answer, close.
struct Exchange : std::enable_shared_from_this<Exchange> {
  Exchange(asio::io_context& io, std::shared_ptr<size_t> open)
      : socket(io), timer(io), buffer(kHttpRequestBytesMax), open(std::move(open)) {
    ++*this->open;
  }
  ~Exchange() { --*open; }

  void Run(const HttpServer::Handler* handler, std::shared_ptr<bool> alive) {
    timer.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(kHttpConnectionTimeout)));
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket.close(ignored);
    });
    asio::async_read_until(
        socket, buffer, "\r\n\r\n",
        [self = shared_from_this(), handler, alive](const boost::system::error_code& ec, size_t) {
          if (!*alive) return;
          if (ec) {  // closed, timed out, or a head over the bound
            return self->Reply({400, "text/plain; charset=utf-8", "bad request\n"});
          }
          std::string head(asio::buffers_begin(self->buffer.data()),
                           asio::buffers_end(self->buffer.data()));
          std::vector<std::string> first =
              absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
          if (first.size() != 3 || first[2].rfind("HTTP/1.", 0) != 0) {
            return self->Reply({400, "text/plain; charset=utf-8", "bad request\n"});
          }
          if (first[0] != "GET") {
            return self->Reply({405, "text/plain; charset=utf-8", "only GET\n"});
          }
          self->Reply((*handler)(first[1]));
        });
  }

  void Reply(const HttpResponse& r) {
    response = absl::StrCat("HTTP/1.1 ", r.status, " ", Reason(r.status), "\r\nContent-Type: ",
                            r.content_type, "\r\nContent-Length: ", r.body.size(),
                            "\r\nConnection: close\r\n\r\n", r.body);
    asio::async_write(socket, asio::buffer(response),
                      [self = shared_from_this()](const boost::system::error_code&, size_t) {
                        boost::system::error_code ignored;
                        self->socket.shutdown(tcp::socket::shutdown_both, ignored);
                        self->socket.close(ignored);
                        self->timer.cancel();
                      });
  }

  tcp::socket socket;
  asio::steady_timer timer;
  asio::streambuf buffer;
  std::string response;
  std::shared_ptr<size_t> open;
};

}  // namespace

HttpServer::HttpServer(asio::io_context& io, Handler handler)
    : io_(io), handler_(std::move(handler)), acceptor_(io) {}

HttpServer::~HttpServer() {
  *alive_ = false;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Listen(asio::io_context& io,
                                                                const std::string& address,
                                                                Handler handler) {
  std::string host;
  uint16_t port = 0;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  boost::system::error_code ec;
  const asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\": \"", host, "\" is not an IP address"));
  }
  std::unique_ptr<HttpServer> s(new HttpServer(io, std::move(handler)));
  const tcp::endpoint endpoint(ip, port);
  s->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) s->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) s->acceptor_.bind(endpoint, ec);
  if (!ec) s->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  const tcp::endpoint bound = s->acceptor_.local_endpoint();
  s->local_ = ip.is_v6() ? absl::StrCat("[", ip.to_string(), "]:", bound.port())
                         : absl::StrCat(ip.to_string(), ":", bound.port());
  s->Accept();
  return s;
}

void HttpServer::Accept() {
  auto ex = std::make_shared<Exchange>(io_, open_);
  acceptor_.async_accept(ex->socket, [this, alive = alive_, ex](const boost::system::error_code& ec) {
    if (!*alive || ec == asio::error::operation_aborted) return;
    if (!ec && *open_ <= kHttpConnectionsMax) ex->Run(&handler_, alive);
    Accept();
  });
}

}  // namespace e2d::node
