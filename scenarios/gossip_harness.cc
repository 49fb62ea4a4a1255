// Copyright e2d authors.

#include "scenarios/gossip_harness.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "gossip/gossip_node.h"
#include "sim/cluster.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kPollMs = 250;  // how often the harness looks at every member's view

std::string NameOf(NodeId n) { return absl::StrCat("n", n); }

gossip::Keyring ClusterKeyring() {
  absl::StatusOr<gossip::Key> key =
      gossip::DeriveKey("simulated cluster CA key", gossip::kGossipKeyLabel);
  E2D_CHECK(key.ok(), "%s", key.status().ToString().c_str());
  return gossip::Keyring(*key);
}

class GossipProcess final : public sim::Process {
 public:
  GossipProcess(env::Env& env, NodeId n, const std::vector<env::Address>& seeds,
                bool stream_fallback, std::function<void(NodeId, const gossip::Event&)> on_event)
      : node(env, MakeConfig(env, n, stream_fallback), ClusterKeyring()) {
    node.set_check_invariants(true);
    node.set_event_handler([n, on_event](const gossip::Event& e) { on_event(n, e); });
    node.Join(seeds);
  }
  gossip::GossipNode node;

 private:
  static gossip::Config MakeConfig(env::Env& env, NodeId n, bool stream_fallback) {
    gossip::Config c;
    c.stream_fallback = stream_fallback;
    c.name = NameOf(n);
    c.addr = env.network().local_address();
    c.session = static_cast<uint64_t>(env.clock().Now().ns);
    return c;
  }
};

