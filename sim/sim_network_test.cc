// Copyright e2d authors.

#include "sim/sim_network.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kLatencyNs = 1 * kMs;

LinkConfig FixedLink(int64_t latency_ns = kLatencyNs) {
  LinkConfig config;
  config.latency_ns = latency_ns;
  config.jitter_ns = 0;
  config.tail_probability = 0;
  return config;
}

// One end of a stream as a test sees it: everything its handlers were given.
struct Peer {
  std::unique_ptr<env::Stream> stream;
  std::vector<std::string> received;
  std::vector<absl::Status> closes;

  void Listen() {
    stream->SetHandlers([this](std::string m) { received.push_back(std::move(m)); },
                        [this](absl::Status why) { closes.push_back(std::move(why)); });
  }
};

class SimNetworkTest : public ::testing::Test {
 protected:
  SimNetworkTest() : sim_(42), net_(sim_, sim_.ForkRandom("net")) {
    net_.SetDefaultLink(FixedLink());
    for (int i = 0; i < 4; ++i) {
      const NodeId node = sim_.AddNode();
      const std::string address = absl::StrCat("n", node, ":7000");
      views_.push_back(&net_.Attach(node, address));
      inbox_.emplace_back();
    }
  }

  env::Network& view(NodeId node) { return *views_[node - 1]; }
  const env::Address& addr(NodeId node) { return view(node).local_address(); }
  std::vector<std::string>& inbox(NodeId node) { return inbox_[node - 1]; }

  // Records every datagram `node` receives as "from|payload".
  void ListenDatagrams(NodeId node) {
    view(node).SetDatagramHandler([this, node](const env::Address& from, std::string payload) {
      inbox(node).push_back(from + "|" + payload);
    });
  }

  // Accepted streams of `node` land in accepted_; with `listen`, their handlers are installed.
  void AcceptStreams(NodeId node, bool listen = true) {
    view(node).SetAcceptHandler([this, listen](std::unique_ptr<env::Stream> stream) {
      auto peer = std::make_unique<Peer>();
      peer->stream = std::move(stream);
      if (listen) peer->Listen();
      accepted_.push_back(std::move(peer));
    });
  }

  // Opens a listening stream from -> to and runs until it is accepted.
  std::unique_ptr<Peer> Open(NodeId from, NodeId to) {
    AcceptStreams(to);
    const size_t before = accepted_.size();
    auto peer = std::make_unique<Peer>();
    peer->stream = view(from).Connect(addr(to));
    peer->Listen();
    EXPECT_TRUE(sim_.RunUntilTrue([&] { return accepted_.size() > before; },
                                  sim_.now_ns() + 100 * kMs));
    return peer;
  }

  void Run(int64_t for_ns) { sim_.RunUntil(sim_.now_ns() + for_ns); }

  int SendDatagrams(NodeId from, NodeId to, int count) {
    int ok = 0;
    for (int i = 0; i < count; ++i) {
      ok += view(from).SendDatagram(addr(to), absl::StrCat("d", i)).ok() ? 1 : 0;
    }
    return ok;
  }

  Simulator sim_;
  SimNetwork net_;
  const NodeId a_ = 1, b_ = 2, c_ = 3, d_ = 4;
  std::vector<env::Network*> views_;
  std::vector<std::vector<std::string>> inbox_;
  std::vector<std::unique_ptr<Peer>> accepted_;
};

std::vector<std::string> Numbered(const std::string& prefix, int count) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

// --- Datagrams --------------------------------------------------------------------------------

TEST_F(SimNetworkTest, DatagramArrivesAfterLatencyFromSender) {
  ListenDatagrams(b_);
  ASSERT_TRUE(view(a_).SendDatagram(addr(b_), "hello").ok());
  EXPECT_TRUE(inbox(b_).empty());  // never inline
  sim_.RunUntil(kLatencyNs - 1);
  EXPECT_TRUE(inbox(b_).empty());
  sim_.RunUntil(kLatencyNs);
  EXPECT_EQ(inbox(b_), std::vector<std::string>{"n1:7000|hello"});
  EXPECT_EQ(net_.stats().datagrams_sent, 1u);
  EXPECT_EQ(net_.stats().datagrams_delivered, 1u);
  EXPECT_EQ(net_.stats().datagrams_dropped, 0u);
}

