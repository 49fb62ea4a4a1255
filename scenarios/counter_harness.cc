// Copyright e2d authors.

#include "scenarios/counter_harness.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "sim/cluster.h"
#include "sim/demo/counter_node.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

class CounterProcess final : public sim::Process {
 public:
  CounterProcess(env::Env& env, demo::CounterConfig config, demo::CounterHooks hooks)
      : node(env, std::move(config), std::move(hooks)) {}
  demo::CounterNode node;
};

// Oracle state per node. Checked on every hook, i.e. right after the event that caused it.
struct NodeFacts {
  uint64_t durable_floor = 0;        // highest value whose sync completed (since the last loss)
  uint64_t floor_losses = 0;         // cluster.losses() when durable_floor was set
  uint64_t appended_max = 0;         // highest value ever written, any incarnation
  uint64_t recoveries = 0;
  uint64_t durable_reports = 0;
};

class CounterOracle {
 public:
  CounterOracle(sim::Cluster& cluster, int nodes) : cluster_(cluster), facts_(nodes + 1) {}

  demo::CounterHooks HooksFor(NodeId n) {
    demo::CounterHooks h;
    h.on_recovered = [this, n](uint64_t v) { Recovered(n, v); };
    h.on_appended = [this, n](uint64_t v) {
      facts_[n].appended_max = std::max(facts_[n].appended_max, v);
    };
    h.on_durable = [this, n](uint64_t v) {
      NodeFacts& f = facts_[n];
      if (f.floor_losses != cluster_.losses(n)) f.durable_floor = 0, f.floor_losses = cluster_.losses(n);
      f.durable_floor = std::max(f.durable_floor, v);
      ++f.durable_reports;
    };
    h.on_heard = [this, n](const env::Address& from, uint64_t v) { Heard(n, from, v); };
    return h;
  }

  void Fail(std::string what) {
    if (failure_.empty()) {
      failure_ = absl::StrFormat("t=%.6fs %s", cluster_.sim().now_ns() / 1e9, what);
    }
  }
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  const NodeFacts& facts(NodeId n) const { return facts_[n]; }

 private:
  void Recovered(NodeId n, uint64_t v) {
    NodeFacts& f = facts_[n];
    ++f.recoveries;
    if (f.floor_losses == cluster_.losses(n) && v < f.durable_floor) {
      Fail(absl::StrCat("durability: n", n, " recovered ", v, " but ", f.durable_floor,
                        " was durable before it went down"));
    }
  }
  void Heard(NodeId n, const env::Address& from, uint64_t v) {
    const NodeId sender = cluster_.network().node_at(from);
    if (sender == sim::kNoNode) return Fail(absl::StrCat("n", n, " heard from unknown ", from));
    if (v > facts_[sender].appended_max) {
      Fail(absl::StrCat("invention: n", n, " heard ", v, " from n", sender, " which only wrote up to ",
                        facts_[sender].appended_max));
    }
  }

  sim::Cluster& cluster_;
  std::vector<NodeFacts> facts_;  // index = NodeId
  std::string failure_;
};

demo::CounterNode* NodeOf(sim::Cluster& cluster, NodeId n) {
  auto* p = static_cast<CounterProcess*>(cluster.process(n));
  return p == nullptr ? nullptr : &p->node;
}

// Ends every fault: the state from which liveness is measured.

bool Converged(sim::Cluster& cluster, const std::vector<uint64_t>& target) {
  for (NodeId q : cluster.nodes()) {
    demo::CounterNode* node = NodeOf(cluster, q);
    if (node == nullptr || node->broken() || !node->ready()) return false;
    for (NodeId p : cluster.nodes()) {
      if (p != q && node->known(cluster.address(p)) < target[p]) return false;
    }
  }
  return true;
}

