// Copyright e2d authors.

#include "sim/sim_clock.h"

#include <vector>

#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

TEST(SimClockTest, StartsAtItsOwnEpochAndAdvancesWithVirtualTime) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 5'000'000'000);
  EXPECT_EQ(clock.Now().ns, 5'000'000'000);
  sim.RunUntil(1000);
  EXPECT_EQ(clock.Now().ns, 5'000'001'000);
}

TEST(SimClockTest, TimerFiresAfterDelayNotInline) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  int64_t fired_at = -1;
  clock.After(absl::Milliseconds(3), [&] { fired_at = sim.now_ns(); });
  EXPECT_EQ(fired_at, -1);
  sim.RunUntil(10'000'000);
  EXPECT_EQ(fired_at, 3'000'000);
  EXPECT_EQ(clock.pending_timers(), 0u);
}

TEST(SimClockTest, CancelStopsTimer) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  int fired = 0;
  env::TimerId id = clock.After(absl::Milliseconds(1), [&] { ++fired; });
  EXPECT_TRUE(clock.Cancel(id));
  EXPECT_FALSE(clock.Cancel(id));
  sim.RunUntil(10'000'000);
  EXPECT_EQ(fired, 0);
}

// A clock running 10% fast reaches a 100 ms deadline after ~90.9 ms of virtual time; one running
// 10% slow after ~111.1 ms. Either way it fires exactly when the local reading passes the deadline.
TEST(SimClockTest, DriftChangesRateAndTimerVirtualDelay) {
  for (int64_t ppm : {100'000, -100'000}) {
    Simulator sim(1);
    NodeId n = sim.AddNode();
    SimClock clock(sim, n, 0);
    clock.SetDrift(ppm);
    int64_t fired_virtual = -1, fired_local = -1;
    clock.After(absl::Milliseconds(100), [&] {
      fired_virtual = sim.now_ns();
      fired_local = clock.Now().ns;
    });
    sim.RunUntil(1'000'000'000);
    EXPECT_GE(fired_local, 100'000'000);
    EXPECT_LE(fired_local, 100'000'001);
    const int64_t expected = ppm > 0 ? 90'909'091 : 111'111'112;
    EXPECT_NEAR(fired_virtual, expected, 2);
  }
}

TEST(SimClockTest, DriftChangeKeepsReadingContinuousAndMonotonic) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  clock.SetDrift(200'000);
  sim.RunUntil(1'000'000);
  const int64_t before = clock.Now().ns;
  clock.SetDrift(-300'000);
  EXPECT_EQ(clock.Now().ns, before);
  sim.RunUntil(2'000'000);
  EXPECT_EQ(clock.Now().ns, before + 700'000);
}

TEST(SimClockTest, SlowingDriftAfterArmingDelaysFiringToTheLocalDeadline) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  int64_t fired_local = -1;
  clock.After(absl::Milliseconds(10), [&] { fired_local = clock.Now().ns; });
  sim.RunUntil(5'000'000);
  clock.SetDrift(-500'000);  // half speed: 5 ms of local time left take 10 ms virtual
  sim.RunUntil(14'000'000);
  EXPECT_EQ(fired_local, -1);
  sim.RunUntil(16'000'000);
  EXPECT_GE(fired_local, 10'000'000);
}

TEST(SimClockTest, JumpForwardFiresDueTimers) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  int fired = 0;
  clock.After(absl::Seconds(10), [&] { ++fired; });
  clock.Jump(20'000'000'000);
  sim.RunUntil(1);
  EXPECT_EQ(fired, 1);
  EXPECT_GE(clock.Now().ns, 20'000'000'000);
}

TEST(SimClockTest, CrashDropsTimers) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  int fired = 0;
  clock.After(absl::Milliseconds(1), [&] { ++fired; });
  sim.Crash(n);
  clock.ForgetTimers();
  sim.RunUntil(10'000'000);
  EXPECT_EQ(fired, 0);
}

TEST(SimClockDeathTest, BackwardJumpAndAbsurdDriftCrash) {
  Simulator sim(1);
  NodeId n = sim.AddNode();
  SimClock clock(sim, n, 0);
  EXPECT_DEATH(clock.Jump(-1), "cannot jump back");
  EXPECT_DEATH(clock.SetDrift(kDriftPpmMax + 1), "drift");
}

}  // namespace
}  // namespace e2d::sim