TEST_F(SimNetworkTest, OversizeDatagramRejected) {
  ListenDatagrams(b_);
  const absl::Status too_big =
      view(a_).SendDatagram(addr(b_), std::string(env::kDatagramSizeMax + 1, 'x'));
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(view(a_).SendDatagram(addr(b_), std::string(env::kDatagramSizeMax, 'x')).ok());
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_).size(), 1u);
  EXPECT_EQ(net_.stats().datagrams_sent, 1u);
}

TEST_F(SimNetworkTest, DatagramWithoutHandlerOrToUnknownAddressIsDropped) {
  EXPECT_TRUE(view(a_).SendDatagram(addr(b_), "nobody listens").ok());
  EXPECT_TRUE(view(a_).SendDatagram("nowhere:1", "no such node").ok());
  Run(10 * kMs);
  EXPECT_EQ(net_.stats().datagrams_dropped, 2u);
  EXPECT_EQ(net_.stats().datagrams_delivered, 0u);
}

TEST_F(SimNetworkTest, LossOneDropsEverything) {
  LinkConfig lossy = FixedLink();
  lossy.loss = 1;
  net_.SetLink(a_, b_, lossy);
  ListenDatagrams(b_);
  ListenDatagrams(a_);
  EXPECT_EQ(SendDatagrams(a_, b_, 100), 100);  // lost datagrams still report OK
  SendDatagrams(b_, a_, 5);                    // the other direction is not lossy
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_EQ(inbox(a_).size(), 5u);
  EXPECT_EQ(net_.stats().datagrams_dropped, 100u);
}

TEST_F(SimNetworkTest, PartialLossDropsAboutThatFraction) {
  LinkConfig lossy = FixedLink();
  lossy.loss = 0.3;
  net_.SetLink(a_, b_, lossy);
  ListenDatagrams(b_);
  constexpr int kCount = 10000;
  SendDatagrams(a_, b_, kCount);
  Run(10 * kMs);
  const double delivered = static_cast<double>(inbox(b_).size()) / kCount;
  EXPECT_GT(delivered, 0.67);
  EXPECT_LT(delivered, 0.73);
  EXPECT_EQ(net_.stats().datagrams_dropped + net_.stats().datagrams_delivered,
            static_cast<uint64_t>(kCount));
}

TEST_F(SimNetworkTest, DuplicationDeliversExtraCopies) {
  LinkConfig dup = FixedLink();
  dup.duplicate = 1;
  net_.SetLink(a_, b_, dup);
  ListenDatagrams(b_);
  SendDatagrams(a_, b_, 10);
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_).size(), 20u);
  EXPECT_EQ(net_.stats().datagrams_duplicated, 10u);
  int copies_of_d3 = 0;
  for (const std::string& m : inbox(b_)) copies_of_d3 += m == "n1:7000|d3" ? 1 : 0;
  EXPECT_EQ(copies_of_d3, 2);

  dup.duplicate = 0.5;
  net_.SetLink(a_, b_, dup);
  inbox(b_).clear();
  SendDatagrams(a_, b_, 1000);
  Run(10 * kMs);
  EXPECT_GT(inbox(b_).size(), 1400u);
  EXPECT_LT(inbox(b_).size(), 1600u);
}

TEST_F(SimNetworkTest, JitterReordersDatagramsButNotStreamMessages) {
  LinkConfig jittery = FixedLink();
  jittery.jitter_ns = 20 * kMs;
  jittery.tail_probability = 0.05;
  auto client = Open(a_, b_);  // established over the fixed link
  net_.SetLink(a_, b_, jittery);
  ListenDatagrams(b_);
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(view(a_).SendDatagram(addr(b_), absl::StrCat("d", i)).ok());
    ASSERT_TRUE(client->stream->Send(absl::StrCat("m", i)).ok());
    Run(50'000);
  }
  Run(200 * kMs);
  ASSERT_EQ(inbox(b_).size(), static_cast<size_t>(kCount));
  bool reordered = false;
  for (int i = 0; i < kCount; ++i) {
    reordered |= inbox(b_)[i] != absl::StrCat("n1:7000|d", i);
  }
  EXPECT_TRUE(reordered);
  ASSERT_EQ(accepted_.size(), 1u);
  EXPECT_EQ(accepted_[0]->received, Numbered("m", kCount));
}

