// Copyright e2d authors.

#include "node/node.h"

#include <algorithm>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "env/status_macros.h"

namespace e2d::node {

namespace {

constexpr char kIdentityFile[] = "member";
constexpr char kIdentityTemp[] = "member.tmp";

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h == 0 ? 1 : h;
}

std::string Hex(uint64_t v) { return absl::StrCat(absl::Hex(v, absl::kZeroPad16)); }

}  // namespace

uint64_t MemberIdFor(const std::string& name) { return Fnv1a("e2d member " + name); }

uint64_t ClusterIdFor(const std::vector<Member>& initial_cluster) {
  std::vector<std::string> parts;
  for (const Member& m : initial_cluster) parts.push_back(m.name + "=" + m.peer_address);
  std::sort(parts.begin(), parts.end());
  std::string all = "e2d cluster";
  for (const std::string& p : parts) all += "," + p;
  return Fnv1a(all);
}

Node::Node(env::Env& env, NodeConfig config, uint64_t id, uint64_t cluster_id)
    : env_(env), config_(std::move(config)), id_(id), cluster_id_(cluster_id) {}

Node::~Node() { *alive_ = false; }

void Node::OnRaftState(const raft::Raft& raft) {
  if (raft.lead() == last_leader_) return;
  if (raft.lead() != raft::kNone) ++leader_changes_;
  last_leader_ = raft.lead();
  env_.Log(absl::StrCat("level=info msg=\"leader changed\" term=", raft.term(), " leader=",
                        Hex(raft.lead()), " self=", Hex(id_), " role=", raft::RoleName(raft.role())));
}

void Node::MoveLeader(uint64_t target, absl::Duration timeout,
                      std::function<void(absl::Status)> done) {
  const raft::Raft& r = kv_->raft_node().raft();
  absl::Status refused;
  if (r.role() != raft::Role::kLeader) {
    refused = absl::FailedPreconditionError("etcdserver: not leader");
  } else if (!r.membership().voters.contains(target)) {
    refused = absl::FailedPreconditionError("etcdserver: bad leader transferee");
  }
  if (!refused.ok() || target == id_) {
    env_.clock().After(absl::ZeroDuration(), [alive = alive_, done = std::move(done), refused] {
      if (*alive) done(refused);
    });
    return;
  }
  kv_->raft_node().TransferLeadership(target);
  PollTransfer(target, env_.clock().Now() + timeout, std::move(done));
}

void Node::PollTransfer(uint64_t target, env::Instant deadline,
                        std::function<void(absl::Status)> done) {
  env_.clock().After(absl::Milliseconds(20), [this, alive = alive_, target, deadline,
                                              done = std::move(done)]() mutable {
    if (!*alive) return;
    if (kv_->raft_node().raft().lead() == target) return done(absl::OkStatus());
    if (env_.clock().Now() >= deadline) {
      return done(absl::UnknownError(
          "etcdserver: request timed out, leader transfer took too long"));
    }
    PollTransfer(target, deadline, std::move(done));
  });
}

