// Copyright e2d authors.

#include "scenarios/raft_harness.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "raft/raft_node.h"
#include "sim/cluster.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

// The replicated state machine of the scenarios: a running hash of every applied entry.
struct StateMachine {
  uint64_t applied = 0;
  uint64_t hash = 0;
};

struct RaftProcess final : sim::Process {
  StateMachine sm;
  std::unique_ptr<raft::RaftNode> node;  // null if recovery failed
};

// Snapshot data: applied index and hash, then filler derived from the hash (so snapshots span
// several chunks and damage anywhere in them is noticed).
std::string EncodeSnapshot(const StateMachine& sm, size_t filler_bytes) {
  std::string out = absl::StrCat(sm.applied, ":", sm.hash, ":");
  uint64_t x = sm.hash;
  for (size_t i = 0; i < filler_bytes; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(static_cast<char>('a' + (x >> 59)));
  }
  return out;
}

bool DecodeSnapshot(const std::string& data, size_t filler_bytes, StateMachine* sm) {
  const size_t a = data.find(':');
  const size_t b = a == std::string::npos ? a : data.find(':', a + 1);
  if (b == std::string::npos || !absl::SimpleAtoi(data.substr(0, a), &sm->applied) ||
      !absl::SimpleAtoi(data.substr(a + 1, b - a - 1), &sm->hash)) {
    return false;
  }
  return EncodeSnapshot(*sm, filler_bytes) == data;
}

class RaftOracle {
 public:
  RaftOracle(sim::Cluster& cluster, int nodes)
      : cluster_(cluster), next_apply_(nodes + 1, 1), commit_seen_(nodes + 1, 0) {}

  // Called when a leader has just advanced its commit index, and when a node has just become
  // the first leader of a term (the nemesis may strike then).
  void set_on_leader_commit(std::function<void(NodeId)> fn) { on_leader_commit_ = std::move(fn); }
  void set_on_new_leader(std::function<void(NodeId)> fn) { on_new_leader_ = std::move(fn); }

  raft::RaftNodeHooks HooksFor(NodeId n, StateMachine* sm, size_t filler_bytes) {
    next_apply_[n] = 1;  // a (re)started node replays its log from the start (or a snapshot)
    commit_seen_[n] = 0;  // and its recovered commit index is checked again
    raft::RaftNodeHooks h;
    h.on_apply = [this, n, sm](const raftpb::Entry& e, const raft::Raft& r) {
      Applied(n, e, r);
      sm->applied = e.index();
      sm->hash = env::HashCombine(sm->hash, env::StableHash(e.SerializeAsString()));
      auto [it, fresh] = state_at_.try_emplace(e.index(), sm->hash);
      if (!fresh && it->second != sm->hash) {
        Fail(absl::StrCat("state machine safety: n", n, " reached state ", sm->hash,
                          " at index ", e.index(), " where others reached ", it->second));
      }
    };
    h.snapshot_data = [sm, filler_bytes] { return EncodeSnapshot(*sm, filler_bytes); };
    h.on_restore = [this, n, sm, filler_bytes](const raftpb::SnapshotMetadata& meta,
                                               const std::string& data) {
      StateMachine restored;
      if (!DecodeSnapshot(data, filler_bytes, &restored) || restored.applied != meta.index()) {
        return Fail(absl::StrCat("snapshot: n", n, " restored a damaged snapshot at index ",
                                 meta.index()));
      }
      auto it = state_at_.find(meta.index());
      if (it == state_at_.end() || it->second != restored.hash) {
        return Fail(absl::StrCat("snapshot: n", n, " restored state ", restored.hash,
                                 " at index ", meta.index(), ", which no node reached there"));
      }
      if (meta.index() + 1 < next_apply_[n]) {
        return Fail(absl::StrCat("snapshot: n", n, " went back to index ", meta.index(),
                                 " after applying ", next_apply_[n] - 1));
      }
      *sm = restored;
      next_apply_[n] = meta.index() + 1;
      ++restores_;
    };
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

  // A linearizable read at node n: whatever any node had declared committed when the read began
  // must be covered by the index it is served at.
  void Read(NodeId n, raft::RaftNode& node) {
    const uint64_t floor = committed_.empty() ? 0 : committed_.rbegin()->first;
    const int64_t began_ns = cluster_.sim().now_ns();
    node.ReadIndex([this, n, floor, began_ns](absl::StatusOr<uint64_t> index) {
      if (!index.ok()) {
        ++reads_failed_;
        return;
      }
      ++reads_ok_;
      if (*index < floor) {
        Fail(absl::StrFormat("linearizability: a read at n%d begun at t=%.6fs was served at "
                             "index %d, but index %d was committed before it began",
                             n, began_ns / 1e9, *index, floor));
      }
    });
  }
  uint64_t restores() const { return restores_; }
  uint64_t reads_ok() const { return reads_ok_; }
  uint64_t reads_failed() const { return reads_failed_; }
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
    auto [it, fresh] = applied_.try_emplace(e.index(), e);
    if (!fresh && (it->second.term() != e.term() || it->second.data() != e.data())) {
      return Fail(absl::StrCat("state machine safety: n", n, " applied index ", e.index(),
                               " term ", e.term(), " but term ", it->second.term(),
                               " was applied there before"));
    }
    if (fresh && !e.data().empty()) index_of_data_.emplace(e.data(), e.index());
    // The applier's current term bounds the term in which the entry was committed.
    Claim(n, e.index(), e.term(), r.term());
  }