// --- Partitions and clogs ---------------------------------------------------------------------

TEST_F(SimNetworkTest, IsolateBlocksEverythingAndHealRestores) {
  for (NodeId n : {a_, b_, c_}) ListenDatagrams(n);
  net_.Isolate(b_);
  EXPECT_TRUE(net_.blocked(a_, b_));
  EXPECT_TRUE(net_.blocked(b_, c_));
  SendDatagrams(a_, b_, 3);
  SendDatagrams(b_, a_, 3);
  SendDatagrams(a_, c_, 3);
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_TRUE(inbox(a_).empty());
  EXPECT_EQ(inbox(c_).size(), 3u);  // others still talk

  net_.Heal();
  EXPECT_FALSE(net_.blocked(a_, b_));
  SendDatagrams(a_, b_, 3);
  SendDatagrams(b_, a_, 3);
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_).size(), 3u);
  EXPECT_EQ(inbox(a_).size(), 3u);
}

TEST_F(SimNetworkTest, DatagramInFlightWhenBlockedIsDropped) {
  ListenDatagrams(b_);
  SendDatagrams(a_, b_, 1);
  net_.Block(a_, b_);
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_EQ(net_.stats().datagrams_dropped, 1u);
}

TEST_F(SimNetworkTest, OneWayBlockAffectsOnlyThatDirection) {
  ListenDatagrams(a_);
  ListenDatagrams(b_);
  net_.Block(a_, b_);
  EXPECT_TRUE(net_.blocked(a_, b_));
  EXPECT_FALSE(net_.blocked(b_, a_));
  SendDatagrams(a_, b_, 4);
  SendDatagrams(b_, a_, 4);
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_EQ(inbox(a_).size(), 4u);

  net_.Unblock(a_, b_);
  SendDatagrams(a_, b_, 4);
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_).size(), 4u);
}

TEST_F(SimNetworkTest, SplitSeparatesTheSides) {
  for (NodeId n : {a_, b_, c_, d_}) ListenDatagrams(n);
  net_.Split({a_, b_}, {c_, d_});
  SendDatagrams(a_, b_, 1);
  SendDatagrams(c_, d_, 1);
  SendDatagrams(a_, c_, 1);
  SendDatagrams(d_, b_, 1);
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_), std::vector<std::string>{"n1:7000|d0"});
  EXPECT_EQ(inbox(d_), std::vector<std::string>{"n3:7000|d0"});
  EXPECT_TRUE(inbox(a_).empty());
  EXPECT_TRUE(inbox(c_).empty());
}

TEST_F(SimNetworkTest, BridgeTalksToBothHalvesWhichCannotTalkToEachOther) {
  for (NodeId n : {a_, b_, c_}) ListenDatagrams(n);
  net_.Bridge({a_}, {b_}, c_);
  SendDatagrams(a_, b_, 1);
  SendDatagrams(b_, a_, 1);
  Run(10 * kMs);
  EXPECT_TRUE(inbox(a_).empty());
  EXPECT_TRUE(inbox(b_).empty());
  SendDatagrams(a_, c_, 1);
  SendDatagrams(b_, c_, 1);
  SendDatagrams(c_, a_, 1);
  SendDatagrams(c_, b_, 1);
  Run(10 * kMs);
  EXPECT_EQ(inbox(c_).size(), 2u);
  EXPECT_EQ(inbox(a_).size(), 1u);
  EXPECT_EQ(inbox(b_).size(), 1u);
  // Streams too: a connects to the bridge, not to b.
  AcceptStreams(b_);
  Peer refused;
  refused.stream = view(a_).Connect(addr(b_));
  refused.Listen();
  auto bridged = Open(a_, c_);
  Run(10 * kMs);
  ASSERT_EQ(refused.closes.size(), 1u);
  EXPECT_EQ(refused.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(bridged->stream->open());
}

TEST_F(SimNetworkTest, ClogHoldsMessagesThenDeliversThemInOrder) {
  ListenDatagrams(a_);
  ListenDatagrams(b_);
  auto client = Open(a_, b_);
  const int64_t start_ns = sim_.now_ns();
  net_.Clog(a_, b_, start_ns + 50 * kMs);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->stream->Send(absl::StrCat("m", i)).ok());
  SendDatagrams(a_, b_, 3);
  SendDatagrams(b_, a_, 1);  // the other direction is not clogged
  sim_.RunUntil(start_ns + 50 * kMs - 1);
  EXPECT_EQ(inbox(a_).size(), 1u);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_TRUE(accepted_[0]->received.empty());
  sim_.RunUntil(start_ns + 50 * kMs);
  EXPECT_EQ(inbox(b_).size(), 3u);
  EXPECT_EQ(accepted_[0]->received, Numbered("m", 5));

  // Heal lifts clogs for later sends.
  net_.Clog(a_, b_, sim_.now_ns() + 50 * kMs);
  net_.Heal();
  SendDatagrams(a_, b_, 1);
  Run(kLatencyNs);
  EXPECT_EQ(inbox(b_).size(), 4u);
}

