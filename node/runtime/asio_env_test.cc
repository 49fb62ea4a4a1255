// Copyright e2d authors.
//
// AsioEnv against the env contracts (env/time.h, env/network.h) on loopback: timers, streams,
// datagrams, and the bounds. Every wait is io.run_one() until a condition holds, bounded by a
// watchdog timer so that a broken contract fails the test instead of hanging it.

#include "node/runtime/asio_env.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/write.hpp"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

namespace asio = boost::asio;

// Runs the loop until `done` holds; fails after 10 s of wall time without it.
void RunUntil(asio::io_context& io, const std::function<bool()>& done) {
  bool expired = false;
  asio::steady_timer watchdog(io, std::chrono::seconds(10));
  watchdog.async_wait([&](const boost::system::error_code& ec) {
    if (!ec) expired = true;
  });
  while (!done() && !expired) io.run_one();
  watchdog.cancel();
  io.restart();
  ASSERT_FALSE(expired) << "condition not reached within 10 s";
}

TEST(AsioClock, TimersFireInDeadlineOrderAndCancelledOnesNever) {
  asio::io_context io;
  AsioClock clock(io);
  std::vector<int> fired;
  // Before the timers are set: a delay counts from the After() call.
  const env::Instant start = clock.Now();
  clock.After(absl::Milliseconds(30), [&] { fired.push_back(3); });
  clock.After(absl::Milliseconds(10), [&] { fired.push_back(1); });
  const env::TimerId cancelled = clock.After(absl::Milliseconds(20), [&] { fired.push_back(2); });
  EXPECT_TRUE(clock.Cancel(cancelled));
  EXPECT_FALSE(clock.Cancel(cancelled));
  RunUntil(io, [&] { return fired.size() == 2; });
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
  EXPECT_GE(clock.Now() - start, absl::Milliseconds(30));
}

TEST(AsioClock, CancelAfterExpiryBeforeTheHandlerRanStillPreventsIt) {
  asio::io_context io;
  AsioClock clock(io);
  bool ran = false;
  const env::TimerId id = clock.After(absl::ZeroDuration(), [&] { ran = true; });
  // Let the deadline pass without running handlers, then cancel.
  const env::Instant t = clock.Now();
  while (clock.Now() - t < absl::Milliseconds(2)) {
  }
  EXPECT_TRUE(clock.Cancel(id));
  bool later = false;
  clock.After(absl::Milliseconds(5), [&] { later = true; });
  RunUntil(io, [&] { return later; });
  EXPECT_FALSE(ran);
}

