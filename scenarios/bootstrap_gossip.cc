// Copyright e2d authors.
//
// bootstrap_gossip: members that know only each other's gossip addresses agree, over gossip, on
// the members their new cluster starts with (node/bootstrap.h), while the swarm breaks the
// network, partitions it, crashes, pauses and restarts members (their disks tear unsynced
// writes), and skews their clocks, from the very first moment. Drawn per seed: 3 members told
// -n 3, 5 told -n 5, or 4 told -n 3 (one too many: it must stay out); in half the runs every
// member is given the same backup to restore (--restore-backup), which the set must carry. On
// top of the swarm, most members start late (up to 20 s) and half the runs start split in two
// for 5-25 s. In half the runs the members are not told the addresses: they find them by peer
// discovery (node/runtime/discovery.h), modelled as a registry that lists each machine from a
// random moment in the first 30 s on, and that every member looks up every 1-5 s
// (GossipNode::UpdateSeeds), starting with nothing found.
//
// Each simulated machine runs the real GossipNode and Bootstrapper; once a member bootstraps it
// publishes the running meta, as the node does. Oracles:
//  - validity: a member bootstraps with exactly N members, itself among them, and the backup it
//    was given, under the cluster id of both;
//  - agreement: any two sets bootstrapped anywhere are equal (fewer than 2N members started,
//    so no two disjoint clusters can form);
//  - stability: a member restarted after it bootstrapped reports the same set (the record);
//  - no storage errors (the disk faults here are latency and tears, which must be survived);
//  - joins: a member that joins a running cluster instead (the extra member of the 4/3 runs)
//    joins the one cluster bootstrapped, is not a member of its set, under an id of its own;
//  - liveness: within 60 s of the heal, every member of the bootstrapped set has bootstrapped
//    (with exactly N started: all of them), and the extra member has not (it may have joined).

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "node/bootstrap.h"
#include "scenarios/node_harness.h"
#include "scenarios/registry.h"
#include "sim/cluster.h"
#include "sim/swarm.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kFaultsMs = 40'000;   // faults from 0 to here, then the heal
constexpr int64_t kLivenessMs = 60'000;  // after the heal

// (members started, required size), drawn per seed.
constexpr std::pair<int, int> kShapes[] = {{3, 3}, {5, 5}, {4, 3}};


gossip::Keyring ClusterKeyring() {
  absl::StatusOr<gossip::Key> key =
      gossip::DeriveKey("simulated cluster CA key", gossip::kGossipKeyLabel);
  E2D_CHECK(key.ok(), "%s", key.status().ToString().c_str());
  return gossip::Keyring(*key);
}

class Run;

// One machine: gossip, and the bootstrapper driving it (destroyed first).
class BootstrapProcess final : public sim::Process {
 public:
  // `discover` set: `seeds` is ignored, and the member looks up what discover() returns every
  // `discovery_period` instead.
  BootstrapProcess(env::Env& env, NodeId n, int required, const std::string& restore,
                   std::vector<env::Address> seeds,
                   std::function<std::vector<env::Address>()> discover,
                   absl::Duration discovery_period,
                   std::function<void(NodeId, absl::StatusOr<node::BootstrapSet>)> on_done)
      : env_(env),
        discover_(std::move(discover)),
        discovery_period_(discovery_period),
        gossip_(env, GossipConfig(env, n), ClusterKeyring()),
        boot_(env, &gossip_, BootConfig(n, required, restore),
              [this, n, on_done](absl::StatusOr<node::BootstrapSet> s) {
                if (s.ok()) PublishRunning(n, *s);
                on_done(n, std::move(s));
              }) {
    gossip_.set_check_invariants(true);
    if (discover_) {
      gossip_.Join({});
      Discover();
    } else {
      gossip_.Join(std::move(seeds));
    }
    boot_.Start();
  }
  ~BootstrapProcess() override {
    if (discovery_timer_.has_value()) env_.clock().Cancel(*discovery_timer_);
  }
  const std::string& why() const { return boot_.why(); }