// --- Streams: connection setup ----------------------------------------------------------------

TEST_F(SimNetworkTest, StreamConnectsAndCarriesMessagesBothWays) {
  Peer client;
  client.stream = view(a_).Connect(addr(b_));
  AcceptStreams(b_);
  client.Listen();
  ASSERT_TRUE(client.stream->Send("queued before the connection is up").ok());
  EXPECT_TRUE(accepted_.empty());
  sim_.RunUntil(kLatencyNs - 1);
  EXPECT_TRUE(accepted_.empty());
  sim_.RunUntil(kLatencyNs);
  ASSERT_EQ(accepted_.size(), 1u);
  Peer& server = *accepted_[0];
  EXPECT_EQ(server.stream->peer(), addr(a_));
  EXPECT_EQ(client.stream->peer(), addr(b_));
  EXPECT_EQ(server.received, std::vector<std::string>{"queued before the connection is up"});
  ASSERT_TRUE(server.stream->Send("reply").ok());
  Run(kLatencyNs);
  EXPECT_EQ(client.received, std::vector<std::string>{"reply"});
  EXPECT_TRUE(client.stream->open());
  EXPECT_TRUE(server.stream->open());
  EXPECT_EQ(net_.stats().streams_opened, 1u);
  EXPECT_EQ(net_.stats().stream_messages_delivered, 2u);
}

