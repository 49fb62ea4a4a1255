// Copyright e2d authors.

#include "sim/fault_schedule.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sim/cluster.h"
#include "sim/swarm.h"

namespace e2d::sim {
namespace {

constexpr char kText[] = R"(# a comment
scenario demo
seed 42
nodes 3
duration_ms 5000
@0 link * * latency_us=300 loss=0.1   # trailing comment
@0 disk 2 latency_us=5000 tear=0
@100 isolate 2
@200 split 1 2,3
@300 bridge 1 2 3
@400 oneway 1 3
@500 clog 2 3 700
@600 heal
@700 crash 1
@800 restart 1
@900 drift 3 -2000
@1000 jump 3 50
@1100 stall 2 100
@1200 bitflip 1 counter.log 7 3
@1300 readerr 1 counter.log 0 16
@1400 pause 3
@1500 resume 3
@1600 lose 2
@1700 break 1 3
)";

TEST(FaultScheduleTest, ParsesAndRoundTripsThroughText) {
  absl::StatusOr<FaultSchedule> s = FaultSchedule::Parse(kText);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->scenario, "demo");
  EXPECT_EQ(s->seed, 42u);
  EXPECT_EQ(s->nodes, 3);
  EXPECT_EQ(s->duration_ms, 5000);
  ASSERT_EQ(s->actions.size(), 19u);
  EXPECT_EQ(s->actions[0].verb, "link");
  EXPECT_EQ(s->actions[0].args, (std::vector<std::string>{"*", "*", "latency_us=300", "loss=0.1"}));
  EXPECT_EQ(s->actions[4].at_ms, 300);
  absl::StatusOr<FaultSchedule> again = FaultSchedule::Parse(s->ToText());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *s);
}

void ExpectError(const std::string& body, const std::string& fragment) {
  const std::string text = "scenario x\nseed 1\nnodes 3\nduration_ms 1000\n" + body;
  absl::StatusOr<FaultSchedule> s = FaultSchedule::Parse(text);
  ASSERT_FALSE(s.ok()) << body;
  EXPECT_NE(s.status().message().find(fragment), std::string::npos)
      << "'" << s.status().message() << "' lacks '" << fragment << "'";
}

TEST(FaultScheduleTest, RejectsBadInputNamingTheLine) {
  ExpectError("@10 explode 1\n", "line 5: unknown fault 'explode'");
  ExpectError("@10 crash 4\n", "line 5: fault 'crash'");  // node out of range
  ExpectError("@10 crash 4\n", "node '4'");
  ExpectError("@10 crash\n", "takes 1 arguments, got 0");
  ExpectError("@20 heal\n@10 heal\n", "line 6: actions must be in time order");
  ExpectError("@2000 heal\n", "time '2000'");
  ExpectError("@10 link * * loss=1.5\n", "not a probability");
  ExpectError("@10 link * * speed=9\n", "unknown or empty option 'speed=9'");
  ExpectError("@10 disk 1 tear=2\n", "tear '2'");
  ExpectError("@10 drift 1 9000000\n", "ppm");
  ExpectError("@10 oneway 2 2\n", "two different nodes");
  ExpectError("@x heal\n", "time 'x'");
  ExpectError("@10\n", "missing fault verb");
  ExpectError("colour blue\n", "line 5: unknown key 'colour'");
  absl::StatusOr<FaultSchedule> no_header = FaultSchedule::Parse("@1 heal\n");
  ASSERT_FALSE(no_header.ok());
  EXPECT_NE(no_header.status().message().find("must come first"), std::string::npos);
  EXPECT_FALSE(FaultSchedule::Parse("").ok());
}

TEST(SwarmTest, DeterministicValidAndVariedAcrossSeeds) {
  SwarmOptions o;
  o.lose = true;
  o.disk_errors = true;
  const FaultSchedule a = GenerateSwarm("s", 7, o);
  EXPECT_EQ(a, GenerateSwarm("s", 7, o));
  EXPECT_NE(a.actions, GenerateSwarm("s", 8, o).actions);
  int empty = 0;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    const FaultSchedule s = GenerateSwarm("s", seed, o);
    empty += s.actions.empty();
    absl::StatusOr<FaultSchedule> parsed = FaultSchedule::Parse(s.ToText());
    ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << s.ToText();
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_LT(empty, 50);
}

