// Copyright e2d authors.
//
// Simulator throughput:
//  - BM_EventLoop: raw scheduling + dispatch of empty events (events/s).
//  - BM_IdleDemoCluster/N: an N-node demo counter cluster with no faults (each node ticks every
//    50 ms, gossips every 100 ms, syncs its log) for 10 simulated seconds: events/s and
//    simulated seconds per wall second.
// Run: bazel run -c opt //bench:sim_bench

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "sim/cluster.h"
#include "sim/demo/counter_node.h"
#include "sim/simulator.h"

namespace {

using e2d::sim::NodeId;

void BM_EventLoop(benchmark::State& state) {
  const int batch = 10'000;
  uint64_t events = 0;
  for (auto _ : state) {
    e2d::sim::Simulator sim(1);
    e2d::env::Random r = sim.ForkRandom("bench");
    for (int i = 0; i < batch; ++i) {
      sim.Schedule(static_cast<int64_t>(r.Uniform(1'000'000)), e2d::sim::kNoNode, "e", i, [] {});
    }
    sim.RunUntil(1'000'000);
    events += sim.events_run();
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EventLoop);

struct CounterProcess final : e2d::sim::Process {
  CounterProcess(e2d::env::Env& env, e2d::demo::CounterConfig c)
      : node(env, std::move(c), e2d::demo::CounterHooks{}) {}
  e2d::demo::CounterNode node;
};

void BM_IdleDemoCluster(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  const int64_t sim_ns = 10'000'000'000;
  uint64_t events = 0;
  double sim_seconds = 0;
  for (auto _ : state) {
    e2d::sim::Simulator sim(1);
    std::vector<e2d::env::Address> addresses;
    for (int i = 1; i <= nodes; ++i) addresses.push_back(absl::StrCat("10.0.0.", i, ":7980"));
    e2d::sim::Cluster cluster(sim, [&](e2d::env::Env& env, NodeId id) {
      e2d::demo::CounterConfig c;
      for (const auto& a : addresses) {
        if (a != addresses[id - 1]) c.peers.push_back(a);
      }
      return std::make_unique<CounterProcess>(env, std::move(c));
    });
    for (const auto& a : addresses) cluster.AddNode(a);
    sim.RunUntil(sim_ns);
    events += sim.events_run();
    sim_seconds += sim_ns / 1e9;
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events),
                                                  benchmark::Counter::kIsRate);
  state.counters["sim_s/wall_s"] = benchmark::Counter(sim_seconds, benchmark::Counter::kIsRate);
  state.counters["events/sim_s"] = static_cast<double>(events) / sim_seconds;
}
BENCHMARK(BM_IdleDemoCluster)->Arg(5)->Arg(50)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
