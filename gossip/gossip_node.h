// Copyright e2d authors.
//
// GossipNode: drives a Memberlist through env. It owns the node's datagram and stream-accept
// handlers, turns the memberlist's stream requests into streams (one request, one reply, then
// closed), keeps one timer at the memberlist's next deadline, and hands membership events to
// the owner. The same object runs in the simulator and in the real node.

#ifndef E2D_GOSSIP_GOSSIP_NODE_H_
#define E2D_GOSSIP_GOSSIP_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "env/env.h"
#include "gossip/memberlist.h"

namespace e2d::gossip {

class GossipNode {
 public:
  using EventHandler = std::function<void(const Event& event)>;

  // Streams accepted from peers and not yet answered and closed, at most.
  static constexpr size_t kAcceptedStreamsMax = 64;

  // Installs the datagram and accept handlers on env.network() and starts the timer.
  // REQUIRES: config.Validate() is OK.
  GossipNode(env::Env& env, Config config, Keyring keyring);
  // Removes the handlers, cancels the timer and closes every stream.
  ~GossipNode();

  GossipNode(const GossipNode&) = delete;
  GossipNode& operator=(const GossipNode&) = delete;

  // Called with every membership event, on the node's thread, after the step that caused it.
  void set_event_handler(EventHandler handler) { on_event_ = std::move(handler); }

  void Join(std::vector<env::Address> seeds);
  // Memberlist::UpdateSeeds.
  void UpdateSeeds(std::vector<env::Address> seeds);
  absl::Status SetMeta(std::string meta);
  void Leave();

  // Runs Memberlist::CheckInvariants after every step (the simulator turns this on).
  void set_check_invariants(bool on) { check_invariants_ = on; }

  const Memberlist& memberlist() const { return ml_; }
  Memberlist& mutable_memberlist() { return ml_; }

 private:
  struct Outgoing {
    std::unique_ptr<env::Stream> stream;
    bool done = false;
    env::Instant deadline;  // closed by Sweep after this even if the peer never answers
  };
  struct Incoming {
    std::unique_ptr<env::Stream> stream;
    bool done = false;
  };

  void OnTimer();
  void OnAccept(std::unique_ptr<env::Stream> stream);
  void StartStream(StreamRequest request);
  // Sends what the memberlist produced, reports its events and re-arms the timer.
  void Pump();
  void Sweep();

  env::Env& env_;
  Memberlist ml_;
  EventHandler on_event_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  env::TimerId timer_ = 0;
  bool timer_set_ = false;
  env::Instant timer_at_;
  absl::btree_map<uint64_t, Outgoing> outgoing_;  // by memberlist request id
  absl::btree_map<uint64_t, Incoming> incoming_;  // by accept order
  uint64_t next_incoming_ = 1;
  bool check_invariants_ = false;
};

}  // namespace e2d::gossip

#endif  // E2D_GOSSIP_GOSSIP_NODE_H_
