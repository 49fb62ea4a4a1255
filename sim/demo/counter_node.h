// Copyright e2d authors.
//
// CounterNode: a small demo protocol, written only against env/, that exercises every part of
// the simulator until the Raft node exists. Each node
//  - keeps a counter in an append-only log file ("counter.log") of checksummed 16-byte records,
//    increments it on a timer and makes each increment durable with DataSync before it counts
//    it (one sync in flight at a time);
//  - recovers on start: reads the log, keeps the longest valid prefix (a torn tail is cut off),
//    and creates + directory-syncs the file on an empty disk before writing anything;
//  - tells every peer its durable value over a stream (reconnecting with bounded backoff) and
//    pings one random peer per round with a datagram that is answered with the peer's value;
//  - remembers, per peer, the highest value it heard.
// A write or sync error makes the node stop writing ("broken"), as a real node would fail-stop;
// it keeps answering the network so the rest of the demo goes on.
//
// Hooks report what happened so that oracles (scenarios/) can check durability and convergence.

#ifndef E2D_SIM_DEMO_COUNTER_NODE_H_
#define E2D_SIM_DEMO_COUNTER_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "env/env.h"

namespace e2d::demo {

inline constexpr char kCounterLogPath[] = "counter.log";
inline constexpr size_t kCounterRecordSizeBytes = 16;

struct CounterConfig {
  std::vector<env::Address> peers;  // every other node
  absl::Duration tick = absl::Milliseconds(50);     // one increment per tick
  absl::Duration gossip = absl::Milliseconds(100);  // one broadcast + one ping per round
  absl::Duration backoff_min = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(1);
  size_t accepted_streams_max = 64;  // older accepted streams are closed beyond this
};

struct CounterHooks {
  std::function<void(uint64_t value)> on_recovered;  // recovery finished with this value
  std::function<void(uint64_t value)> on_appended;   // a record was written (not yet durable)
  std::function<void(uint64_t value)> on_durable;    // its sync completed
  std::function<void(const env::Address& from, uint64_t value)> on_heard;
  std::function<void(const absl::Status& why)> on_broken;
};

// Encodes one log record / decodes one; Decode fails (DataLoss) on a bad magic or checksum.
std::string EncodeCounterRecord(uint64_t value);
absl::Status DecodeCounterRecord(std::string_view record, uint64_t* value);

class CounterNode {
 public:
  // Starts recovery at once. `env` must outlive the node.
  CounterNode(env::Env& env, CounterConfig config, CounterHooks hooks);
  ~CounterNode();
  CounterNode(const CounterNode&) = delete;
  CounterNode& operator=(const CounterNode&) = delete;

  bool ready() const { return ready_; }
  bool broken() const { return broken_; }
  uint64_t durable_value() const { return durable_; }
  // Highest value heard from `peer` (0 if none).
  uint64_t known(const env::Address& peer) const;

 private:
  struct Outbound {
    std::unique_ptr<env::Stream> stream;
    bool closed = false;
    env::Instant retry_at;
    absl::Duration backoff;
  };
  struct Inbound {
    std::unique_ptr<env::Stream> stream;
    bool closed = false;
  };

  void Recover();
  void StartTicking();
  void Tick();
  void GossipRound();
  void Break(const absl::Status& why);
  void Heard(const env::Address& from, uint64_t value);
  void OnDatagram(const env::Address& from, std::string payload);
  void OnAccept(std::unique_ptr<env::Stream> stream);
  void MaintainOutbound(const env::Address& peer, Outbound& out);

  env::Env& env_;
  const CounterConfig config_;
  const CounterHooks hooks_;
  std::unique_ptr<env::File> log_;
  bool ready_ = false;
  bool broken_ = false;
  bool sync_in_flight_ = false;
  uint64_t value_ = 0;    // last appended
  uint64_t durable_ = 0;  // last made durable
  absl::btree_map<env::Address, uint64_t> known_;
  absl::btree_map<env::Address, Outbound> outbound_;
  std::vector<Inbound> inbound_;
  env::TimerId tick_timer_ = 0;
  env::TimerId gossip_timer_ = 0;
  // Callbacks capture this token; a destroyed node's late callbacks see it expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace e2d::demo

#endif  // E2D_SIM_DEMO_COUNTER_NODE_H_
