// Copyright e2d authors.
//
// AsioEnv: env::Env for the real node. One boost::asio::io_context is the node's thread: every
// timer, stream, datagram and file-sync completion runs on the thread that calls io.run(), so
// the cores (raft, gossip, kv) stay single-threaded exactly as in the simulator. Nothing here
// decides anything; it only moves bytes and time.
//
//  - Clock: std::chrono::steady_clock, with Instant 0 at construction; timers are
//    asio::steady_timers.
//  - FileSystem: env::PosixFileSystem under the data directory; syncs run on its I/O thread
//    and their completions are posted to the io_context.
//  - Network: streams are TCP connections carrying length-prefixed messages (4-byte big-endian
//    length, then the bytes; at most env::kStreamMessageSizeMax), inside TLS 1.3 with mutual
//    certificate authentication when a TlsConfig is given (both ends must present a certificate
//    signed by the configured CA), else plain TCP (tests, and single-node setups that never
//    open a peer stream). Datagrams are UDP on the same host:port as the stream listener.
//  - Random: seeded from the operating system (std::random_device), so that nonces never repeat
//    across restarts.
//  - Log: one line on stderr, prefixed with the UTC wall time, if its level (a leading
//    "level=debug|info|warn|error"; none means info) is at least the configured one.
//
// Bounds: each stream queues at most kStreamSendQueueBytesMax unsent bytes (Send then fails with
// ResourceExhausted) and holds at most kStreamHeldMessagesMax received messages before its
// handlers are installed (then it is closed as broken); at most kAcceptedStreamsPendingMax
// accepted connections may be in the TLS handshake at once (later ones are closed).
//
// Threading: construct, use and destroy on the io_context's thread (or before io.run()). The
// destructor cancels every timer and closes every socket; handlers that asio still holds then
// see operation_aborted and touch nothing.

#ifndef E2D_NODE_RUNTIME_ASIO_ENV_H_
#define E2D_NODE_RUNTIME_ASIO_ENV_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ip/udp.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "env/env.h"
#include "env/posix_filesystem.h"

namespace e2d::node {

inline constexpr size_t kStreamSendQueueBytesMax = 64 << 20;
inline constexpr size_t kStreamHeldMessagesMax = 1024;
inline constexpr size_t kAcceptedStreamsPendingMax = 64;

// PEM files for mutual TLS. All three are required.
struct TlsConfig {
  std::string ca_cert;  // the CA both ends trust
  std::string cert;     // this end's certificate (chain)
  std::string key;      // its private key
};

// A TLS context for either end of a mutually authenticated TLS 1.3 connection: presents `cert`,
// requires and verifies the peer's certificate against `ca_cert`. Errors name the file that
// could not be used and OpenSSL's reason (e.g. a key that does not match the certificate).
absl::StatusOr<std::unique_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const TlsConfig& config, bool server);

class AsioClock final : public env::Clock {
 public:
  explicit AsioClock(boost::asio::io_context& io);
  ~AsioClock() override;
  env::Instant Now() override;
  env::TimerId After(absl::Duration delay, std::function<void()> callback) override;
  bool Cancel(env::TimerId id) override;

 private:
  boost::asio::io_context& io_;
  const int64_t epoch_ns_;
  env::Instant last_;
  env::TimerId next_id_ = 0;
  std::map<env::TimerId, std::unique_ptr<boost::asio::steady_timer>> timers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class AsioNetwork final : public env::Network {
 public:
  // Listens for streams (TCP) and datagrams (UDP) on `listen` ("host:port"; port 0 picks a free
  // one, see local_address()). `advertise`, if not empty, is the address reported as
  // local_address() (e.g. the routable address when listening on 0.0.0.0). `tls` null: plain
  // TCP. Errors: a malformed address, a port in use (naming it).
  static absl::StatusOr<std::unique_ptr<AsioNetwork>> Listen(boost::asio::io_context& io,
                                                             const std::string& listen,
                                                             const std::string& advertise,
                                                             const TlsConfig* tls);
  ~AsioNetwork() override;

  const env::Address& local_address() const override { return local_; }
  void SetDatagramHandler(DatagramHandler handler) override;
  void SetAcceptHandler(AcceptHandler handler) override;
  absl::Status SendDatagram(const env::Address& to, std::string payload) override;
  std::unique_ptr<env::Stream> Connect(const env::Address& to) override;

  uint64_t handshakes_failed() const { return *handshakes_failed_; }

  class Conn;  // one TCP (or TLS) connection; shared with the asio handlers that use it

 private:
  AsioNetwork(boost::asio::io_context& io);
  void StartAccept();
  void StartReceive();

  boost::asio::io_context& io_;
  std::unique_ptr<boost::asio::ssl::context> server_tls_;
  std::unique_ptr<boost::asio::ssl::context> client_tls_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<boost::asio::ip::udp::socket> udp_;
  env::Address local_;
  AcceptHandler on_accept_;
  DatagramHandler on_datagram_;
  std::shared_ptr<size_t> handshaking_ = std::make_shared<size_t>(0);
  std::shared_ptr<uint64_t> handshakes_failed_ = std::make_shared<uint64_t>(0);
  std::string datagram_buffer_;
  boost::asio::ip::udp::endpoint datagram_from_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Splits "host:port" (IPv6 as "[::1]:port"); InvalidArgument naming `address` otherwise.
absl::Status SplitHostPort(const std::string& address, std::string* host, uint16_t* port);

class AsioEnv final : public env::Env {
 public:
  // `data_dir` must exist. `network` may be null for a node that never talks to peers.
  AsioEnv(boost::asio::io_context& io, std::string data_dir,
          std::unique_ptr<env::Network> network);
  ~AsioEnv() override;

  env::Clock& clock() override { return clock_; }
  env::Network& network() override;
  env::FileSystem& fs() override { return *fs_; }
  env::Random& random() override { return random_; }
  void Log(std::string_view line) override;
  // On one worker thread, started at the first call; `done` is posted to the io_context.
  absl::Status Offload(std::function<void()> work, std::function<void()> done) override;
  // Waits for the offloaded work queued so far and stops the worker (later calls start it
  // again). Call it before destroying what the work reads (the engine); the destructor calls
  // it too.
  void DrainOffloaded();

  enum class LogLevel { kDebug, kInfo, kWarn, kError };
  // InvalidArgument for a name other than debug, info, warn, error.
  static absl::StatusOr<LogLevel> ParseLogLevel(const std::string& name);
  void set_log_level(LogLevel level) { log_level_ = level; }

 private:
  void WorkerLoop();

  boost::asio::io_context& io_;
  LogLevel log_level_ = LogLevel::kInfo;
  AsioClock clock_;
  std::mutex offload_mu_;
  std::condition_variable offload_cv_;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> offloaded_;  // guarded
  bool offload_stop_ = false;                                                       // guarded
  std::thread worker_;
  std::unique_ptr<env::Network> network_;
  std::unique_ptr<env::PosixFileSystem> fs_;
  env::Random random_;
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_ASIO_ENV_H_
