// Copyright e2d authors.
//
// Implementation notes.
//
// Every delivery is a simulator event owned by the receiving node, so a receiver crash drops it.
// Events capture ids (node ids, connection ids), never pointers into containers: a callback can
// destroy a Stream, open a connection or change handlers, so state is looked up again by id
// after every user callback. Events also capture a shared liveness flag, so a SimNetwork
// destroyed before its simulator leaves only inert events behind.
//
// A stream is a Connection record with two ends (the connector and the acceptor) and a
// Direction per sending side. The record lives until both Stream objects are gone (or, for an
// acceptor end never handed out, will never exist). Per direction, arrival times never decrease
// (max(now + link delay, last arrival, establishment)) and same-time events run in scheduling
// order, so messages and the closing notice arrive in the order they were sent.
//
// Clogs act at send time: a message sent over a clogged link is scheduled for max(its arrival,
// clog end). Messages already scheduled keep their time, and Heal() does not release held ones
// early (the clog only stops applying to later sends).

#include "sim/sim_network.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "env/check.h"

namespace e2d::sim {
namespace {

using Link = std::pair<NodeId, NodeId>;

constexpr int kConnector = 0;
constexpr int kAcceptor = 1;

int Other(int side) { return 1 - side; }

void CheckLinkConfig(const LinkConfig& config) {
  E2D_CHECK(config.latency_ns >= 0 && config.jitter_ns >= 0 && config.tail_latency_ns >= 0,
            "negative link delay (latency %lld, jitter %lld, tail %lld)",
            static_cast<long long>(config.latency_ns), static_cast<long long>(config.jitter_ns),
            static_cast<long long>(config.tail_latency_ns));
}

}  // namespace

class SimNetwork::Impl {
 public:
  class NodeView;
  class StreamEnd;

  Impl(Simulator& sim, env::Random random, NetworkStats& stats);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // SimNetwork's API; see sim_network.h.
  env::Network& Attach(NodeId node, const env::Address& address);
  NodeId node_at(const env::Address& address) const;
  void SetDefaultLink(const LinkConfig& config);
  void SetLink(NodeId from, NodeId to, const LinkConfig& config);
  const LinkConfig& link(NodeId from, NodeId to) const;
  void Block(NodeId from, NodeId to);
  void Unblock(NodeId from, NodeId to);
  void Isolate(NodeId node);
  void Split(const std::vector<NodeId>& side_a, const std::vector<NodeId>& side_b,
             NodeId except);
  bool blocked(NodeId from, NodeId to) const { return blocks_.contains(Link(from, to)); }
  void Clog(NodeId from, NodeId to, int64_t until_ns);
  void Heal();
  int BreakStreams(NodeId a, NodeId b);
  void Crash(NodeId node);
  size_t tracked_streams() const { return connections_.size(); }

  // A node's env::Network view.
  void SetDatagramHandler(NodeId node, const env::Address& address,
                          env::Network::DatagramHandler handler);
  void SetAcceptHandler(NodeId node, const env::Address& address,
                        env::Network::AcceptHandler handler);
  absl::Status SendDatagram(NodeId from, const env::Address& from_address,
                            const env::Address& to, std::string payload);
  std::unique_ptr<env::Stream> Connect(NodeId from, const env::Address& from_address,
                                       const env::Address& to);

  // A Stream end, identified by (connection id, side).
  void SetHandlers(uint64_t id, int side, env::Stream::MessageHandler on_message,
                   env::Stream::CloseHandler on_close);
  absl::Status Send(uint64_t id, int side, std::string message);
  void Close(uint64_t id, int side);
  bool IsOpen(uint64_t id, int side) const;
  void Release(uint64_t id, int side);  // the Stream object is being destroyed

 private:
  // One address of an attached node: its view and handlers. A handler counts only in the
  // simulator incarnation that installed it.
  struct Port {
    std::unique_ptr<NodeView> view;
    env::Network::DatagramHandler datagram_handler;
    uint64_t datagram_incarnation = 0;
    env::Network::AcceptHandler accept_handler;
    uint64_t accept_incarnation = 0;
  };
  // An attached node: every address it holds (say a Raft port and a gossip port). Faults apply
  // to the node, so to all of its addresses at once.
  struct Attached {
    absl::btree_map<env::Address, Port> ports;
    uint64_t crashes = 0;  // SimNetwork::Crash calls, for the sender check
  };

  // Who sent a datagram, from which of its addresses: it is delivered only if the sender has
  // not crashed since.
  struct Sender {
    NodeId node;
    uint64_t incarnation;
    uint64_t crashes;
    env::Address address;
  };