 private:
  static gossip::Config GossipConfig(env::Env& env, NodeId n) {
    gossip::Config c;
    c.name = MemberOf(n).name;
    c.addr = env.network().local_address();
    c.session = static_cast<uint64_t>(env.clock().Now().ns);
    return c;
  }
  static node::BootstrapperConfig BootConfig(NodeId n, int required, const std::string& restore) {
    node::BootstrapperConfig c;
    c.required_size = required;
    c.restore = restore;
    c.join_running = true;
    c.self = MemberOf(n);
    return c;
  }
  // What the node publishes once it runs the cluster.
  void PublishRunning(NodeId n, const node::BootstrapSet& set) {
    node::GossipMeta meta;
    meta.member_id = node::MemberIdFor(MemberOf(n).peer_address);
    meta.cluster_id = set.cluster_id;
    meta.peer_address = MemberOf(n).peer_address;
    meta.client_url = MemberOf(n).client_url;
    absl::Status s = gossip_.SetMeta(node::EncodeGossipMeta(meta));
    E2D_CHECK(s.ok(), "%s", s.ToString().c_str());
  }

  void Discover() {
    gossip_.UpdateSeeds(discover_());
    discovery_timer_ = env_.clock().After(discovery_period_, [this] { Discover(); });
  }

  env::Env& env_;
  const std::function<std::vector<env::Address>()> discover_;
  const absl::Duration discovery_period_;
  std::optional<env::TimerId> discovery_timer_;
  gossip::GossipNode gossip_;
  node::Bootstrapper boot_;
};

