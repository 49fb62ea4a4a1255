// Copyright e2d authors.

#include "scenarios/raft_harness.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "raft/raft_node.h"
#include "sim/cluster.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

struct RaftProcess final : sim::Process {
  std::unique_ptr<raft::RaftNode> node;  // null if recovery failed
};

class RaftOracle {
 public:
  RaftOracle(sim::Cluster& cluster, int nodes) : cluster_(cluster), next_apply_(nodes + 1, 1) {}

  raft::RaftNodeHooks HooksFor(NodeId n) {
    next_apply_[n] = 1;  // a (re)started node replays its log from the start
    raft::RaftNodeHooks h;
    h.on_apply = [this, n](const raftpb::Entry& e, const raft::Raft& r) { Applied(n, e, r); };
    h.on_state = [this, n](const raft::Raft& r) { State(n, r); };
    h.on_fatal = [this, n](const absl::Status& s) {
      cluster_.Log(n, absl::StrCat("fail-stop: ", s.ToString()));
    };
    return h;
  }

  void Fail(std::string what) {
    if (failure_.empty()) {
      failure_ = absl::StrFormat("t=%.6fs %s", cluster_.sim().now_ns() / 1e9, what);
    }
  }
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  uint64_t committed() const { return committed_.size(); }
  uint64_t leaders() const { return leader_of_term_.size(); }
  // The index at which `data` was committed (applied somewhere), if it was.
  bool committed_index_of(const std::string& data, uint64_t* index) const {
    auto it = index_of_data_.find(data);
    if (it == index_of_data_.end()) return false;
    *index = it->second;
    return true;
  }

 private:
  void Applied(NodeId n, const raftpb::Entry& e, const raft::Raft& r) {
    if (e.index() != next_apply_[n]) {
      return Fail(absl::StrCat("n", n, " applied index ", e.index(), " but ", next_apply_[n],
                               " was next"));
    }
    ++next_apply_[n];
    // The applier's current term bounds the term in which the entry was committed.
    auto [it, fresh] = committed_.try_emplace(e.index(), Committed{e, r.term()});
    if (!fresh && (it->second.entry.term() != e.term() || it->second.entry.data() != e.data())) {
      return Fail(absl::StrCat("state machine safety: n", n, " applied index ", e.index(),
                               " term ", e.term(), " but term ", it->second.entry.term(),
                               " was applied there before"));
    }
    if (fresh && !e.data().empty()) index_of_data_.emplace(e.data(), e.index());
  }

  void State(NodeId n, const raft::Raft& r) {
    if (r.role() != raft::Role::kLeader) return;
    auto [it, fresh] = leader_of_term_.try_emplace(r.term(), n);
    if (!fresh) {
      if (it->second != n) {
        Fail(absl::StrCat("election safety: n", n, " and n", it->second, " both lead term ",
                          r.term()));
      }
      return;
    }
    // Leader Completeness: an entry committed in a term lower than the new leader's is in its
    // log. (A leader of an older term may still be elected late, by delayed votes.)
    for (const auto& [index, c] : committed_) {
      if (index <= r.log().snapshot_index() || c.term_bound >= r.term()) continue;
      if (r.log().TermOr0(index) != c.entry.term()) {
        return Fail(absl::StrCat("leader completeness: n", n, " leads term ", r.term(),
                                 " without entry ", index, " (term ", c.entry.term(),
                                 ") committed by term ", c.term_bound));
      }
    }
  }

  sim::Cluster& cluster_;
  std::vector<uint64_t> next_apply_;                    // per node: the next index to apply
  struct Committed {
    raftpb::Entry entry;  // the entry applied at this index
    uint64_t term_bound;  // it was committed in this term or earlier
  };
  absl::btree_map<uint64_t, Committed> committed_;
  absl::btree_map<std::string, uint64_t> index_of_data_;
  absl::btree_map<uint64_t, NodeId> leader_of_term_;
  std::string failure_;
};

raft::RaftNode* NodeOf(sim::Cluster& cluster, NodeId n) {
  auto* p = static_cast<RaftProcess*>(cluster.process(n));
  return p == nullptr ? nullptr : p->node.get();
}


// Proposes a unique value to a random live node every 20-200 ms until `stop_ns`.
void ScheduleClient(sim::Cluster& cluster, env::Random* random, uint64_t* seq, int64_t at_ns,
                    int64_t stop_ns) {
  if (at_ns >= stop_ns) return;
  cluster.sim().Schedule(at_ns, sim::kNoNode, "client", *seq, [&cluster, random, seq, stop_ns] {
    const std::vector<NodeId> nodes = cluster.nodes();
    const NodeId n = nodes[random->Uniform(nodes.size())];
    if (raft::RaftNode* node = NodeOf(cluster, n); node != nullptr && !cluster.paused(n)) {
      if (random->Chance(0.02)) {  // now and then an operator moves the leader
        node->TransferLeadership(nodes[random->Uniform(nodes.size())]);
      } else {
        node->Propose(absl::StrCat("v", (*seq)++)).IgnoreError();
      }
    }
    ScheduleClient(cluster, random, seq,
                   cluster.sim().now_ns() + random->Range(20'000'000, 200'000'000), stop_ns);
  });
}

}  // namespace