  enum class Handle { kPending, kAlive, kGone };  // the Stream object of one end
  enum class State { kConnecting, kEstablished, kBroken };

  struct End {
    NodeId node = kNoNode;
    env::Address address;        // this end's address (the acceptor's: the one connected to)
    uint64_t incarnation = 0;    // of `node` when this end was created
    Handle handle = Handle::kPending;
    bool closed_locally = false;  // Close(), destruction or crash: nothing more arrives here
    bool peer_closed = false;     // the peer's close reached this end
    bool handlers_set = false;
    bool flush_scheduled = false;
    env::Stream::MessageHandler on_message;
    env::Stream::CloseHandler on_close;
    std::deque<std::string> inbox;              // arrived, not yet handed to on_message
    std::optional<absl::Status> pending_close;  // reported once the inbox is drained
  };

  // Messages sent by one end to the other.
  struct Direction {
    int64_t last_arrival_ns = 0;
    uint64_t bytes = 0;      // sent and not yet handed to the receiver (the window)
    uint64_t in_flight = 0;  // scheduled and not yet arrived
    uint64_t next_seq = 0;
  };

  struct Connection {
    State state = State::kConnecting;
    int64_t established_ns = 0;
    End ends[2];
    Direction dirs[2];  // indexed by the sending side
  };

  void Post(int64_t at_ns, NodeId node, std::string_view kind, uint64_t detail,
            std::function<void()> fn);
  Attached* FindNode(NodeId node);
  Port* FindPort(NodeId node, const env::Address& address);
  Connection* Find(uint64_t id);
  const Connection* Find(uint64_t id) const;
  int64_t ArrivalNs(NodeId from, NodeId to);
  int64_t NextArrivalNs(Connection& c, int side);
  bool EndAlive(const End& end) const;
  bool HasAcceptHandler(NodeId node, const env::Address& address);
  bool SenderAlive(const Sender& sender);

  void ScheduleDatagram(const Sender& sender, NodeId to, const env::Address& to_address,
                        std::string payload, uint64_t detail);
  void DeliverDatagram(const Sender& sender, NodeId to, const env::Address& to_address,
                       std::string payload, uint64_t detail);
  void DropDatagram(NodeId node, uint64_t detail);
  void CountDroppedByCrash(NodeId node);

  void Establish(uint64_t id, const env::Address& to);
  void Accept(uint64_t id);
  void ArriveMessage(uint64_t id, int from_side, std::string message);
  void ArriveClose(uint64_t id, int from_side);
  void ScheduleFlush(uint64_t id, int side);
  void Drain(uint64_t id, int side);
  void DropInbox(Connection& c, int side);
  void Silence(Connection& c, int side);
  bool BreakIfStale(uint64_t id);
  bool Break(uint64_t id, const absl::Status& why);
  int BreakBetween(NodeId a, NodeId b, const absl::Status& why);
  void MaybeErase(uint64_t id);

  Simulator& sim_;
  env::Random random_;
  NetworkStats& stats_;
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  LinkConfig default_link_;
  absl::btree_map<Link, LinkConfig> links_;
  absl::btree_set<Link> blocks_;
  absl::btree_map<Link, int64_t> clogs_;  // link -> held until
  absl::btree_map<NodeId, Attached> nodes_;
  absl::btree_map<env::Address, NodeId> addresses_;
  // (receiver, its incarnation at send) -> datagrams scheduled and not yet run. Events of an
  // ended incarnation never run; CountDroppedByCrash moves them to the dropped count.
  absl::btree_map<std::pair<NodeId, uint64_t>, uint64_t> datagrams_in_flight_;
  absl::btree_map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t next_connection_id_ = 1;
};

// ---------------------------------------------------------------------------------------------
// The per-node env::Network view and the env::Stream ends: thin handles onto Impl.

class SimNetwork::Impl::NodeView final : public env::Network {
 public:
  NodeView(Impl* impl, NodeId node, env::Address address)
      : impl_(impl), node_(node), address_(std::move(address)) {}

  const env::Address& local_address() const override { return address_; }
  void SetDatagramHandler(DatagramHandler handler) override {
    impl_->SetDatagramHandler(node_, address_, std::move(handler));
  }
  void SetAcceptHandler(AcceptHandler handler) override {
    impl_->SetAcceptHandler(node_, address_, std::move(handler));
  }
  absl::Status SendDatagram(const env::Address& to, std::string payload) override {
    return impl_->SendDatagram(node_, address_, to, std::move(payload));
  }
  std::unique_ptr<env::Stream> Connect(const env::Address& to) override {
    return impl_->Connect(node_, address_, to);
  }