// Offloaded work runs on another thread, in order; each `done` runs on the io thread after its
// work, never inside Offload; DrainOffloaded waits for what was queued.
TEST(AsioEnv, OffloadedWorkRunsOffTheLoopAndReportsOnIt) {
  asio::io_context io;
  char dir[] = "/tmp/e2d_asio_env_test_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto net = AsioNetwork::Listen(io, "127.0.0.1:0", "", nullptr);
  ASSERT_TRUE(net.ok()) << net.status();
  AsioEnv env(io, dir, std::move(*net));
  const std::thread::id loop = std::this_thread::get_id();
  std::vector<std::thread::id> workers;
  std::vector<int> order;
  std::mutex mu;
  for (int i = 0; i < 3; ++i) {
    absl::Status queued = env.Offload(
        [&, i] {
          std::lock_guard<std::mutex> lock(mu);
          workers.push_back(std::this_thread::get_id());
          order.push_back(i);
        },
        [&, i] {
          EXPECT_EQ(std::this_thread::get_id(), loop);
          std::lock_guard<std::mutex> lock(mu);
          order.push_back(10 + i);
        });
    EXPECT_TRUE(queued.ok()) << queued;
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(std::count_if(order.begin(), order.end(), [](int v) { return v >= 10; }), 0)
        << "a done ran inside Offload";
  }
  RunUntil(io, [&] {
    std::lock_guard<std::mutex> lock(mu);
    return order.size() == 6;
  });
  for (const std::thread::id& w : workers) EXPECT_NE(w, loop);
  // Works in queue order; each done after its own work.
  std::vector<int> works, dones;
  for (int v : order) (v < 10 ? works : dones).push_back(v);
  EXPECT_EQ(works, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(dones, (std::vector<int>{10, 11, 12}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(std::find(order.begin(), order.end(), i) - order.begin(),
              std::find(order.begin(), order.end(), 10 + i) - order.begin());
  }
  // Drain: queued work has run when it returns (its done is left to the loop).
  bool ran = false;
  ASSERT_TRUE(env.Offload([&] { ran = true; }, [] {}).ok());
  env.DrainOffloaded();
  EXPECT_TRUE(ran);
  // The bound: jobs wait behind a blocked one until kOffloadedMax are queued; the next is refused.
  std::mutex gate;
  gate.lock();
  ASSERT_TRUE(env.Offload([&] { std::lock_guard<std::mutex> hold(gate); }, [] {}).ok());
  int refused = 0;
  for (size_t i = 0; i < env::Env::kOffloadedMax + 1; ++i) {
    absl::Status s = env.Offload([] {}, [] {});
    if (!s.ok()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  gate.unlock();
  env.DrainOffloaded();
  std::filesystem::remove_all(dir);
}

struct Endpoint {
  std::unique_ptr<AsioNetwork> net;
  std::vector<std::unique_ptr<env::Stream>> accepted;
  std::vector<std::string> received;
  std::vector<absl::Status> closed;
};

std::unique_ptr<AsioNetwork> Listen(asio::io_context& io) {
  auto net = AsioNetwork::Listen(io, "127.0.0.1:0", "", nullptr);
  EXPECT_TRUE(net.ok()) << net.status();
  return std::move(*net);
}

// A handler may close its own stream and go on using what it captured (gossip's stream replies
// do): the runtime must not destroy the running handler. ASan reports the use after free if it
// does.
TEST(AsioNetwork, AHandlerClosingItsOwnStreamKeepsItsCaptures) {
  asio::io_context io;
  Endpoint server;
  server.net = Listen(io);
  server.net->SetAcceptHandler([&](std::unique_ptr<env::Stream> s) {
    env::Stream* raw = s.get();
    s->SetHandlers([raw](std::string m) { ASSERT_TRUE(raw->Send("re:" + m).ok()); },
                   [](absl::Status) {});
    server.accepted.push_back(std::move(s));
  });
  auto client_net = Listen(io);
  std::unique_ptr<env::Stream> stream = client_net->Connect(server.net->local_address());
  std::vector<std::string> seen;
  env::Stream* raw = stream.get();
  ASSERT_TRUE(stream->Send("ping").ok());
  stream->SetHandlers(
      [&seen, raw, tag = std::string(64, 't')](std::string m) {
        raw->Close();
        seen.push_back(tag.substr(0, 1) + m);  // captures still alive after Close
      },
      [](absl::Status) { ADD_FAILURE() << "close handler ran after Close"; });
  RunUntil(io, [&] { return seen.size() == 1; });
  EXPECT_EQ(seen[0], "tre:ping");
  EXPECT_FALSE(stream->open());
}

TEST(AsioNetwork, StreamCarriesWholeMessagesInOrderBothWays) {
  asio::io_context io;
  Endpoint server;
  server.net = Listen(io);
  server.net->SetAcceptHandler([&](std::unique_ptr<env::Stream> s) {
    env::Stream* raw = s.get();
    s->SetHandlers(
        [&server, raw](std::string m) {
          server.received.push_back(m);
          ASSERT_TRUE(raw->Send("echo:" + m).ok());
        },
        [&server](absl::Status why) { server.closed.push_back(why); });
    server.accepted.push_back(std::move(s));
  });
  auto client_net = Listen(io);
  std::unique_ptr<env::Stream> stream = client_net->Connect(server.net->local_address());
  std::vector<std::string> replies;
  // Sent before the connection is up: queued.
  ASSERT_TRUE(stream->Send("a").ok());
  ASSERT_TRUE(stream->Send(std::string(1 << 20, 'x')).ok());
  ASSERT_TRUE(stream->Send("").ok());
  stream->SetHandlers([&](std::string m) { replies.push_back(m); }, [](absl::Status) {});
  RunUntil(io, [&] { return replies.size() == 3; });
  EXPECT_EQ(server.received.size(), 3u);
  EXPECT_EQ(replies[0], "echo:a");
  EXPECT_EQ(replies[1], "echo:" + std::string(1 << 20, 'x'));
  EXPECT_EQ(replies[2], "echo:");
  // Closing our end: the server's close handler runs, ours never does.
  stream->Close();
  EXPECT_FALSE(stream->open());
  EXPECT_FALSE(stream->Send("late").ok());
  RunUntil(io, [&] { return server.closed.size() == 1; });
  EXPECT_EQ(server.closed[0].code(), absl::StatusCode::kUnavailable);
}

TEST(AsioNetwork, UnreachablePeerIsReportedAsUnavailable) {
  asio::io_context io;
  auto net = Listen(io);
  // A port that was just free: listen, note it, close.
  std::string dead;
  {
    auto tmp = Listen(io);
    dead = tmp->local_address();
  }
  std::unique_ptr<env::Stream> s = net->Connect(dead);
  std::vector<absl::Status> closed;
  s->SetHandlers([](std::string) {}, [&](absl::Status why) { closed.push_back(why); });
  RunUntil(io, [&] { return !closed.empty(); });
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kUnavailable) << closed[0];
  std::unique_ptr<env::Stream> bad = net->Connect("no-port");
  closed.clear();
  bad->SetHandlers([](std::string) {}, [&](absl::Status why) { closed.push_back(why); });
  RunUntil(io, [&] { return !closed.empty(); });
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kInvalidArgument) << closed[0];
}

TEST(AsioNetwork, AnOversizedFrameBreaksTheStream) {
  asio::io_context io;
  Endpoint server;
  server.net = Listen(io);
  server.net->SetAcceptHandler([&](std::unique_ptr<env::Stream> s) {
    s->SetHandlers([&](std::string m) { server.received.push_back(m); },
                   [&](absl::Status why) { server.closed.push_back(why); });
    server.accepted.push_back(std::move(s));
  });
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(SplitHostPort(server.net->local_address(), &host, &port).ok());
  asio::ip::tcp::socket raw(io);
  raw.connect({asio::ip::make_address(host), port});
  const uint8_t header[4] = {0xff, 0xff, 0xff, 0xff};
  asio::write(raw, asio::buffer(header, 4));
  RunUntil(io, [&] { return !server.closed.empty(); });
  EXPECT_EQ(server.closed[0].code(), absl::StatusCode::kDataLoss) << server.closed[0];
  EXPECT_TRUE(server.received.empty());
}

TEST(AsioNetwork, DatagramsArriveWithTheSendersAddressAndOversizedOnesAreRefused) {
  asio::io_context io;
  auto a = Listen(io);
  auto b = Listen(io);
  std::vector<std::pair<std::string, std::string>> got;
  b->SetDatagramHandler([&](const env::Address& from, std::string p) { got.emplace_back(from, p); });
  ASSERT_TRUE(a->SendDatagram(b->local_address(), "ping").ok());
  RunUntil(io, [&] { return !got.empty(); });
  EXPECT_EQ(got[0].first, a->local_address());
  EXPECT_EQ(got[0].second, "ping");
  EXPECT_EQ(a->SendDatagram(b->local_address(), std::string(env::kDatagramSizeMax + 1, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AsioNetwork, ListenReportsAPortInUseAndABadAddress) {
  asio::io_context io;
  auto a = Listen(io);
  auto again = AsioNetwork::Listen(io, a->local_address(), "", nullptr);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("cannot listen on " + a->local_address()),
            std::string::npos)
      << again.status();
  EXPECT_EQ(AsioNetwork::Listen(io, "localhost", "", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AsioNetwork::Listen(io, "example:80", "", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace e2d::node
