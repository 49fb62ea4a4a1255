// Copyright e2d authors.

#include "node/runtime/asio_env.h"

#include <openssl/ssl.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/ssl/stream.hpp"
#include "boost/asio/write.hpp"
#include "env/check.h"

namespace e2d::node {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string EndpointString(const asio::ip::address& address, uint16_t port) {
  if (address.is_v6()) return absl::StrCat("[", address.to_string(), "]:", port);
  return absl::StrCat(address.to_string(), ":", port);
}

}  // namespace

absl::Status SplitHostPort(const std::string& address, std::string* host, uint16_t* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not host:port"));
  }
  std::string h = address.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']' || h.size() < 3) {
      return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\": bad [ipv6]"));
    }
    h = h.substr(1, h.size() - 2);
  }
  uint32_t p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\": bad port"));
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<asio::ssl::context>> MakeTlsContext(const TlsConfig& config,
                                                                    bool server) {
  auto ctx = std::make_unique<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION);
  boost::system::error_code ec;
  ctx->load_verify_file(config.ca_cert, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA certificate ", config.ca_cert, ": ", ec.message()));
  }
  ctx->use_certificate_chain_file(config.cert, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate ", config.cert, ": ", ec.message()));
  }
  ctx->use_private_key_file(config.key, asio::ssl::context::pem, ec);
  if (ec && ec.message().find("mismatch") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("private key ", config.key,
                                                   " does not match certificate ", config.cert));
  }
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("private key ", config.key, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("private key ", config.key, " does not match certificate ", config.cert));
  }
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return absl::InternalError(absl::StrCat("TLS verify mode: ", ec.message()));
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// Clock

AsioClock::AsioClock(asio::io_context& io) : io_(io), epoch_ns_(SteadyNs()) {}

AsioClock::~AsioClock() {
  *alive_ = false;
  for (auto& [id, timer] : timers_) timer->cancel();
}

env::Instant AsioClock::Now() {
  const env::Instant now{SteadyNs() - epoch_ns_};
  if (now > last_) last_ = now;
  return last_;
}

env::TimerId AsioClock::After(absl::Duration delay, std::function<void()> callback) {
  const env::TimerId id = ++next_id_;
  auto timer = std::make_unique<asio::steady_timer>(io_);
  timer->expires_after(std::chrono::nanoseconds(
      std::max<int64_t>(0, absl::ToInt64Nanoseconds(delay))));
  timer->async_wait([this, alive = alive_, id, cb = std::move(callback)](
                        const boost::system::error_code& ec) {
    // Cancelled, or the clock is gone: touch nothing. A timer that had already expired when
    // Cancel ran still completes without an error, hence the lookup.
    if (ec || !*alive) return;
    auto it = timers_.find(id);
    if (it == timers_.end()) return;
    timers_.erase(it);
    cb();
  });
  timers_.emplace(id, std::move(timer));
  return id;
}

