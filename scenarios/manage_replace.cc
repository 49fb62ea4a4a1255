// Copyright e2d authors.
//
// manage_replace: a self-managing cluster (node/membership.h) under swarm faults that include
// the permanent loss of a machine's disk. Five machines start with the same command line
// (-n 3, gossip bootstrap): three form the cluster, two join it and wait. Each machine runs what
// `e2d run` runs: gossip, the Bootstrapper (which bootstraps, or joins a running cluster under
// an id of its own) and then the Node, with its leader managing the membership. A machine whose
// disk is lost comes back empty: it must join again as a new member, never as the one it was,
// and the leader replaces the lost member with a waiting node through a learner. A client
// writes unique keys through whoever leads. In a third of the runs the operator scales the
// cluster to 5 (every machine restarted with -n 5, one every 4 s, as a rolling restart), and in
// another third to 5 and then back to 3, in the middle of the faults. A member removed while
// cut off is told so by the leader and, as `e2d run` does, sets its data aside and joins again
// as a new node. Recovery after a majority loss (majority_loss's subject) is not acted on
// here: a member that decides to force a new cluster is counted, and goes on as it was.
//
// Oracles:
//  - identity: no two running nodes ever have the same member id, and a machine that lost its
//    disk never again runs under an id it had before;
//  - linearizable writes: no two acknowledged writes share a revision;
//  - durability: after the heal, every acknowledged write is read back with its value;
//  - convergence: within 120 s of the heal, the leader's cluster is as many voters as the last
//    -n and no learner, each a running node that applied the same membership.

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "kv/mem_engine.h"
#include "node/bootstrap.h"
#include "node/node.h"
#include "scenarios/node_harness.h"
#include "scenarios/registry.h"
#include "sim/cluster.h"
#include "sim/swarm.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

constexpr int kMachines = 5;
constexpr int kRequired = 3;
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kFaultsMs = 150'000;
constexpr int64_t kConvergeMs = 120'000;  // after the heal
constexpr absl::Duration kHealthTimeout = absl::Seconds(10);


class Run;

// One machine as `e2d run -n 3 --bootstrap-addrs ...` runs it.
class MemberProcess final : public sim::Process {
 public:
  MemberProcess(Run& run, sim::Cluster& cluster, env::Env& env, NodeId n, kv::KvEngine* engine);
  ~MemberProcess() override {
    node_.reset();  // before the gossip it is attached to
    boot_.reset();
  }
  node::Node* node() { return node_.get(); }
  std::string why() const { return boot_ ? boot_->why() : ""; }

 private:
  void OpenNode(const node::BootstrapSet& set);

  Run& run_;
  env::Env& env_;
  NodeId n_;
  kv::KvEngine* engine_;
  MachineGossip gossip_;
  std::unique_ptr<node::Bootstrapper> boot_;
  std::unique_ptr<node::Node> node_;
};

class Run {
 public:
  Run(const sim::FaultSchedule& schedule, const sim::RunOptions& options)
      : schedule_(schedule),
        sim_(schedule.seed),
        cluster_(sim_, [this](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
          return std::make_unique<MemberProcess>(*this, cluster_, env, n, Engine(n));
        }) {
    sim_.set_trace(options.trace);
    cluster_.set_echo_log(options.echo_log);
    cluster_.set_leader_finder([this] { return Leader(); });
    absl::StatusOr<gossip::Key> key =
        gossip::DeriveKey("simulated cluster CA key", gossip::kGossipKeyLabel);
    E2D_CHECK(key.ok(), "%s", key.status().ToString().c_str());
    key_ = *key;
  }

  const gossip::Key& key() const { return key_; }
  int required() const { return required_; }  // -n, as machines start now

