// Copyright e2d authors.
//
// majority_loss: a self-managed cluster (3 or 5 members, gossip bootstrap) loses the disks of a
// majority of its voters at once, after a phase of swarm faults. Quorum can never come back.
// The lost machines come back empty some seconds later, as replacement machines would, and
// the survivors recover by themselves (node/recovery.h):
//  - the survivors agree on the one with the most data, which starts the cluster again alone
//    from its own log under a new cluster id (raft force_new_cluster);
//  - the other survivors step aside (their disks are set aside; here: replaced by empty ones)
//    and join it like the replacement machines, through learners.
// A member removed during the fault phase (down for the health timeout) steps aside and joins
// again once it is back. In half the runs of five, one survivor is cut off just before the
// loss, so that it holds less than the other. In half the runs a survivor crashes and restarts
// during the recovery (maybe mid-force).
// In half the runs the leader writes a backup every second to a store that outlives the
// machines (plain, gzip or encrypted); in half of those every survivor is cut off for 3 to 6 s
// just before the loss, so that the newest backup holds more than any survivor. The chosen
// survivor then restores that backup instead of forcing: it sets its data aside and starts the
// cluster again alone from the backup (node::RecoveryDecision::kRestore); the rest is as above.
// A client writes unique keys through whoever leads, before and after.
//
// Oracles:
//  - one recovery: exactly one survivor forces or restores, once; no other cluster id is ever
//    forced; a restore opens at its backup's revision;
//  - the most data: the revision R the cluster recovers at is at least every other survivor's,
//    and at least the newest backup's of the lost cluster;
//  - exactly the writes after R are missing: every write acknowledged by the lost cluster at a
//    revision up to R reads back with its value, none acknowledged after R does;
//  - revisions never go backwards: the first write after the recovery is at R + 1, and every
//    write acknowledged by the recovered cluster reads back, at a revision above R;
//  - linearizable writes: no two writes acknowledged by the same cluster share a revision;
//  - convergence: within 180 s of the loss the recovered cluster has all its voters again,
//    each a running node that applied the same membership.

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "node/backup.h"
#include "node/backup_store.h"
#include "node/bootstrap.h"
#include "node/node.h"
#include "scenarios/node_harness.h"
#include "scenarios/registry.h"
#include "sim/cluster.h"
#include "sim/swarm.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kFaultsMs = 20'000;
constexpr int64_t kFormMs = 60'000;       // after the heal: the cluster must have formed
constexpr int64_t kConvergeMs = 180'000;  // after the loss
// Shorter than some outages of the fault phase: a member cut off that long is removed, told so
// by the leader once it is back, steps aside and joins again (the cluster has no spare machine).
constexpr absl::Duration kHealthTimeout = absl::Seconds(10);


// The cluster size a seed runs: 3 or 5 (-n, and as many machines).
int SizeFor(uint64_t seed) {
  env::Random random = env::Random(seed).Fork("majority-size");
  return random.Uniform(2) == 0 ? 3 : 5;
}

class Run;

// One machine as `e2d run -n N --bootstrap-addrs ...` runs it, with recovery on.
class MemberProcess final : public sim::Process {
 public:
  MemberProcess(Run& run, sim::Cluster& cluster, env::Env& env, NodeId n, kv::KvEngine* engine);
  ~MemberProcess() override {
    *alive_ = false;
    node_.reset();  // before the gossip it is attached to
    boot_.reset();
  }
  node::Node* node() { return node_.get(); }
  std::string why() const { return boot_ ? boot_->why() : ""; }

 private:
  // `restore`: the backup a recovery restores (the node starts its cluster alone from it).
  void OpenNode(std::optional<node::NodeConfig::Restore> restore = std::nullopt);
  void OnRecovery(const node::RecoveryDecision& d);