bool AsioClock::Cancel(env::TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  it->second->cancel();
  timers_.erase(it);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Streams

class AsioNetwork::Conn : public std::enable_shared_from_this<Conn> {
 public:
  enum class State { kConnecting, kOpen, kClosed };

  Conn(asio::io_context& io, asio::ssl::context* tls, env::Address peer)
      : io_(io), peer_(std::move(peer)) {
    if (tls != nullptr) {
      tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *tls);
    } else {
      plain_ = std::make_unique<tcp::socket>(io);
    }
  }

  tcp::socket& socket() { return tls_ != nullptr ? tls_->next_layer() : *plain_; }
  const env::Address& peer() const { return peer_; }
  void set_peer(env::Address peer) { peer_ = std::move(peer); }
  bool open() const { return state_ != State::kClosed; }

  // Outbound: resolve, connect, handshake, then flush what was queued.
  void Connect(const std::string& host, uint16_t port) {
    auto resolver = std::make_shared<tcp::resolver>(io_);
    resolver->async_resolve(
        host, std::to_string(port),
        [self = shared_from_this(), resolver](const boost::system::error_code& ec,
                                              tcp::resolver::results_type results) {
          if (self->state_ == State::kClosed) return;
          if (ec) return self->Break(absl::UnavailableError(
                      absl::StrCat("resolving ", self->peer_, ": ", ec.message())));
          asio::async_connect(self->socket(), results,
                              [self](const boost::system::error_code& ec, const tcp::endpoint&) {
                                if (self->state_ == State::kClosed) return;
                                if (ec) {
                                  return self->Break(absl::UnavailableError(absl::StrCat(
                                      "connecting to ", self->peer_, ": ", ec.message())));
                                }
                                self->Handshake(asio::ssl::stream_base::client, nullptr);
                              });
        });
  }

  // Both directions: the TLS handshake (if any), then the connection is open.
  void Handshake(asio::ssl::stream_base::handshake_type type,
                 std::function<void(bool ok)> done) {
    boost::system::error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);
    if (tls_ == nullptr) {
      Opened();
      if (done) done(true);
      return;
    }
    tls_->async_handshake(type, [self = shared_from_this(), done = std::move(done)](
                                    const boost::system::error_code& ec) {
      if (self->state_ == State::kClosed) {
        if (done) done(false);
        return;
      }
      if (ec) {
        self->Break(absl::UnavailableError(
            absl::StrCat("TLS handshake with ", self->peer_, ": ", ec.message())));
        if (done) done(false);
        return;
      }
      self->Opened();
      if (done) done(true);
    });
  }

  void SetHandlers(env::Stream::MessageHandler on_message, env::Stream::CloseHandler on_close) {
    on_message_ = std::move(on_message);
    on_close_ = std::move(on_close);
    if (held_.empty() && broken_.ok()) return;
    // Deliver what arrived before, from the io loop (never inside this call).
    asio::post(io_, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (self == nullptr) return;
      while (!self->held_.empty() && self->on_message_) {
        std::string m = std::move(self->held_.front());
        self->held_.pop_front();
        self->on_message_(std::move(m));
      }
      if (!self->broken_.ok() && self->on_close_) {
        auto on_close = std::move(self->on_close_);
        self->on_close_ = nullptr;
        on_close(self->broken_);
      }
    });
  }

  absl::Status Send(std::string message) {
    if (state_ == State::kClosed) {
      return absl::FailedPreconditionError(absl::StrCat("stream to ", peer_, " is closed"));
    }
    if (message.size() > env::kStreamMessageSizeMax) {
      return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                     " bytes exceeds the stream limit"));
    }
    if (queued_bytes_ + message.size() > kStreamSendQueueBytesMax) {
      return absl::ResourceExhaustedError(absl::StrCat("send queue to ", peer_, " is full"));
    }
    const uint32_t n = static_cast<uint32_t>(message.size());
    std::string frame;
    frame.reserve(4 + message.size());
    frame.push_back(static_cast<char>(n >> 24));
    frame.push_back(static_cast<char>(n >> 16));
    frame.push_back(static_cast<char>(n >> 8));
    frame.push_back(static_cast<char>(n));
    frame += message;
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    if (state_ == State::kOpen && !writing_) WriteNext();
    return absl::OkStatus();
  }

  // Reports `why` through the close handler, from the io loop.
  void FailLater(absl::Status why) {
    asio::post(io_, [self = shared_from_this(), why] { self->Break(why); });
  }

  // By the local owner: no handler runs after this.
  void Close() {
    DropHandlers();
    Shut();
  }

 private:
  template <typename F>
  void WithStream(F&& f) {
    if (tls_ != nullptr) {
      f(*tls_);
    } else {
      f(*plain_);
    }
  }

  void Opened() {
    state_ = State::kOpen;
    ReadHeader();
    if (!queue_.empty() && !writing_) WriteNext();
  }

  void Shut() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    boost::system::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    queue_.clear();
    queued_bytes_ = 0;
  }

  void Break(absl::Status why) {
    if (state_ == State::kClosed) return;
    Shut();
    broken_ = why;
    if (on_close_) {
      auto on_close = std::move(on_close_);
      on_close_ = nullptr;
      DropHandlers();
      on_close(std::move(why));
    }
  }

  // Forgets the handlers. One of them may be running right now (a handler that closes its own
  // stream): they are destroyed later, from the loop, not under its feet.
  void DropHandlers() {
    if (on_message_ || on_close_) {
      asio::post(io_, [m = std::move(on_message_), c = std::move(on_close_)] {});
    }
    on_message_ = nullptr;
    on_close_ = nullptr;
  }

  void WriteNext() {
    writing_ = true;
    WithStream([&](auto& s) {
      asio::async_write(s, asio::buffer(queue_.front()),
                        [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                          if (self->state_ == State::kClosed) return;
                          if (ec) {
                            return self->Break(absl::UnavailableError(
                                absl::StrCat("writing to ", self->peer_, ": ", ec.message())));
                          }
                          self->queued_bytes_ -= self->queue_.front().size();
                          self->queue_.pop_front();
                          self->writing_ = false;
                          if (!self->queue_.empty()) self->WriteNext();
                        });
    });
  }

  void ReadHeader() {
    WithStream([&](auto& s) {
      asio::async_read(
          s, asio::buffer(header_, 4),
          [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
            if (self->state_ == State::kClosed) return;
            if (ec) {
              return self->Break(absl::UnavailableError(
                  ec == asio::error::eof
                      ? absl::StrCat(self->peer_, " closed the stream")
                      : absl::StrCat("reading from ", self->peer_, ": ", ec.message())));
            }
            const uint32_t n = (uint32_t{self->header_[0]} << 24) |
                               (uint32_t{self->header_[1]} << 16) |
                               (uint32_t{self->header_[2]} << 8) | uint32_t{self->header_[3]};
            if (n > env::kStreamMessageSizeMax) {
              return self->Break(absl::DataLossError(absl::StrCat(
                  self->peer_, " sent a message of ", n, " bytes, over the stream limit")));
            }
            self->body_.resize(n);
            self->ReadBody();
          });
    });
  }

  void ReadBody() {
    WithStream([&](auto& s) {
      asio::async_read(s, asio::buffer(body_),
                       [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                         if (self->state_ == State::kClosed) return;
                         if (ec) {
                           return self->Break(absl::UnavailableError(absl::StrCat(
                               "reading from ", self->peer_, ": ", ec.message())));
                         }
                         self->Deliver(std::move(self->body_));
                         self->body_.clear();
                         if (self->state_ == State::kOpen) self->ReadHeader();
                       });
    });
  }

  void Deliver(std::string message) {
    if (on_message_ && held_.empty()) {
      on_message_(std::move(message));
      return;
    }
    if (held_.size() >= kStreamHeldMessagesMax) {
      return Break(absl::ResourceExhaustedError(
          absl::StrCat("more than ", kStreamHeldMessagesMax, " messages from ", peer_,
                       " arrived before the stream was claimed")));
    }
    held_.push_back(std::move(message));
  }

  asio::io_context& io_;
  env::Address peer_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  std::unique_ptr<tcp::socket> plain_;
  State state_ = State::kConnecting;
  env::Stream::MessageHandler on_message_;
  env::Stream::CloseHandler on_close_;
  absl::Status broken_;
  std::deque<std::string> held_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  uint8_t header_[4] = {0, 0, 0, 0};
  std::string body_;
};