TEST(SwarmTest, FocusedScenarioHasEveryAllowedFamilyAndNothingElse) {
  SwarmOptions o;
  o.swarm = false;
  o.partitions = false;
  o.clocks = false;
  o.duration_ms = 60'000;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const FaultSchedule s = GenerateSwarm("s", seed, o);
    bool link = false, disk = false, process = false;
    for (const FaultAction& a : s.actions) {
      link |= a.verb == "link";
      disk |= a.verb == "disk";
      process |= a.verb == "crash" || a.verb == "pause";
      EXPECT_NE(a.verb, "isolate");
      EXPECT_NE(a.verb, "drift");
      EXPECT_NE(a.verb, "lose");  // lose is off by default
    }
    EXPECT_TRUE(link && disk && process) << s.ToText();
  }
}

TEST(SwarmTest, NeverMoreThanDownMaxNodesDown) {
  SwarmOptions o;
  o.swarm = false;
  o.lose = true;
  o.down_max = 1;
  o.duration_ms = 120'000;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    int down = 0;
    for (const FaultAction& a : GenerateSwarm("s", seed, o).actions) {
      if (a.verb == "crash" || a.verb == "pause" || a.verb == "lose") ++down;
      if (a.verb == "restart" || a.verb == "resume") --down;
      ASSERT_LE(down, 1) << "seed " << seed;
    }
  }
}

class Idle final : public Process {};

TEST(ApplyFaultTest, EachVerbChangesTheCluster) {
  Simulator sim(1);
  Cluster cluster(sim, [](env::Env&, NodeId) { return std::make_unique<Idle>(); });
  for (int i = 1; i <= 3; ++i) cluster.AddNode(absl::StrCat("10.0.0.", i, ":1"));
  auto apply = [&](std::string verb, std::vector<std::string> args) {
    absl::Status s = ApplyFault(FaultAction{0, std::move(verb), std::move(args)}, cluster);
    ASSERT_TRUE(s.ok()) << s;
  };
  apply("isolate", {"2"});
  EXPECT_TRUE(cluster.network().blocked(1, 2));
  EXPECT_TRUE(cluster.network().blocked(2, 3));
  EXPECT_FALSE(cluster.network().blocked(1, 3));
  apply("heal", {});
  EXPECT_FALSE(cluster.network().blocked(1, 2));
  apply("oneway", {"1", "3"});
  EXPECT_TRUE(cluster.network().blocked(1, 3));
  EXPECT_FALSE(cluster.network().blocked(3, 1));
  apply("link", {"1", "*", "latency_us=900", "loss=0.5"});
  EXPECT_EQ(cluster.network().link(1, 2).latency_ns, 900'000);
  EXPECT_EQ(cluster.network().link(1, 3).loss, 0.5);
  EXPECT_EQ(cluster.network().link(2, 1).loss, 0.0);
  apply("disk", {"2", "eio=0.25", "capacity=100", "tear=0"});
  EXPECT_EQ(cluster.disk(2).faults().write_error_probability, 0.25);
  EXPECT_EQ(cluster.disk(2).faults().capacity_bytes, 100u);
  EXPECT_FALSE(cluster.disk(2).faults().tear_on_crash);
  apply("stall", {"3", "250"});
  EXPECT_EQ(cluster.disk(3).faults().stall_until_ns, 250'000'000);
  apply("drift", {"1", "-1500"});
  EXPECT_EQ(cluster.clock(1).drift_ppm(), -1500);
  const int64_t before = cluster.clock(1).Now().ns;
  apply("jump", {"1", "40"});
  EXPECT_EQ(cluster.clock(1).Now().ns, before + 40'000'000);
  apply("crash", {"3"});
  EXPECT_FALSE(cluster.up(3));
  apply("restart", {"3"});
  EXPECT_TRUE(cluster.up(3));
  apply("pause", {"2"});
  EXPECT_TRUE(cluster.paused(2));
  apply("resume", {"2"});
  EXPECT_FALSE(cluster.paused(2));
  apply("lose", {"1"});
  EXPECT_FALSE(cluster.up(1));
  EXPECT_EQ(cluster.losses(1), 1u);
  EXPECT_FALSE(ApplyFault(FaultAction{0, "crash", {"9"}}, cluster).ok());
}

}  // namespace
}  // namespace e2d::sim