std::string Node::MetricsText() const {
  const raft::RaftNode& rn = kv_->raft_node();
  const raft::Raft& r = rn.raft();
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, double value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name,
                    " ", value, "\n");
  };
  metric("e2d_raft_term", "gauge", "The current Raft term.", r.term());
  metric("e2d_raft_has_leader", "gauge", "1 if this member knows a leader.",
         r.lead() != raft::kNone ? 1 : 0);
  metric("e2d_raft_is_leader", "gauge", "1 if this member leads.",
         r.role() == raft::Role::kLeader ? 1 : 0);
  metric("e2d_raft_leader_changes_total", "counter", "Leaders this member has seen since start.",
         leader_changes_);
  metric("e2d_raft_committed_index", "gauge", "The highest log index known committed.",
         r.log().committed());
  metric("e2d_raft_applied_index", "gauge", "The highest log index applied.", r.log().applied());
  metric("e2d_raft_messages_dropped_total", "counter", "Raft messages that could not be sent.",
         rn.messages_dropped());
  metric("e2d_wal_syncs_total", "counter", "WAL syncs (group commits).", rn.wal_syncs());
  metric("e2d_raft_snapshots_saved_total", "counter", "Raft snapshots this member saved.",
         rn.snapshots_saved());
  metric("e2d_raft_snapshots_installed_total", "counter",
         "Raft snapshots this member installed from the leader.", rn.snapshots_installed());
  metric("e2d_member_failed", "gauge", "1 after a storage error stopped this member.",
         rn.failed() ? 1 : 0);
  metric("e2d_mvcc_revision", "gauge", "The store's current revision.",
         static_cast<double>(kv_->store().revision()));
  metric("e2d_mvcc_compact_revision", "gauge", "The revision the store is compacted to.",
         static_cast<double>(kv_->store().compact_revision()));
  metric("e2d_mvcc_db_size_bytes", "gauge", "Bytes of keys and values the store holds.",
         static_cast<double>(kv_->store().size_bytes()));
  metric("e2d_kv_requests_pending", "gauge", "Proposals waiting for their apply.",
         static_cast<double>(kv_->pending()));
  metric("e2d_kv_request_timeouts_total", "counter", "Proposals that timed out.",
         static_cast<double>(kv_->timeouts()));
  metric("e2d_kv_proposals_applied_total", "counter",
         "This member's proposals answered by their apply.",
         static_cast<double>(kv_->proposals_applied()));
  metric("e2d_kv_proposals_refused_total", "counter",
         "This member's proposals refused before reaching the log.",
         static_cast<double>(kv_->proposals_refused()));
  wal_sync_.Render("e2d_wal_fsync_duration_seconds", "WAL sync latency (one per group commit).",
                   &out);
  apply_.Render("e2d_apply_duration_seconds",
                "Time to apply the committed entries of one Raft Ready.", &out);
  return out;
}

namespace {

// Checks the config and fills in the member ids.
absl::Status ValidateConfig(NodeConfig& config) {
  if (config.name.empty()) return absl::InvalidArgumentError("the member name is empty");
  absl::btree_set<std::string> names;
  absl::btree_set<uint64_t> ids;
  bool self = false;
  for (Member& m : config.initial_cluster) {
    if (m.name.empty()) return absl::InvalidArgumentError("a member of the cluster has no name");
    m.id = MemberIdFor(m.name);
    if (!names.insert(m.name).second || !ids.insert(m.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("member name \"", m.name, "\" appears twice in the initial cluster"));
    }
    self = self || m.name == config.name;
  }
  if (!self) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this member's name \"", config.name, "\" is not in the initial cluster"));
  }
  return absl::OkStatus();
}

std::string IdentityText(const NodeConfig& config) {
  return absl::StrCat("e2d-member v1\ncluster_id=", Hex(ClusterIdFor(config.initial_cluster)),
                      "\nmember_id=", Hex(MemberIdFor(config.name)), "\nname=", config.name,
                      "\n");
}

// OK if the data directory has no identity yet or the one `want` holds.
absl::StatusOr<bool> IdentityRecorded(env::FileSystem& fs, const std::string& want) {
  E2D_ASSIGN_OR_RETURN(const bool exists, fs.Exists(kIdentityFile));
  if (!exists) return false;
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<env::File> f, fs.Open(kIdentityFile, {}));
  E2D_ASSIGN_OR_RETURN(const std::string have, f->ReadAt(0, 4096));
  if (have == want) return true;
  std::string shown = have;
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  std::string wanted = want;
  std::replace(wanted.begin(), wanted.end(), '\n', ' ');
  return absl::FailedPreconditionError(absl::StrCat(
      "the data directory belongs to another cluster or member: it holds [", shown,
      "], this node is configured as [", wanted,
      "]; use the data directory of this member, or an empty one"));
}

}  // namespace

absl::Status Node::CheckDataDir(env::Env& env, NodeConfig config) {
  E2D_RETURN_IF_ERROR(ValidateConfig(config));
  return IdentityRecorded(env.fs(), IdentityText(config)).status();
}