gossip::GossipNode* NodeOf(sim::Cluster& cluster, NodeId n) {
  auto* p = static_cast<GossipProcess*>(cluster.process(n));
  return p == nullptr ? nullptr : &p->node;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// What the schedule says will happen, read back from its actions (so a replayed schedule file
// is judged exactly like a generated one).
struct Plan {
  double loss = 0;
  absl::btree_map<NodeId, int64_t> crash_at_ms;  // first crash of each member in the fault phase
  absl::btree_set<NodeId> paused;                // members that stall (overloaded)
  bool restarts = false;                          // some member restarts before the heal
  bool partitions = false;
  int64_t partition_end_ms = -1;   // the last "heal" action
  int64_t last_restart_ms = -1;    // the last "restart" action
};

Plan ReadPlan(const sim::FaultSchedule& schedule) {
  Plan plan;
  for (const sim::FaultAction& a : schedule.actions) {
    if (a.verb == "link") {
      for (const std::string& arg : a.args) {
        if (absl::StartsWith(arg, "loss=")) (void)absl::SimpleAtod(arg.substr(5), &plan.loss);
      }
    }
    uint32_t n = 0;
    bool numeric = !a.args.empty() && absl::SimpleAtoi(a.args[0], &n);
    if (a.verb == "crash" && numeric && !plan.crash_at_ms.contains(n)) {
      plan.crash_at_ms[n] = a.at_ms;
    }
    if (a.verb == "crash" && !numeric) plan.restarts = true;  // "leader": not used by gossip
    if (a.verb == "pause" && numeric) plan.paused.insert(n);
    if (a.verb == "restart" || a.verb == "lose") plan.restarts = true;
    if (a.verb == "restart") plan.last_restart_ms = std::max(plan.last_restart_ms, a.at_ms);
    if (a.verb == "heal") plan.partition_end_ms = std::max(plan.partition_end_ms, a.at_ms);
    if (a.verb == "isolate" || a.verb == "split" || a.verb == "oneway" || a.verb == "bridge" ||
        a.verb == "clog") {
      plan.partitions = true;
    }
  }
  return plan;
}

class GossipRun {
 public:
  GossipRun(const sim::FaultSchedule& schedule, const GossipScenarioConfig& config,
            const sim::RunOptions& options)
      : schedule_(schedule),
        config_(config),
        plan_(ReadPlan(schedule)),
        sim_(schedule.seed),
        cluster_(sim_, [this](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
          return std::make_unique<GossipProcess>(
              env, n, seeds_, config_.stream_fallback,
              [this](NodeId at, const gossip::Event& e) { OnEvent(at, e); });
        }) {
    sim_.set_trace(options.trace);
    cluster_.set_echo_log(options.echo_log);
    for (int i = 1; i <= schedule.nodes; ++i) {
      addresses_.push_back(absl::StrCat("10.0.", i / 256, ".", i % 256, ":7980"));
    }
    for (int i = 0; i < std::min(3, schedule.nodes); ++i) seeds_.push_back(addresses_[i]);
    metrics_.nodes = schedule.nodes;
    metrics_.loss = plan_.loss;
    metrics_.overloaded = !plan_.paused.empty();
  }

  sim::ScenarioResult Run(GossipMetrics* metrics);

 private:
  void Fail(std::string what) {
    if (failure_.empty()) failure_ = absl::StrFormat("t=%.3fs %s", sim_.now_ns() / 1e9, what);
  }
  int64_t now_ms() const { return sim_.now_ns() / kMs; }

  void OnEvent(NodeId at, const gossip::Event& e);
  void Poll();
  bool SeesEveryoneCurrent(NodeId q);
  std::string Lagging();
  void ScheduleMetaUpdates();
  void CheckDetection();
  void CheckPropagation();

  const sim::FaultSchedule& schedule_;
  const GossipScenarioConfig& config_;
  Plan plan_;
  sim::Simulator sim_;
  std::vector<env::Address> addresses_;
  std::vector<env::Address> seeds_;
  sim::Cluster cluster_;
  GossipMetrics metrics_;
  std::string failure_;

  // Detection: per crashed member, per observer, when it declared the member dead.
  absl::btree_map<NodeId, absl::btree_map<NodeId, int64_t>> dead_at_ms_;
  absl::btree_map<NodeId, int64_t> first_suspect_ms_;
  // Propagation: per update (member, meta), when it was made and who has seen it.
  struct MetaUpdate {
    NodeId owner;
    std::string meta;
    int64_t at_ms;
    absl::btree_map<NodeId, int64_t> seen_ms;
  };
  std::vector<MetaUpdate> updates_;
  bool healed_ = false;
  bool converged_ = false;
};

void GossipRun::OnEvent(NodeId at, const gossip::Event& e) {
  uint32_t subject = 0;
  if (!absl::SimpleAtoi(e.member.name.substr(1), &subject)) {
    return Fail(absl::StrCat(NameOf(at), " learned of unknown member ", e.member.name));
  }
  if (e.member.addr != addresses_.at(subject - 1)) {
    return Fail(absl::StrCat(NameOf(at), " holds ", e.member.name, " at ", e.member.addr));
  }
  const int64_t t = now_ms();
  const bool in_faults = t >= config_.settle_ms && !healed_;
  if (e.kind == gossip::Event::Kind::kSuspect && plan_.crash_at_ms.contains(subject) &&
      t >= plan_.crash_at_ms[subject] && !first_suspect_ms_.contains(subject)) {
    first_suspect_ms_[subject] = t;
  }
  if (e.kind == gossip::Event::Kind::kDead) {
    if (plan_.crash_at_ms.contains(subject) && t >= plan_.crash_at_ms[subject]) {
      dead_at_ms_[subject].try_emplace(at, t);
    } else if (in_faults && !plan_.crash_at_ms.contains(subject) && !plan_.restarts) {
      // A member that never crashed, declared dead.
      if (plan_.paused.contains(subject)) {
        ++metrics_.false_dead_overloaded;
      } else {
        ++metrics_.false_dead;
        if (config_.no_false_dead && !plan_.partitions) {
          Fail(absl::StrCat("false positive: ", NameOf(at), " declared ", e.member.name,
                            " dead though it never crashed (loss ", plan_.loss, ")"));
        }
      }
    }
  }
  // Seeing an owner's update also counts for its earlier ones, which it superseded.
  for (size_t i = updates_.size(); i-- > 0;) {
    if (updates_[i].owner != subject || e.member.meta != updates_[i].meta) continue;
    for (size_t j = 0; j <= i; ++j) {
      if (updates_[j].owner == subject) updates_[j].seen_ms.try_emplace(at, t);
    }
    break;
  }
}

bool GossipRun::SeesEveryoneCurrent(NodeId q) {
  gossip::GossipNode* node = NodeOf(cluster_, q);
  if (node == nullptr) return false;
  for (NodeId p : cluster_.nodes()) {
    gossip::GossipNode* other = NodeOf(cluster_, p);
    if (other == nullptr) return false;
    const gossip::Member* m = node->memberlist().Find(NameOf(p));
    if (m == nullptr || m->state != gossip::MemberState::kAlive) return false;
    if (m->meta != other->memberlist().Find(NameOf(p))->meta) return false;
  }
  return true;
}

std::string GossipRun::Lagging() {
  std::vector<std::string> out;
  for (NodeId q : cluster_.nodes()) {
    gossip::GossipNode* node = NodeOf(cluster_, q);
    if (node == nullptr) {
      out.push_back(absl::StrCat(NameOf(q), " down"));
      continue;
    }
    for (NodeId p : cluster_.nodes()) {
      const gossip::Member* m = node->memberlist().Find(NameOf(p));
      if (m == nullptr) {
        out.push_back(absl::StrCat(NameOf(q), " lacks ", NameOf(p)));
      } else if (m->state != gossip::MemberState::kAlive) {
        out.push_back(absl::StrCat(NameOf(q), " holds ", NameOf(p), " ",
                                   gossip::MemberStateName(m->state), " inc ", m->incarnation));
      }
      if (out.size() > 12) return absl::StrJoin(out, "; ") + "; ...";
    }
  }
  return absl::StrJoin(out, "; ");
}

void GossipRun::ScheduleMetaUpdates() {
  env::Random random = sim_.ForkRandom("meta-updates");
  for (int i = 0; i < config_.meta_updates; ++i) {
    int64_t span = std::max<int64_t>(1, schedule_.duration_ms - config_.settle_ms - 10'000);
    int64_t at_ms = config_.settle_ms + static_cast<int64_t>(random.Uniform(span));
    NodeId owner = static_cast<NodeId>(1 + random.Uniform(schedule_.nodes));
    std::string meta = absl::StrCat("state=running;update=", i);
    sim_.Schedule(at_ms * kMs, sim::kNoNode, "meta-update", owner, [this, owner, meta, at_ms] {
      gossip::GossipNode* node = NodeOf(cluster_, owner);
      // Only a member that is up and will stay up makes a measurable update.
      if (node == nullptr || cluster_.paused(owner) || plan_.crash_at_ms.contains(owner) ||
          plan_.paused.contains(owner) || plan_.restarts) {
        return;
      }
      absl::Status s = node->SetMeta(meta);
      if (!s.ok()) return Fail(absl::StrCat("SetMeta: ", s.ToString()));
      updates_.push_back(MetaUpdate{owner, meta, at_ms, {}});
      updates_.back().seen_ms[owner] = at_ms;
    });
  }
}

void GossipRun::Poll() {
  for (NodeId q : cluster_.nodes()) {
    gossip::GossipNode* node = NodeOf(cluster_, q);
    if (node == nullptr) continue;
    const gossip::Stats& s = node->memberlist().stats();
    if (s.dropped_undecryptable != 0 || s.dropped_malformed != 0) {
      return Fail(absl::StrCat(NameOf(q), " dropped ", s.dropped_undecryptable,
                               " undecryptable and ", s.dropped_malformed,
                               " malformed messages from honest members"));
    }
  }
  // Convergence marks: each is measured once, from its start to the first poll that finds
  // every member seeing every member alive with its current metadata.
  const int64_t t = now_ms();
  auto waiting = [&](double figure, int64_t since_ms) {
    return figure < 0 && since_ms >= 0 && t >= since_ms;
  };
  bool join = metrics_.join_ms < 0;
  bool partition = waiting(metrics_.partition_converge_ms, plan_.partition_end_ms) &&
                   (plan_.last_restart_ms < 0 || plan_.last_restart_ms > t ||
                    plan_.last_restart_ms < plan_.partition_end_ms);
  bool restart = waiting(metrics_.restart_converge_ms, plan_.last_restart_ms);
  bool heal = healed_ && !converged_;
  if (join || partition || restart || heal) {
    bool all = true;
    for (NodeId q : cluster_.nodes()) all = all && SeesEveryoneCurrent(q);
    if (all) {
      if (join) metrics_.join_ms = static_cast<double>(t);
      if (partition) {
        metrics_.partition_converge_ms = static_cast<double>(t - plan_.partition_end_ms);
      }
      if (restart) metrics_.restart_converge_ms = static_cast<double>(t - plan_.last_restart_ms);
      if (heal) {
        converged_ = true;
        metrics_.converge_ms = static_cast<double>(t - schedule_.duration_ms);
      }
    }
  }
  sim_.Schedule(sim_.now_ns() + kPollMs * kMs, sim::kNoNode, "gossip-poll", 0, [this] { Poll(); });
}

void GossipRun::CheckDetection() {
  for (const auto& [crashed, at_ms] : plan_.crash_at_ms) {
    if (at_ms < config_.settle_ms) continue;
    const auto& observers = dead_at_ms_[crashed];
    int64_t last = -1;
    for (NodeId q : cluster_.nodes()) {
      if (plan_.crash_at_ms.contains(q) || q == crashed) continue;
      auto it = observers.find(q);
      if (it == observers.end()) {
        if (config_.detect_ms_max > 0) {
          Fail(absl::StrCat("detection: ", NameOf(q), " never declared ", NameOf(crashed),
                            " (crashed at ", at_ms, " ms) dead before the heal"));
        }
        last = -1;
        break;
      }
      last = std::max(last, it->second);
      if (config_.detect_ms_max > 0 && it->second - at_ms > config_.detect_ms_max) {
        Fail(absl::StrCat("detection: ", NameOf(q), " declared ", NameOf(crashed), " dead ",
                          it->second - at_ms, " ms after its crash (bound ",
                          config_.detect_ms_max, ")"));
      }
    }
    if (first_suspect_ms_.contains(crashed)) {
      metrics_.first_suspect_ms.push_back(first_suspect_ms_[crashed] - at_ms);
    }
    int64_t first = -1;
    for (const auto& [q, t] : observers) first = first < 0 ? t : std::min(first, t);
    if (first >= 0) metrics_.first_dead_ms.push_back(static_cast<double>(first - at_ms));
    if (last >= 0) metrics_.all_dead_ms.push_back(static_cast<double>(last - at_ms));
  }
}

void GossipRun::CheckPropagation() {
  for (const MetaUpdate& u : updates_) {
    int64_t last = u.at_ms;
    bool everyone = true;
    for (NodeId q : cluster_.nodes()) {
      if (plan_.crash_at_ms.contains(q)) continue;
      auto it = u.seen_ms.find(q);
      if (it == u.seen_ms.end()) {
        everyone = false;
        break;
      }
      last = std::max(last, it->second);
    }
    if (!everyone) {
      if (config_.propagate_ms_max > 0) {
        Fail(absl::StrCat("propagation: ", NameOf(u.owner), "'s update at ", u.at_ms,
                          " ms never reached every member"));
      }
      continue;
    }
    metrics_.propagate_ms.push_back(static_cast<double>(last - u.at_ms));
    if (config_.propagate_ms_max > 0 && last - u.at_ms > config_.propagate_ms_max) {
      Fail(absl::StrCat("propagation: ", NameOf(u.owner), "'s update took ", last - u.at_ms,
                        " ms to reach everyone (bound ", config_.propagate_ms_max, ")"));
    }
  }
}

sim::ScenarioResult GossipRun::Run(GossipMetrics* metrics) {
  for (const env::Address& a : addresses_) cluster_.AddNode(a);
  sim::ScheduleFaults(schedule_, cluster_, [this](const std::string& why) { Fail(why); });
  ScheduleMetaUpdates();
  sim_.Schedule(0, sim::kNoNode, "gossip-poll", 0, [this] { Poll(); });

  const int64_t settle_ns = config_.settle_ms * kMs;
  sim_.RunUntilTrue([&] { return !failure_.empty(); }, settle_ns);
  if (failure_.empty() && metrics_.join_ms < 0) {
    Fail(absl::StrCat("join: not everyone sees everyone ", config_.settle_ms,
                      " ms after the start: ", Lagging()));
  }
  const int64_t heal_ns = schedule_.duration_ms * kMs;
  if (failure_.empty()) sim_.RunUntilTrue([&] { return !failure_.empty(); }, heal_ns);
  if (failure_.empty()) CheckDetection();
  if (failure_.empty()) {
    cluster_.Log(sim::kNoNode, "healing every fault");
    sim::HealEverything(cluster_, [](NodeId) { return false; });
    healed_ = true;
    bool ok = sim_.RunUntilTrue([&] { return !failure_.empty() || converged_; },
                                heal_ns + config_.converge_ms_max * kMs);
    if (!ok && failure_.empty()) {
      Fail(absl::StrCat("liveness: not converged ", config_.converge_ms_max,
                        " ms after the heal: ", Lagging()));
    }
  }
  // Updates made late in the fault phase may still be spreading at the heal: they count until
  // the end of the run.
  if (failure_.empty()) CheckPropagation();
  metrics_.sim_seconds = sim_.now_ns() / 1e9;

  sim::ScenarioResult result;
  result.pass = failure_.empty();
  result.failure = failure_;
  result.digest = sim_.digest();
  result.events = sim_.events_run();
  result.end_ns = sim_.now_ns();
  const sim::NetworkStats& net = cluster_.network().stats();
  result.summary = absl::StrFormat(
      "nodes=%d loss=%.2f overloaded=%d join_ms=%.0f suspect_ms=%.0f dead_first_ms=%.0f "
      "dead_all_ms=%.0f propagate_ms=%.0f false_dead=%d false_dead_overloaded=%d "
      "partition_converge_ms=%.0f restart_converge_ms=%.0f converge_ms=%.0f datagrams=%d/%d "
      "stream_msgs=%d",
      metrics_.nodes, metrics_.loss, metrics_.overloaded ? 1 : 0, metrics_.join_ms,
      Percentile(metrics_.first_suspect_ms, 0.5), Percentile(metrics_.first_dead_ms, 0.5),
      Percentile(metrics_.all_dead_ms, 0.5), Percentile(metrics_.propagate_ms, 0.5),
      metrics_.false_dead, metrics_.false_dead_overloaded, metrics_.partition_converge_ms,
      metrics_.restart_converge_ms, metrics_.converge_ms,
      net.datagrams_delivered, net.datagrams_sent, net.stream_messages_delivered);
  if (!result.pass) result.log_tail = absl::StrJoin(cluster_.log_tail(), "\n");
  if (metrics != nullptr) *metrics = metrics_;
  return result;
}

}  // namespace

sim::FaultSchedule GenerateGossip(const std::string& name, uint64_t seed,
                                  const GossipScenarioConfig& config) {
  env::Random random = env::Random(seed).Fork("gossip-schedule");
  sim::FaultSchedule s;
  const int nodes = config.sizes[random.Uniform(config.sizes.size())];
  if (config.swarm) {
    sim::SwarmOptions options = config.swarm_options;
    options.nodes = nodes;
    options.duration_ms = config.duration_ms - config.settle_ms;
    s = sim::GenerateSwarm(name, seed, options);
    for (sim::FaultAction& a : s.actions) a.at_ms += config.settle_ms;
  }
  s.scenario = name;
  s.seed = seed;
  s.nodes = nodes;
  s.duration_ms = config.duration_ms;
  const int n = s.nodes;
  auto at = [&](int64_t from_ms, int64_t to_ms) { return random.Range(from_ms, to_ms); };
  std::vector<sim::FaultAction> actions;
  const double loss = config.loss_choices[random.Uniform(config.loss_choices.size())];
  if (loss > 0) {
    actions.push_back({config.settle_ms, "link", {"*", "*", absl::StrCat("loss=", loss)}});
  }
  // Members that stay up are chosen from a shuffled list so that crashes and the overloaded
  // member never coincide.
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i + 1;
  for (int i = n; i > 1; --i) std::swap(order[i - 1], order[random.Uniform(i)]);
  size_t next = 0;
  const int64_t fault_end_ms = config.duration_ms;
  for (int c = 0; c < config.crashes && next + 2 < order.size(); ++c) {
    // Leave time for detection before the heal.
    int64_t latest = std::max(config.settle_ms, fault_end_ms - config.detect_ms_max - 5'000);
    int64_t t = at(config.settle_ms, latest);
    actions.push_back({t, "crash", {absl::StrCat(order[next++])}});
  }
  if (config.overload_chance > 0 && random.Chance(config.overload_chance) && next < order.size()) {
    int slow = order[next++];
    for (int64_t t = config.settle_ms + at(0, 2'000); t + 2'000 < fault_end_ms;) {
      int64_t stall_ms = at(200, 1'500);
      actions.push_back({t, "pause", {absl::StrCat(slow)}});
      actions.push_back({t + stall_ms, "resume", {absl::StrCat(slow)}});
      t += stall_ms + at(300, 3'000);
    }
  }
  // A partition first, then (25 s after it healed, so the two convergences are measured apart)
  // the mass restart.
  int64_t restart_from_ms = config.settle_ms;
  if (config.partition) {
    std::vector<std::string> a, b;
    for (int i = 0; i < n; ++i) (i < n / 2 ? a : b).push_back(absl::StrCat(order[i]));
    int64_t start = at(config.settle_ms, config.settle_ms + 5'000);
    int64_t end = std::min(fault_end_ms - 10'000, start + at(20'000, 40'000));
    actions.push_back({start, "split", {absl::StrJoin(a, ","), absl::StrJoin(b, ",")}});
    actions.push_back({end, "heal", {}});
    restart_from_ms = end + 25'000;
  }
  if (config.mass_restart) {
    int64_t t = at(restart_from_ms, std::max(restart_from_ms, fault_end_ms - 20'000));
    for (int i = 1; i <= n; ++i) actions.push_back({t, "crash", {absl::StrCat(i)}});
    for (int i = 1; i <= n; ++i) {
      actions.push_back({t + 1'000 + at(0, 5'000), "restart", {absl::StrCat(i)}});
    }
  }
  s.actions.insert(s.actions.end(), actions.begin(), actions.end());
  std::stable_sort(s.actions.begin(), s.actions.end(),
                   [](const sim::FaultAction& x, const sim::FaultAction& y) {
                     return x.at_ms < y.at_ms;
                   });
  return s;
}

sim::ScenarioResult RunGossip(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                              const GossipScenarioConfig& config, GossipMetrics* metrics) {
  GossipRun run(schedule, config, options);
  return run.Run(metrics);
}

sim::Scenario MakeGossipScenario(std::string name, std::string description,
                                 GossipScenarioConfig config) {
  sim::Scenario s;
  s.name = name;
  s.description = std::move(description);
  s.generate = [name, config](uint64_t seed) { return GenerateGossip(name, seed, config); };
  s.run = [config](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    return RunGossip(schedule, options, config, nullptr);
  };
  return s;
}

}  // namespace e2d::scenarios