TEST_F(SimNetworkTest, ConnectToUnknownAddressFailsUnavailable) {
  Peer client;
  client.stream = view(a_).Connect("nowhere:1");
  client.Listen();
  EXPECT_TRUE(client.stream->Send("lost").ok());
  EXPECT_TRUE(client.closes.empty());  // never inline
  Run(10 * kMs);
  ASSERT_EQ(client.closes.size(), 1u);
  EXPECT_EQ(client.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(client.stream->open());
  EXPECT_EQ(client.stream->Send("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(net_.stats().streams_refused, 1u);
  EXPECT_EQ(net_.stats().stream_messages_lost, 1u);
}

TEST_F(SimNetworkTest, ConnectWithoutAcceptHandlerFailsUnavailable) {
  Peer client;
  client.stream = view(a_).Connect(addr(b_));
  client.Listen();
  Run(10 * kMs);
  ASSERT_EQ(client.closes.size(), 1u);
  EXPECT_EQ(client.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(net_.stats().streams_refused, 1u);
}

TEST_F(SimNetworkTest, ConnectOverLinkBlockedInEitherDirectionFails) {
  AcceptStreams(b_);
  net_.Block(b_, a_);  // only the reply direction: TCP still cannot connect
  Peer client;
  client.stream = view(a_).Connect(addr(b_));
  client.Listen();
  Run(10 * kMs);
  ASSERT_EQ(client.closes.size(), 1u);
  EXPECT_EQ(client.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(accepted_.empty());

  net_.Heal();  // new connections work again
  auto again = Open(a_, b_);
  EXPECT_TRUE(again->stream->open());
  EXPECT_TRUE(again->closes.empty());
}

TEST_F(SimNetworkTest, CloseHandlerInstalledLateStillHearsOfRefusal) {
  Peer client;
  client.stream = view(a_).Connect(addr(b_));  // no accept handler at b
  Run(10 * kMs);
  EXPECT_FALSE(client.stream->open());
  client.Listen();
  EXPECT_TRUE(client.closes.empty());
  Run(0);
  ASSERT_EQ(client.closes.size(), 1u);
  EXPECT_EQ(client.closes[0].code(), absl::StatusCode::kUnavailable);
}

// --- Streams: breaks --------------------------------------------------------------------------

TEST_F(SimNetworkTest, PartitionBreaksStreamLosingInFlightMessages) {
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->stream->Send(absl::StrCat("m", i)).ok());
  ASSERT_TRUE(server.stream->Send("r").ok());
  net_.Block(b_, a_);  // either direction breaks the stream
  EXPECT_FALSE(client->stream->open());
  EXPECT_FALSE(server.stream->open());
  EXPECT_TRUE(client->closes.empty());  // notified as events, not inside Block
  EXPECT_TRUE(server.closes.empty());
  Run(10 * kMs);
  EXPECT_TRUE(server.received.empty());
  EXPECT_TRUE(client->received.empty());
  ASSERT_EQ(client->closes.size(), 1u);
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_EQ(client->closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->stream->Send("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(net_.stats().streams_broken, 1u);
  EXPECT_EQ(net_.stats().stream_messages_lost, 4u);

  net_.Heal();  // broken streams stay broken
  Run(10 * kMs);
  EXPECT_FALSE(client->stream->open());
  EXPECT_EQ(client->closes.size(), 1u);
}

TEST_F(SimNetworkTest, BreakStreamsBreaksOnlyThatPair) {
  auto ab = Open(a_, b_);
  auto ba = Open(b_, a_);
  auto ac = Open(a_, c_);
  EXPECT_EQ(net_.BreakStreams(a_, b_), 2);
  EXPECT_EQ(net_.BreakStreams(a_, b_), 0);  // already broken
  Run(10 * kMs);
  ASSERT_EQ(ab->closes.size(), 1u);
  ASSERT_EQ(ba->closes.size(), 1u);
  EXPECT_EQ(ab->closes[0].code(), absl::StatusCode::kUnavailable);
  for (int i = 0; i < 2; ++i) {  // the accepted ends of a<->b
    ASSERT_EQ(accepted_[i]->closes.size(), 1u);
    EXPECT_EQ(accepted_[i]->closes[0].code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_TRUE(ac->closes.empty());
  ASSERT_TRUE(ac->stream->Send("still here").ok());
  Run(10 * kMs);
  EXPECT_EQ(accepted_[2]->received, std::vector<std::string>{"still here"});
}

// --- Streams: closing -------------------------------------------------------------------------

TEST_F(SimNetworkTest, GracefulCloseDeliversInFlightMessagesThenNotifies) {
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  LinkConfig jittery = FixedLink();
  jittery.jitter_ns = 20 * kMs;  // the close notice must not overtake the messages
  net_.SetLink(a_, b_, jittery);
  constexpr int kCount = 20;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(client->stream->Send(absl::StrCat("m", i)).ok());
  }
  client->stream->Close();
  client->stream->Close();  // idempotent
  EXPECT_FALSE(client->stream->open());
  EXPECT_EQ(client->stream->Send("late").code(), absl::StatusCode::kFailedPrecondition);
  // The order of events at the server: three messages, then the close.
  server.stream->SetHandlers(
      [&server](std::string m) {
        EXPECT_TRUE(server.closes.empty());
        server.received.push_back(std::move(m));
      },
      [&server](absl::Status why) { server.closes.push_back(std::move(why)); });
  Run(100 * kMs);
  EXPECT_EQ(server.received, Numbered("m", kCount));
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_NE(server.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(server.closes[0].ok());
  EXPECT_FALSE(server.stream->open());
  EXPECT_EQ(server.stream->Send("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(client->closes.empty());  // never for the side that closed
  EXPECT_EQ(net_.stats().streams_broken, 0u);

  // Breaking a finished stream notifies nobody.
  EXPECT_EQ(net_.BreakStreams(a_, b_), 0);
  Run(10 * kMs);
  EXPECT_EQ(server.closes.size(), 1u);
  EXPECT_TRUE(client->closes.empty());
}

TEST_F(SimNetworkTest, DestroyingStreamClosesItAndFreesTheRecord) {
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  ASSERT_TRUE(client->stream->Send("last words").ok());
  client->stream.reset();
  Run(10 * kMs);
  EXPECT_EQ(server.received, std::vector<std::string>{"last words"});
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_EQ(net_.tracked_streams(), 1u);
  server.stream.reset();
  EXPECT_EQ(net_.tracked_streams(), 0u);
}

TEST_F(SimNetworkTest, NoCallbacksAfterTheReceiverDestroyedItsEnd) {
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  // The server drops its end while handling the first message.
  server.stream->SetHandlers(
      [&server](std::string m) {
        server.received.push_back(std::move(m));
        server.stream.reset();
      },
      [&server](absl::Status why) { server.closes.push_back(std::move(why)); });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->stream->Send(absl::StrCat("m", i)).ok());
  Run(10 * kMs);
  EXPECT_EQ(server.received, std::vector<std::string>{"m0"});
  EXPECT_TRUE(server.closes.empty());
  ASSERT_EQ(client->closes.size(), 1u);  // the server's destruction closed it gracefully
  EXPECT_EQ(client->closes[0].code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(net_.stats().stream_messages_lost, 2u);
}

// --- Crashes ----------------------------------------------------------------------------------

TEST_F(SimNetworkTest, ReceiverCrashDropsInFlightAndItsStreams) {
  ListenDatagrams(b_);
  ListenDatagrams(a_);
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  SendDatagrams(a_, b_, 3);
  ASSERT_TRUE(client->stream->Send("to the dead").ok());
  sim_.Crash(b_);
  net_.Crash(b_);
  ListenDatagrams(b_);  // the restarted process listens again, before the old datagrams land
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_TRUE(server.received.empty());
  EXPECT_TRUE(server.closes.empty());  // the crashed side hears nothing
  ASSERT_EQ(client->closes.size(), 1u);
  EXPECT_EQ(client->closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(net_.stats().stream_messages_lost, 1u);
  EXPECT_EQ(net_.stats().datagrams_dropped, 3u);
  // Crash cleared the accept handler: new connections are refused until it is set again.
  Peer refused;
  refused.stream = view(a_).Connect(addr(b_));
  refused.Listen();
  Run(10 * kMs);
  ASSERT_EQ(refused.closes.size(), 1u);
  // New datagrams reach the new incarnation.
  SendDatagrams(a_, b_, 2);
  Run(10 * kMs);
  EXPECT_EQ(inbox(b_).size(), 2u);
}

TEST_F(SimNetworkTest, SenderCrashDropsItsInFlightDatagramsAndMessages) {
  ListenDatagrams(b_);
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  SendDatagrams(a_, b_, 5);
  ASSERT_TRUE(client->stream->Send("from the dead").ok());
  sim_.Crash(a_);
  net_.Crash(a_);
  client.reset();  // the dead process's objects go away; nothing must reach the peer from them
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
  EXPECT_TRUE(server.received.empty());
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_EQ(server.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(net_.stats().datagrams_dropped, 5u);
}

TEST_F(SimNetworkTest, NetworkCrashAloneAlsoDropsInFlightDatagrams) {
  ListenDatagrams(b_);
  SendDatagrams(a_, b_, 2);
  net_.Crash(a_);
  Run(10 * kMs);
  EXPECT_TRUE(inbox(b_).empty());
}

TEST_F(SimNetworkTest, SimulatorCrashAloneBreaksStreamAtNextDelivery) {
  auto client = Open(a_, b_);
  Peer& server = *accepted_[0];
  ASSERT_TRUE(server.stream->Send("to a").ok());
  ASSERT_TRUE(client->stream->Send("from old a").ok());
  sim_.Crash(a_);
  Run(10 * kMs);
  EXPECT_TRUE(server.received.empty());
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_EQ(server.closes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(client->received.empty());
}

// --- Bounds and buffering ---------------------------------------------------------------------

TEST_F(SimNetworkTest, SendWindowBoundsUndeliveredBytes) {
  AcceptStreams(b_, /*listen=*/false);  // the server does not read
  Peer client;
  client.stream = view(a_).Connect(addr(b_));
  client.Listen();
  const std::string big(env::kStreamMessageSizeMax, 'x');
  EXPECT_EQ(client.stream->Send(big + "x").code(), absl::StatusCode::kInvalidArgument);
  const int fit = static_cast<int>(kStreamWindowBytes / big.size());
  for (int i = 0; i < fit; ++i) ASSERT_TRUE(client.stream->Send(big).ok()) << i;
  EXPECT_EQ(client.stream->Send(big).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client.stream->Send("y").code(), absl::StatusCode::kResourceExhausted);
  Run(10 * kMs);  // arrived but unread: still in the window
  ASSERT_EQ(accepted_.size(), 1u);
  EXPECT_EQ(client.stream->Send("y").code(), absl::StatusCode::kResourceExhausted);
  accepted_[0]->Listen();
  Run(0);
  EXPECT_EQ(accepted_[0]->received.size(), static_cast<size_t>(fit));
  EXPECT_TRUE(client.stream->Send(big).ok());  // the window is free again
  EXPECT_TRUE(client.stream->open());
}

TEST_F(SimNetworkTest, MessagesBeforeSetHandlersAreBufferedInOrder) {
  AcceptStreams(b_, /*listen=*/false);
  Peer client;
  client.stream = view(a_).Connect(addr(b_));
  client.Listen();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.stream->Send(absl::StrCat("m", i)).ok());
  Run(10 * kMs);
  ASSERT_EQ(accepted_.size(), 1u);
  Peer& server = *accepted_[0];
  server.Listen();
  EXPECT_TRUE(server.received.empty());  // delivered as events, not inside SetHandlers
  ASSERT_TRUE(client.stream->Send("m5").ok());
  client.stream->Close();
  Run(10 * kMs);
  EXPECT_EQ(server.received, Numbered("m", 6));
  ASSERT_EQ(server.closes.size(), 1u);
  EXPECT_EQ(server.closes[0].code(), absl::StatusCode::kCancelled);
}

// --- Determinism ------------------------------------------------------------------------------

struct RunResult {
  uint64_t digest;
  std::vector<std::string> log;
};

// A small busy network with every fault on: sends from events, partitions, a crash.
RunResult RunScenario(uint64_t seed) {
  Simulator sim(seed);
  SimNetwork net(sim, sim.ForkRandom("net"));
  LinkConfig config;
  config.jitter_ns = 2 * kMs;
  config.tail_probability = 0.05;
  config.loss = 0.1;
  config.duplicate = 0.1;
  net.SetDefaultLink(config);
  RunResult result;
  std::vector<env::Network*> views;
  std::vector<std::unique_ptr<env::Stream>> streams;
  for (int i = 0; i < 3; ++i) {
    const NodeId node = sim.AddNode();
    env::Network& view = net.Attach(node, absl::StrCat("n", node));
    views.push_back(&view);
    view.SetDatagramHandler([&result, node](const env::Address& from, std::string payload) {
      result.log.push_back(absl::StrCat(node, "<", from, ":", payload));
    });
    view.SetAcceptHandler([&result, &streams, node](std::unique_ptr<env::Stream> s) {
      s->SetHandlers(
          [&result, node](std::string m) { result.log.push_back(absl::StrCat(node, "<<", m)); },
          [&result, node](absl::Status why) {
            result.log.push_back(absl::StrCat(node, " closed: ", why.ToString()));
          });
      streams.push_back(std::move(s));
    });
  }
  streams.push_back(views[0]->Connect("n2"));
  for (int i = 0; i < 300; ++i) {
    const NodeId from = static_cast<NodeId>(1 + i % 3);
    const std::string to = absl::StrCat("n", 1 + (i + 1) % 3);
    sim.Schedule(i * 100'000, from, "test.send", i, [&, from, to, i] {
      (void)views[from - 1]->SendDatagram(to, absl::StrCat("d", i));
      if (from == 1) (void)streams[0]->Send(absl::StrCat("m", i));
    });
  }
  sim.Schedule(10 * kMs, kNoNode, "test.split", 0, [&] { net.Split({1}, {3}); });
  sim.Schedule(20 * kMs, kNoNode, "test.heal", 0, [&] { net.Heal(); });
  sim.Schedule(25 * kMs, kNoNode, "test.crash", 0, [&] {
    sim.Crash(2);
    net.Crash(2);
  });
  sim.RunUntil(100 * kMs);
  result.digest = sim.digest();
  result.log.push_back(absl::StrCat("dropped ", net.stats().datagrams_dropped));
  return result;
}

// A node may hold several addresses (a Raft port and a gossip port): datagrams and streams go
// to the address they were sent to and come from the address they were sent from; faults hit
// the node, so all of its addresses at once.
TEST_F(SimNetworkTest, ANodeWithTwoAddressesKeepsThemApartButFailsAsOne) {
  env::Network& a2 = net_.Attach(a_, "n1:7980");
  env::Network& b2 = net_.Attach(b_, "n2:7980");
  EXPECT_EQ(net_.node_at("n2:7980"), b_);
  std::vector<std::string> b2_inbox;
  b2.SetDatagramHandler([&](const env::Address& from, std::string payload) {
    b2_inbox.push_back(from + "|" + payload);
  });
  ListenDatagrams(b_);
  ASSERT_TRUE(a2.SendDatagram("n2:7980", "gossip").ok());
  ASSERT_TRUE(view(a_).SendDatagram(addr(b_), "raft").ok());
  Run(kLatencyNs);
  EXPECT_EQ(b2_inbox, std::vector<std::string>{"n1:7980|gossip"});
  EXPECT_EQ(inbox(b_), std::vector<std::string>{"n1:7000|raft"});
  // Streams: accepted by the handler of the address connected to; the peer is the connecting
  // address. Without a handler on that address, refused even if the other address has one.
  std::vector<std::unique_ptr<env::Stream>> b2_accepted;
  b2.SetAcceptHandler([&](std::unique_ptr<env::Stream> s) { b2_accepted.push_back(std::move(s)); });
  Peer refused;
  refused.stream = view(a_).Connect(addr(b_));  // n2:7000 has no accept handler
  refused.Listen();
  Peer client;
  client.stream = a2.Connect("n2:7980");
  client.Listen();
  Run(kLatencyNs);
  ASSERT_EQ(b2_accepted.size(), 1u);
  EXPECT_EQ(b2_accepted[0]->peer(), "n1:7980");
  EXPECT_TRUE(accepted_.empty());
  ASSERT_EQ(refused.closes.size(), 1u);
  // A partition of the node cuts both addresses; a crash clears both.
  net_.Isolate(b_);
  ASSERT_TRUE(a2.SendDatagram("n2:7980", "cut").ok());
  Run(10 * kMs);
  EXPECT_EQ(b2_inbox.size(), 1u);
  EXPECT_EQ(client.closes.size(), 1u);
  net_.Heal();
  sim_.Crash(b_);
  net_.Crash(b_);
  ASSERT_TRUE(a2.SendDatagram("n2:7980", "to the crashed").ok());
  Run(10 * kMs);
  EXPECT_EQ(b2_inbox.size(), 1u);  // its handler went with the crash
}

TEST(SimNetworkDeterminismTest, SameSeedSameRun) {
  const RunResult first = RunScenario(7);
  const RunResult second = RunScenario(7);
  EXPECT_EQ(first.digest, second.digest);
  EXPECT_EQ(first.log, second.log);
  EXPECT_GT(first.log.size(), 200u);
  const RunResult other = RunScenario(8);
  EXPECT_NE(first.digest, other.digest);
  EXPECT_NE(first.log, other.log);
}

// --- Lifetime ---------------------------------------------------------------------------------

TEST(SimNetworkLifetimeTest, StreamsAndEventsMayOutliveTheNetwork) {
  Simulator sim(1);
  const NodeId a = sim.AddNode();
  const NodeId b = sim.AddNode();
  std::unique_ptr<env::Stream> stream;
  {
    SimNetwork net(sim, sim.ForkRandom("net"));
    env::Network& va = net.Attach(a, "a");
    net.Attach(b, "b").SetDatagramHandler([](const env::Address&, std::string) { FAIL(); });
    ASSERT_TRUE(va.SendDatagram("b", "x").ok());
    stream = va.Connect("b");
  }
  sim.RunUntil(100 * kMs);  // pending network events are inert
  EXPECT_FALSE(stream->open());
  EXPECT_EQ(stream->Send("x").code(), absl::StatusCode::kFailedPrecondition);
  stream.reset();
}

}  // namespace
}  // namespace e2d::sim