namespace {

class AsioStream final : public env::Stream {
 public:
  explicit AsioStream(std::shared_ptr<AsioNetwork::Conn> conn) : conn_(std::move(conn)) {}
  ~AsioStream() override { conn_->Close(); }
  const env::Address& peer() const override { return conn_->peer(); }
  void SetHandlers(MessageHandler on_message, CloseHandler on_close) override {
    conn_->SetHandlers(std::move(on_message), std::move(on_close));
  }
  absl::Status Send(std::string message) override { return conn_->Send(std::move(message)); }
  void Close() override { conn_->Close(); }
  bool open() const override { return conn_->open(); }

 private:
  std::shared_ptr<AsioNetwork::Conn> conn_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Network

AsioNetwork::AsioNetwork(asio::io_context& io) : io_(io) {}

AsioNetwork::~AsioNetwork() {
  *alive_ = false;
  boost::system::error_code ignored;
  if (acceptor_ != nullptr) acceptor_->close(ignored);
  if (udp_ != nullptr) udp_->close(ignored);
}

absl::StatusOr<std::unique_ptr<AsioNetwork>> AsioNetwork::Listen(asio::io_context& io,
                                                                  const std::string& listen,
                                                                  const std::string& advertise,
                                                                  const TlsConfig* tls) {
  std::string host;
  uint16_t port = 0;
  if (absl::Status s = SplitHostPort(listen, &host, &port); !s.ok()) return s;
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": \"", host, "\" is not an IP address"));
  }
  std::unique_ptr<AsioNetwork> net(new AsioNetwork(io));
  if (tls != nullptr) {
    auto server = MakeTlsContext(*tls, /*server=*/true);
    if (!server.ok()) return server.status();
    auto client = MakeTlsContext(*tls, /*server=*/false);
    if (!client.ok()) return client.status();
    net->server_tls_ = std::move(*server);
    net->client_tls_ = std::move(*client);
  }
  net->acceptor_ = std::make_unique<tcp::acceptor>(io);
  tcp::endpoint endpoint(address, port);
  net->acceptor_->open(endpoint.protocol(), ec);
  if (!ec) net->acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) net->acceptor_->bind(endpoint, ec);
  if (!ec) net->acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", ec.message()));
  }
  const uint16_t bound = net->acceptor_->local_endpoint().port();
  net->udp_ = std::make_unique<udp::socket>(io);
  net->udp_->open(address.is_v6() ? udp::v6() : udp::v4(), ec);
  if (!ec) net->udp_->bind(udp::endpoint(address, bound), ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind UDP ", EndpointString(address, bound), ": ", ec.message()));
  }
  net->local_ = advertise.empty() ? EndpointString(address, bound) : advertise;
  net->StartAccept();
  net->StartReceive();
  return net;
}