absl::StatusOr<std::unique_ptr<Node>> Node::Open(env::Env& env, kv::KvEngine* engine,
                                                 NodeConfig config) {
  E2D_RETURN_IF_ERROR(ValidateConfig(config));
  const uint64_t id = MemberIdFor(config.name);
  const uint64_t cluster_id = ClusterIdFor(config.initial_cluster);
  std::unique_ptr<Node> node(new Node(env, config, id, cluster_id));
  E2D_RETURN_IF_ERROR(node->CheckIdentity());

  raft::RaftNodeConfig rc;
  rc.raft.id = id;
  rc.raft.election_ticks = config.election_ticks;
  rc.raft.random_seed = env.random().Next();
  for (const Member& m : config.initial_cluster) {
    rc.raft.voters.push_back(m.id);
    if (m.id != id) rc.peers[m.id] = m.peer_address;
  }
  std::sort(rc.raft.voters.begin(), rc.raft.voters.end());
  rc.tick = config.tick;
  rc.snapshot_entries = config.snapshot_entries;
  kv::KvServerHooks hooks;
  hooks.raft.on_fatal = [&env](const absl::Status& why) {
    env.Log(absl::StrCat("level=error msg=\"fail-stop\" why=\"", why.ToString(), "\""));
  };
  Node* raw = node.get();
  hooks.raft.on_state = [raw](const raft::Raft& r) { raw->OnRaftState(r); };
  hooks.raft.on_wal_synced = [raw](absl::Duration d) { raw->wal_sync_.Observe(d); };
  hooks.raft.on_applied = [raw](size_t, absl::Duration d) { raw->apply_.Observe(d); };
  hooks.raft.on_removed = [&env] {
    env.Log("level=warn msg=\"this member was removed from the cluster; it serves no requests\"");
  };
  E2D_ASSIGN_OR_RETURN(node->kv_, kv::KvServer::Open(env, engine, std::move(rc), config.kv,
                                                     std::move(hooks)));
  return node;
}

absl::Status Node::CheckIdentity() {
  const std::string want = IdentityText(config_);
  env::FileSystem& fs = env_.fs();
  E2D_ASSIGN_OR_RETURN(const bool recorded, IdentityRecorded(fs, want));
  if (recorded) return absl::OkStatus();
  // A Raft log without an identity: a crash between the log's first sync and the identity's
  // rename (both are in flight at a first start). Record the configured identity.
  E2D_ASSIGN_OR_RETURN(const bool has_wal, fs.Exists("wal"));
  if (has_wal) {
    env_.Log("level=warn msg=\"the data directory holds a Raft log but no identity; recording "
             "the configured one\"");
  }
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<env::File> f,
                       fs.Open(kIdentityTemp, {.create = true, .truncate = true}));
  E2D_RETURN_IF_ERROR(f->Append(want));
  // Durability: the temp file is synced, renamed, and the directory synced in the background;
  // if a crash loses it, the next start writes the same bytes again.
  env::File* raw = f.release();
  env::Env& env = env_;  // outlives the node, unlike `this`
  raw->Sync([&env, raw](absl::Status s) {
    delete raw;
    if (s.ok()) s = env.fs().Rename(kIdentityTemp, kIdentityFile);
    if (!s.ok()) {
      return env.Log(absl::StrCat("level=error msg=\"recording the member identity\" why=\"",
                                  s.ToString(), "\""));
    }
    env.fs().SyncDir("", [](absl::Status) {});
  });
  return absl::OkStatus();
}

etcdserverpb::ResponseHeader Node::Header() const {
  etcdserverpb::ResponseHeader h;
  h.set_cluster_id(cluster_id_);
  h.set_member_id(id_);
  h.set_raft_term(kv_->raft_node().raft().term());
  h.set_revision(kv_->store().revision());
  return h;
}

std::vector<Member> Node::Members() const {
  absl::btree_map<uint64_t, const Member*> known;
  for (const Member& m : config_.initial_cluster) known[m.id] = &m;
  const raft::Membership& ms = kv_->raft_node().raft().membership();
  std::vector<Member> out;
  for (uint64_t id : ms.Members()) {
    Member m;
    if (auto it = known.find(id); it != known.end()) m = *it->second;
    m.id = id;
    m.learner = ms.IsLearner(id);
    out.push_back(std::move(m));
  }
  return out;
}

NodeStatus Node::Status() const {
  const raft::Raft& r = kv_->raft_node().raft();
  NodeStatus s;
  s.leader = r.lead();
  s.term = r.term();
  s.raft_index = r.log().last_index();
  s.raft_applied_index = r.log().applied();
  s.learner = r.membership().IsLearner(id_);
  s.failed = kv_->raft_node().failed();
  return s;
}

}  // namespace e2d::node