 private:
  Impl* const impl_;
  const NodeId node_;
  const env::Address address_;
};

// May outlive the SimNetwork (then it is inert: closed, Send fails).
class SimNetwork::Impl::StreamEnd final : public env::Stream {
 public:
  StreamEnd(Impl* impl, std::shared_ptr<bool> alive, uint64_t id, int side, env::Address peer)
      : impl_(impl), alive_(std::move(alive)), id_(id), side_(side), peer_(std::move(peer)) {}
  ~StreamEnd() override {
    if (*alive_) impl_->Release(id_, side_);
  }

  const env::Address& peer() const override { return peer_; }
  void SetHandlers(MessageHandler on_message, CloseHandler on_close) override {
    if (*alive_) impl_->SetHandlers(id_, side_, std::move(on_message), std::move(on_close));
  }
  absl::Status Send(std::string message) override {
    if (!*alive_) return absl::FailedPreconditionError("stream's network was destroyed");
    return impl_->Send(id_, side_, std::move(message));
  }
  void Close() override {
    if (*alive_) impl_->Close(id_, side_);
  }
  bool open() const override { return *alive_ && impl_->IsOpen(id_, side_); }

 private:
  Impl* const impl_;
  const std::shared_ptr<bool> alive_;
  const uint64_t id_;
  const int side_;
  const env::Address peer_;
};

// ---------------------------------------------------------------------------------------------
// Topology, links and faults.

SimNetwork::Impl::Impl(Simulator& sim, env::Random random, NetworkStats& stats)
    : sim_(sim), random_(std::move(random)), stats_(stats) {}

SimNetwork::Impl::~Impl() { *alive_ = false; }

void SimNetwork::Impl::Post(int64_t at_ns, NodeId node, std::string_view kind, uint64_t detail,
                            std::function<void()> fn) {
  sim_.Schedule(at_ns, node, kind, detail, [alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

env::Network& SimNetwork::Impl::Attach(NodeId node, const env::Address& address) {
  E2D_CHECK(node != kNoNode && node < sim_.node_count(), "attach of unknown node %u", node);
  E2D_CHECK(!addresses_.contains(address), "address %s is taken", address.c_str());
  addresses_.emplace(address, node);
  Port& port = nodes_[node].ports[address];
  port.view = std::make_unique<NodeView>(this, node, address);
  sim_.Record(node, "net.attach", env::StableHash(address));
  return *port.view;
}

NodeId SimNetwork::Impl::node_at(const env::Address& address) const {
  auto it = addresses_.find(address);
  return it == addresses_.end() ? kNoNode : it->second;
}

SimNetwork::Impl::Attached* SimNetwork::Impl::FindNode(NodeId node) {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second;
}

SimNetwork::Impl::Port* SimNetwork::Impl::FindPort(NodeId node, const env::Address& address) {
  Attached* attached = FindNode(node);
  if (attached == nullptr) return nullptr;
  auto it = attached->ports.find(address);
  return it == attached->ports.end() ? nullptr : &it->second;
}

void SimNetwork::Impl::SetDefaultLink(const LinkConfig& config) {
  CheckLinkConfig(config);
  default_link_ = config;
}

void SimNetwork::Impl::SetLink(NodeId from, NodeId to, const LinkConfig& config) {
  CheckLinkConfig(config);
  links_[Link(from, to)] = config;
}

const LinkConfig& SimNetwork::Impl::link(NodeId from, NodeId to) const {
  auto it = links_.find(Link(from, to));
  return it == links_.end() ? default_link_ : it->second;
}

void SimNetwork::Impl::Block(NodeId from, NodeId to) {
  blocks_.insert(Link(from, to));
  sim_.Record(kNoNode, "net.block", env::HashCombine(from, to));
  // A stream needs both directions: one blocked direction breaks every stream on the pair.
  BreakBetween(from, to, absl::UnavailableError(absl::StrCat(
                             "stream broken by a partition between nodes ", from, " and ", to)));
}

void SimNetwork::Impl::Unblock(NodeId from, NodeId to) {
  blocks_.erase(Link(from, to));
  sim_.Record(kNoNode, "net.unblock", env::HashCombine(from, to));
}

void SimNetwork::Impl::Isolate(NodeId node) {
  for (NodeId other = 1; other < sim_.node_count(); ++other) {
    if (other == node) continue;
    Block(node, other);
    Block(other, node);
  }
}

void SimNetwork::Impl::Split(const std::vector<NodeId>& side_a,
                             const std::vector<NodeId>& side_b, NodeId except) {
  for (NodeId a : side_a) {
    for (NodeId b : side_b) {
      if (a == b || a == except || b == except) continue;
      Block(a, b);
      Block(b, a);
    }
  }
}

void SimNetwork::Impl::Clog(NodeId from, NodeId to, int64_t until_ns) {
  int64_t& until = clogs_[Link(from, to)];
  until = std::max(until, until_ns);
  sim_.Record(kNoNode, "net.clog", env::HashCombine(env::HashCombine(from, to), until));
}

void SimNetwork::Impl::Heal() {
  blocks_.clear();
  clogs_.clear();
  sim_.Record(kNoNode, "net.heal", 0);
}

int SimNetwork::Impl::BreakStreams(NodeId a, NodeId b) {
  return BreakBetween(a, b, absl::UnavailableError(absl::StrCat(
                                "stream between nodes ", a, " and ", b, " broken by a fault")));
}

void SimNetwork::Impl::Crash(NodeId node) {
  if (Attached* attached = FindNode(node)) {
    for (auto& [address, port] : attached->ports) {
      port.datagram_handler = nullptr;
      port.accept_handler = nullptr;
    }
    ++attached->crashes;
  }
  sim_.Record(node, "net.crash", 0);
  CountDroppedByCrash(node);
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : connections_) {
    if (c->ends[kConnector].node == node || c->ends[kAcceptor].node == node) ids.push_back(id);
  }
  const absl::Status why =
      absl::UnavailableError(absl::StrCat("stream broken: node ", node, " crashed"));
  for (uint64_t id : ids) {
    Connection* c = Find(id);
    if (c == nullptr) continue;
    // The crashed side hears nothing more; its Stream objects die with its process.
    for (int side : {kConnector, kAcceptor}) {
      if (c->ends[side].node == node) Silence(*c, side);
    }
    if (!Break(id, why)) MaybeErase(id);
  }
}

// Delivery time over from -> to for a message sent now: link delay, then any clog.
int64_t SimNetwork::Impl::ArrivalNs(NodeId from, NodeId to) {
  const LinkConfig& config = link(from, to);
  int64_t delay_ns = config.latency_ns;
  if (config.jitter_ns > 0) delay_ns += random_.Range(0, config.jitter_ns);
  if (random_.Chance(config.tail_probability)) delay_ns += config.tail_latency_ns;
  int64_t at_ns = sim_.now_ns() + delay_ns;
  auto clog = clogs_.find(Link(from, to));
  if (clog != clogs_.end()) at_ns = std::max(at_ns, clog->second);
  return at_ns;
}

// ---------------------------------------------------------------------------------------------
// Datagrams.

void SimNetwork::Impl::SetDatagramHandler(NodeId node, const env::Address& address,
                                          env::Network::DatagramHandler handler) {
  Port* port = FindPort(node, address);
  E2D_CHECK(port != nullptr, "node %u does not hold %s", node, address.c_str());
  port->datagram_handler = std::move(handler);
  port->datagram_incarnation = sim_.incarnation(node);
}

void SimNetwork::Impl::SetAcceptHandler(NodeId node, const env::Address& address,
                                        env::Network::AcceptHandler handler) {
  Port* port = FindPort(node, address);
  E2D_CHECK(port != nullptr, "node %u does not hold %s", node, address.c_str());
  port->accept_handler = std::move(handler);
  port->accept_incarnation = sim_.incarnation(node);
}

bool SimNetwork::Impl::HasAcceptHandler(NodeId node, const env::Address& address) {
  const Port* port = FindPort(node, address);
  return port != nullptr && port->accept_handler != nullptr &&
         port->accept_incarnation == sim_.incarnation(node);
}

bool SimNetwork::Impl::SenderAlive(const Sender& sender) {
  const Attached* attached = FindNode(sender.node);
  return attached != nullptr && attached->crashes == sender.crashes &&
         sim_.incarnation(sender.node) == sender.incarnation;
}

absl::Status SimNetwork::Impl::SendDatagram(NodeId from, const env::Address& from_address,
                                            const env::Address& to, std::string payload) {
  if (payload.size() > env::kDatagramSizeMax) {
    return absl::InvalidArgumentError(absl::StrCat("datagram of ", payload.size(),
                                                   " bytes exceeds the limit of ",
                                                   env::kDatagramSizeMax));
  }
  ++stats_.datagrams_sent;
  const NodeId dest = node_at(to);
  const uint64_t detail =
      env::HashCombine(env::HashCombine(from, dest), env::StableHash(payload));
  sim_.Record(from, "net.dgram_send", detail);
  if (dest != kNoNode) CountDroppedByCrash(dest);
  if (dest == kNoNode || blocked(from, dest) || random_.Chance(link(from, dest).loss)) {
    DropDatagram(from, detail);
    return absl::OkStatus();
  }
  const Sender sender{from, sim_.incarnation(from), FindNode(from)->crashes, from_address};
  if (random_.Chance(link(from, dest).duplicate)) {
    ++stats_.datagrams_duplicated;
    ScheduleDatagram(sender, dest, to, payload, env::HashCombine(detail, 2));
  }
  ScheduleDatagram(sender, dest, to, std::move(payload), detail);
  return absl::OkStatus();
}

void SimNetwork::Impl::ScheduleDatagram(const Sender& sender, NodeId to,
                                        const env::Address& to_address, std::string payload,
                                        uint64_t detail) {
  const uint64_t incarnation = sim_.incarnation(to);
  ++datagrams_in_flight_[{to, incarnation}];
  Post(ArrivalNs(sender.node, to), to, "net.dgram", detail,
       [this, sender, to, to_address, incarnation, detail,
        payload = std::move(payload)]() mutable {
         auto it = datagrams_in_flight_.find({to, incarnation});
         E2D_CHECK(it != datagrams_in_flight_.end() && it->second > 0,
                   "datagram to node %u not counted in flight", to);
         if (--it->second == 0) datagrams_in_flight_.erase(it);
         DeliverDatagram(sender, to, to_address, std::move(payload), detail);
       });
}

void SimNetwork::Impl::DeliverDatagram(const Sender& sender, NodeId to,
                                       const env::Address& to_address, std::string payload,
                                       uint64_t detail) {
  Port* receiver = FindPort(to, to_address);
  if (!SenderAlive(sender) || blocked(sender.node, to) || receiver == nullptr ||
      receiver->datagram_handler == nullptr ||
      receiver->datagram_incarnation != sim_.incarnation(to)) {
    DropDatagram(to, detail);
    return;
  }
  ++stats_.datagrams_delivered;
  // Copies: the handler may replace itself or attach nodes.
  const env::Network::DatagramHandler handler = receiver->datagram_handler;
  handler(sender.address, std::move(payload));
}

void SimNetwork::Impl::DropDatagram(NodeId node, uint64_t detail) {
  ++stats_.datagrams_dropped;
  sim_.Record(node, "net.dgram_drop", detail);
}

void SimNetwork::Impl::CountDroppedByCrash(NodeId node) {
  const uint64_t current = sim_.incarnation(node);
  auto it = datagrams_in_flight_.lower_bound({node, 0});
  while (it != datagrams_in_flight_.end() && it->first.first == node) {
    if (it->first.second == current) {
      ++it;
      continue;
    }
    stats_.datagrams_dropped += it->second;
    it = datagrams_in_flight_.erase(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Streams: connection setup.

SimNetwork::Impl::Connection* SimNetwork::Impl::Find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

const SimNetwork::Impl::Connection* SimNetwork::Impl::Find(uint64_t id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

bool SimNetwork::Impl::EndAlive(const End& end) const {
  return end.node != kNoNode && sim_.incarnation(end.node) == end.incarnation;
}

std::unique_ptr<env::Stream> SimNetwork::Impl::Connect(NodeId from,
                                                       const env::Address& from_address,
                                                       const env::Address& to) {
  const uint64_t id = next_connection_id_++;
  auto c = std::make_unique<Connection>();
  End& local = c->ends[kConnector];
  local.node = from;
  local.address = from_address;
  local.incarnation = sim_.incarnation(from);
  local.handle = Handle::kAlive;
  c->ends[kAcceptor].node = node_at(to);
  c->ends[kAcceptor].address = to;
  c->established_ns = ArrivalNs(from, c->ends[kAcceptor].node);
  const uint64_t detail = env::HashCombine(id, env::StableHash(to));
  sim_.Record(from, "net.connect_send", detail);
  // Owned by the network, not by either node: the outcome must be decided (and the connector
  // told) even while the connector is paused.
  Post(c->established_ns, kNoNode, "net.connect", detail, [this, id, to] { Establish(id, to); });
  connections_.emplace(id, std::move(c));
  return std::make_unique<StreamEnd>(this, alive_, id, kConnector, to);
}

void SimNetwork::Impl::Establish(uint64_t id, const env::Address& to) {
  Connection* c = Find(id);
  if (c == nullptr || c->state != State::kConnecting) return;
  const NodeId from = c->ends[kConnector].node;
  const NodeId dest = c->ends[kAcceptor].node;
  const char* problem = nullptr;
  if (!EndAlive(c->ends[kConnector])) {
    Silence(*c, kConnector);
    problem = "the connecting node crashed";
  } else if (dest == kNoNode) {
    problem = "no node has this address";
  } else if (blocked(from, dest) || blocked(dest, from)) {
    problem = "the link is partitioned";
  } else if (!HasAcceptHandler(dest, to)) {
    problem = "connection refused (no accept handler)";
  }
  if (problem != nullptr) {
    Break(id, absl::UnavailableError(absl::StrCat("connect to ", to, ": ", problem)));
    return;
  }
  c->state = State::kEstablished;
  c->ends[kAcceptor].incarnation = sim_.incarnation(dest);
  ++stats_.streams_opened;
  Post(sim_.now_ns(), dest, "net.accept", env::HashCombine(id, kAcceptor),
       [this, id] { Accept(id); });
}

void SimNetwork::Impl::Accept(uint64_t id) {
  Connection* c = Find(id);
  if (c == nullptr || c->state == State::kBroken) return;
  E2D_CHECK(c->state == State::kEstablished, "accept of stream %llu before it was established",
            static_cast<unsigned long long>(id));
  End& end = c->ends[kAcceptor];
  if (end.handle != Handle::kPending || end.closed_locally) return;
  if (!HasAcceptHandler(end.node, end.address) || !EndAlive(end)) {  // cleared since then
    end.handle = Handle::kGone;
    if (!Break(id, absl::UnavailableError("connection refused (accept handler removed)"))) {
      MaybeErase(id);
    }
    return;
  }
  end.handle = Handle::kAlive;
  const env::Network::AcceptHandler handler = FindPort(end.node, end.address)->accept_handler;
  handler(std::make_unique<StreamEnd>(this, alive_, id, kAcceptor,
                                      c->ends[kConnector].address));
}

// ---------------------------------------------------------------------------------------------
// Streams: data and closing.

int64_t SimNetwork::Impl::NextArrivalNs(Connection& c, int side) {
  Direction& dir = c.dirs[side];
  const int64_t at_ns = std::max({ArrivalNs(c.ends[side].node, c.ends[Other(side)].node),
                                  dir.last_arrival_ns, c.established_ns});
  dir.last_arrival_ns = at_ns;
  return at_ns;
}

bool SimNetwork::Impl::IsOpen(uint64_t id, int side) const {
  const Connection* c = Find(id);
  if (c == nullptr || c->state == State::kBroken) return false;
  const End& end = c->ends[side];
  return !end.closed_locally && !end.peer_closed;
}

absl::Status SimNetwork::Impl::Send(uint64_t id, int side, std::string message) {
  Connection* c = Find(id);
  E2D_CHECK(c != nullptr, "send on released stream %llu", static_cast<unsigned long long>(id));
  if (c->state == State::kBroken) return absl::FailedPreconditionError("stream is broken");
  if (!IsOpen(id, side)) return absl::FailedPreconditionError("stream is closed");
  if (message.size() > env::kStreamMessageSizeMax) {
    return absl::InvalidArgumentError(absl::StrCat("stream message of ", message.size(),
                                                   " bytes exceeds the limit of ",
                                                   env::kStreamMessageSizeMax));
  }
  Direction& dir = c->dirs[side];
  if (dir.bytes + message.size() > kStreamWindowBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "stream send window full: ", dir.bytes, " bytes undelivered, window ", kStreamWindowBytes));
  }
  dir.bytes += message.size();
  ++dir.in_flight;
  const uint64_t seq = dir.next_seq++;
  const uint64_t detail = env::HashCombine(
      env::HashCombine(env::HashCombine(id, side), seq), env::StableHash(message));
  sim_.Record(c->ends[side].node, "net.stream_send", detail);
  Post(NextArrivalNs(*c, side), c->ends[Other(side)].node, "net.msg", detail,
       [this, id, side, message = std::move(message)]() mutable {
         ArriveMessage(id, side, std::move(message));
       });
  return absl::OkStatus();
}

void SimNetwork::Impl::Close(uint64_t id, int side) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  End& end = c->ends[side];
  if (end.closed_locally) return;
  end.closed_locally = true;
  DropInbox(*c, side);
  end.pending_close.reset();  // never report a close to the side that closed
  end.on_message = nullptr;
  end.on_close = nullptr;
  if (c->state == State::kBroken || end.peer_closed) return;  // the peer needs no notice
  // The notice travels like a message, behind everything this side already sent.
  const uint64_t detail = env::HashCombine(env::HashCombine(id, side), 0xc105e);
  sim_.Record(end.node, "net.close_send", detail);
  Post(NextArrivalNs(*c, side), c->ends[Other(side)].node, "net.close", detail,
       [this, id, side] { ArriveClose(id, side); });
}

void SimNetwork::Impl::Release(uint64_t id, int side) {
  Close(id, side);
  Connection* c = Find(id);
  if (c == nullptr) return;
  c->ends[side].handle = Handle::kGone;
  MaybeErase(id);
}

void SimNetwork::Impl::SetHandlers(uint64_t id, int side, env::Stream::MessageHandler on_message,
                                   env::Stream::CloseHandler on_close) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  End& end = c->ends[side];
  if (end.closed_locally) return;
  end.on_message = std::move(on_message);
  end.on_close = std::move(on_close);
  end.handlers_set = true;
  if (!end.inbox.empty() || end.pending_close.has_value()) ScheduleFlush(id, side);
}

void SimNetwork::Impl::ArriveMessage(uint64_t id, int from_side, std::string message) {
  Connection* c = Find(id);
  if (c == nullptr || c->state == State::kBroken) return;  // counted when it broke or was freed
  E2D_CHECK(c->state == State::kEstablished, "message on stream %llu before establishment",
            static_cast<unsigned long long>(id));
  if (BreakIfStale(id)) return;
  const int side = Other(from_side);
  Direction& dir = c->dirs[from_side];
  End& end = c->ends[side];
  --dir.in_flight;
  if (end.closed_locally) {
    dir.bytes -= message.size();
    ++stats_.stream_messages_lost;
    return;
  }
  end.inbox.push_back(std::move(message));
  if (end.handlers_set && !end.flush_scheduled) Drain(id, side);
}

void SimNetwork::Impl::ArriveClose(uint64_t id, int from_side) {
  Connection* c = Find(id);
  if (c == nullptr || c->state == State::kBroken) return;
  E2D_CHECK(c->state == State::kEstablished, "close on stream %llu before establishment",
            static_cast<unsigned long long>(id));
  if (BreakIfStale(id)) return;
  const int side = Other(from_side);
  End& end = c->ends[side];
  if (end.closed_locally) return;  // both sides closed
  end.peer_closed = true;
  end.pending_close = absl::CancelledError("stream closed by the peer");
  if (end.handlers_set && !end.flush_scheduled) Drain(id, side);
}

void SimNetwork::Impl::ScheduleFlush(uint64_t id, int side) {
  End& end = Find(id)->ends[side];
  if (end.flush_scheduled) return;
  end.flush_scheduled = true;
  Post(sim_.now_ns(), end.node, "net.flush", env::HashCombine(id, side), [this, id, side] {
    Connection* c = Find(id);
    if (c == nullptr) return;
    c->ends[side].flush_scheduled = false;
    Drain(id, side);
  });
}

// Hands the inbox, then any pending close, to the end's handlers. Runs only inside an event
// owned by the end's node. Looks the connection up again after every callback.
void SimNetwork::Impl::Drain(uint64_t id, int side) {
  for (;;) {
    Connection* c = Find(id);
    if (c == nullptr) return;
    End& end = c->ends[side];
    if (!end.handlers_set || end.closed_locally || !EndAlive(end)) return;
    if (!end.inbox.empty()) {
      std::string message = std::move(end.inbox.front());
      end.inbox.pop_front();
      c->dirs[Other(side)].bytes -= message.size();
      ++stats_.stream_messages_delivered;
      const env::Stream::MessageHandler handler = end.on_message;  // may destroy the stream
      if (handler) handler(std::move(message));
      continue;
    }
    if (end.pending_close.has_value()) {
      const absl::Status why = *end.pending_close;
      end.pending_close.reset();
      const env::Stream::CloseHandler handler = std::move(end.on_close);
      end.on_close = nullptr;  // at most once
      end.on_message = nullptr;
      if (handler) handler(why);
    }
    return;
  }
}

void SimNetwork::Impl::DropInbox(Connection& c, int side) {
  End& end = c.ends[side];
  for (const std::string& message : end.inbox) c.dirs[Other(side)].bytes -= message.size();
  stats_.stream_messages_lost += end.inbox.size();
  end.inbox.clear();
}

// The end's node crashed: it gets no callbacks, its handlers (and what they hold) are freed.
void SimNetwork::Impl::Silence(Connection& c, int side) {
  End& end = c.ends[side];
  DropInbox(c, side);
  if (end.handle == Handle::kPending) end.handle = Handle::kGone;  // never to be accepted
  end.closed_locally = true;
  end.pending_close.reset();
  end.on_message = nullptr;
  end.on_close = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Streams: breaking and freeing.

// Breaks the stream if an end's node restarted without SimNetwork::Crash being told.
bool SimNetwork::Impl::BreakIfStale(uint64_t id) {
  Connection* c = Find(id);
  bool stale = false;
  for (int side : {kConnector, kAcceptor}) {
    if (!EndAlive(c->ends[side])) {
      Silence(*c, side);
      stale = true;
    }
  }
  if (!stale) return false;
  if (!Break(id, absl::UnavailableError("stream broken: the peer crashed"))) MaybeErase(id);
  return true;
}

// Breaks a stream that is not yet finished: in-flight and undelivered messages are lost and every
// end still listening gets `why` (as an event). False if there was nothing to break.
bool SimNetwork::Impl::Break(uint64_t id, const absl::Status& why) {
  Connection* c = Find(id);
  if (c == nullptr || c->state == State::kBroken) return false;
  auto finished = [](const End& end) { return end.closed_locally || end.peer_closed; };
  if (finished(c->ends[kConnector]) && finished(c->ends[kAcceptor])) return false;
  const bool connecting = c->state == State::kConnecting;
  c->state = State::kBroken;
  ++(connecting ? stats_.streams_refused : stats_.streams_broken);
  uint64_t lost = 0;
  for (int side : {kConnector, kAcceptor}) {
    End& end = c->ends[side];
    lost += c->dirs[side].in_flight + end.inbox.size();
    c->dirs[side].in_flight = 0;
    c->dirs[side].bytes = 0;
    end.inbox.clear();
    if (end.handle == Handle::kPending) end.handle = Handle::kGone;  // will never be accepted
    if (end.handle == Handle::kAlive && !finished(end) && EndAlive(end)) {
      end.pending_close = why;
      if (end.handlers_set) ScheduleFlush(id, side);
    }
  }
  stats_.stream_messages_lost += lost;
  sim_.Record(kNoNode, "net.break", env::HashCombine(id, lost));
  MaybeErase(id);
  return true;
}

int SimNetwork::Impl::BreakBetween(NodeId a, NodeId b, const absl::Status& why) {
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : connections_) {
    const NodeId x = c->ends[kConnector].node;
    const NodeId y = c->ends[kAcceptor].node;
    if ((x == a && y == b) || (x == b && y == a)) ids.push_back(id);
  }
  int broken = 0;
  for (uint64_t id : ids) broken += Break(id, why) ? 1 : 0;
  return broken;
}

// Frees the record once neither end has (or will get) a Stream object.
void SimNetwork::Impl::MaybeErase(uint64_t id) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  if (c->ends[kConnector].handle != Handle::kGone) return;
  if (c->ends[kAcceptor].handle != Handle::kGone) return;
  for (int side : {kConnector, kAcceptor}) {
    stats_.stream_messages_lost += c->dirs[side].in_flight + c->ends[side].inbox.size();
  }
  connections_.erase(id);
}

// ---------------------------------------------------------------------------------------------
// SimNetwork.

SimNetwork::SimNetwork(Simulator& sim, env::Random random)
    : impl_(std::make_unique<Impl>(sim, std::move(random), stats_)) {}

SimNetwork::~SimNetwork() = default;

env::Network& SimNetwork::Attach(NodeId node, const env::Address& address) {
  return impl_->Attach(node, address);
}

NodeId SimNetwork::node_at(const env::Address& address) const { return impl_->node_at(address); }

void SimNetwork::SetDefaultLink(const LinkConfig& config) { impl_->SetDefaultLink(config); }

void SimNetwork::SetLink(NodeId from, NodeId to, const LinkConfig& config) {
  impl_->SetLink(from, to, config);
}

const LinkConfig& SimNetwork::link(NodeId from, NodeId to) const { return impl_->link(from, to); }

void SimNetwork::Block(NodeId from, NodeId to) { impl_->Block(from, to); }

void SimNetwork::Unblock(NodeId from, NodeId to) { impl_->Unblock(from, to); }

void SimNetwork::Isolate(NodeId node) { impl_->Isolate(node); }

void SimNetwork::Split(const std::vector<NodeId>& side_a, const std::vector<NodeId>& side_b) {
  impl_->Split(side_a, side_b, kNoNode);
}

void SimNetwork::Bridge(const std::vector<NodeId>& side_a, const std::vector<NodeId>& side_b,
                        NodeId bridge) {
  impl_->Split(side_a, side_b, bridge);
}

bool SimNetwork::blocked(NodeId from, NodeId to) const { return impl_->blocked(from, to); }

void SimNetwork::Clog(NodeId from, NodeId to, int64_t until_ns) {
  impl_->Clog(from, to, until_ns);
}

void SimNetwork::Heal() { impl_->Heal(); }

int SimNetwork::BreakStreams(NodeId a, NodeId b) { return impl_->BreakStreams(a, b); }

void SimNetwork::Crash(NodeId node) { impl_->Crash(node); }

size_t SimNetwork::tracked_streams() const { return impl_->tracked_streams(); }

}  // namespace e2d::sim
