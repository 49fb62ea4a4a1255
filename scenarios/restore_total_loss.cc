// Copyright e2d authors.
//
// restore_total_loss: a cluster lost whole, started again from its backups.
//
// Three members (a static cluster) take writes under swarm faults (network, partitions,
// crashes, pauses, disks, clocks; no lost disk) while the leader writes a backup every second
// to a store that outlives the machines: plain, gzip or encrypted, by seed, keeping 1 to 4.
// Then every disk is lost at once. Before the new cluster starts, the store is damaged the way
// an operator may find it: backups named newer than the newest real one that are tampered
// with, torn (cut short), made under another CA's key, or misnamed (another revision's
// content); and, in a third of the runs, the newest real backup itself is tampered with. Each
// new member takes the newest backup that checks out (node::NewestBackup, what `e2d run
// --restore-backup latest` does), and the new cluster takes writes; halfway, every member is
// restarted at once (with the restore still configured, as in a unit file).
//
// Oracles:
//  - choice: every member restores the newest undamaged backup, and refused every damaged one
//    named newer than it;
//  - restored revision: each member opens at that backup's revision R; the new cluster's first
//    write is at R + 1 (the lowest revision of a key written after the restore); all members
//    share one cluster id, not the lost cluster's; a mass restart restores nothing again;
//  - exactly the writes after R are missing: every write acknowledged before the loss at a
//    revision <= R reads back with its value, and none acknowledged at a revision > R reads
//    back at all;
//  - linearizable writes before and after the loss (no two acknowledged at one revision), and
//    every write acknowledged after the restore reads back.

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
#include "kv/mem_engine.h"
#include "node/backup.h"
#include "node/backup_store.h"
#include "node/node.h"
#include "scenarios/node_harness.h"
#include "scenarios/registry.h"
#include "sim/cluster.h"
#include "sim/swarm.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;

constexpr int kMembers = 3;
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kFaultsMs = 30'000;       // before the loss
constexpr int64_t kBackupWaitMs = 30'000;   // after the heal, for a backup to exist
constexpr int64_t kAfterRestoreMs = 30'000;  // the new cluster's run


struct Acked {
  std::string value;
  int64_t revision = 0;
};

class Run;

class MemberProcess final : public sim::Process {
 public:
  MemberProcess(Run& run, env::Env& env, NodeId n, kv::KvEngine* engine);
  node::Node* node() { return node_.get(); }

 private:
  std::unique_ptr<node::Node> node_;
};

class Run {
 public:
  Run(const sim::FaultSchedule& schedule, const sim::RunOptions& options)
      : schedule_(schedule),
        sim_(schedule.seed),
        cluster_(sim_, [this](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
          return std::make_unique<MemberProcess>(*this, env, n, Engine(n));
        }) {
    sim_.set_trace(options.trace);
    cluster_.set_echo_log(options.echo_log);
    cluster_.set_leader_finder([this] { return Leader(); });
    env::Random random = env::Random(schedule.seed).Fork("restore-setup");
    mode_ = static_cast<int>(random.Uniform(3));
    keep_ = 1 + static_cast<int>(random.Uniform(4));
    if (mode_ == 2) keys_ = *node::DeriveBackupKeys("simulated cluster CA key");
  }

  void Fail(std::string what) {
    if (failure_.empty()) failure_ = absl::StrFormat("t=%.3fs %s", sim_.now_ns() / 1e9, what);
  }

