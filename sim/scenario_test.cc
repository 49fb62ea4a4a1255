// Copyright e2d authors.
//
// CheckDeterminism must catch a run that differs from its replay, and say where.

#include "sim/scenario.h"

#include <string>

#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

// A scenario whose runs schedule 50 events; from `diverge_at` on, every other run differs.
Scenario FakeScenario(int* runs, int diverge_at) {
  Scenario s;
  s.name = "fake";
  s.generate = [](uint64_t seed) {
    FaultSchedule f;
    f.scenario = "fake";
    f.seed = seed;
    f.nodes = 1;
    f.duration_ms = 10;
    return f;
  };
  s.run = [runs, diverge_at](const FaultSchedule& f, const RunOptions& o) {
    const bool odd_run = (*runs)++ % 2 == 1;
    Simulator sim(f.seed);
    sim.set_trace(o.trace);
    for (int i = 0; i < 50; ++i) {
      const uint64_t detail = (diverge_at >= 0 && i >= diverge_at && odd_run) ? 1000 + i : i;
      sim.Schedule(i * 10, kNoNode, "step", detail, [] {});
    }
    sim.RunUntil(1000);
    ScenarioResult r;
    r.pass = true;
    r.digest = sim.digest();
    r.events = sim.events_run();
    return r;
  };
  return s;
}

TEST(CheckDeterminismTest, AgreeingRunsGiveNoReport) {
  int runs = 0;
  Scenario s = FakeScenario(&runs, -1);
  ScenarioResult first;
  EXPECT_EQ(CheckDeterminism(s, s.generate(5), &first), "");
  EXPECT_EQ(runs, 2);
  EXPECT_TRUE(first.pass);
  EXPECT_EQ(first.events, 50u);
}

TEST(CheckDeterminismTest, ReportsTheFirstDivergingEvent) {
  int runs = 0;
  Scenario s = FakeScenario(&runs, 17);
  ScenarioResult first;
  const std::string report = CheckDeterminism(s, s.generate(5), &first);
  EXPECT_NE(report.find("digests differ"), std::string::npos) << report;
  EXPECT_NE(report.find("first divergence at event #17"), std::string::npos) << report;
  EXPECT_NE(report.find("t=170ns"), std::string::npos) << report;
  EXPECT_NE(report.find("kind=step"), std::string::npos) << report;
}

TEST(ResultLineTest, HasTheContractFormat) {
  ScenarioResult r;
  r.digest = 0xabc;
  r.pass = false;
  EXPECT_EQ(ResultLine(r, 42), "digest=0000000000000abc seed=42 result=fail");
  r.pass = true;
  EXPECT_EQ(ResultLine(r, 7), "digest=0000000000000abc seed=7 result=pass");
}

}  // namespace
}  // namespace e2d::sim