std::string LaggingPairs(sim::Cluster& cluster, const std::vector<uint64_t>& target) {
  std::vector<std::string> out;
  for (NodeId q : cluster.nodes()) {
    demo::CounterNode* node = NodeOf(cluster, q);
    if (node == nullptr) { out.push_back(absl::StrCat("n", q, " down")); continue; }
    if (node->broken()) out.push_back(absl::StrCat("n", q, " broken"));
    for (NodeId p : cluster.nodes()) {
      if (p != q && node->known(cluster.address(p)) < target[p]) {
        out.push_back(absl::StrCat("n", q, " knows n", p, "=", node->known(cluster.address(p)),
                                   " < ", target[p]));
      }
    }
  }
  return absl::StrJoin(out, "; ");
}

}  // namespace

sim::ScenarioResult RunCounter(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                               int64_t converge_ms_max) {
  sim::Simulator sim(schedule.seed);
  sim.set_trace(options.trace);
  std::vector<env::Address> addresses;
  for (int i = 1; i <= schedule.nodes; ++i) addresses.push_back(absl::StrCat("10.0.0.", i, ":7980"));
  CounterOracle* oracle_ptr = nullptr;
  sim::Cluster cluster(sim, [&](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
    demo::CounterConfig config;
    for (const env::Address& a : addresses) {
      if (a != addresses[n - 1]) config.peers.push_back(a);
    }
    return std::make_unique<CounterProcess>(env, std::move(config), oracle_ptr->HooksFor(n));
  });
  cluster.set_echo_log(options.echo_log);
  CounterOracle oracle(cluster, schedule.nodes);
  oracle_ptr = &oracle;
  for (const env::Address& a : addresses) cluster.AddNode(a);

  sim::ScheduleFaults(schedule, cluster, [&oracle](const std::string& why) { oracle.Fail(why); });
  const int64_t heal_ns = schedule.duration_ms * 1'000'000;
  sim.RunUntilTrue([&] { return oracle.failed(); }, heal_ns);

  std::vector<uint64_t> target(schedule.nodes + 1, 0);
  int64_t converged_ns = -1;
  if (!oracle.failed()) {
    cluster.Log(sim::kNoNode, "healing every fault");
    sim::HealEverything(cluster, [&cluster](NodeId n) {
      demo::CounterNode* node = NodeOf(cluster, n);
      return node != nullptr && node->broken();
    });
    for (NodeId n : cluster.nodes()) {
      demo::CounterNode* node = NodeOf(cluster, n);
      target[n] = node == nullptr ? 0 : node->durable_value();
    }
    const bool ok = sim.RunUntilTrue([&] { return oracle.failed() || Converged(cluster, target); },
                                     heal_ns + converge_ms_max * 1'000'000);
    if (ok && !oracle.failed()) converged_ns = sim.now_ns() - heal_ns;
    if (!ok) {
      oracle.Fail(absl::StrCat("liveness: not converged ", converge_ms_max, " ms after the heal: ",
                               LaggingPairs(cluster, target)));
    }
  }

  sim::ScenarioResult result;
  result.pass = !oracle.failed();
  result.failure = oracle.failure();
  result.digest = sim.digest();
  result.events = sim.events_run();
  result.end_ns = sim.now_ns();
  uint64_t durable_total = 0, recoveries = 0;
  for (NodeId n : cluster.nodes()) {
    durable_total += oracle.facts(n).durable_reports;
    recoveries += oracle.facts(n).recoveries;
  }
  const sim::NetworkStats& net = cluster.network().stats();
  result.summary = absl::StrFormat(
      "events=%d durable_writes=%d recoveries=%d datagrams=%d/%d stream_msgs=%d breaks=%d "
      "converged_ms=%.1f",
      result.events, durable_total, recoveries, net.datagrams_delivered, net.datagrams_sent,
      net.stream_messages_delivered, net.streams_broken, converged_ns / 1e6);
  if (!result.pass) result.log_tail = absl::StrJoin(cluster.log_tail(), "\n");
  return result;
}

sim::Scenario MakeCounterScenario(std::string name, std::string description,
                                  CounterScenarioConfig config) {
  sim::Scenario s;
  s.name = name;
  s.description = std::move(description);
  s.generate = [name, config](uint64_t seed) {
    return sim::GenerateSwarm(name, seed, config.swarm);
  };
  s.run = [config](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    return RunCounter(schedule, options, config.converge_ms_max);
  };
  return s;
}

}  // namespace e2d::scenarios