  // Node `n` says the entry at `index` with `term` is committed, as of its term `term_bound`.
  void Claim(NodeId n, uint64_t index, uint64_t term, uint64_t term_bound) {
    auto [it, fresh] = committed_.try_emplace(index, Committed{term, term_bound});
    if (fresh) return;
    if (it->second.term != term) {
      return Fail(absl::StrCat("state machine safety: n", n, " has index ", index, " term ", term,
                               " committed, but term ", it->second.term,
                               " was committed there before"));
    }
    it->second.term_bound = std::min(it->second.term_bound, term_bound);
  }

  void State(NodeId n, const raft::Raft& r) {
    // Every node's commit index is a claim: its log up to there must match everyone's.
    const raft::RaftLog& log = r.log();
    if (log.committed() > commit_seen_[n]) {
      for (uint64_t i = std::max(commit_seen_[n], log.snapshot_index()) + 1; i <= log.committed();
           ++i) {
        Claim(n, i, log.TermOr0(i), r.term());
      }
      commit_seen_[n] = log.committed();
      if (r.role() == raft::Role::kLeader && on_leader_commit_) on_leader_commit_(n);
    }
    if (r.role() != raft::Role::kLeader) return;
    auto [it, fresh] = leader_of_term_.try_emplace(r.term(), n);
    if (!fresh) {
      if (it->second != n) {
        Fail(absl::StrCat("election safety: n", n, " and n", it->second, " both lead term ",
                          r.term()));
      }
      return;
    }
    if (on_new_leader_) on_new_leader_(n);
    // Leader Completeness: an entry committed in a term lower than the new leader's is in its
    // log. (A leader of an older term may still be elected late, by delayed votes.)
    for (const auto& [index, c] : committed_) {
      if (index <= r.log().snapshot_index() || c.term_bound >= r.term()) continue;
      if (r.log().TermOr0(index) != c.term) {
        return Fail(absl::StrCat("leader completeness: n", n, " leads term ", r.term(),
                                 " without entry ", index, " (term ", c.term,
                                 ") committed by term ", c.term_bound));
      }
    }
  }

  sim::Cluster& cluster_;
  std::vector<uint64_t> next_apply_;   // per node: the next index to apply
  std::vector<uint64_t> commit_seen_;  // per node: its commit index already checked
  std::function<void(NodeId)> on_leader_commit_;
  std::function<void(NodeId)> on_new_leader_;
  struct Committed {
    uint64_t term;        // the term of the entry committed at this index
    uint64_t term_bound;  // it was committed in this term or earlier
  };
  absl::btree_map<uint64_t, Committed> committed_;  // every index any node declared committed
  absl::btree_map<uint64_t, raftpb::Entry> applied_;  // the entry first applied at each index
  absl::btree_map<std::string, uint64_t> index_of_data_;
  absl::btree_map<uint64_t, NodeId> leader_of_term_;
  std::string failure_;
  uint64_t reads_ok_ = 0;
  uint64_t reads_failed_ = 0;
  absl::btree_map<uint64_t, uint64_t> state_at_;  // index -> state hash after applying it
  uint64_t restores_ = 0;
};

raft::RaftNode* NodeOf(sim::Cluster& cluster, NodeId n) {
  auto* p = static_cast<RaftProcess*>(cluster.process(n));
  return p == nullptr ? nullptr : p->node.get();
}