  Run& run_;
  env::Env& env_;
  NodeId n_;
  kv::KvEngine* engine_;
  MachineGossip gossip_;
  std::unique_ptr<node::Bootstrapper> boot_;
  std::optional<node::BootstrapSet> set_;
  std::unique_ptr<node::Node> node_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
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
    size_ = SizeFor(schedule.seed);
    env::Random random = env::Random(schedule.seed).Fork("majority-backups");
    backups_ = random.Uniform(2) == 0;
    backup_mode_ = static_cast<int>(random.Uniform(3));
    behind_ = backups_ && random.Uniform(2) == 0;
    if (backup_mode_ == 2) backup_keys_ = *node::DeriveBackupKeys("simulated cluster CA key");
  }

  const gossip::Key& key() const { return key_; }
  int size() const { return size_; }
  // The backups the members write, as NodeConfig wants them (off: no store).
  node::BackupConfig BackupsFor(env::Env& env) {
    node::BackupConfig b;
    if (!backups_) return b;
    b.store = &store_;
    b.interval = absl::Seconds(1);
    b.keep = 3;
    b.gzip = backup_mode_ == 1;
    b.keys = backup_keys_;
    b.iv = [&env] {
      std::array<uint8_t, node::kBackupIvSize> iv;
      for (uint8_t& byte : iv) byte = static_cast<uint8_t>(env.random().Next());
      return iv;
    };
    b.unix_seconds = [&env] {
      return static_cast<uint64_t>(env.clock().Now().ns / 1'000'000'000);
    };
    return b;
  }
  // A restore machine n was asked for and has not opened yet. It outlives the machine's crashes
  // and its disk (the runtime keeps it in a file beside the member's data, not set aside).
  struct PendingRestore {
    std::string backup;
    uint64_t recovers = 0;
  };
  std::optional<PendingRestore> pending_restore(NodeId n) const {
    auto it = pending_restores_.find(n);
    if (it == pending_restores_.end()) return std::nullopt;
    return it->second;
  }
  // Reads the backup a pending restore names, as the runtime does when it starts.
  absl::StatusOr<node::NodeConfig::Restore> LoadRestore(const PendingRestore& p) {
    absl::StatusOr<std::string> bytes = store_.Get(p.backup);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<node::LoadedBackup> b = node::DecodeBackup(p.backup, *bytes, backup_keys_);
    if (!b.ok()) return b.status();
    return node::NodeConfig::Restore{b->name, std::move(b->store), p.recovers};
  }
  // Machine n opened the restore: it is no longer pending; it must be at the backup's revision.
  void OnRestored(NodeId n, node::Node* node) {
    pending_restores_.erase(n);
    if (!forced_.has_value() || forced_->first != n) {
      return Fail(absl::StrCat("one recovery: m", n, " restored a backup it was not asked to"));
    }
    if (node->kv().store().revision() != forced_->second) {
      Fail(absl::StrCat("one recovery: m", n, " restored at revision ",
                        node->kv().store().revision(), ", not its backup's ", forced_->second));
    }
  }
  void Fail(std::string what) {
    if (failure_.empty()) failure_ = absl::StrFormat("t=%.3fs %s", sim_.now_ns() / 1e9, what);
  }

  // Machine n's survivor forces a new cluster from its data, at its revision.
  void OnForce(NodeId n, uint64_t from_cluster, int64_t revision) {
    cluster_.Log(n, absl::StrCat("scenario: m", n, " forces a new cluster from ",
                                 absl::Hex(from_cluster), " at revision ", revision));
    if (forced_.has_value() && forced_->first != n) {
      return Fail(
          absl::StrCat("one recovery: m", n, " forces after m", forced_->first, " already did"));
    }
    if (!forced_.has_value()) forced_ = std::make_pair(n, revision);
    if (from_cluster != first_cluster_) {
      Fail(absl::StrCat("one recovery: m", n, " forces from cluster ", absl::Hex(from_cluster),
                        ", not the lost one ", absl::Hex(first_cluster_)));
    }
  }
  // Machine n's survivor restores `backup` instead, after its own data at `revision`: its data
  // is set aside (its disk replaced) and it opens the backup alone once it starts again.
  void OnRestore(NodeId n, uint64_t from_cluster, int64_t revision, const std::string& backup) {
    uint64_t backup_cluster = 0, backup_revision = 0;
    if (!node::ParseBackupName(backup, &backup_cluster, &backup_revision)) {
      return Fail(absl::StrCat("m", n, " restores ", backup, ", not a backup's name"));
    }
    cluster_.Log(n, absl::StrCat("scenario: m", n, " restores ", backup, " (its data at revision ",
                                 revision, ")"));
    ++restores_;
    aside_revisions_[n] = std::max(aside_revisions_[n], revision);
    if (backup_cluster != from_cluster) {
      Fail(absl::StrCat("one recovery: m", n, " restores ", backup, " of another cluster than ",
                        absl::Hex(from_cluster)));
    }
    OnForce(n, from_cluster, static_cast<int64_t>(backup_revision));
    pending_restores_[n] = PendingRestore{backup, from_cluster};
    sim_.Schedule(sim_.now_ns(), sim::kNoNode, "restore-set-aside", 0, [this, n] {
      // Down meanwhile: the runtime sets the data aside when it starts again; here the disk is
      // replaced now, and the machine's pending restart brings it back.
      const bool up = cluster_.up(n);
      cluster_.Lose(n);
      if (up) cluster_.Restart(n);
    });
  }
  // Machine n steps aside: a survivor, its data at `revision`, or a member removed (-1).
  void OnStepAside(NodeId n, int64_t revision) {
    cluster_.Log(n, absl::StrCat("scenario: m", n, " steps aside at revision ", revision));
    if (revision >= 0) {
      aside_revisions_[n] = std::max(aside_revisions_[n], revision);
    } else {
      ++removed_;
    }
    sim_.Schedule(sim_.now_ns(), sim::kNoNode, "step-aside", 0, [this, n] {
      if (!cluster_.up(n)) return;  // crashed meanwhile: it comes back and decides again
      cluster_.Lose(n);
      cluster_.Restart(n);
    });
  }
  // A node opened on machine n.
  void OnOpened(NodeId, node::Node* node) {
    if (first_cluster_ == 0) first_cluster_ = node->cluster_id();
  }

  sim::ScenarioResult Go() {
    for (int i = 1; i <= size_; ++i) cluster_.AddNode(MemberOf(i).peer_address);
    sim::ScheduleFaults(schedule_, cluster_, [this](const std::string& why) { Fail(why); });
    ScheduleClient();
    sim_.RunUntilTrue([&] { return !failure_.empty(); }, kFaultsMs * kMs);
    if (failure_.empty()) {
      cluster_.Log(sim::kNoNode, "healing every fault");
      sim::HealEverything(cluster_, [](NodeId) { return false; });
      if (!sim_.RunUntilTrue([&] { return !failure_.empty() || Converged(); },
                             sim_.now_ns() + kFormMs * kMs) &&
          failure_.empty()) {
        Fail(absl::StrCat("the cluster did not form within ", kFormMs,
                          " ms of the heal: ", Describe()));
      }
    }
    if (failure_.empty()) {
      // The loss comes 0 to 5 s after the cluster formed (a lagging survivor is part of it).
      env::Random random = env::Random(schedule_.seed).Fork("majority-loss-at");
      sim_.RunUntilTrue([&] { return !failure_.empty(); },
                        sim_.now_ns() + random.Range(0, 5'000) * kMs);
    }
    if (failure_.empty()) LoseMajority();
    if (failure_.empty()) {
      const int64_t loss_ns = sim_.now_ns();
      const bool ok = sim_.RunUntilTrue(
          [&] { return !failure_.empty() || (forced_.has_value() && Converged()); },
          loss_ns + kConvergeMs * kMs);
      if (!ok && failure_.empty()) {
        Fail(absl::StrCat("convergence: ", forced_.has_value() ? "" : "no survivor forced; ",
                          "not ", size_, " voters of one recovered cluster ", kConvergeMs,
                          " ms after the loss: ", Describe()));
      }
    }
    if (failure_.empty()) CheckData();
    sim::ScenarioResult r;
    r.pass = failure_.empty();
    r.failure = failure_;
    r.digest = sim_.digest();
    r.events = sim_.events_run();
    r.end_ns = sim_.now_ns();
    r.summary = absl::StrFormat(
        "size=%d survivors=%d recovered_revision=%d acked_before=%d acked_after=%d "
        "lagging=%d survivor_crash=%d removed=%d backups=%s behind=%d restored=%d "
        "newest_backup_revision=%d",
        size_, size_ - static_cast<int>(lost_.size()),
        forced_.has_value() ? static_cast<int>(forced_->second) : -1, Acked(first_cluster_),
        static_cast<int>(acked_.size()) - Acked(first_cluster_), lagging_ == sim::kNoNode ? 0 : 1,
        survivor_crash_ ? 1 : 0, removed_,
        !backups_ ? "off" : backup_mode_ == 0 ? "plain" : backup_mode_ == 1 ? "gzip" : "encrypted",
        behind_ ? 1 : 0, restores_, static_cast<int>(newest_backup_revision_));
    if (!r.pass) r.log_tail = absl::StrJoin(cluster_.log_tail(), "\n");
    return r;
  }

 private:
  struct Ack {
    std::string value;
    int64_t revision = 0;
    uint64_t cluster = 0;
  };

  kv::KvEngine* Engine(NodeId n) { return disks_.Engine(n, cluster_.losses(n)); }
  node::Node* NodeAt(NodeId n) {
    auto* p = static_cast<MemberProcess*>(cluster_.process(n));
    return p == nullptr ? nullptr : p->node();
  }
  NodeId Leader() {
    return FindLeader(cluster_, [this](NodeId n) { return NodeAt(n); });
  }
  int Acked(uint64_t cluster) const {
    int k = 0;
    for (const auto& [key, a] : acked_) k += a.cluster == cluster ? 1 : 0;
    return k;
  }

  // The disks of a majority of the voters, lost at once; each machine comes back empty after
  // 1 to 30 s. In half the runs of five, one survivor is cut off for 3 to 6 s first (the loss
  // comes as it heals), so that the survivors hold different data and the choice matters. In
  // half the runs, a survivor crashes during the recovery and restarts.
  void LoseMajority() {
    env::Random random = env::Random(schedule_.seed).Fork("majority-loss");
    std::vector<NodeId> machines = cluster_.nodes();
    for (size_t i = machines.size(); i > 1; --i) {
      std::swap(machines[i - 1], machines[random.Uniform(i)]);
    }
    const int lose = size_ / 2 + 1;
    const std::vector<NodeId> survivors(machines.begin() + lose, machines.end());
    if (behind_) {
      // The majority goes on writing (and backing up) without any survivor.
      for (NodeId n : survivors) {
        cluster_.Log(sim::kNoNode, absl::StrCat("cutting m", n, " off before the loss"));
        cluster_.network().Isolate(n);
      }
      sim_.RunUntilTrue([&] { return !failure_.empty(); },
                        sim_.now_ns() + random.Range(3'000, 6'000) * kMs);
      cluster_.network().Heal();
    } else if (survivors.size() > 1 && random.Uniform(2) == 0) {
      lagging_ = survivors.front();
      cluster_.Log(sim::kNoNode, absl::StrCat("cutting m", lagging_, " off before the loss"));
      cluster_.network().Isolate(lagging_);
      sim_.RunUntilTrue([&] { return !failure_.empty(); },
                        sim_.now_ns() + random.Range(3'000, 6'000) * kMs);
      cluster_.network().Heal();
    }
    for (int i = 0; i < lose; ++i) {
      const NodeId n = machines[i];
      lost_.insert(n);
      cluster_.Log(sim::kNoNode, absl::StrCat("losing the disk of m", n, " for good"));
      cluster_.Lose(n);
      sim_.Schedule(sim_.now_ns() + random.Range(1'000, 30'000) * kMs, sim::kNoNode, "replace", 0,
                    [this, n] {
                      if (!cluster_.up(n)) cluster_.Restart(n);
                    });
    }
    if (random.Uniform(2) == 0) {
      survivor_crash_ = true;
      const NodeId n = survivors[random.Uniform(survivors.size())];
      const int64_t at = sim_.now_ns() + random.Range(8'000, 30'000) * kMs;
      const int64_t back = at + random.Range(500, 5'000) * kMs;
      sim_.Schedule(at, sim::kNoNode, "survivor-crash", 0, [this, n] {
        if (cluster_.up(n)) cluster_.Crash(n);
      });
      sim_.Schedule(back, sim::kNoNode, "survivor-restart", 0, [this, n] {
        if (!cluster_.up(n)) cluster_.Restart(n);
      });
    }
  }

  // One write in flight at a time, every 200 ms, through whoever leads; a write unanswered
  // for 10 s is given up (not acknowledged) and the next one goes.
  void ScheduleClient() {
    sim_.Schedule(sim_.now_ns() + 200 * kMs, sim::kNoNode, "client", 0, [this] {
      if (in_flight_ && sim_.now_ns() - in_flight_since_ > 10'000 * kMs) in_flight_ = false;
      const NodeId l = in_flight_ ? sim::kNoNode : Leader();
      if (l != sim::kNoNode) {
        in_flight_ = true;
        in_flight_since_ = sim_.now_ns();
        const uint64_t generation = ++generation_;
        const std::string key = absl::StrCat("k", next_key_), value = absl::StrCat("v", next_key_);
        ++next_key_;
        const uint64_t cluster = NodeAt(l)->cluster_id();
        etcdserverpb::PutRequest put;
        put.set_key(key);
        put.set_value(value);
        NodeAt(l)->kv().Put(put, [this, key, value, generation,
                                  cluster](absl::StatusOr<etcdserverpb::PutResponse> r) {
          if (generation == generation_) in_flight_ = false;
          if (!r.ok()) return;
          const int64_t revision = r->header().revision();
          auto [it, fresh] = revisions_.try_emplace({cluster, revision}, key);
          if (!fresh) {
            return Fail(absl::StrCat("linearizability: ", key, " and ", it->second,
                                     " were both acknowledged by cluster ", absl::Hex(cluster),
                                     " at revision ", revision));
          }
          acked_[key] = Ack{value, revision, cluster};
        });
      }
      ScheduleClient();
    });
  }

  bool Converged() {
    return ClusterConverged(
        cluster_, [this](NodeId n) { return NodeAt(n); }, size_);
  }

  void CheckData() {
    const int64_t recovered = forced_->second;
    for (const auto& [n, revision] : aside_revisions_) {
      if (revision > recovered) {
        return Fail(absl::StrCat("the most data: m", n, " stepped aside at revision ", revision,
                                 ", above the recovered revision ", recovered, " of m",
                                 forced_->first));
      }
    }
    if (backups_) {
      absl::StatusOr<node::LoadedBackup> newest = node::NewestBackupOf(
          store_, backup_keys_, first_cluster_,
          [this](const std::string& name, const absl::Status& why) {
            Fail(absl::StrCat("backup ", name, " does not check out: ", why.ToString()));
          });
      if (newest.ok()) {
        newest_backup_revision_ = newest->meta.revision;
        if (static_cast<int64_t>(newest->meta.revision) > recovered) {
          return Fail(absl::StrCat("the most data: the newest backup of the lost cluster, ",
                                   newest->name, ", holds revision ", newest->meta.revision,
                                   ", above the recovered revision ", recovered, " of m",
                                   forced_->first));
        }
      } else if (newest.status().code() != absl::StatusCode::kNotFound) {
        return Fail(absl::StrCat("reading the backups: ", newest.status().ToString()));
      }
    }
    etcdserverpb::RangeRequest range;
    range.set_key("k");
    range.set_range_end("l");
    const std::optional<absl::StatusOr<etcdserverpb::RangeResponse>> got = ReadThroughLeader(
        sim_, [this] { return Leader(); }, [this](NodeId n) { return NodeAt(n); }, range,
        30'000 * kMs);
    if (!got.has_value() || !got->ok()) {
      return Fail(absl::StrCat("the final read failed: ",
                               got.has_value() ? got->status().ToString() : "no answer"));
    }
    absl::btree_map<std::string, std::pair<std::string, int64_t>> have;
    int64_t first_after = 0;
    for (const auto& kv : (*got)->kvs()) {
      have[kv.key()] = {kv.value(), kv.mod_revision()};
      if (kv.mod_revision() > recovered && (first_after == 0 || kv.mod_revision() < first_after)) {
        first_after = kv.mod_revision();
      }
    }
    for (const auto& [key, a] : acked_) {
      auto it = have.find(key);
      const bool kept = a.cluster != first_cluster_ || a.revision <= recovered;
      if (kept && (it == have.end() || it->second.first != a.value)) {
        return Fail(absl::StrCat("exactly the writes after R missing: ", key, "=", a.value,
                                 " acknowledged by cluster ", absl::Hex(a.cluster), " at revision ",
                                 a.revision, " (R = ", recovered, ") reads back as ",
                                 it == have.end() ? "nothing" : it->second.first));
      }
      if (!kept && it != have.end()) {
        return Fail(absl::StrCat("exactly the writes after R missing: ", key,
                                 " was acknowledged by the lost cluster at revision ", a.revision,
                                 ", after R = ", recovered, ", yet reads back"));
      }
      if (a.cluster != first_cluster_ && a.revision <= recovered) {
        return Fail(absl::StrCat("revisions never go backwards: ", key,
                                 " was acknowledged by the recovered cluster at revision ",
                                 a.revision, ", not above R = ", recovered));
      }
    }
    if (first_after != 0 && first_after != recovered + 1) {
      Fail(
          absl::StrCat("revisions never go backwards: the first write after the recovery is at "
                       "revision ",
                       first_after, ", not R + 1 = ", recovered + 1));
    }
  }

  std::string Describe() {
    return DescribeMachines(
        cluster_, [this](NodeId n) { return NodeAt(n); },
        [this](NodeId n) { return static_cast<MemberProcess*>(cluster_.process(n))->why(); });
  }

  const sim::FaultSchedule& schedule_;
  sim::Simulator sim_;
  gossip::Key key_;
  int size_ = 3;
  MachineDisks disks_;  // before cluster_: the machines' processes use them until it goes
  node::MemBackupStore store_;  // the same
  std::optional<node::BackupKeys> backup_keys_;
  sim::Cluster cluster_;
  std::string failure_;
  uint64_t first_cluster_ = 0;
  absl::btree_set<NodeId> lost_;
  bool survivor_crash_ = false;
  int removed_ = 0;  // members that stepped aside because they were removed
  bool backups_ = false;
  int backup_mode_ = 0;  // plain, gzip, encrypted
  bool behind_ = false;  // every survivor cut off before the loss: the backups hold more
  absl::btree_map<NodeId, PendingRestore> pending_restores_;
  int restores_ = 0;
  uint64_t newest_backup_revision_ = 0;
  NodeId lagging_ = sim::kNoNode;
  std::optional<std::pair<NodeId, int64_t>> forced_;  // machine, recovered revision
  absl::btree_map<NodeId, int64_t> aside_revisions_;
  bool in_flight_ = false;
  int64_t in_flight_since_ = 0;
  uint64_t generation_ = 0;
  uint64_t next_key_ = 0;
  absl::btree_map<std::pair<uint64_t, int64_t>, std::string> revisions_;
  absl::btree_map<std::string, Ack> acked_;
};

MemberProcess::MemberProcess(Run& run, sim::Cluster& cluster, env::Env& env, NodeId n,
                             kv::KvEngine* engine)
    : run_(run), env_(env), n_(n), engine_(engine) {
  gossip_ = StartMachineGossip(cluster, env, n, run.key(), run.size());
  if (std::optional<Run::PendingRestore> p = run.pending_restore(n); p.has_value()) {
    // A recovery's restore: the cluster starts alone from the backup, recorded as bootstrapped
    // (later starts restart in it), then opened restoring it.
    absl::StatusOr<node::NodeConfig::Restore> restore = run.LoadRestore(*p);
    if (!restore.ok()) {
      run.Fail(absl::StrCat("m", n, ": ", restore.status().ToString()));
      return;
    }
    node::Bootstrapper::Record record;
    record.committed = true;
    record.ack.epoch = 1;
    record.ack.set = node::MakeBootstrapSet({MemberOf(n)}, p->backup);
    set_ = record.ack.set;
    node::Bootstrapper::WriteRecord(
        env, record, [this, alive = alive_, restore = *std::move(restore)](absl::Status s) {
          if (!*alive) return;
          if (!s.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", s.ToString()));
          OpenNode(restore);
        });
    return;
  }
  node::BootstrapperConfig bc;
  bc.required_size = run.size();
  bc.self = MemberOf(n);
  bc.join_running = true;
  boot_ = std::make_unique<node::Bootstrapper>(
      env, gossip_.node.get(), bc, [this](absl::StatusOr<node::BootstrapSet> set) {
        if (!set.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", set.status().ToString()));
        set_ = *set;
        OpenNode();
      });
  boot_->Start();
}

void MemberProcess::OpenNode(std::optional<node::NodeConfig::Restore> restore) {
  node::NodeConfig c;
  c.name = MemberOf(n_).name;
  c.restore = std::move(restore);
  c.backup = run_.BackupsFor(env_);
  c.initial_cluster = set_->members;
  if (set_->join) {
    c.join = true;
    c.member_id = set_->join_id;
    c.initial_cluster.push_back(MemberOf(n_));
  }
  c.manage.enabled = true;
  c.manage.required_size = run_.size();
  c.manage.interval = absl::Milliseconds(500);
  c.manage.health_timeout = kHealthTimeout;
  c.manage.on_recovery = [this](const node::RecoveryDecision& d) { OnRecovery(d); };
  absl::StatusOr<std::unique_ptr<node::Node>> node = node::Node::Open(env_, engine_, c);
  if (!node.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", node.status().ToString()));
  node_ = std::move(*node);
  node_->AttachGossip(gossip_.node.get());
  run_.OnOpened(n_, node_.get());
  if (c.restore.has_value()) run_.OnRestored(n_, node_.get());
}

// As the runtime does: a force closes the node, records the forced start, and opens it again
// on the same data; a step aside hands the machine to a fresh disk (the runtime moves the data
// directory aside) and starts it again as a new node; a restore does the same, and the new
// node opens the backup.
void MemberProcess::OnRecovery(const node::RecoveryDecision& d) {
  const int64_t revision = node_->kv().store().revision();
  if (d.kind == node::RecoveryDecision::Kind::kStepAside) {
    return run_.OnStepAside(n_, d.best != 0 ? revision : -1);  // -1: removed, not a survivor
  }
  if (d.kind == node::RecoveryDecision::Kind::kRestore) {
    return run_.OnRestore(n_, node_->cluster_id(), revision, d.backup);
  }
  run_.OnForce(n_, node_->cluster_id(), revision);
  node_.reset();
  node::Node::PrepareRecovery(env_, [this, alive = alive_](absl::Status s) {
    if (!*alive) return;
    if (!s.ok()) return run_.Fail(absl::StrCat("m", n_, ": ", s.ToString()));
    OpenNode();
  });
}

}  // namespace

sim::Scenario MajorityLoss() {
  sim::Scenario s;
  s.name = "majority_loss";
  s.description =
      "3 or 5 members lose a majority's disks at once: the survivors agree on the one with the "
      "most data, it starts again alone, the others and replacements join; exactly the writes "
      "after the recovered revision are missing";
  s.generate = [name = s.name](uint64_t seed) {
    sim::SwarmOptions o;
    o.nodes = SizeFor(seed);
    o.duration_ms = kFaultsMs;
    o.lose = false;
    o.disk_errors = false;
    o.down_max = 1;
    o.target_leader = true;
    sim::FaultSchedule schedule = sim::GenerateSwarm(name, seed, o);
    schedule.duration_ms = kFaultsMs;
    return schedule;
  };
  s.run = [](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    Run run(schedule, options);
    return run.Go();
  };
  return s;
}

}  // namespace e2d::scenarios