  // Machine n was removed from the cluster: as the runtime does, its data goes aside (a lost
  // disk, to the oracles) and it starts again as a new node.
  void OnRemoved(NodeId n) {
    cluster_.Log(n, absl::StrCat("scenario: m", n, " was removed; it sets its data aside"));
    ++removed_;
    sim_.Schedule(sim_.now_ns(), sim::kNoNode, "step-aside", n, [this, n] {
      if (!cluster_.up(n)) return;  // crashed meanwhile: it comes back and is told again
      owned_.erase(n);
      cluster_.Lose(n);
      cluster_.Restart(n);
    });
  }
  void OnRecoveryIgnored(NodeId n, const std::string& why) {
    cluster_.Log(n, absl::StrCat("scenario: m", n, " would recover (not acted on): ", why));
    ++recoveries_ignored_;
  }
  void Fail(std::string what) {
    if (failure_.empty()) failure_ = absl::StrFormat("t=%.3fs %s", sim_.now_ns() / 1e9, what);
  }

  // A node opened on machine n under `id`.
  void OnOpened(NodeId n, uint64_t id) {
    if (cluster_.losses(n) > 0) {
      auto& before = ids_before_loss_[n];
      if (before.contains(id) && losses_at_id_[{n, id}] < cluster_.losses(n)) {
        Fail(absl::StrCat("m", n, " lost its disk and came back as member ", absl::Hex(id),
                          ", which it was before"));
      }
    }
    ids_before_loss_[n].insert(id);
    losses_at_id_.try_emplace({n, id}, cluster_.losses(n));
    owned_[n] = id;
    CheckIdentities();
  }

  sim::ScenarioResult Go() {
    for (int i = 1; i <= kMachines; ++i) cluster_.AddNode(MemberOf(i).peer_address);
    // The schedule's disk losses are applied here, each only if it is not a majority loss.
    faults_ = schedule_;
    std::vector<sim::FaultAction> losses;
    std::erase_if(faults_.actions, [&losses](const sim::FaultAction& a) {
      if (a.verb != "lose") return false;
      losses.push_back(a);
      return true;
    });
    sim::ScheduleFaults(faults_, cluster_, [this](const std::string& why) { Fail(why); });
    for (const sim::FaultAction& a : losses) {
      uint32_t n = 0;
      E2D_CHECK(a.args.size() == 1 && absl::SimpleAtoi(a.args[0], &n) && n >= 1 &&
                    n <= static_cast<uint32_t>(kMachines),
                "a loss names one machine");
      sim_.Schedule(a.at_ms * kMs, sim::kNoNode, "lose", n, [this, n] { MaybeLose(n); });
    }
    ScheduleClient();
    ScheduleScaling();
    const int64_t heal_ns = schedule_.duration_ms * kMs;
    sim_.RunUntilTrue([&] { return !failure_.empty(); }, heal_ns);
    if (failure_.empty()) {
      cluster_.Log(sim::kNoNode, "healing every fault");
      sim::HealEverything(cluster_, [](NodeId) { return false; });
      const bool ok = sim_.RunUntilTrue([&] { return !failure_.empty() || Converged(); },
                                        heal_ns + kConvergeMs * kMs);
      if (!ok && failure_.empty()) {
        Fail(absl::StrCat("convergence: not ", required_, " voters and no learner ", kConvergeMs,
                          " ms after the heal: ", Describe()));
      }
    }
    if (failure_.empty()) CheckDurability();
    sim::ScenarioResult r;
    r.pass = failure_.empty();
    r.failure = failure_;
    r.digest = sim_.digest();
    r.events = sim_.events_run();
    r.end_ns = sim_.now_ns();
    r.summary = absl::StrFormat(
        "acked=%d losses=%d skipped_losses=%d replaced=%d scaling=%s removed=%d "
        "recoveries_ignored=%d",
        static_cast<int>(acked_.size()), Losses(), skipped_losses_,
        static_cast<int>(Replaced()), scaling_, removed_, recoveries_ignored_);
    if (!r.pass) r.log_tail = absl::StrJoin(cluster_.log_tail(), "\n");
    return r;
  }