  // What `e2d run` opens on machine n: a member of the static cluster, backups on; after the
  // loss, with --restore-backup latest (read only when the machine holds no member yet).
  absl::StatusOr<std::unique_ptr<node::Node>> Open(env::Env& env, NodeId n,
                                                   kv::KvEngine* engine) {
    node::NodeConfig c;
    c.name = MemberOf(n).name;
    for (int i = 1; i <= kMembers; ++i) c.initial_cluster.push_back(MemberOf(i));
    c.backup.store = &store_;
    c.backup.interval = absl::Seconds(1);
    c.backup.keep = keep_;
    c.backup.gzip = mode_ == 1;
    c.backup.keys = keys_;
    c.backup.iv = [&env] {
      std::array<uint8_t, node::kBackupIvSize> iv;
      for (uint8_t& b : iv) b = static_cast<uint8_t>(env.random().Next());
      return iv;
    };
    c.backup.unix_seconds = [&env] {
      return static_cast<uint64_t>(env.clock().Now().ns / 1'000'000'000);
    };
    bool restoring = false;
    if (restore_phase_) {
      absl::StatusOr<bool> has = node::Node::HasIdentity(env.fs());
      if (!has.ok()) return has.status();
      if (!*has) {
        absl::btree_set<std::string> refused;
        absl::StatusOr<node::LoadedBackup> b = node::NewestBackup(
            store_, keys_,
            [&refused](const std::string& name, const absl::Status&) { refused.insert(name); });
        if (!b.ok()) {
          Fail(absl::StrCat("choice: m", n, " found no backup to restore: ",
                            b.status().ToString()));
          return b.status();
        }
        if (b->name != expected_) {
          Fail(absl::StrCat("choice: m", n, " restores ", b->name, ", not ", expected_));
        }
        for (const std::string& d : damaged_newer_) {
          if (!refused.contains(d)) Fail(absl::StrCat("choice: m", n, " did not refuse ", d));
        }
        c.restore = node::NodeConfig::Restore{b->name, std::move(b->store)};
        restoring = true;
      }
    }
    absl::StatusOr<std::unique_ptr<node::Node>> node = node::Node::Open(env, engine, c);
    if (node.ok() && restoring) {
      ++restores_;
      const int64_t at = (*node)->kv().store().revision();
      if (at != expected_revision_) {
        Fail(absl::StrCat("restored revision: m", n, " opens at revision ", at, ", not ",
                          expected_revision_));
      }
    }
    return node;
  }

  sim::ScenarioResult Go() {
    for (int i = 1; i <= kMembers; ++i) cluster_.AddNode(MemberOf(i).peer_address);
    sim::ScheduleFaults(schedule_, cluster_, [this](const std::string& why) { Fail(why); });
    ScheduleClient();
    const int64_t heal_ns = kFaultsMs * kMs;
    sim_.RunUntilTrue([&] { return !failure_.empty(); }, heal_ns);
    if (failure_.empty()) {
      cluster_.Log(sim::kNoNode, "healing every fault");
      sim::HealEverything(cluster_, [](NodeId) { return false; });
      const bool backed_up = sim_.RunUntilTrue(
          [&] { return !failure_.empty() || !store_.List()->empty(); },
          heal_ns + kBackupWaitMs * kMs);
      if (!backed_up && failure_.empty()) {
        Fail(absl::StrCat("no backup ", kBackupWaitMs, " ms after the heal"));
      }
    }
    if (failure_.empty()) {
      // A little more writing, some of it after the last backup: lost with the disks.
      env::Random random = env::Random(schedule_.seed).Fork("restore-loss");
      sim_.RunUntil(sim_.now_ns() + random.Range(0, 3'000) * kMs);
      LoseEverything();
    }
    if (failure_.empty()) {
      restore_phase_ = true;
      ++generation_;  // a write in flight to a lost machine is never acknowledged
      in_flight_ = false;
      for (NodeId n : cluster_.nodes()) cluster_.Restart(n);
      const int64_t start = sim_.now_ns();
      // Every member restarted at once, halfway: the data directory wins over the restore.
      env::Random random = env::Random(schedule_.seed).Fork("restore-mass-restart");
      sim_.RunUntilTrue([&] { return !failure_.empty(); },
                        start + random.Range(5'000, 15'000) * kMs);
      if (failure_.empty()) {
        cluster_.Log(sim::kNoNode, "restarting every member at once");
        for (NodeId n : cluster_.nodes()) cluster_.Crash(n);
        sim_.RunUntil(sim_.now_ns() + random.Range(100, 3'000) * kMs);
        for (NodeId n : cluster_.nodes()) cluster_.Restart(n);
      }
      sim_.RunUntilTrue([&] { return !failure_.empty(); }, start + kAfterRestoreMs * kMs);
    }
    if (failure_.empty() && restores_ != kMembers) {
      Fail(absl::StrCat("restored revision: ", restores_, " restores, not one per member"));
    }
    if (failure_.empty()) CheckClusterIds();
    if (failure_.empty()) CheckData();
    sim::ScenarioResult r;
    r.pass = failure_.empty();
    r.failure = failure_;
    r.digest = sim_.digest();
    r.events = sim_.events_run();
    r.end_ns = sim_.now_ns();
    r.summary = absl::StrFormat(
        "mode=%s keep=%d backups=%d damaged=%d restored_revision=%d acked_before=%d "
        "acked_after=%d lost=%d",
        mode_ == 0 ? "plain" : mode_ == 1 ? "gzip" : "encrypted", keep_, backups_at_loss_,
        damaged_, static_cast<int>(expected_revision_), static_cast<int>(acked_[0].size()),
        static_cast<int>(acked_[1].size()), lost_);
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

  // Every disk lost at once; then the store damaged, and the backup to expect worked out.
  void LoseEverything() {
    for (NodeId n : cluster_.nodes()) {
      if (NodeAt(n) != nullptr && lost_cluster_ == 0) lost_cluster_ = NodeAt(n)->cluster_id();
    }
    cluster_.Log(sim::kNoNode, "losing every disk");
    for (NodeId n : cluster_.nodes()) cluster_.Lose(n);
    std::vector<std::pair<uint64_t, std::string>> real;  // (revision, name)
    const std::vector<std::string> names = *store_.List();
    for (const std::string& name : names) {
      uint64_t cluster = 0, revision = 0;
      E2D_CHECK(node::ParseBackupName(name, &cluster, &revision), "odd backup name %s",
                name.c_str());
      real.emplace_back(revision, name);
    }
    std::sort(real.begin(), real.end());
    backups_at_loss_ = static_cast<int>(real.size());
    E2D_CHECK(!real.empty(), "the loss comes after a backup exists");
    const auto [newest_revision, newest] = real.back();
    const std::string newest_bytes = *store_.Get(newest);
    env::Random random = env::Random(schedule_.seed).Fork("restore-damage");
    // Backups named newer than any real one, each damaged one way.
    const int fakes = static_cast<int>(random.Uniform(4));
    for (int i = 0; i < fakes; ++i) {
      const uint64_t revision = newest_revision + 1 + static_cast<uint64_t>(i);
      const std::string name = node::BackupName(lost_cluster_, revision);
      std::string bytes;
      switch (random.Uniform(4)) {
        case 0:  // tampered
          bytes = newest_bytes;
          bytes[random.Uniform(bytes.size())] ^= static_cast<char>(1 + random.Uniform(255));
          break;
        case 1:  // torn
          bytes = newest_bytes.substr(0, random.Uniform(newest_bytes.size()));
          break;
        case 2:  // another CA's key, with this revision in it
          bytes = Reencoded(newest, newest_bytes, revision, random);
          break;
        default:  // misnamed: another revision's content
          bytes = newest_bytes;
          break;
      }
      E2D_CHECK(store_.Put(name, bytes).ok(), "the mem store takes every put");
      damaged_newer_.insert(name);
      ++damaged_;
    }
    // A third of the time the newest real backup is damaged too (if an older one is left).
    size_t good = real.size() - 1;
    if (real.size() >= 2 && random.Uniform(3) == 0) {
      std::string bytes = newest_bytes;
      bytes[random.Uniform(bytes.size())] ^= static_cast<char>(1 + random.Uniform(255));
      E2D_CHECK(store_.Put(newest, bytes).ok(), "the mem store takes every put");
      damaged_newer_.insert(newest);
      ++damaged_;
      good = real.size() - 2;
    }
    expected_ = real[good].second;
    expected_revision_ = static_cast<int64_t>(real[good].first);
    for (const auto& [key, a] : acked_[0]) lost_ += a.revision > expected_revision_ ? 1 : 0;
    cluster_.Log(sim::kNoNode, absl::StrCat("expecting the restore of ", expected_));
  }

  // `bytes` (the backup `name`) re-encrypted under another CA's key, recording `revision`.
  std::string Reencoded(const std::string& name, const std::string& bytes, uint64_t revision,
                        env::Random& random) {
    absl::StatusOr<node::LoadedBackup> b = node::DecodeBackup(name, bytes, keys_);
    E2D_CHECK(b.ok(), "the newest real backup decodes: %s", b.status().ToString().c_str());
    node::BackupMeta meta = b->meta;
    meta.revision = revision;
    node::BackupOptions options;
    options.keys = *node::DeriveBackupKeys("another CA's key");
    for (uint8_t& x : options.iv) x = static_cast<uint8_t>(random.Next());
    std::string out;
    auto w = node::BackupWriter::Start(options, meta, [&out](std::string_view s) {
      out.append(s);
      return absl::OkStatus();
    });
    E2D_CHECK(w.ok(), "a backup writer starts");
    E2D_CHECK((*w)->Write(b->store).ok() && (*w)->Finish().ok(), "a backup is written");
    return out;
  }

  // One write in flight at a time, every 100 ms, through whoever leads; one unanswered for
  // 5 s is given up (not acknowledged).
  void ScheduleClient() {
    sim_.Schedule(sim_.now_ns() + 100 * kMs, sim::kNoNode, "client", 0, [this] {
      if (in_flight_ && sim_.now_ns() - in_flight_since_ > 5'000 * kMs) in_flight_ = false;
      const NodeId l = Leader();
      if (!in_flight_ && l != sim::kNoNode) {
        in_flight_ = true;
        in_flight_since_ = sim_.now_ns();
        const uint64_t generation = ++generation_;
        const int phase = restore_phase_ ? 1 : 0;
        const std::string key = absl::StrCat("k", next_key_), value = absl::StrCat("v", next_key_);
        ++next_key_;
        etcdserverpb::PutRequest put;
        put.set_key(key);
        put.set_value(value);
        NodeAt(l)->kv().Put(put, [this, key, value, generation, phase](
                                     absl::StatusOr<etcdserverpb::PutResponse> r) {
          if (generation == generation_) in_flight_ = false;
          // An answer from before the loss that comes after it is not counted (it cannot: the
          // machine is gone), nor is a failure.
          if (!r.ok() || phase != (restore_phase_ ? 1 : 0)) return;
          const int64_t revision = r->header().revision();
          auto [it, fresh] = revisions_[phase].try_emplace(revision, key);
          if (!fresh) {
            return Fail(absl::StrCat("linearizability: ", key, " and ", it->second,
                                     " were both acknowledged at revision ", revision));
          }
          if (phase == 1 && revision <= expected_revision_) {
            return Fail(absl::StrCat("restored revision: ", key, " was acknowledged at revision ",
                                     revision, ", not after the backup's ", expected_revision_));
          }
          acked_[phase][key] = Acked{value, revision};
        });
      }
      ScheduleClient();
    });
  }

  void CheckClusterIds() {
    uint64_t id = 0;
    for (NodeId n : cluster_.nodes()) {
      node::Node* node = NodeAt(n);
      if (node == nullptr) return Fail(absl::StrCat("m", n, " is not running at the end"));
      if (id == 0) id = node->cluster_id();
      if (node->cluster_id() != id) {
        return Fail(absl::StrCat("cluster ids: m", n, " is in cluster ",
                                 absl::Hex(node->cluster_id()), ", another in ", absl::Hex(id)));
      }
    }
    if (id == lost_cluster_) {
      Fail(absl::StrCat("cluster ids: the restored cluster kept the lost one's id ",
                        absl::Hex(id)));
    }
  }

  void CheckData() {
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
    int64_t lowest_new = 0;
    for (const auto& kv : (*got)->kvs()) {
      have[kv.key()] = {kv.value(), kv.mod_revision()};
      if (kv.mod_revision() > expected_revision_ &&
          (lowest_new == 0 || kv.mod_revision() < lowest_new)) {
        lowest_new = kv.mod_revision();
      }
    }
    for (const auto& [key, a] : acked_[0]) {
      auto it = have.find(key);
      if (a.revision <= expected_revision_) {
        if (it == have.end() || it->second.first != a.value) {
          return Fail(absl::StrCat("restore: ", key, "=", a.value, " (revision ", a.revision,
                                   ", in the backup of revision ", expected_revision_,
                                   ") reads back as ",
                                   it == have.end() ? "nothing" : it->second.first));
        }
      } else if (it != have.end()) {
        return Fail(absl::StrCat("restore: ", key, " was written at revision ", a.revision,
                                 ", after the backup of revision ", expected_revision_,
                                 ", yet reads back (from revision ", it->second.second, ")"));
      }
    }
    for (const auto& [key, a] : acked_[1]) {
      auto it = have.find(key);
      if (it == have.end() || it->second.first != a.value) {
        return Fail(absl::StrCat("durability: ", key, "=", a.value, " (revision ", a.revision,
                                 ") reads back as ",
                                 it == have.end() ? "nothing" : it->second.first));
      }
    }
    if (lowest_new != 0 && lowest_new != expected_revision_ + 1) {
      Fail(absl::StrCat("restored revision: the first write after the restore is at revision ",
                        lowest_new, ", not ", expected_revision_ + 1));
    }
  }

  const sim::FaultSchedule& schedule_;
  sim::Simulator sim_;
  MachineDisks disks_;  // before cluster_: the machines' processes use them until it goes
  sim::Cluster cluster_;
  node::MemBackupStore store_;  // the bucket: it outlives every machine
  int mode_ = 0;                // 0 plain, 1 gzip, 2 encrypted
  int keep_ = 1;
  std::optional<node::BackupKeys> keys_;
  std::string failure_;
  bool restore_phase_ = false;
  uint64_t lost_cluster_ = 0;
  std::string expected_;
  int64_t expected_revision_ = 0;
  absl::btree_set<std::string> damaged_newer_;
  int backups_at_loss_ = 0;
  int damaged_ = 0;
  int restores_ = 0;
  int lost_ = 0;
  bool in_flight_ = false;
  int64_t in_flight_since_ = 0;
  uint64_t generation_ = 0;
  uint64_t next_key_ = 0;
  absl::btree_map<int64_t, std::string> revisions_[2];  // before and after the loss
  absl::btree_map<std::string, Acked> acked_[2];
};

MemberProcess::MemberProcess(Run& run, env::Env& env, NodeId n, kv::KvEngine* engine) {
  absl::StatusOr<std::unique_ptr<node::Node>> node = run.Open(env, n, engine);
  if (!node.ok()) {
    run.Fail(absl::StrCat("m", n, " did not open: ", node.status().ToString()));
    return;
  }
  node_ = std::move(*node);
}

}  // namespace

sim::Scenario RestoreTotalLoss() {
  sim::Scenario s;
  s.name = "restore_total_loss";
  s.description =
      "3 members back up (plain, gzip or encrypted) under swarm faults, lose every disk, and "
      "start again from the newest backup that checks out past damaged ones";
  s.generate = [name = s.name](uint64_t seed) {
    sim::SwarmOptions o;
    o.nodes = kMembers;
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