void AsioNetwork::StartAccept() {
  auto conn = std::make_shared<Conn>(io_, server_tls_.get(), "");
  acceptor_->async_accept(conn->socket(), [this, alive = alive_, conn](
                                              const boost::system::error_code& ec) {
    if (!*alive) return;
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      boost::system::error_code ignored;
      const tcp::endpoint remote = conn->socket().remote_endpoint(ignored);
      conn->set_peer(EndpointString(remote.address(), remote.port()));
      if (*handshaking_ >= kAcceptedStreamsPendingMax || !on_accept_) {
        conn->Close();
      } else {
        ++*handshaking_;
        conn->Handshake(asio::ssl::stream_base::server,
                        [this, alive, conn, handshaking = handshaking_,
                         failed = handshakes_failed_](bool ok) {
                          --*handshaking;
                          if (!ok) ++*failed;
                          if (!ok || !*alive || !on_accept_) return;
                          on_accept_(std::make_unique<AsioStream>(conn));
                        });
      }
    }
    StartAccept();
  });
}

void AsioNetwork::StartReceive() {
  datagram_buffer_.resize(65536);
  udp_->async_receive_from(
      asio::buffer(datagram_buffer_), datagram_from_,
      [this, alive = alive_](const boost::system::error_code& ec, size_t n) {
        if (!*alive || ec == asio::error::operation_aborted) return;
        if (!ec && on_datagram_ && n <= env::kDatagramSizeMax) {
          on_datagram_(EndpointString(datagram_from_.address(), datagram_from_.port()),
                       datagram_buffer_.substr(0, n));
        }
        StartReceive();
      });
}

void AsioNetwork::SetDatagramHandler(DatagramHandler handler) {
  on_datagram_ = std::move(handler);
}

void AsioNetwork::SetAcceptHandler(AcceptHandler handler) { on_accept_ = std::move(handler); }

