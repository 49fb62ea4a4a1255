// Copyright e2d authors.
//
// SimNetwork: the simulated network between nodes, with the fault model of DESIGN.md.
//
// Datagrams: each draws its own delay (base latency + uniform jitter + a rare long tail), so
// they reorder; they can be lost or duplicated per link. Streams: a connection takes one link
// delay to establish; messages arrive in order (a message never overtakes an earlier one on the
// same stream), each also delayed per link. A stream breaks when a partition blocks either
// direction between its ends, when either end crashes, or by an injected break; both ends get
// their CloseHandler (Unavailable) and messages in flight are lost.
//
// Faults are per directed link (from -> to): latency, loss, duplication, blocking (partitions),
// clogging (messages held until a time, then delivered). Heal() removes blocks and clogs.
//
// Every send, delivery, drop and break is folded into the simulator digest. A node's network
// events belong to its current incarnation: after Crash(node) nothing sent by or to the old
// incarnation is delivered.

#ifndef E2D_SIM_SIM_NETWORK_H_
#define E2D_SIM_SIM_NETWORK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "env/network.h"
#include "env/random.h"
#include "sim/simulator.h"

namespace e2d::sim {

struct LinkConfig {
  int64_t latency_ns = 200'000;          // base one-way delay
  int64_t jitter_ns = 100'000;           // + uniform [0, jitter]
  double tail_probability = 0.001;       // chance of an extra tail_latency_ns
  int64_t tail_latency_ns = 20'000'000;
  double loss = 0;                       // datagram loss probability
  double duplicate = 0;                  // datagram duplication probability
};

struct NetworkStats {
  uint64_t datagrams_sent = 0;
  uint64_t datagrams_delivered = 0;
  uint64_t datagrams_dropped = 0;        // lost, blocked, no handler, dead receiver
  uint64_t datagrams_duplicated = 0;
  uint64_t streams_opened = 0;
  uint64_t streams_refused = 0;          // connect failed
  uint64_t streams_broken = 0;
  uint64_t stream_messages_delivered = 0;
  uint64_t stream_messages_lost = 0;     // in flight when the stream broke
};

// Upper bound on unacknowledged bytes per stream direction; Send beyond it is ResourceExhausted.
inline constexpr uint64_t kStreamWindowBytes = 16 << 20;

class SimNetwork {
 public:
  SimNetwork(Simulator& sim, env::Random random);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // Gives `node` the address `address` and returns its Network view (valid for the lifetime of
  // this SimNetwork; handlers are cleared by Crash()). Crashes if the address is taken. A node
  // may hold several addresses (say a Raft port and a gossip port), each with its own handlers;
  // link faults, partitions and crashes apply to the node, so to all of them at once.
  env::Network& Attach(NodeId node, const env::Address& address);

  // The node holding `address`, or kNoNode.
  NodeId node_at(const env::Address& address) const;

  // Link properties. SetLink overrides the default for one direction.
  void SetDefaultLink(const LinkConfig& config);
  void SetLink(NodeId from, NodeId to, const LinkConfig& config);
  const LinkConfig& link(NodeId from, NodeId to) const;

  // Partitions. Block is one-way (from -> to); the others block both ways.
  void Block(NodeId from, NodeId to);
  void Unblock(NodeId from, NodeId to);
  void Isolate(NodeId node);
  void Split(const std::vector<NodeId>& side_a, const std::vector<NodeId>& side_b);
  // Halves a and b cannot talk to each other, but both talk to `bridge`.
  void Bridge(const std::vector<NodeId>& side_a, const std::vector<NodeId>& side_b, NodeId bridge);
  bool blocked(NodeId from, NodeId to) const;

  // Holds every datagram and stream message on from -> to until `until_ns`, then delivers them
  // (streams keep their order).
  void Clog(NodeId from, NodeId to, int64_t until_ns);

  // Removes every block and clog. Link configs stay.
  void Heal();

  // Breaks every open stream between `a` and `b` (either direction). Returns how many broke.
  int BreakStreams(NodeId a, NodeId b);

  // The node crashed: its streams break (peers see Unavailable), its handlers are cleared, and
  // nothing it sent is delivered any more.
  void Crash(NodeId node);

  const NetworkStats& stats() const { return stats_; }

  // Stream records still held: a record is freed once neither end has (or can still get) a
  // Stream object. For tests of boundedness.
  size_t tracked_streams() const;

  class Impl;

 private:
  NetworkStats stats_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_SIM_NETWORK_H_