class Run {
 public:
  Run(const sim::FaultSchedule& schedule, const sim::RunOptions& options)
      : schedule_(schedule),
        sim_(schedule.seed),
        cluster_(sim_, [this](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
          std::function<std::vector<env::Address>()> discover;
          if (discovery_) discover = [this] { return registry_; };
          return std::make_unique<BootstrapProcess>(
              env, n, required_, restore_, seeds_, std::move(discover), discovery_period_,
              [this](NodeId at, absl::StatusOr<node::BootstrapSet> s) { OnDone(at, s); });
        }) {
    sim_.set_trace(options.trace);
    cluster_.set_echo_log(options.echo_log);
    required_ = RequiredFor(schedule.nodes);
    if (env::Random(schedule.seed).Fork("bootstrap-restore").Uniform(2) == 1) {
      restore_ = "e2d-00000000000000aa-00000000000000000042.bkp";
    }
    // Every member is told every address (--bootstrap-addrs lists them all), or finds them.
    for (int i = 1; i <= schedule.nodes; ++i) seeds_.push_back(GossipAddress(i));
    env::Random discovery = env::Random(schedule.seed).Fork("bootstrap-discovery");
    discovery_ = discovery.Uniform(2) == 1;
    discovery_period_ = absl::Milliseconds(discovery.Range(1'000, 5'000));
    for (int i = 1; i <= schedule.nodes; ++i) {
      listed_at_ms_.push_back(discovery_ ? discovery.Range(0, 30'000) : 0);
    }
  }

  static int RequiredFor(int nodes) {
    for (const auto& [started, required] : kShapes) {
      if (started == nodes) return required;
    }
    E2D_CHECK(false, "no shape for %d members", nodes);
    return 0;
  }

  sim::ScenarioResult Go() {
    for (int i = 1; i <= schedule_.nodes; ++i) {
      const int64_t at_ns = sim_.now_ns() + listed_at_ms_[i - 1] * kMs;
      sim_.Schedule(at_ns, sim::kNoNode, "discovery-lists", i, [this, i] {
        registry_.push_back(GossipAddress(i));
        std::sort(registry_.begin(), registry_.end());
      });
    }
    for (int i = 1; i <= schedule_.nodes; ++i) cluster_.AddNode(GossipAddress(i));
    sim::ScheduleFaults(schedule_, cluster_, [this](const std::string& why) { Fail(why); });
    const int64_t heal_ns = schedule_.duration_ms * kMs;
    sim_.RunUntilTrue([&] { return !failure_.empty(); }, heal_ns);
    if (failure_.empty()) {
      cluster_.Log(sim::kNoNode, "healing every fault");
      sim::HealEverything(cluster_, [](NodeId) { return false; });
      const bool ok = sim_.RunUntilTrue([&] { return !failure_.empty() || Formed(); },
                                        heal_ns + kLivenessMs * kMs);
      if (!ok && failure_.empty()) {
        Fail(absl::StrCat("liveness: no cluster formed ", kLivenessMs,
                          " ms after the heal: ", Waiting()));
      }
    }
    sim::ScenarioResult r;
    r.pass = failure_.empty();
    r.failure = failure_;
    r.digest = sim_.digest();
    r.events = sim_.events_run();
    r.end_ns = sim_.now_ns();
    r.summary = absl::StrFormat(
        "members=%d required=%d restore=%d discovery=%d bootstrapped=%d joined=%d first_ms=%d",
        schedule_.nodes, required_, restore_.empty() ? 0 : 1, discovery_ ? 1 : 0,
        static_cast<int>(committed_.size()),
        static_cast<int>(joined_.size()),
                                static_cast<int>(first_commit_ms_));
    if (!r.pass) r.log_tail = absl::StrJoin(cluster_.log_tail(), "\n");
    return r;
  }

 private:
  void Fail(std::string what) {
    if (failure_.empty()) failure_ = absl::StrFormat("t=%.3fs %s", sim_.now_ns() / 1e9, what);
  }

  std::string Describe(const node::BootstrapSet& s) {
    std::vector<std::string> names;
    for (const node::Member& m : s.members) names.push_back(m.name);
    return absl::StrCat("{", absl::StrJoin(names, ","), "}");
  }

  void OnDone(NodeId n, const absl::StatusOr<node::BootstrapSet>& s) {
    const std::string who = MemberOf(n).name;
    if (!s.ok()) return Fail(absl::StrCat(who, ": ", s.status().ToString()));
    const uint64_t self_id = node::MemberIdFor(MemberOf(n).peer_address);
    if (s->join) {
      if (committed_.contains(n)) {
        return Fail(absl::StrCat(who, " bootstrapped ", Describe(committed_.at(n)),
                                 " and, restarted, joined cluster ", s->cluster_id));
      }
      if (committed_.empty()) return Fail(absl::StrCat(who, " joined before any cluster formed"));
      const node::BootstrapSet& formed = committed_.begin()->second;
      if (s->cluster_id != formed.cluster_id) {
        return Fail(absl::StrCat(who, " joined cluster ", s->cluster_id, ", not the one formed, ",
                                 formed.cluster_id));
      }
      if (std::any_of(formed.members.begin(), formed.members.end(),
                      [&](const node::Member& m) { return m.id == self_id; })) {
        return Fail(absl::StrCat(who, " joined the cluster it was to bootstrap, ",
                                 Describe(formed)));
      }
      if (s->join_id == 0 || s->join_id == self_id) {
        return Fail(absl::StrCat(who, " joined under the id of its address"));
      }
      auto [it, fresh] = joined_.try_emplace(n, *s);
      if (!fresh && !(it->second == *s)) {
        return Fail(absl::StrCat(who, " joined twice, differently"));
      }
      return;
    }
    if (joined_.contains(n)) {
      return Fail(absl::StrCat(who, " joined a cluster and, restarted, bootstrapped ",
                               Describe(*s)));
    }
    if (static_cast<int>(s->members.size()) != required_) {
      return Fail(absl::StrCat(who, " bootstrapped ", Describe(*s), ", not ", required_,
                               " members"));
    }
    const uint64_t self = node::MemberIdFor(MemberOf(n).peer_address);
    if (std::none_of(s->members.begin(), s->members.end(),
                     [&](const node::Member& m) { return m.id == self; })) {
      return Fail(absl::StrCat(who, " bootstrapped ", Describe(*s), ", which lacks it"));
    }
    if (s->restored_from != restore_) {
      return Fail(absl::StrCat(who, " bootstrapped ", Describe(*s), " restoring \"",
                               s->restored_from, "\", not \"", restore_, "\""));
    }
    if (s->cluster_id != node::ClusterIdFor(s->members, restore_)) {
      return Fail(absl::StrCat(who, " bootstrapped ", Describe(*s), " under a wrong cluster id"));
    }
    auto [it, fresh] = committed_.try_emplace(n, *s);
    if (!fresh && !(it->second == *s)) {
      return Fail(absl::StrCat(who, " bootstrapped ", Describe(it->second), " and, restarted, ",
                               Describe(*s)));
    }
    for (const auto& [other, set] : committed_) {
      if (!(set == *s)) {
        return Fail(absl::StrCat("split brain: ", who, " bootstrapped ", Describe(*s), " but m",
                                 other, " bootstrapped ", Describe(set)));
      }
    }
    if (first_commit_ms_ < 0) first_commit_ms_ = sim_.now_ns() / kMs;
  }

  // Every member of the bootstrapped set has bootstrapped.
  bool Formed() {
    if (committed_.empty()) return false;
    const node::BootstrapSet& s = committed_.begin()->second;
    for (const node::Member& m : s.members) {
      bool found = false;
      for (const auto& [n, set] : committed_) {
        found = found || node::MemberIdFor(MemberOf(n).peer_address) == m.id;
      }
      if (!found) return false;
    }
    return true;
  }

  std::string Waiting() {
    std::vector<std::string> out;
    for (NodeId n : cluster_.nodes()) {
      if (committed_.contains(n)) continue;
      auto* p = static_cast<BootstrapProcess*>(cluster_.process(n));
      out.push_back(absl::StrCat(MemberOf(n).name, ": ", p == nullptr ? "down" : p->why()));
    }
    return absl::StrJoin(out, "; ");
  }

  const sim::FaultSchedule& schedule_;
  sim::Simulator sim_;
  int required_ = 0;
  std::string restore_;  // the backup every member is given, or none
  std::vector<env::Address> seeds_;
  bool discovery_ = false;  // members find each other through registry_ instead of seeds_
  absl::Duration discovery_period_;
  std::vector<int64_t> listed_at_ms_;  // per machine: when the registry starts listing it
  std::vector<env::Address> registry_;  // sorted
  sim::Cluster cluster_;
  std::string failure_;
  absl::btree_map<NodeId, node::BootstrapSet> committed_;
  absl::btree_map<NodeId, node::BootstrapSet> joined_;
  int64_t first_commit_ms_ = -1;
};

}  // namespace

sim::Scenario BootstrapGossip() {
  sim::Scenario s;
  s.name = "bootstrap_gossip";
  s.description =
      "3/3, 5/5 or 4/3 members agree over gossip on the initial cluster under swarm faults from "
      "the start; one set, stable across restarts, formed after the heal";
  s.generate = [name = s.name](uint64_t seed) {
    env::Random random = env::Random(seed).Fork("bootstrap-shape");
    const int nodes = kShapes[random.Uniform(std::size(kShapes))].first;
    sim::SwarmOptions o;
    o.nodes = nodes;
    o.duration_ms = kFaultsMs;
    o.disk_errors = false;  // storage errors stop a member: not what this scenario is about
    o.down_max = 2;
    sim::FaultSchedule schedule = sim::GenerateSwarm(name, seed, o);
    schedule.duration_ms = kFaultsMs;
    // The swarm's faults start at random times; these hit the bootstrap itself. Machines boot
    // at different times (all but one start late, within 20 s: "crash" at 0 stops the process
    // the cluster started), and half the runs begin split in two for 5-25 s.
    const int keep = 1 + static_cast<int>(random.Uniform(nodes));
    for (int i = 1; i <= nodes; ++i) {
      if (i == keep || !random.Chance(0.7)) continue;
      schedule.actions.push_back({0, "crash", {absl::StrCat(i)}});
      schedule.actions.push_back({random.Range(500, 20'000), "restart", {absl::StrCat(i)}});
    }
    if (random.Chance(0.5)) {
      std::vector<std::string> a, b;
      for (int i = 1; i <= nodes; ++i) (random.Chance(0.5) ? a : b).push_back(absl::StrCat(i));
      if (!a.empty() && !b.empty()) {
        schedule.actions.push_back(
            {random.Range(0, 3'000), "split", {absl::StrJoin(a, ","), absl::StrJoin(b, ",")}});
        schedule.actions.push_back({random.Range(5'000, 25'000), "heal", {}});
      }
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