sim::ScenarioResult RunRaft(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                            const RaftScenarioConfig& config) {
  const int64_t converge_ms_max = config.converge_ms_max;
  sim::Simulator sim(schedule.seed);
  sim.set_trace(options.trace);
  std::vector<env::Address> addresses;
  for (int i = 1; i <= schedule.nodes; ++i) addresses.push_back(absl::StrCat("10.0.0.", i, ":2380"));
  RaftOracle* oracle_ptr = nullptr;
  sim::Cluster cluster(sim, [&](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
    raft::RaftNodeConfig c;
    c.raft.id = n;
    c.raft.mutation = config.mutation;
    c.raft.msg_bytes_max = config.msg_bytes_max;
    for (int i = 1; i <= schedule.nodes; ++i) {
      c.raft.voters.push_back(i);
      if (i != static_cast<int>(n)) c.peers[i] = addresses[i - 1];
    }
    auto p = std::make_unique<RaftProcess>();
    absl::StatusOr<std::unique_ptr<raft::RaftNode>> node =
        raft::RaftNode::Open(env, std::move(c), oracle_ptr->HooksFor(n));
    if (node.ok()) {
      p->node = std::move(*node);
    } else {
      oracle_ptr->Fail(absl::StrCat("n", n, " could not recover: ", node.status().ToString()));
    }
    return p;
  });
  cluster.set_echo_log(options.echo_log);
  cluster.set_leader_finder([&cluster]() {
    NodeId leader = sim::kNoNode;
    uint64_t term = 0;
    for (NodeId n : cluster.nodes()) {
      raft::RaftNode* node = NodeOf(cluster, n);
      if (node != nullptr && !cluster.paused(n) && node->raft().role() == raft::Role::kLeader &&
          node->raft().term() > term) {
        leader = n;
        term = node->raft().term();
      }
    }
    return leader;
  });
  RaftOracle oracle(cluster, schedule.nodes);
  oracle_ptr = &oracle;
  for (const env::Address& a : addresses) cluster.AddNode(a);

  sim::ScheduleFaults(schedule, cluster, [&oracle](const std::string& why) { oracle.Fail(why); });
  env::Random client_random = sim.ForkRandom("client");
  uint64_t seq = 0;
  const int64_t heal_ns = schedule.duration_ms * 1'000'000;
  ScheduleClient(cluster, &client_random, &seq, 100'000'000, heal_ns);
  sim.RunUntilTrue([&] { return oracle.failed(); }, heal_ns);

  int64_t converged_ns = -1;
  if (!oracle.failed()) {
    cluster.Log(sim::kNoNode, "healing every fault");
    sim::HealEverything(cluster, [&cluster](NodeId n) {
      raft::RaftNode* node = NodeOf(cluster, n);
      return node == nullptr || node->failed();
    });
    // Liveness: keep proposing a marker until some node accepts it, then wait for everyone.
    const int64_t deadline = heal_ns + converge_ms_max * 1'000'000;
    bool done = false;
    int attempt = 0;
    while (!done && !oracle.failed() && sim.now_ns() < deadline) {
      const std::string marker = absl::StrCat("final", attempt++);
      for (NodeId n : cluster.nodes()) {
        if (raft::RaftNode* node = NodeOf(cluster, n); node && node->Propose(marker).ok()) break;
      }
      uint64_t index = 0;
      done = sim.RunUntilTrue(
          [&] {
            if (oracle.failed() || !oracle.committed_index_of(marker, &index)) {
              return oracle.failed();
            }
            for (NodeId n : cluster.nodes()) {
              raft::RaftNode* node = NodeOf(cluster, n);
              if (node == nullptr || node->raft().log().applied() < index) return false;
            }
            return true;
          },
          std::min(deadline, sim.now_ns() + 2'000'000'000));
    }
    if (done && !oracle.failed()) converged_ns = sim.now_ns() - heal_ns;
    if (!done && !oracle.failed()) {
      std::vector<std::string> states;
      for (NodeId n : cluster.nodes()) {
        raft::RaftNode* node = NodeOf(cluster, n);
        states.push_back(node ? node->raft().ToString() : absl::StrCat("n", n, " down"));
      }
      oracle.Fail(absl::StrCat("liveness: no progress ", converge_ms_max,
                               " ms after the heal: ", absl::StrJoin(states, "; ")));
    }
  }

  sim::ScenarioResult result;
  result.pass = !oracle.failed();
  result.failure = oracle.failure();
  result.digest = sim.digest();
  result.events = sim.events_run();
  result.end_ns = sim.now_ns();
  result.summary = absl::StrFormat("events=%d proposals=%d committed=%d leaders=%d converged_ms=%.1f",
                                   result.events, seq, oracle.committed(), oracle.leaders(),
                                   converged_ns / 1e6);
  if (!result.pass) result.log_tail = absl::StrJoin(cluster.log_tail(), "\n");
  return result;
}

sim::Scenario MakeRaftScenario(std::string name, std::string description,
                               RaftScenarioConfig config) {
  sim::Scenario s;
  s.name = name;
  s.description = std::move(description);
  s.generate = [name, config](uint64_t seed) {
    return sim::GenerateSwarm(name, seed, config.swarm);
  };
  s.run = [config](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    return RunRaft(schedule, options, config);
  };
  return s;
}

}  // namespace e2d::scenarios
