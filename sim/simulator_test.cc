// Copyright e2d authors.

#include "sim/simulator.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

TEST(SimulatorTest, RunsEventsInTimeThenInsertionOrder) {
  Simulator sim(1);
  std::vector<std::string> order;
  sim.Schedule(20, kNoNode, "t", 0, [&] { order.push_back("b@20"); });
  sim.Schedule(10, kNoNode, "t", 0, [&] { order.push_back("a@10"); });
  sim.Schedule(20, kNoNode, "t", 0, [&] { order.push_back("c@20"); });
  sim.RunUntil(100);
  EXPECT_EQ(order, (std::vector<std::string>{"a@10", "b@20", "c@20"}));
  EXPECT_EQ(sim.now_ns(), 100);
  EXPECT_EQ(sim.events_run(), 3u);
}

TEST(SimulatorTest, TimeAdvancesToEventAndPastEventsClampToNow) {
  Simulator sim(1);
  int64_t seen = -1;
  sim.Schedule(50, kNoNode, "t", 0, [&] {
    seen = sim.now_ns();
    sim.Schedule(10, kNoNode, "late", 0, [&] { seen = sim.now_ns() + 1000; });
  });
  ASSERT_TRUE(sim.Step());
  EXPECT_EQ(seen, 50);
  ASSERT_TRUE(sim.Step());
  EXPECT_EQ(seen, 1050);  // the past-due event ran at now (50), not at 10
  EXPECT_FALSE(sim.Step());
}

TEST(SimulatorTest, CancelPreventsRun) {
  Simulator sim(1);
  int ran = 0;
  EventId id = sim.Schedule(5, kNoNode, "t", 0, [&] { ++ran; });
  EXPECT_TRUE(sim.Cancel(id));
  EXPECT_FALSE(sim.Cancel(id));
  sim.RunUntil(10);
  EXPECT_EQ(ran, 0);
}

TEST(SimulatorTest, CrashDropsPendingEventsOfTheOldIncarnation) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  int old_ran = 0, new_ran = 0;
  sim.Schedule(10, n, "t", 0, [&] { ++old_ran; });
  sim.Crash(n);
  sim.Schedule(10, n, "t", 0, [&] { ++new_ran; });
  sim.RunUntil(20);
  EXPECT_EQ(old_ran, 0);
  EXPECT_EQ(new_ran, 1);
  EXPECT_EQ(sim.incarnation(n), 2u);
}

TEST(SimulatorTest, PauseDefersEventsUntilResumeInOriginalOrder) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  std::vector<int> order;
  sim.Schedule(10, n, "t", 0, [&] { order.push_back(1); });
  sim.Schedule(20, n, "t", 0, [&] { order.push_back(2); });
  sim.Schedule(15, kNoNode, "t", 0, [&] { order.push_back(0); });
  sim.Pause(n);
  sim.RunUntil(100);
  EXPECT_EQ(order, (std::vector<int>{0}));
  sim.Resume(n);
  EXPECT_EQ(sim.now_ns(), 100);
  sim.RunUntil(100);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(SimulatorTest, DeferredEventsCanBeCancelledAndKeepTheirDueOrder) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  std::vector<int> order;
  sim.Schedule(30, n, "t", 0, [&] { order.push_back(30); });  // inserted first, due last
  EventId cancelled = sim.Schedule(20, n, "t", 0, [&] { order.push_back(20); });
  sim.Schedule(10, n, "t", 0, [&] { order.push_back(10); });
  sim.Pause(n);
  sim.RunUntil(50);
  EXPECT_TRUE(sim.Cancel(cancelled));
  EXPECT_FALSE(sim.Cancel(cancelled));
  sim.Resume(n);
  sim.RunUntil(50);
  EXPECT_EQ(order, (std::vector<int>{10, 30}));
}

TEST(SimulatorTest, CrashWhilePausedDropsDeferredEvents) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  int ran = 0;
  sim.Schedule(10, n, "t", 0, [&] { ++ran; });
  sim.Pause(n);
  sim.RunUntil(20);
  sim.Crash(n);
  sim.Resume(n);
  sim.RunUntil(30);
  EXPECT_EQ(ran, 0);
}

TEST(SimulatorTest, RunUntilTrueStopsAtPredicate) {
  Simulator sim(1);
  int count = 0;
  for (int i = 1; i <= 10; ++i) sim.Schedule(i * 10, kNoNode, "t", 0, [&] { ++count; });
  EXPECT_TRUE(sim.RunUntilTrue([&] { return count == 3; }, 1000));
  EXPECT_EQ(sim.now_ns(), 30);
  EXPECT_FALSE(sim.RunUntilTrue([&] { return count == 99; }, 500));
  EXPECT_EQ(sim.now_ns(), 500);
}

uint64_t RunScript(uint64_t seed, std::vector<TraceEntry>* trace, uint64_t tweak) {
  Simulator sim(seed);
  sim.set_trace(trace);
  env::Random r = sim.ForkRandom("script");
  for (int i = 0; i < 100; ++i) {
    sim.Schedule(static_cast<int64_t>(r.Uniform(1000)), kNoNode, "t", r.Next() + (i == 50 ? tweak : 0),
                 [] {});
  }
  sim.RunUntil(2000);
  return sim.digest();
}

TEST(SimulatorTest, DigestIsReproducibleAndSensitive) {
  std::vector<TraceEntry> a, b;
  EXPECT_EQ(RunScript(7, &a, 0), RunScript(7, &b, 0));
  EXPECT_EQ(a.size(), 100u);
  EXPECT_NE(RunScript(7, nullptr, 0), RunScript(8, nullptr, 0));
  EXPECT_NE(RunScript(7, nullptr, 0), RunScript(7, nullptr, 1));
}

TEST(SimulatorDeathTest, UnknownNodeCrashes) {
  Simulator sim(1);
  EXPECT_DEATH(sim.Schedule(1, 5, "t", 0, [] {}), "unknown node");
}

}  // namespace
}  // namespace e2d::sim