absl::Status AsioNetwork::SendDatagram(const env::Address& to, std::string payload) {
  if (payload.size() > env::kDatagramSizeMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("datagram of ", payload.size(), " bytes exceeds ", env::kDatagramSizeMax));
  }
  std::string host;
  uint16_t port = 0;
  if (absl::Status s = SplitHostPort(to, &host, &port); !s.ok()) return s;
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    udp::resolver resolver(io_);
    auto results = resolver.resolve(udp::v4(), host, std::to_string(port), ec);
    if (ec || results.empty()) return absl::OkStatus();  // best effort: as if lost
    address = results.begin()->endpoint().address();
  }
  udp_->send_to(asio::buffer(payload), udp::endpoint(address, port), 0, ec);
  return absl::OkStatus();  // a send error is a lost datagram
}

std::unique_ptr<env::Stream> AsioNetwork::Connect(const env::Address& to) {
  auto conn = std::make_shared<Conn>(io_, client_tls_.get(), to);
  std::string host;
  uint16_t port = 0;
  if (absl::Status s = SplitHostPort(to, &host, &port); !s.ok()) {
    conn->FailLater(s);  // like any unreachable peer
  } else {
    conn->Connect(host, port);
  }
  return std::make_unique<AsioStream>(conn);
}

// ---------------------------------------------------------------------------------------------
// Env

namespace {

uint64_t OsSeed() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ uint64_t{device()};
}

}  // namespace

AsioEnv::AsioEnv(asio::io_context& io, std::string data_dir,
                 std::unique_ptr<env::Network> network)
    : io_(io),
      clock_(io),
      network_(std::move(network)),
      fs_(std::make_unique<env::PosixFileSystem>(
          std::move(data_dir),
          [&io](std::function<void()> f) { asio::post(io, std::move(f)); })),
      random_(OsSeed()) {
  E2D_CHECK(network_ != nullptr, "AsioEnv needs a network");
}

AsioEnv::~AsioEnv() { DrainOffloaded(); }

absl::Status AsioEnv::Offload(std::function<void()> work, std::function<void()> done) {
  std::lock_guard<std::mutex> lock(offload_mu_);
  if (offloaded_.size() >= kOffloadedMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", kOffloadedMax, " background jobs are waiting"));
  }
  offloaded_.emplace_back(std::move(work), std::move(done));
  if (!worker_.joinable()) {
    offload_stop_ = false;
    worker_ = std::thread([this] { WorkerLoop(); });
  }
  offload_cv_.notify_one();
  return absl::OkStatus();
}

void AsioEnv::WorkerLoop() {
  std::unique_lock<std::mutex> lock(offload_mu_);
  while (true) {
    offload_cv_.wait(lock, [this] { return offload_stop_ || !offloaded_.empty(); });
    if (offloaded_.empty()) return;  // stopping, and nothing left
    auto [work, done] = std::move(offloaded_.front());
    offloaded_.pop_front();
    lock.unlock();
    work();
    work = nullptr;  // what it owned goes now, on this thread, before `done` runs
    asio::post(io_, std::move(done));
    lock.lock();
  }
}

void AsioEnv::DrainOffloaded() {
  {
    std::lock_guard<std::mutex> lock(offload_mu_);
    if (!worker_.joinable()) return;
    offload_stop_ = true;
  }
  offload_cv_.notify_one();
  worker_.join();
  worker_ = std::thread();
}

env::Network& AsioEnv::network() { return *network_; }

absl::StatusOr<AsioEnv::LogLevel> AsioEnv::ParseLogLevel(const std::string& name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("log level \"", name, "\" is not one of debug, info, warn, error"));
}

void AsioEnv::Log(std::string_view line) {
  LogLevel level = LogLevel::kInfo;
  if (line.rfind("level=", 0) == 0) {
    const std::string_view word = line.substr(6, line.find(' ') - 6);
    if (word == "debug") level = LogLevel::kDebug;
    if (word == "warn") level = LogLevel::kWarn;
    if (word == "error") level = LogLevel::kError;
  }
  if (level < log_level_) return;
  const std::string stamp = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                             absl::UTCTimeZone());
  std::fprintf(stderr, "%s %.*s\n", stamp.c_str(), static_cast<int>(line.size()), line.data());
}

}  // namespace e2d::node
