// Copyright e2d authors.
//
// The network as every core sees it: unreliable datagrams (gossip probes) and ordered message
// streams (Raft, gossip push-pull, snapshot transfer) between addresses. The real runtime backs
// this with UDP and TLS-over-TCP; the simulator with SimNetwork and its faults.
//
// Threading: every callback runs on the owning node's thread, never from inside the call that
// caused it (no reentrancy), and never after the node crashed or the object it belongs to was
// destroyed.

#ifndef E2D_ENV_NETWORK_H_
#define E2D_ENV_NETWORK_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace e2d::env {

// "host:port". Compared as a plain string.
using Address = std::string;

// Largest datagram payload any Network must carry: a safe size for UDP on typical paths.
inline constexpr size_t kDatagramSizeMax = 1400;

// Largest message one Stream carries; larger payloads must be split by the caller.
inline constexpr size_t kStreamMessageSizeMax = 4 << 20;

// The local end of an ordered, reliable message stream. Messages arrive whole, in the order they
// were sent, without duplicates, until the stream breaks; after a break nothing more is delivered
// in either direction and messages that were in flight are lost. Destroying a Stream closes it.
class Stream {
 public:
  using MessageHandler = std::function<void(std::string message)>;
  // Called once when the stream breaks or the peer closes it; never after Close() by this side.
  using CloseHandler = std::function<void(absl::Status why)>;

  virtual ~Stream() = default;

  // The address of the other end (for an accepted stream, the connecting node's address).
  virtual const Address& peer() const = 0;

  // Installs the handlers. Messages that arrive before this call are held (within the send
  // window bound) and delivered after it.
  virtual void SetHandlers(MessageHandler on_message, CloseHandler on_close) = 0;

  // Queues `message` for delivery. Fails with FailedPrecondition once the stream is closed or
  // broken, InvalidArgument if it exceeds kStreamMessageSizeMax, and ResourceExhausted if the
  // send window (an implementation bound on unacknowledged bytes) is full. Success does not mean
  // the peer received it.
  virtual absl::Status Send(std::string message) = 0;

  // Closes the stream; the peer's CloseHandler runs. Idempotent. May be called from inside this
  // stream's own handlers (they stay valid until they return).
  virtual void Close() = 0;

  // False once the stream is closed or broken.
  virtual bool open() const = 0;
};

class Network {
 public:
  using DatagramHandler = std::function<void(const Address& from, std::string payload)>;
  using AcceptHandler = std::function<void(std::unique_ptr<Stream> stream)>;

  virtual ~Network() = default;

  // The address peers use to reach this node.
  virtual const Address& local_address() const = 0;

  // Installs the receiver for datagrams addressed to this node. Without one, they are dropped.
  virtual void SetDatagramHandler(DatagramHandler handler) = 0;

  // Installs the receiver of streams other nodes open to this node. Without one, connection
  // attempts to this node fail.
  virtual void SetAcceptHandler(AcceptHandler handler) = 0;

  // Sends one datagram, best effort: it may be lost, duplicated, delayed or reordered.
  // InvalidArgument if `payload` exceeds kDatagramSizeMax; otherwise OK even if it is lost.
  virtual absl::Status SendDatagram(const Address& to, std::string payload) = 0;

  // Opens a stream to `to`. Returns at once; messages sent before the connection is up are
  // queued. If the peer cannot be reached, the stream's CloseHandler reports Unavailable.
  virtual std::unique_ptr<Stream> Connect(const Address& to) = 0;
};

}  // namespace e2d::env

#endif  // E2D_ENV_NETWORK_H_