// Proposes a unique value to a random live node every 20-200 ms until `stop_ns`.
void ScheduleClient(sim::Cluster& cluster, RaftOracle* oracle, env::Random* random,
                    uint64_t* seq, int transfer_percent, int64_t at_ns, int64_t stop_ns) {
  if (at_ns >= stop_ns) return;
  cluster.sim().Schedule(at_ns, sim::kNoNode, "client", *seq,
                         [&cluster, oracle, random, seq, transfer_percent, stop_ns] {
    const std::vector<NodeId> nodes = cluster.nodes();
    const NodeId n = nodes[random->Uniform(nodes.size())];
    if (raft::RaftNode* node = NodeOf(cluster, n); node != nullptr && !cluster.paused(n)) {
      const uint64_t action = random->Uniform(100);
      const uint64_t transfers = static_cast<uint64_t>(transfer_percent);
      if (action < transfers) {  // now and then an operator moves the leader
        node->TransferLeadership(nodes[random->Uniform(nodes.size())]);
      } else if (action < transfers + 18) {
        oracle->Read(n, *node);
      } else {
        node->Propose(absl::StrCat("v", (*seq)++)).IgnoreError();
      }
    }
    ScheduleClient(cluster, oracle, random, seq, transfer_percent,
                   cluster.sim().now_ns() + random->Range(20'000'000, 200'000'000), stop_ns);
  });
}

// Changes the membership through the leader (see Operator in the header).
class MembershipOperator {
 public:
  MembershipOperator(sim::Cluster& cluster, const RaftScenarioConfig& config, int voters)
      : cluster_(cluster), config_(config), random_(cluster.sim().ForkRandom("operator")) {
    for (int i = 1; i <= voters; ++i) originals_.insert(i);
  }