 private:
  kv::KvEngine* Engine(NodeId n) { return disks_.Engine(n, cluster_.losses(n)); }
  node::Node* NodeAt(NodeId n) {
    auto* p = static_cast<MemberProcess*>(cluster_.process(n));
    return p == nullptr ? nullptr : p->node();
  }
  NodeId Leader() {
    return FindLeader(cluster_, [this](NodeId n) { return NodeAt(n); });
  }
  int Losses() {
    int k = 0;
    for (NodeId n : cluster_.nodes()) k += static_cast<int>(cluster_.losses(n));
    return k;
  }
  size_t Replaced() {
    size_t k = 0;
    for (const auto& [n, ids] : ids_before_loss_) k += ids.size() - 1;
    return k;
  }

  void CheckIdentities() {
    absl::btree_map<uint64_t, NodeId> seen;
    for (NodeId n : cluster_.nodes()) {
      node::Node* node = NodeAt(n);
      if (node == nullptr) continue;
      auto [it, fresh] = seen.try_emplace(node->id(), n);
      if (!fresh) {
        Fail(absl::StrCat("m", it->second, " and m", n, " both run as member ",
                          absl::Hex(node->id())));
      }
    }
  }

  // One write in flight at a time, every 200 ms, through whoever leads; a write unanswered
  // for 10 s (its leader crashed) is given up (not acknowledged) and the next one goes.
  void ScheduleClient() {
    sim_.Schedule(sim_.now_ns() + 200 * kMs, sim::kNoNode, "client", 0, [this] {
      if (in_flight_ && sim_.now_ns() - in_flight_since_ > 10'000 * kMs) in_flight_ = false;
      if (!in_flight_) {
        const NodeId l = Leader();
        if (l != sim::kNoNode) {
          in_flight_ = true;
          in_flight_since_ = sim_.now_ns();
          const uint64_t generation = ++generation_;
          const std::string key = absl::StrCat("k", next_key_),
                            value = absl::StrCat("v", next_key_);
          ++next_key_;
          etcdserverpb::PutRequest put;
          put.set_key(key);
          put.set_value(value);
          NodeAt(l)->kv().Put(put, [this, key, value, generation](
                                       absl::StatusOr<etcdserverpb::PutResponse> r) {
            if (generation == generation_) in_flight_ = false;
            if (!r.ok()) return;
            const int64_t revision = r->header().revision();
            auto [it, fresh] = revisions_.try_emplace(revision, key);
            if (!fresh) {
              return Fail(absl::StrCat("linearizability: ", key, " and ", it->second,
                                       " were both acknowledged at revision ", revision));
            }
            acked_[key] = value;
          });
        }
      }
      CheckIdentities();
      ScheduleClient();
    });
  }

  // Loses machine n's disk, unless that would leave some node's voters without a majority on
  // machines that still hold their ids: losses are spaced for the leader to replace one member
  // before the next, but a scaling in between can keep a lost voter in place for longer, and a
  // majority loss is majority_loss's subject. Skipped losses are counted.
  void MaybeLose(NodeId n) {
    absl::btree_set<uint64_t> held;  // the ids that machines still hold (up or down)
    for (NodeId m : cluster_.nodes()) {
      auto it = owned_.find(m);
      if (it != owned_.end()) held.insert(it->second);
    }
    const auto it = owned_.find(n);
    for (NodeId m : cluster_.nodes()) {
      node::Node* node = NodeAt(m);
      if (node == nullptr) continue;
      int voters = 0, kept = 0;
      for (const node::Member& member : node->Members()) {
        if (member.learner) continue;
        ++voters;
        const bool losing = it != owned_.end() && it->second == member.id;
        if (held.contains(member.id) && !losing) ++kept;
      }
      if (voters > 0 && kept < voters / 2 + 1) {
        ++skipped_losses_;
        cluster_.Log(n, absl::StrCat("scenario: m", n, " keeps its disk: ", kept, " of m", m,
                                     "'s ", voters, " voters would be left"));
        return;
      }
    }
    cluster_.Log(n, absl::StrCat("lose (", n, ")"));
    owned_.erase(n);
    cluster_.Lose(n);
  }

  bool Converged() {
    return ClusterConverged(cluster_, [this](NodeId n) { return NodeAt(n); }, required_);
  }

  // Per seed: -n 3 throughout, 3 -> 5, or 3 -> 5 -> 3. A change restarts every machine that
  // runs (not paused) with the new -n, one every 4 s; a machine that is down takes it when it
  // comes back.
  void ScheduleScaling() {
    env::Random random = env::Random(schedule_.seed).Fork("manage-scale");
    const uint64_t mode = random.Uniform(3);
    if (mode == 0) return;
    const int64_t up_ms = random.Range(20'000, 60'000);
    scaling_ = mode == 1 ? "3-5" : "3-5-3";
    ScheduleRequired(up_ms, 5);
    if (mode == 2) ScheduleRequired(up_ms + random.Range(30'000, 60'000), kRequired);
  }

  void ScheduleRequired(int64_t at_ms, int required) {
    sim_.Schedule(sim_.now_ns() + at_ms * kMs, sim::kNoNode, "operator-n", required,
                  [this, required] {
                    cluster_.Log(sim::kNoNode, absl::StrCat("operator: -n ", required,
                                                            ", restarting every machine"));
                    required_ = required;
                  });
    for (NodeId n = 1; n <= kMachines; ++n) {
      sim_.Schedule(sim_.now_ns() + (at_ms + 4'000 * n) * kMs, sim::kNoNode, "operator-restart",
                    n, [this, n] {
                      if (!cluster_.up(n) || cluster_.paused(n)) return;
                      cluster_.Crash(n);
                      cluster_.Restart(n);
                    });
    }
  }

  void CheckDurability() {
    // A linearizable read through the leader, tried again while it is refused (a leader that
    // has not committed in its term yet), for up to 30 s.
    etcdserverpb::RangeRequest range;
    range.set_key("k");
    range.set_range_end("l");
    const std::optional<absl::StatusOr<etcdserverpb::RangeResponse>> got = ReadThroughLeader(
        sim_, [this] { return Leader(); }, [this](NodeId n) { return NodeAt(n); }, range,
        30'000 * kMs);
    if (!got.has_value() || !got->ok()) {
      return Fail(absl::StrCat("durability: the final read failed: ",
                               got.has_value() ? got->status().ToString() : "no answer"));
    }
    absl::btree_map<std::string, std::string> have;
    for (const auto& kv : (*got)->kvs()) have[kv.key()] = kv.value();
    for (const auto& [key, value] : acked_) {
      auto it = have.find(key);
      if (it == have.end() || it->second != value) {
        return Fail(absl::StrCat("durability: the acknowledged write ", key, "=", value,
                                 " reads back as ", it == have.end() ? "nothing" : it->second));
      }
    }
  }

  std::string Describe() {
    return DescribeMachines(cluster_, [this](NodeId n) { return NodeAt(n); }, [this](NodeId n) {
      return static_cast<MemberProcess*>(cluster_.process(n))->why();
    });
  }

  const sim::FaultSchedule& schedule_;
  sim::Simulator sim_;
  gossip::Key key_;
  MachineDisks disks_;  // before cluster_: the machines' processes use them until it goes
  sim::Cluster cluster_;
  std::string failure_;
  absl::btree_map<NodeId, absl::btree_set<uint64_t>> ids_before_loss_;
  absl::btree_map<std::pair<NodeId, uint64_t>, uint64_t> losses_at_id_;
  bool in_flight_ = false;
  int64_t in_flight_since_ = 0;
  uint64_t generation_ = 0;
  uint64_t next_key_ = 0;
  absl::btree_map<int64_t, std::string> revisions_;
  absl::btree_map<std::string, std::string> acked_;
  int required_ = kRequired;
  std::string scaling_ = "none";
  int removed_ = 0;
  int recoveries_ignored_ = 0;
  int skipped_losses_ = 0;
  sim::FaultSchedule faults_;  // the schedule without its losses (ScheduleFaults keeps a view)
  absl::btree_map<NodeId, uint64_t> owned_;  // the member id each machine's disk holds
};

MemberProcess::MemberProcess(Run& run, sim::Cluster& cluster, env::Env& env, NodeId n,
                             kv::KvEngine* engine)
    : run_(run), env_(env), n_(n), engine_(engine) {
  gossip_ = StartMachineGossip(cluster, env, n, run.key(), kMachines);
  node::BootstrapperConfig bc;
  bc.required_size = run.required();
  bc.self = MemberOf(n);
  bc.join_running = true;
  boot_ = std::make_unique<node::Bootstrapper>(
      env, gossip_.node.get(), bc, [this](absl::StatusOr<node::BootstrapSet> set) {
        if (!set.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", set.status().ToString()));
        OpenNode(*set);
      });
  boot_->Start();
}

void MemberProcess::OpenNode(const node::BootstrapSet& set) {
  node::NodeConfig c;
  c.name = MemberOf(n_).name;
  c.initial_cluster = set.members;
  if (set.join) {
    c.join = true;
    c.member_id = set.join_id;
    c.initial_cluster.push_back(MemberOf(n_));
  }
  c.manage.enabled = true;
  c.manage.required_size = run_.required();
  c.manage.interval = absl::Milliseconds(500);
  c.manage.health_timeout = kHealthTimeout;
  c.manage.on_recovery = [this](const node::RecoveryDecision& d) {
    if (d.kind == node::RecoveryDecision::Kind::kStepAside && d.best == 0) {
      return run_.OnRemoved(n_);
    }
    run_.OnRecoveryIgnored(n_, d.why);
  };
  absl::StatusOr<std::unique_ptr<node::Node>> node = node::Node::Open(env_, engine_, c);
  if (!node.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", node.status().ToString()));
  node_ = std::move(*node);
  node_->AttachGossip(gossip_.node.get());
  run_.OnOpened(n_, node_->id());
}

}  // namespace

sim::Scenario ManageReplace() {
  sim::Scenario s;
  s.name = "manage_replace";
  s.description =
      "5 machines, -n 3 through gossip: the leader replaces members whose disks are lost with "
      "waiting nodes through learners, under swarm faults; writes survive, ids never reused";
  s.generate = [name = s.name](uint64_t seed) {
    sim::SwarmOptions o;
    o.nodes = kMachines;
    o.duration_ms = kFaultsMs;
    o.lose = true;
    o.disk_errors = false;  // storage errors stop a member: not what this scenario is about
    o.down_max = 1;  // one machine at a time besides the losses below
    o.target_leader = true;
    sim::FaultSchedule schedule = sim::GenerateSwarm(name, seed, o);
    schedule.duration_ms = kFaultsMs;
    // Disks are lost one machine at a time, far enough apart for the leader to replace the
    // member first (two voters of three lost before that is a majority loss, which needs a
    // restore): the swarm's own losses become crashes, and these come every 45 s.
    for (sim::FaultAction& a : schedule.actions) {
      if (a.verb == "lose") a.verb = "crash";
    }
    env::Random random = env::Random(seed).Fork("manage-losses");
    for (int64_t at = random.Range(5'000, 15'000); at < kFaultsMs - 10'000; at += 45'000) {
      const std::string who = absl::StrCat(1 + random.Uniform(kMachines));
      schedule.actions.push_back({at, "lose", {who}});
      schedule.actions.push_back({at + random.Range(1'000, 8'000), "restart", {who}});
    }
    schedule.SortByTime();
    return schedule;
  };
  s.run = [](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    Run run(schedule, options);
    return run.Go();
  };
  return s;
}

}  // namespace e2d::scenarios