  void Schedule(int64_t at_ns, int64_t stop_ns) {
    if (config_.op == Operator::kNone || at_ns >= stop_ns) return;
    cluster_.sim().Schedule(at_ns, sim::kNoNode, "operator", proposed_, [this, stop_ns] {
      Step();
      Schedule(cluster_.sim().now_ns() + random_.Range(500'000'000, 2'000'000'000), stop_ns);
    });
  }

  bool originals_left(const raft::Membership& m) const {
    for (NodeId n : originals_) {
      if (m.IsMember(n)) return true;
    }
    return false;
  }
  uint64_t proposed() const { return proposed_; }
  uint64_t refused() const { return refused_; }

 private:
  void Step() {
    const NodeId l = cluster_.leader();
    raft::RaftNode* node = l == sim::kNoNode ? nullptr : NodeOf(cluster_, l);
    if (node == nullptr || node->failed() || node->removed()) return;
    const raft::Membership& m = node->raft().membership();
    for (uint64_t id : m.Members()) ever_member_.insert(id);
    if (m.joint()) return;  // the leader leaves it by itself
    std::vector<uint64_t> voters(m.voters.begin(), m.voters.end());
    std::vector<uint64_t> learners(m.learners.begin(), m.learners.end());
    std::vector<uint64_t> spares;
    for (NodeId n : cluster_.nodes()) {
      if (!ever_member_.contains(n)) spares.push_back(n);
    }
    raftpb::ConfChange cc;
    auto change = [&](raftpb::ConfChangeType type, uint64_t id) {
      raftpb::ConfChangeSingle* c = cc.add_changes();
      c->set_type(type);
      c->set_node_id(id);
      if (type != raftpb::CONF_CHANGE_REMOVE_NODE) c->set_address(cluster_.address(id));
    };
    auto pick = [&](const std::vector<uint64_t>& v) { return v[random_.Uniform(v.size())]; };
    switch (config_.op) {
      case Operator::kNone:
        return;
      case Operator::kChurn:
        switch (random_.Uniform(6)) {
          case 0:
            if (!spares.empty()) change(raftpb::CONF_CHANGE_ADD_LEARNER_NODE, pick(spares));
            break;
          case 1:
            if (!learners.empty()) change(raftpb::CONF_CHANGE_ADD_NODE, pick(learners));
            break;
          case 2:
            if (voters.size() > 1) change(raftpb::CONF_CHANGE_REMOVE_NODE, pick(voters));
            break;
          case 3:
            if (!learners.empty()) change(raftpb::CONF_CHANGE_REMOVE_NODE, pick(learners));
            break;
          case 4:  // joint consensus: one learner in, one voter out
            if (!learners.empty() && voters.size() > 1) {
              change(raftpb::CONF_CHANGE_ADD_NODE, pick(learners));
              change(raftpb::CONF_CHANGE_REMOVE_NODE, pick(voters));
            }
            break;
          case 5:
            if (voters.size() > 1) change(raftpb::CONF_CHANGE_ADD_LEARNER_NODE, pick(voters));
            break;
        }
        break;
      case Operator::kReplaceAll: {
        std::vector<uint64_t> old;
        for (uint64_t v : voters) {
          if (originals_.contains(v) && v != l) old.push_back(v);
        }
        if (old.empty() && originals_.contains(l)) old.push_back(l);  // the leader goes last
        if (!learners.empty()) {
          change(raftpb::CONF_CHANGE_ADD_NODE, learners.front());
        } else if (voters.size() > originals_.size() && !old.empty()) {
          change(raftpb::CONF_CHANGE_REMOVE_NODE, old.front());
        } else if (!old.empty() && !spares.empty()) {
          change(raftpb::CONF_CHANGE_ADD_LEARNER_NODE, spares.front());
        }
        break;
      }
      case Operator::kRemoveLeader:
        // The node to remove is the leader when the operator decides; the leader hands over
        // first, and the operator retries on the new leader.
        if (target_ != sim::kNoNode && !m.IsMember(target_)) target_ = sim::kNoNode;
        if (!learners.empty()) {
          change(raftpb::CONF_CHANGE_ADD_NODE, learners.front());
        } else if (voters.size() >= 2) {
          if (target_ == sim::kNoNode) target_ = l;
          change(raftpb::CONF_CHANGE_REMOVE_NODE, target_);
        } else if (!spares.empty()) {
          change(raftpb::CONF_CHANGE_ADD_LEARNER_NODE, spares.front());
        }
        break;
    }
    if (cc.changes_size() == 0) return;
    ++proposed_;
    absl::Status s = node->ProposeConfChange(cc);
    if (!s.ok()) ++refused_;
    cluster_.Log(l, absl::StrCat("operator: conf change ", cc.ShortDebugString(), ": ",
                                 s.ToString()));
  }

  sim::Cluster& cluster_;
  const RaftScenarioConfig& config_;
  env::Random random_;
  absl::btree_set<uint64_t> originals_;
  absl::btree_set<uint64_t> ever_member_;
  NodeId target_ = sim::kNoNode;  // kRemoveLeader: the leader being removed
  uint64_t proposed_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace

sim::ScenarioResult RunRaft(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                            const RaftScenarioConfig& config) {
  const int64_t converge_ms_max = config.converge_ms_max;
  const int voters = config.voters > 0 ? std::min(config.voters, schedule.nodes) : schedule.nodes;
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
    c.raft.lease_reads = config.lease_reads;
    c.snapshot_entries = config.snapshot_entries;
    c.snapshot_chunk_bytes = config.snapshot_chunk_bytes;
    c.snapshot_chunks_in_flight = 2;
    for (int i = 1; i <= schedule.nodes; ++i) {
      if (i <= voters && static_cast<int>(n) <= voters) c.raft.voters.push_back(i);
      if (i != static_cast<int>(n)) c.peers[i] = addresses[i - 1];
    }
    auto p = std::make_unique<RaftProcess>();
    absl::StatusOr<std::unique_ptr<raft::RaftNode>> node = raft::RaftNode::Open(
        env, std::move(c), oracle_ptr->HooksFor(n, &p->sm, config.snapshot_filler_bytes));
    if (node.ok()) {
      p->node = std::move(*node);
    } else if (node.status().code() == absl::StatusCode::kInternal ||
               node.status().code() == absl::StatusCode::kResourceExhausted) {
      // An injected I/O error (EIO, ENOSPC) during recovery: the node stays down, as a real
      // one would until its supervisor retries (the heal restarts it on a sound disk).
      env.Log(absl::StrCat("recovery failed on an I/O error: ", node.status().ToString()));
    } else {
      // Anything else (DataLoss, an inconsistent state) means what was durable got lost.
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
  env::Random nemesis_random = sim.ForkRandom("nemesis");
  const int64_t heal_ns = schedule.duration_ms * 1'000'000;
  if (config.isolate_new_leader > 0) {
    oracle.set_on_new_leader([&](NodeId n) {
      if (sim.now_ns() >= heal_ns || !nemesis_random.Chance(config.isolate_new_leader)) return;
      sim.Schedule(sim.now_ns(), sim::kNoNode, "nemesis", n, [&, n] {
        cluster.Log(n, "nemesis: isolate the leader just elected");
        cluster.network().Isolate(n);
        sim.Schedule(sim.now_ns() + nemesis_random.Range(1'000'000'000, 4'000'000'000),
                     sim::kNoNode, "nemesis-heal", n, [&, n] {
                       for (NodeId m : cluster.nodes()) {
                         if (m == n) continue;
                         cluster.network().Unblock(n, m);
                         cluster.network().Unblock(m, n);
                       }
                     });
      });
    });
  }
  if (config.crash_leader_on_commit > 0) {
    oracle.set_on_leader_commit([&](NodeId n) {
      if (sim.now_ns() >= heal_ns || !nemesis_random.Chance(config.crash_leader_on_commit)) return;
      // Not from inside the node's own call: as the next event, at this same instant.
      sim.Schedule(sim.now_ns(), sim::kNoNode, "nemesis", n, [&, n] {
        if (!cluster.up(n)) return;
        cluster.Log(n, "nemesis: crash the leader that just advanced its commit index");
        cluster.Crash(n);
        sim.Schedule(sim.now_ns() + nemesis_random.Range(300'000'000, 3'000'000'000),
                     sim::kNoNode, "nemesis-restart", n, [&, n] {
                       if (!cluster.up(n)) cluster.Restart(n);
                     });
      });
    });
  }
  for (const env::Address& a : addresses) cluster.AddNode(a);

  sim::ScheduleFaults(schedule, cluster, [&oracle](const std::string& why) { oracle.Fail(why); });
  env::Random client_random = sim.ForkRandom("client");
  uint64_t seq = 0;
  ScheduleClient(cluster, &oracle, &client_random, &seq, config.transfer_percent, 100'000'000,
                 heal_ns);
  MembershipOperator op(cluster, config, voters);
  const int64_t deadline = heal_ns + converge_ms_max * 1'000'000;
  // Replacing every original is part of the liveness goal: that operator keeps going.
  op.Schedule(1'000'000'000, config.op == Operator::kReplaceAll ? deadline : heal_ns);
  sim.RunUntilTrue([&] { return oracle.failed(); }, heal_ns);

  int64_t converged_ns = -1;
  if (!oracle.failed()) {
    cluster.Log(sim::kNoNode, "healing every fault");
    sim::HealEverything(cluster, [&cluster](NodeId n) {
      raft::RaftNode* node = NodeOf(cluster, n);
      return node == nullptr || node->failed();
    });
    // Liveness: keep proposing a marker until some node accepts it, then wait for every member
    // (of the membership of the node that has applied most).
    bool done = false;
    int attempt = 0;
    while (!done && !oracle.failed() && sim.now_ns() < deadline) {
      // Each attempt starts at another node: one may accept and forward to a leader that is
      // gone (a removed node that missed its removal does that forever).
      const std::vector<NodeId> nodes = cluster.nodes();
      for (size_t i = 0; i < nodes.size(); ++i) {
        raft::RaftNode* node = NodeOf(cluster, nodes[(attempt + i) % nodes.size()]);
        if (node != nullptr && node->Propose(absl::StrCat("final", attempt)).ok()) break;
      }
      const std::string marker = absl::StrCat("final", attempt++);
      uint64_t index = 0;
      done = sim.RunUntilTrue(
          [&] {
            if (oracle.failed() || !oracle.committed_index_of(marker, &index)) {
              return oracle.failed();
            }
            const raft::RaftNode* most = nullptr;
            for (NodeId n : cluster.nodes()) {
              const raft::RaftNode* node = NodeOf(cluster, n);
              if (node != nullptr && (most == nullptr || node->raft().log().applied() >
                                                             most->raft().log().applied())) {
                most = node;
              }
            }
            if (most == nullptr) return false;
            const raft::Membership& m = most->raft().membership();
            if (m.joint()) return false;
            if (config.op == Operator::kReplaceAll && op.originals_left(m)) return false;
            for (uint64_t n : m.Members()) {
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
  result.summary = absl::StrFormat(
      "events=%d proposals=%d committed=%d leaders=%d reads=%d/%d conf_changes=%d/%d "
      "restores=%d converged_ms=%.1f",
      result.events, seq, oracle.committed(), oracle.leaders(), oracle.reads_ok(),
      oracle.reads_ok() + oracle.reads_failed(), op.proposed() - op.refused(), op.proposed(),
      oracle.restores(), converged_ns / 1e6);
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
