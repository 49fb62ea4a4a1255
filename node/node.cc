// Copyright e2d authors.

#include "node/node.h"

#include <algorithm>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "env/check.h"
#include "env/status_macros.h"
#include "node/membership.h"

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

// Ids in hex, as etcdctl shows them, sorted; "-" for none.
template <typename Set>
std::string HexList(const Set& ids) {
  absl::btree_set<uint64_t> sorted(ids.begin(), ids.end());
  std::string out;
  for (uint64_t id : sorted) absl::StrAppend(&out, out.empty() ? "" : ",", Hex(id));
  return out.empty() ? "-" : out;
}

// " voters=id,id learners=id" (and the outgoing half of a joint membership).
std::string DescribeMembership(const raft::Membership& ms) {
  std::string s = absl::StrCat(" voters=", HexList(ms.voters), " learners=", HexList(ms.learners));
  if (ms.joint()) {
    absl::StrAppend(&s, " outgoing_voters=", HexList(ms.voters_outgoing),
                    " next_learners=", HexList(ms.learners_next));
  }
  return s;
}

const Member& Self(const NodeConfig& config) {
  for (const Member& m : config.initial_cluster) {
    if (m.name == config.name) return m;
  }
  E2D_CHECK(false, "member %s is not in its validated config", config.name.c_str());
  return config.initial_cluster.front();
}

}  // namespace

uint64_t MemberIdFor(const env::Address& peer_address) {
  return Fnv1a("e2d member at " + peer_address);
}

uint64_t ClusterIdFor(const std::vector<Member>& initial_cluster, absl::string_view restored_from) {
  std::vector<std::string> parts;
  for (const Member& m : initial_cluster) parts.push_back(m.name + "=" + m.peer_address);
  std::sort(parts.begin(), parts.end());
  std::string all = "e2d cluster";
  for (const std::string& p : parts) all += "," + p;
  if (!restored_from.empty()) absl::StrAppend(&all, " restored from ", restored_from);
  return Fnv1a(all);
}

Node::Node(env::Env& env, NodeConfig config, uint64_t id, uint64_t cluster_id)
    : env_(env), config_(std::move(config)), id_(id), cluster_id_(cluster_id) {
  snapshot_since_ = env.clock().Now();
}

Node::~Node() { *alive_ = false; }

void Node::OnRaftState(const raft::Raft& raft) {
  if (raft.log().snapshot_index() != snapshot_index_) {
    snapshot_index_ = raft.log().snapshot_index();
    snapshot_since_ = env_.clock().Now();
  }
  if (!(raft.membership() == last_membership_)) {
    last_membership_ = raft.membership();
    env_.Log(absl::StrCat("level=info msg=\"membership changed\" self=", Hex(id_),
                          DescribeMembership(last_membership_)));
  }
  if (forcing_ && forced_index_ != 0 && raft.log().applied() >= forced_index_ &&
      raft.membership().voters.size() == 1 && raft.membership().voters.contains(id_)) {
    // The forced start is applied (durable before that): later starts run normally.
    forcing_ = false;
    env_.Log(absl::StrCat("level=warn msg=\"recovery: the cluster runs again from this member's "
                          "data\" from_cluster=", Hex(recovered_from_), " cluster=",
                          Hex(cluster_id_), " revision=", kv_ ? kv_->store().revision() : 0));
    if (absl::Status s = RecordIdentity(joined_, [this, alive = alive_](absl::Status s) {
          if (*alive && s.ok()) recovery_recorded_ = true;
        });
        !s.ok()) {
      env_.Log(absl::StrCat("level=error msg=\"recording the member identity\" why=\"",
                            s.ToString(), "\""));
    }
  }
  if (raft.lead() == raft::kNone && !leaderless_since_.has_value()) {
    leaderless_since_ = env_.clock().Now();
  } else if (raft.lead() != raft::kNone) {
    leaderless_since_.reset();
  }
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
    return Later([done = std::move(done), refused] { done(refused); });
  }
  kv_->raft_node().TransferLeadership(target);
  PollUntil([this, target] { return kv_->raft_node().raft().lead() == target; },
            env_.clock().Now() + timeout,
            absl::UnknownError("etcdserver: request timed out, leader transfer took too long"),
            std::move(done));
}

void Node::Later(std::function<void()> f) {
  env_.clock().After(absl::ZeroDuration(), [alive = alive_, f = std::move(f)] {
    if (*alive) f();
  });
}

namespace {

absl::Status RequestTimedOut() { return absl::UnavailableError("etcdserver: request timed out"); }

raftpb::ConfChange OneChange(raftpb::ConfChangeType type, uint64_t id,
                             const env::Address& address = "") {
  raftpb::ConfChange cc;
  raftpb::ConfChangeSingle* c = cc.add_changes();
  c->set_type(type);
  c->set_node_id(id);
  if (!address.empty()) c->set_address(address);
  return cc;
}

}  // namespace

void Node::ChangeMembership(const raftpb::ConfChange& cc, std::function<bool()> applied,
                            absl::Duration timeout, std::function<void(absl::Status)> done) {
  const raft::Raft& r = kv_->raft_node().raft();
  if (r.role() == raft::Role::kLeader && r.pending_conf_index() > r.log().applied() &&
      timeout > absl::ZeroDuration()) {
    // The previous change (or a new leader's first entry) is not applied yet: a moment's wait,
    // not a refusal.
    const absl::Duration step = absl::Milliseconds(20);
    env_.clock().After(step, [this, alive = alive_, cc, applied = std::move(applied), timeout,
                              step, done = std::move(done)]() mutable {
      if (*alive) ChangeMembership(cc, std::move(applied), timeout - step, std::move(done));
    });
    return;
  }
  const uint64_t after = r.log().last_index();
  absl::Status s = kv_->raft_node().ProposeConfChange(cc);
  if (!s.ok()) {
    return Later([done = std::move(done), s] {
      done(absl::FailedPreconditionError(absl::StrCat("etcdserver: ", s.message())));
    });
  }
  // A follower forwards the change, and the leader drops it without a word if its previous
  // change is not applied yet (one at a time), or while it hands leadership over. So a change
  // that has not reached this member's log a second later is proposed again. A second copy is
  // appended only if the first was delayed past that second; both apply the same change, and
  // the second one is a no-op unless another change to the same member came in between.
  const absl::Duration resend = absl::Seconds(1);
  auto holds = [this, cc, data = cc.SerializeAsString(), after, applied = std::move(applied),
                resend, resend_at = env_.clock().Now() + resend]() mutable {
    if (applied()) return true;
    const raft::Raft& now = kv_->raft_node().raft();
    if (env_.clock().Now() >= resend_at) {
      resend_at = env_.clock().Now() + resend;
      if (now.role() != raft::Role::kLeader && now.log().FindConfChange(after, data) == 0) {
        (void)kv_->raft_node().ProposeConfChange(cc);  // no leader yet: tried again later
      }
    }
    return false;
  };
  PollUntil(std::move(holds), env_.clock().Now() + timeout, RequestTimedOut(), std::move(done));
}

void Node::PollUntil(std::function<bool()> holds, env::Instant deadline, absl::Status timed_out,
                     std::function<void(absl::Status)> done) {
  env_.clock().After(absl::Milliseconds(20), [this, alive = alive_, holds = std::move(holds),
                                              deadline, timed_out = std::move(timed_out),
                                              done = std::move(done)]() mutable {
    if (!*alive) return;
    if (holds()) return done(absl::OkStatus());
    if (env_.clock().Now() >= deadline) return done(timed_out);
    PollUntil(std::move(holds), deadline, std::move(timed_out), std::move(done));
  });
}

void Node::Current(env::Instant deadline, std::function<void(absl::Status)> then) {
  kv_->raft_node().ReadIndex([this, alive = alive_, deadline,
                              then = std::move(then)](absl::StatusOr<uint64_t> index) mutable {
    if (!*alive) return;
    absl::Status s;
    if (!index.ok()) {
      s = index.status().code() == absl::StatusCode::kDeadlineExceeded
              ? RequestTimedOut()
              : absl::UnavailableError(absl::StrCat("etcdserver: ", index.status().message()));
      // Refused (an election, a leader that has not committed in its term yet) or lost: asked
      // again every 50 ms until the request's deadline, as etcd holds a request while it has
      // no leader. (Too many reads pending is an answer.)
      const absl::Duration step = absl::Milliseconds(50);
      if (index.status().code() != absl::StatusCode::kResourceExhausted &&
          env_.clock().Now() + step < deadline) {
        env_.clock().After(step, [this, alive, deadline, then = std::move(then)]() mutable {
          if (*alive) Current(deadline, std::move(then));
        });
        return;
      }
    }
    Later([then = std::move(then), s] { then(s); });
  });
}

absl::Duration Node::Left(env::Instant deadline) {
  return std::max(deadline - env_.clock().Now(), absl::Milliseconds(1));
}

void Node::AddMember(const env::Address& peer_address, bool learner, absl::Duration timeout,
                     std::function<void(absl::StatusOr<Member>)> done) {
  const env::Instant deadline = env_.clock().Now() + timeout;
  Current(deadline, [this, peer_address, learner, deadline,
                     done = std::move(done)](absl::Status s) mutable {
    if (!s.ok()) return done(s);
    AddCurrentMember(peer_address, learner, Left(deadline), std::move(done));
  });
}

void Node::AddCurrentMember(const env::Address& peer_address, bool learner,
                            absl::Duration timeout,
                            std::function<void(absl::StatusOr<Member>)> done, uint64_t id) {
  if (id == 0) id = MemberIdFor(peer_address);
  if (!restored_from_.empty() && kv_->raft_node().raft().log().snapshot_index() == 0) {
    // Its log does not hold the restored store: a new member would replay the log alone.
    return Later([done = std::move(done)] {
      done(absl::UnavailableError(
          "etcdserver: this member was restored from a backup and has not taken the snapshot "
          "that new members start from yet: try again shortly"));
    });
  }
  for (const Member& m : Members()) {
    if (m.id == id || m.peer_address == peer_address) {
      return Later([done = std::move(done)] {
        done(absl::FailedPreconditionError("etcdserver: Peer URLs already exists"));
      });
    }
  }
  Member added;
  added.id = id;
  added.peer_address = peer_address;
  added.learner = learner;
  const raftpb::ConfChange cc = OneChange(
      learner ? raftpb::CONF_CHANGE_ADD_LEARNER_NODE : raftpb::CONF_CHANGE_ADD_NODE, id,
      peer_address);
  ChangeMembership(
      cc,
      [this, id, learner] {
        const raft::Membership& ms = kv_->raft_node().raft().membership();
        return learner ? ms.IsLearner(id) : ms.IsVoter(id);
      },
      timeout, [done = std::move(done), added](absl::Status s) {
        if (!s.ok()) return done(s);
        done(added);
      });
}

void Node::RemoveMember(uint64_t id, absl::Duration timeout,
                        std::function<void(absl::Status)> done) {
  const env::Instant deadline = env_.clock().Now() + timeout;
  Current(deadline, [this, id, deadline, done = std::move(done)](absl::Status s) mutable {
    if (!s.ok()) return done(s);
    RemoveCurrentMember(id, Left(deadline), std::move(done));
  });
}

void Node::RemoveCurrentMember(uint64_t id, absl::Duration timeout,
                               std::function<void(absl::Status)> done) {
  const raft::Raft& r = kv_->raft_node().raft();
  if (!r.membership().IsMember(id)) {
    return Later([done = std::move(done)] {
      done(absl::NotFoundError("etcdserver: member not found"));
    });
  }
  auto gone = [this, id] { return !kv_->raft_node().raft().membership().IsMember(id); };
  if (id == id_ && r.role() == raft::Role::kLeader) {
    // Raft refuses a leader's own removal and hands leadership over; once another member
    // leads, the change goes through it.
    (void)kv_->raft_node().ProposeConfChange(OneChange(raftpb::CONF_CHANGE_REMOVE_NODE, id));
    const env::Instant deadline = env_.clock().Now() + timeout;
    PollUntil(
        [this] {
          const raft::Raft& now = kv_->raft_node().raft();
          return now.lead() != raft::kNone && now.lead() != id_;
        },
        deadline, RequestTimedOut(),
        [this, id, gone, deadline, done = std::move(done)](absl::Status s) mutable {
          if (!s.ok()) return done(s);
          ChangeMembership(OneChange(raftpb::CONF_CHANGE_REMOVE_NODE, id), gone,
                           std::max(deadline - env_.clock().Now(), absl::Milliseconds(1)),
                           std::move(done));
        });
    return;
  }
  ChangeMembership(OneChange(raftpb::CONF_CHANGE_REMOVE_NODE, id), gone, timeout,
                   std::move(done));
}

void Node::PromoteMember(uint64_t id, absl::Duration timeout,
                         std::function<void(absl::Status)> done) {
  const env::Instant deadline = env_.clock().Now() + timeout;
  Current(deadline, [this, id, deadline, done = std::move(done)](absl::Status s) mutable {
    if (!s.ok()) return done(s);
    PromoteCurrentMember(id, Left(deadline), std::move(done));
  });
}

void Node::PromoteCurrentMember(uint64_t id, absl::Duration timeout,
                                std::function<void(absl::Status)> done) {
  const raft::Raft& r = kv_->raft_node().raft();
  absl::Status refused;
  if (!r.membership().IsMember(id)) {
    refused = absl::NotFoundError("etcdserver: member not found");
  } else if (!r.membership().IsLearner(id)) {
    refused = absl::FailedPreconditionError("etcdserver: can only promote a learner member");
  } else if (r.role() == raft::Role::kLeader) {
    const raft::Progress* pr = r.progress(id);
    const uint64_t last = r.log().last_index();
    if (pr == nullptr || pr->match * 10 < last * 9) {
      refused = absl::FailedPreconditionError(
          "etcdserver: can only promote a learner member which is in sync with leader");
    }
  }
  if (!refused.ok()) {
    return Later([done = std::move(done), refused] { done(refused); });
  }
  ChangeMembership(
      OneChange(raftpb::CONF_CHANGE_ADD_NODE, id),
      [this, id] {
        const raft::Membership& ms = kv_->raft_node().raft().membership();
        return ms.IsVoter(id) && !ms.joint();
      },
      timeout, std::move(done));
}

std::string EncodeGossipMeta(const GossipMeta& meta) {
  std::string ack = "-";
  if (meta.ack_cluster_id != 0) {
    ack = absl::StrCat(meta.ack_epoch, "/", Hex(meta.ack_cluster_id), ":");
    for (size_t i = 0; i < meta.ack_members.size(); ++i) {
      absl::StrAppend(&ack, i == 0 ? "" : ",", Hex(meta.ack_members[i]));
    }
  }
  std::string out = absl::StrCat("e2d2 ", meta.pending ? "pending" : "running", " ",
                                 Hex(meta.member_id), " ", Hex(meta.cluster_id), " ",
                                 meta.peer_address, " ",
                                 meta.client_url.empty() ? "-" : meta.client_url, " ", ack);
  if (meta.lost_quorum || meta.recovered_from != 0) {
    absl::StrAppend(&out, " ", meta.lost_quorum ? 1 : 0, "/", meta.lost_commit, "/",
                    Hex(meta.recovery_vote), "/", Hex(meta.recovered_from));
  }
  return out;
}

std::optional<GossipMeta> DecodeGossipMeta(const std::string& meta) {
  std::vector<std::string> parts = absl::StrSplit(meta, ' ');
  GossipMeta out;
  if ((parts.size() != 7 && parts.size() != 8) || parts[0] != "e2d2" ||
      (parts[1] != "pending" && parts[1] != "running") ||
      !absl::SimpleHexAtoi(parts[2], &out.member_id) ||
      !absl::SimpleHexAtoi(parts[3], &out.cluster_id) || parts[4].empty() || parts[5].empty()) {
    return std::nullopt;
  }
  out.pending = parts[1] == "pending";
  out.peer_address = parts[4];
  if (parts[5] != "-") out.client_url = parts[5];
  if (parts[6] != "-") {
    std::vector<std::string> ack = absl::StrSplit(parts[6], absl::ByAnyChar("/:"));
    if (ack.size() != 3 || !out.pending || !absl::SimpleAtoi(ack[0], &out.ack_epoch) ||
        out.ack_epoch == 0 || !absl::SimpleHexAtoi(ack[1], &out.ack_cluster_id) ||
        out.ack_cluster_id == 0 || parts[6].find('/') > parts[6].find(':')) {
      return std::nullopt;
    }
    for (absl::string_view id : absl::StrSplit(ack[2], ',')) {
      uint64_t v = 0;
      if (!absl::SimpleHexAtoi(id, &v) || v == 0 ||
          (!out.ack_members.empty() && v <= out.ack_members.back())) {
        return std::nullopt;  // ids are sorted and distinct
      }
      out.ack_members.push_back(v);
    }
  }
  if (parts.size() == 8) {
    std::vector<std::string> r = absl::StrSplit(parts[7], '/');
    if (out.pending || r.size() != 4 || (r[0] != "0" && r[0] != "1") ||
        !absl::SimpleAtoi(r[1], &out.lost_commit) ||
        !absl::SimpleHexAtoi(r[2], &out.recovery_vote) ||
        !absl::SimpleHexAtoi(r[3], &out.recovered_from)) {
      return std::nullopt;
    }
    out.lost_quorum = r[0] == "1";
  }
  return out;
}

void Node::AttachGossip(gossip::GossipNode* gossip) {
  gossip_ = gossip;
  PublishGossipMeta();
}

void Node::PublishGossipMeta() {
  if (gossip_ == nullptr) return;
  GossipMeta meta;
  meta.member_id = id_;
  meta.cluster_id = cluster_id_;
  meta.peer_address = Self(config_).peer_address;
  meta.client_url = Self(config_).client_url;
  meta.lost_quorum = lost_quorum_;
  if (lost_quorum_) meta.lost_commit = kv_->raft_node().raft().log().committed();
  meta.recovery_vote = recovery_vote_;
  meta.recovered_from = recovered_from_;
  if (absl::Status s = gossip_->SetMeta(EncodeGossipMeta(meta)); !s.ok()) {
    env_.Log(absl::StrCat("level=warn msg=\"gossip meta not published\" why=\"", s.ToString(),
                          "\""));
  }
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
  metric("e2d_backups_total", "counter", "Backups this member wrote (as leader).", backups_ok_);
  metric("e2d_backups_failed_total", "counter", "Backups that failed to encode or store.",
         backups_failed_);
  metric("e2d_backups_skipped_total", "counter",
         "Backup rounds skipped because the revision had not moved.", backups_skipped_);
  metric("e2d_backup_age_seconds", "gauge",
         "Seconds since this member's last backup (-1: none since it started).",
         backups_ok_ == 0 ? -1 : absl::ToDoubleSeconds(env_.clock().Now() - last_backup_at_));
  metric("e2d_snapshot_index", "gauge",
         "The log index of this member's newest Raft snapshot (0: none).",
         r.log().snapshot_index());
  metric("e2d_snapshot_age_seconds", "gauge",
         "Seconds since this member took or installed its newest Raft snapshot (since the start "
         "for one it started with, or if it has none).",
         // (a snapshot newer than the last state hook saw was taken just now)
         r.log().snapshot_index() != snapshot_index_
             ? 0
             : absl::ToDoubleSeconds(env_.clock().Now() - snapshot_since_));
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
  if (gossip_ != nullptr) {
    absl::btree_map<std::string, int> by_state;
    for (gossip::MemberState st : {gossip::MemberState::kAlive, gossip::MemberState::kSuspect,
                                   gossip::MemberState::kDead, gossip::MemberState::kLeft}) {
      by_state[gossip::MemberStateName(st)] = 0;
    }
    for (const gossip::Member& m : gossip_->memberlist().Members()) {
      ++by_state[gossip::MemberStateName(m.state)];
    }
    absl::StrAppend(&out, "# HELP e2d_gossip_members Members this member's gossip knows, by state.\n",
                    "# TYPE e2d_gossip_members gauge\n");
    for (const auto& [state, n] : by_state) {
      absl::StrAppend(&out, "e2d_gossip_members{state=\"", state, "\"} ", n, "\n");
    }
  }
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
    if (m.peer_address.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("member \"", m.name, "\" has no peer address"));
    }
    // Given ids are kept: a member that joined through gossip has one of its own (see
    // NodeConfig::member_id), which the members it joins publish.
    if (m.id == 0) m.id = MemberIdFor(m.peer_address);
    if (m.name == config.name && config.member_id != 0) m.id = config.member_id;
    if (!names.insert(m.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("member name \"", m.name, "\" appears twice in the initial cluster"));
    }
    if (!ids.insert(m.id).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "peer address ", m.peer_address, " appears twice in the initial cluster"));
    }
    self = self || m.name == config.name;
  }
  if (!self) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this member's name \"", config.name, "\" is not in the initial cluster"));
  }
  return absl::OkStatus();
}


// What the file "member" records. Version 2 adds `origin` (how this member came to be: it
// bootstrapped the cluster, or joined a running one) and lets a joined member's cluster id be
// "pending" (0) until the first member of its cluster reaches it.
struct Identity {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  std::string name;
  bool joined = false;
  std::string restored_from;  // bootstrapped from this backup (see NodeConfig::restore)
  // Started again alone after its cluster `recovered_from` lost a majority (node/recovery.h):
  // from its own data, `forcing` while that start has not completed yet (the next start
  // forces); or from the backup `restored_from`.
  uint64_t recovered_from = 0;
  bool forcing = false;
};

std::string IdentityText(const Identity& id) {
  return absl::StrCat("e2d-member v2\ncluster_id=",
                      id.cluster_id == 0 ? std::string("pending") : Hex(id.cluster_id),
                      "\nmember_id=", Hex(id.member_id), "\nname=", id.name,
                      "\norigin=",
                      id.recovered_from != 0
                          ? absl::StrCat("recover ", Hex(id.recovered_from),
                                         id.forcing ? " forcing" : "",
                                         id.restored_from.empty() ? "" : " restore ",
                                         id.restored_from)
                      : id.joined                ? std::string("join")
                      : id.restored_from.empty() ? std::string("bootstrap")
                                                 : absl::StrCat("restore ", id.restored_from),
                      "\n");
}

absl::StatusOr<Identity> ParseIdentity(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat("the data directory's file \"", kIdentityFile,
                                            "\" is damaged: ", why));
  };
  if (lines.size() != 5 || lines[0] != "e2d-member v2") {
    return bad("expected 5 lines starting with \"e2d-member v2\"");
  }
  Identity id;
  auto field = [&](const std::string& line, const char* key) -> absl::StatusOr<std::string> {
    const std::string prefix = absl::StrCat(key, "=");
    if (line.rfind(prefix, 0) != 0) return bad(absl::StrCat("expected the line ", key, "=..."));
    return line.substr(prefix.size());
  };
  E2D_ASSIGN_OR_RETURN(std::string cluster, field(lines[1], "cluster_id"));
  E2D_ASSIGN_OR_RETURN(std::string member, field(lines[2], "member_id"));
  E2D_ASSIGN_OR_RETURN(id.name, field(lines[3], "name"));
  E2D_ASSIGN_OR_RETURN(std::string origin, field(lines[4], "origin"));
  if (cluster != "pending" && !absl::SimpleHexAtoi(cluster, &id.cluster_id)) {
    return bad("cluster_id is not hexadecimal");
  }
  if (!absl::SimpleHexAtoi(member, &id.member_id)) return bad("member_id is not hexadecimal");
  constexpr absl::string_view kRestore = "restore ";
  constexpr absl::string_view kRecover = "recover ";
  if (absl::StartsWith(origin, kRestore) && origin.size() > kRestore.size()) {
    id.restored_from = origin.substr(kRestore.size());
  } else if (absl::StartsWith(origin, kRecover)) {
    std::vector<std::string> f = absl::StrSplit(origin.substr(kRecover.size()), ' ');
    if (f.size() > 3 || !absl::SimpleHexAtoi(f[0], &id.recovered_from) ||
        id.recovered_from == 0 || (f.size() == 2 && f[1] != "forcing") ||
        (f.size() == 3 && (f[1] != "restore" || f[2].empty()))) {
      return bad("origin is not recover <cluster id> [forcing | restore <backup>]");
    }
    id.forcing = f.size() == 2;
    if (f.size() == 3) id.restored_from = f[2];
  } else if (origin != "join" && origin != "bootstrap") {
    return bad("origin is neither join, bootstrap, restore <backup> nor recover <cluster id>");
  }
  id.joined = origin == "join";
  return id;
}

// The identity the config asks for (a joining member's cluster id is not known from it).
Identity Configured(const NodeConfig& config) {
  Identity id;
  id.joined = config.join;
  if (config.restore.has_value()) {
    id.restored_from = config.restore->name;
    id.recovered_from = config.restore->recovers;
  }
  id.cluster_id = config.join ? 0 : ClusterIdFor(config.initial_cluster, id.restored_from);
  id.member_id = Self(config).id;
  id.name = config.name;
  return id;
}

// The identity to run as: the recorded one if it agrees with the config, the configured one if
// nothing is recorded (second: false). A member restarted keeps what it recorded: a joined
// member its learned cluster id whatever the initial-cluster flags say now (as etcd ignores
// them once a data directory exists), a bootstrapped one only under the same initial cluster
// unless it is told it joins an existing cluster.
absl::StatusOr<std::pair<Identity, bool>> ResolveIdentity(env::FileSystem& fs,
                                                          const NodeConfig& config) {
  Identity want = Configured(config);
  E2D_ASSIGN_OR_RETURN(const bool exists, fs.Exists(kIdentityFile));
  if (!exists) return std::make_pair(want, false);
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<env::File> f, fs.Open(kIdentityFile, {}));
  E2D_ASSIGN_OR_RETURN(const std::string text, f->ReadAt(0, 4096));
  E2D_ASSIGN_OR_RETURN(Identity have, ParseIdentity(text));
  // A restored member restarts from its own data, with or without the restore flag.
  want.restored_from = have.restored_from;
  if (!config.join) want.cluster_id = ClusterIdFor(config.initial_cluster, want.restored_from);
  // A member that joined, or recovered, keeps the cluster id it recorded.
  const bool cluster_ok = have.joined || have.recovered_from != 0 || config.join ||
                          have.cluster_id == want.cluster_id;
  if (have.member_id == want.member_id && have.name == want.name && cluster_ok) {
    return std::make_pair(have, true);
  }
  std::string shown = IdentityText(have);
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  std::string wanted = IdentityText(want);
  std::replace(wanted.begin(), wanted.end(), '\n', ' ');
  return absl::FailedPreconditionError(absl::StrCat(
      "the data directory belongs to another cluster or member: it holds [", shown,
      "], this node is configured as [", wanted,
      "]; use the data directory of this member, or an empty one"));
}

// Writes `identity` through a synced temp file, a rename and a directory sync; `done` gets the
// outcome (on the env's thread, never inside the call). The error of the first step is also
// returned at once (then `done` is not called).
absl::Status WriteIdentity(env::Env& env, const Identity& identity,
                           std::function<void(absl::Status)> done) {
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<env::File> f,
                       env.fs().Open(kIdentityTemp, {.create = true, .truncate = true}));
  E2D_RETURN_IF_ERROR(f->Append(IdentityText(identity)));
  env::File* raw = f.release();
  raw->Sync([&env, raw, done = std::move(done)](absl::Status s) {
    delete raw;
    if (s.ok()) s = env.fs().Rename(kIdentityTemp, kIdentityFile);
    if (!s.ok()) return done(s);
    env.fs().SyncDir("", [done](absl::Status s) { done(s); });
  });
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> Node::HasIdentity(env::FileSystem& fs) { return fs.Exists(kIdentityFile); }

absl::Status Node::CheckDataDir(env::Env& env, NodeConfig config) {
  E2D_RETURN_IF_ERROR(ValidateConfig(config));
  return ResolveIdentity(env.fs(), config).status();
}

absl::StatusOr<std::unique_ptr<Node>> Node::Open(env::Env& env, kv::KvEngine* engine,
                                                 NodeConfig config) {
  E2D_RETURN_IF_ERROR(ValidateConfig(config));
  E2D_ASSIGN_OR_RETURN(auto resolved, ResolveIdentity(env.fs(), config));
  const Identity& identity = resolved.first;
  const uint64_t id = identity.member_id;
  std::unique_ptr<Node> node(new Node(env, config, id, identity.cluster_id));
  node->restored_from_ = identity.restored_from;
  node->recovered_from_ = identity.recovered_from;
  node->forcing_ = identity.forcing;
  node->recovery_recorded_ = !identity.forcing;
  node->joined_ = identity.joined;
  if (resolved.second && config.restore.has_value()) {
    env.Log(absl::StrCat("level=warn msg=\"the data directory holds a member already: it restarts "
                         "with its own data, and the backup is not restored\" backup=",
                         config.restore->name));
  }
  if (!resolved.second && config.restore.has_value()) {
    // Seeded before the identity is recorded: a member never runs with an identity that says
    // "restored" over an engine that is not. The seed is one synced batch, so an engine that
    // holds anything here was seeded by a start that crashed before recording the identity.
    std::unique_ptr<kv::KvIterator> it = engine->Scan("", "");
    E2D_RETURN_IF_ERROR(it->status());
    if (it->Valid()) {
      env.Log(absl::StrCat("level=info msg=\"the store was restored by an interrupted start\" "
                           "backup=", config.restore->name));
    } else {
      E2D_ASSIGN_OR_RETURN(const int64_t revision,
                           kv::KvServer::Seed(engine, config.restore->store));
      env.Log(absl::StrCat("level=info msg=\"restored the store from a backup\" backup=",
                           config.restore->name, " revision=", revision,
                           " cluster_id=", Hex(identity.cluster_id),
                           identity.recovered_from != 0 ? " recovers_cluster=" : "",
                           identity.recovered_from != 0 ? Hex(identity.recovered_from) : ""));
    }
  }
  if (!resolved.second) {
    E2D_ASSIGN_OR_RETURN(const bool has_wal, env.fs().Exists("wal"));
    if (has_wal) {
      // A crash between the log's first sync and the identity's rename (both are in flight at
      // a first start).
      env.Log("level=warn msg=\"the data directory holds a Raft log but no identity; recording "
              "the configured one\"");
    }
    E2D_RETURN_IF_ERROR(node->RecordIdentity(identity.joined));
  }

  raft::RaftNodeConfig rc;
  rc.raft.id = id;
  rc.raft.election_ticks = config.election_ticks;
  rc.raft.random_seed = env.random().Next();
  for (const Member& m : config.initial_cluster) {
    // A joining member starts with no voters: it learns the membership from the log.
    if (!config.join) rc.raft.voters.push_back(m.id);
    if (m.id != id) rc.peers[m.id] = m.peer_address;
  }
  std::sort(rc.raft.voters.begin(), rc.raft.voters.end());
  rc.cluster_id = identity.cluster_id;
  rc.raft.force_new_cluster = identity.forcing;
  if (identity.forcing) {
    env.Log(absl::StrCat("level=warn msg=\"recovery: starting the cluster again alone from this "
                         "member's data\" from_cluster=", Hex(identity.recovered_from),
                         " cluster=", Hex(identity.cluster_id)));
  }
  rc.tick = config.tick;
  rc.snapshot_entries = config.snapshot_entries;
  // A restored store is not in the log: members added later need it in a snapshot.
  rc.seeded = !identity.restored_from.empty();
  kv::KvServerHooks hooks;
  hooks.raft.on_fatal = [&env](const absl::Status& why) {
    env.Log(absl::StrCat("level=error msg=\"fail-stop\" why=\"", why.ToString(), "\""));
  };
  Node* raw = node.get();
  hooks.raft.on_state = [raw](const raft::Raft& r) { raw->OnRaftState(r); };
  hooks.raft.on_wal_synced = [raw](absl::Duration d) { raw->wal_sync_.Observe(d); };
  hooks.raft.on_applied = [raw](size_t, absl::Duration d) { raw->apply_.Observe(d); };
  hooks.raft.on_cluster_id = [raw](uint64_t cluster) { raw->OnClusterId(cluster); };
  hooks.raft.on_removed = [&env, raw] {
    env.Log("level=warn msg=\"this member was removed from the cluster; it serves no requests\"");
    raw->OnRemoved();
  };
  E2D_ASSIGN_OR_RETURN(node->kv_, kv::KvServer::Open(env, engine, std::move(rc), config.kv,
                                                     std::move(hooks)));
  if (identity.forcing) node->forced_index_ = node->kv_->raft_node().raft().log().last_index();
  if (config.backup.store != nullptr) node->ScheduleBackup();
  if (config.manage.enabled) node->ScheduleManage();
  return node;
}

void Node::PrepareRecovery(env::Env& env, std::function<void(absl::Status)> done) {
  auto finish = [&env, done](absl::Status s) {
    env.clock().After(absl::ZeroDuration(), [done, s] { done(s); });
  };
  absl::StatusOr<bool> exists = env.fs().Exists(kIdentityFile);
  if (!exists.ok()) return finish(exists.status());
  if (!*exists) {
    return finish(absl::FailedPreconditionError(
        "recovery: the data directory holds no member: there is no data to start again from"));
  }
  absl::StatusOr<std::unique_ptr<env::File>> f = env.fs().Open(kIdentityFile, {});
  if (!f.ok()) return finish(f.status());
  absl::StatusOr<std::string> text = (*f)->ReadAt(0, 4096);
  if (!text.ok()) return finish(text.status());
  absl::StatusOr<Identity> have = ParseIdentity(*text);
  if (!have.ok()) return finish(have.status());
  if (have->forcing) return finish(absl::OkStatus());  // prepared by a start that did not finish
  if (have->cluster_id == 0) {
    return finish(absl::FailedPreconditionError(
        "recovery: this member joined a cluster but was never reached by it: it holds no data"));
  }
  Identity next = *have;
  next.recovered_from = have->cluster_id;
  next.forcing = true;
  next.joined = false;
  next.restored_from.clear();
  // A new cluster id: members of the old cluster hold entries the recovered log does not, and
  // must never exchange Raft messages with it.
  do {
    next.cluster_id = env.random().Next();
  } while (next.cluster_id == 0 || next.cluster_id == have->cluster_id);
  absl::Status s = WriteIdentity(env, next, [&env, done, next](absl::Status s) {
    if (s.ok()) {
      env.Log(absl::StrCat("level=warn msg=\"recovery: this member starts the cluster again from "
                           "its data\" from_cluster=", Hex(next.recovered_from),
                           " cluster=", Hex(next.cluster_id)));
    }
    done(s);
  });
  if (!s.ok()) finish(s);
}

void Node::ScheduleManage() {
  env_.clock().After(config_.manage.interval, [this, alive = alive_] {
    if (!*alive) return;
    Manage();
    ScheduleManage();
  });
}

void Node::Manage() {
  const raft::Raft& r = kv_->raft_node().raft();
  if (gossip_ == nullptr) return;
  // Where the running members are, from their gossip: a node that joined knows the members it
  // saw running when it decided to, and must answer a leader that started since.
  for (const gossip::Member& g : gossip_->memberlist().Members()) {
    std::optional<GossipMeta> meta = DecodeGossipMeta(g.meta);
    if (!meta.has_value() || meta->pending || meta->cluster_id == 0 ||
        (cluster_id_ != 0 && meta->cluster_id != cluster_id_)) {
      continue;
    }
    if (kv_->raft_node().LearnAddress(meta->member_id, meta->peer_address)) {
      env_.Log(absl::StrCat("level=info msg=\"learned a member's address from gossip\" member=",
                            Hex(meta->member_id), " addr=", meta->peer_address));
    }
  }
  if (cluster_id_ == 0) return;
  // Every member watches who is down, leader or not, so that a new leader judges with what it
  // saw all along rather than starting the health timeout over.
  const env::Instant now = env_.clock().Now();
  absl::btree_map<uint64_t, bool> alive;
  std::vector<MembershipView::Candidate> candidates;
  int fresh = 0;
  uint64_t recovered_by = 0;
  absl::btree_map<uint64_t, GossipMeta> same_cluster;  // live members of this cluster, by id
  for (const gossip::Member& g : gossip_->memberlist().Members()) {
    std::optional<GossipMeta> meta = DecodeGossipMeta(g.meta);
    if (!meta.has_value() || meta->member_id == 0) continue;
    const bool up = g.state == gossip::MemberState::kAlive;
    if (up && meta->cluster_id == cluster_id_ && meta->member_id != id_) {
      same_cluster[meta->member_id] = *meta;
    }
    if (up && (meta->pending || meta->cluster_id == 0) &&
        !r.membership().IsMember(meta->member_id)) {
      ++fresh;
    }
    if (up && !meta->pending && meta->recovered_from == cluster_id_ &&
        meta->cluster_id != cluster_id_ && meta->cluster_id != 0) {
      recovered_by = meta->member_id;
    }
    alive[meta->member_id] = alive[meta->member_id] || up;
    // A node waiting to join runs with no cluster yet (pending nodes decide to join first: they
    // take an id of their own then).
    if (up && !meta->pending && meta->cluster_id == 0 &&
        !r.membership().IsMember(meta->member_id)) {
      candidates.push_back({meta->member_id, g.name, meta->peer_address});
    }
  }
  for (auto it = down_since_.begin(); it != down_since_.end();) {
    if (!r.membership().IsMember(it->first) || alive[it->first]) {
      it = down_since_.erase(it);
    } else {
      ++it;
    }
  }
  for (uint64_t id : r.membership().Members()) {
    if (id != id_ && !alive[id]) down_since_.try_emplace(id, now);
  }
  Recover(alive, same_cluster, fresh, recovered_by);
  // A node that gossip shows running in this cluster under an id the membership no longer
  // holds was removed without hearing of it; a learner never speaks first, so nothing it sends
  // draws the leader's answer. Tell it (RaftNode::TellNotMember acts on a current leader only).
  for (const auto& [id, meta] : same_cluster) {
    if (!r.membership().IsMember(id)) kv_->raft_node().TellNotMember(id);
  }
  if (r.role() != raft::Role::kLeader || manage_running_ || !recovery_recorded_) return;
  MembershipView v;
  v.required_size = config_.manage.required_size;
  v.health_timeout = config_.manage.health_timeout;
  v.now = now;
  v.self = id_;
  v.last_index = r.log().last_index();
  v.change_pending = r.pending_conf_index() > r.log().applied();
  v.candidates = std::move(candidates);
  for (uint64_t id : r.membership().Members()) {
    MembershipView::RaftMember m;
    m.id = id;
    m.learner = r.membership().IsLearner(id);
    const raft::Progress* pr = r.progress(id);
    m.match = id == id_ ? r.log().last_index() : (pr == nullptr ? 0 : pr->match);
    m.recently_active = id == id_ || (pr != nullptr && pr->recent_active);
    m.alive = id == id_ || alive[id];
    if (!m.alive) m.down_since = down_since_.at(id);
    v.members.push_back(m);
  }
  const MembershipAction a = DecideMembership(v);
  if (a.kind == MembershipAction::Kind::kNone) {
    if (!a.why.empty() && a.why != manage_last_why_) {
      env_.Log(absl::StrCat("level=info msg=\"membership: waiting\" why=\"", a.why, "\""));
    }
    manage_last_why_ = a.why;
    return;
  }
  manage_last_why_.clear();
  const char* what = a.kind == MembershipAction::Kind::kPromote  ? "promote"
                     : a.kind == MembershipAction::Kind::kRemove ? "remove"
                                                                 : "add learner";
  env_.Log(absl::StrCat("level=info msg=\"membership: ", what, "\" member=", Hex(a.id),
                        " why=\"", a.why, "\""));
  manage_running_ = true;
  const absl::Duration timeout = std::max(config_.manage.interval * 2, absl::Seconds(10));
  auto done = [this, what, id = a.id](absl::Status s) {
    manage_running_ = false;
    if (!s.ok()) {
      env_.Log(absl::StrCat("level=warn msg=\"membership: ", what, " failed\" member=", Hex(id),
                            " why=\"", s.message(), "\""));
    }
  };
  switch (a.kind) {
    case MembershipAction::Kind::kPromote:
      PromoteCurrentMember(a.id, timeout, done);
      break;
    case MembershipAction::Kind::kRemove:
      RemoveCurrentMember(a.id, timeout, done);
      break;
    case MembershipAction::Kind::kAddLearner:
      AddCurrentMember(a.peer_address, /*learner=*/true, timeout,
                       [done](absl::StatusOr<Member> m) { done(m.status()); }, a.id);
      break;
    case MembershipAction::Kind::kNone:
      break;
  }
}

void Node::OnRemoved() {
  // Self-managed members join under ids of their own, never reused: the removal is final, and
  // the member's data of no use to its cluster. It steps aside and joins again as a new node
  // (its leader adds it back once the cluster lacks a member).
  if (!config_.manage.on_recovery || recovery_requested_) return;
  recovery_requested_ = true;
  RecoveryDecision d;
  d.kind = RecoveryDecision::Kind::kStepAside;
  d.why = "this member was removed from its cluster: it sets its data aside and joins again as a "
          "new node";
  env_.Log(absl::StrCat("level=warn msg=\"recovery: steps aside\" why=\"", d.why, "\""));
  Later([this, d] { config_.manage.on_recovery(d); });
}

void Node::Recover(const absl::btree_map<uint64_t, bool>& alive,
                   const absl::btree_map<uint64_t, GossipMeta>& same_cluster, int fresh,
                   uint64_t recovered_by) {
  const raft::Raft& r = kv_->raft_node().raft();
  RecoveryView v;
  v.self = id_;
  v.required_size = config_.manage.required_size;
  v.health_timeout = config_.manage.health_timeout;
  v.now = env_.clock().Now();
  v.leaderless_since = leaderless_since_;
  v.voter = r.membership().IsVoter(id_);
  v.commit = r.log().committed();
  v.fresh = fresh;
  v.recovered_by = recovered_by;
  // What was read of the store holds for one leaderless spell: a leader may write more.
  if (!leaderless_since_.has_value() && backup_check_ == BackupCheck::kDone) {
    backup_check_ = BackupCheck::kNone;
  }
  v.backups = config_.backup.store != nullptr;
  v.backup_checked = backup_check_ == BackupCheck::kDone;
  v.backup_error = backup_check_error_;
  v.newest_backup = newest_backup_;
  for (uint64_t id : r.membership().Voters()) {
    if (id == id_) continue;
    RecoveryView::Voter o;
    o.id = id;
    auto a = alive.find(id);
    o.alive = a != alive.end() && a->second;
    if (!o.alive) {
      auto d = down_since_.find(id);
      o.down_since = d == down_since_.end() ? v.now : d->second;
    }
    auto m = same_cluster.find(id);
    if (o.alive && m != same_cluster.end() && m->second.lost_quorum) {
      o.lost_quorum = true;
      o.commit = m->second.lost_commit;
      o.vote = m->second.recovery_vote;
    }
    v.others.push_back(o);
  }
  const RecoveryDecision d = DecideRecovery(v);
  const bool acting = static_cast<bool>(config_.manage.on_recovery);
  const bool lost = LostQuorum(v) && v.voter;
  const uint64_t vote = acting && (d.kind == RecoveryDecision::Kind::kVote ||
                                   d.kind == RecoveryDecision::Kind::kForce ||
                                   d.kind == RecoveryDecision::Kind::kRestore)
                            ? d.best
                            : 0;
  if (lost != lost_quorum_ || vote != recovery_vote_) {
    lost_quorum_ = lost;
    recovery_vote_ = vote;
    PublishGossipMeta();
  }
  if (d.why != recovery_last_why_) {
    recovery_last_why_ = d.why;
    if (!d.why.empty()) {
      env_.Log(absl::StrCat("level=", d.kind == RecoveryDecision::Kind::kNone ? "info" : "warn",
                            " msg=\"recovery: ",
                            d.kind == RecoveryDecision::Kind::kNone      ? "waiting"
                            : d.kind == RecoveryDecision::Kind::kVote    ? "votes"
                            : d.kind == RecoveryDecision::Kind::kForce   ? "forces a new cluster"
                            : d.kind == RecoveryDecision::Kind::kRestore ? "restores a backup"
                                                                         : "steps aside",
                            "\" best=", Hex(d.best), " why=\"", d.why, "\""));
    }
  }
  if (!acting || recovery_requested_) return;
  // A failed read of the store is tried again after a while (the store may be back).
  constexpr absl::Duration kBackupCheckRetry = absl::Seconds(10);
  if (d.needs_backup &&
      (backup_check_ == BackupCheck::kNone ||
       (backup_check_ == BackupCheck::kDone && !backup_check_error_.empty() &&
        v.now - backup_checked_at_ >= kBackupCheckRetry))) {
    CheckNewestBackup();
  }
  if (d.kind == RecoveryDecision::Kind::kForce || d.kind == RecoveryDecision::Kind::kRestore ||
      d.kind == RecoveryDecision::Kind::kStepAside) {
    recovery_requested_ = true;
    RecoveryDecision act = d;
    act.cluster = cluster_id_;
    Later([this, act] { config_.manage.on_recovery(act); });
  }
}

void Node::ScheduleBackup() {
  env_.clock().After(config_.backup.interval, [this, alive = alive_] {
    if (!*alive) return;
    MaybeBackup();
    ScheduleBackup();
  });
}

absl::Status Node::BackupNow() {
  if (config_.backup.store == nullptr) {
    return absl::FailedPreconditionError("backups are off (no --snapshot-backup-url)");
  }
  const raft::Raft& r = kv_->raft_node().raft();
  if (r.role() != raft::Role::kLeader || cluster_id_ == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only the leader writes backups; the leader is ",
        r.lead() == raft::kNone ? "not known" : Hex(r.lead())));
  }
  if (backup_running_) return absl::UnavailableError("a backup is being written");
  MaybeBackup(/*forced=*/true);
  E2D_CHECK(backup_running_ || backups_failed_ > 0, "a backup on demand was not started");
  return absl::OkStatus();
}

void Node::MaybeBackup(bool forced) {
  const BackupConfig& bc = config_.backup;
  const raft::Raft& r = kv_->raft_node().raft();
  if (backup_running_ || r.role() != raft::Role::kLeader || cluster_id_ == 0) return;
  const int64_t revision = kv_->store().revision();
  if (revision == last_backup_revision_ && !forced) {
    ++backups_skipped_;  // nothing changed since the last one
    return;
  }
  BackupMeta meta;
  meta.cluster_id = cluster_id_;
  meta.revision = static_cast<uint64_t>(revision);
  meta.raft_index = r.log().applied();
  meta.created_unix_seconds = bc.unix_seconds ? bc.unix_seconds() : 0;
  for (const Member& m : Members()) {
    meta.members.push_back(absl::StrCat(Hex(m.id), " ", m.name.empty() ? "-" : m.name, " ",
                                        m.peer_address));
  }
  BackupOptions options;
  options.gzip = bc.gzip;
  options.keys = bc.keys;
  if (options.keys.has_value()) options.iv = bc.iv();
  // The work runs on the offload worker: it reads only what it captured (the engine view, the
  // options) and the store, which only this worker touches.
  auto result = std::make_shared<absl::Status>();
  std::function<absl::StatusOr<std::string>()> job = kv_->BackupJob();
  BackupStore* store = bc.store;
  const BackupRetention retention{bc.keep, bc.keep_hourly, bc.keep_daily};
  const std::string name = BackupName(cluster_id_, meta.revision);
  const std::string prefix = BackupPrefix(cluster_id_);
  auto work = [job = std::move(job), meta, options, store, retention, name, prefix, result] {
    *result = [&]() -> absl::Status {
      E2D_ASSIGN_OR_RETURN(const std::string payload, job());
      std::string file;
      E2D_ASSIGN_OR_RETURN(std::unique_ptr<BackupWriter> w,
                           BackupWriter::Start(options, meta, [&file](std::string_view b) {
                             file.append(b);
                             return absl::OkStatus();
                           }));
      E2D_RETURN_IF_ERROR(w->Write(payload));
      E2D_RETURN_IF_ERROR(w->Finish());
      E2D_RETURN_IF_ERROR(store->Put(name, file));
      // Retention, over this cluster's backups only.
      E2D_ASSIGN_OR_RETURN(std::vector<BackupObject> objects, store->ListObjects());
      std::vector<BackupObject> ours;
      for (BackupObject& o : objects) {
        if (o.name.rfind(prefix, 0) == 0) ours.push_back(std::move(o));
      }
      for (const std::string& n : BackupsToDelete(std::move(ours), retention)) {
        E2D_RETURN_IF_ERROR(store->Delete(n));
      }
      return absl::OkStatus();
    }();
  };
  auto done = [this, alive = alive_, result, revision, name, store] {
    if (!*alive) return;
    backup_running_ = false;
    if (result->ok()) {
      ++backups_ok_;
      last_backup_revision_ = revision;
      last_backup_at_ = env_.clock().Now();
      env_.Log(absl::StrCat("level=info msg=\"backup written\" name=", name, " store=",
                            store->Describe(), " revision=", revision));
    } else {
      ++backups_failed_;
      env_.Log(absl::StrCat("level=warn msg=\"backup failed\" name=", name, " why=\"",
                            result->ToString(), "\""));
    }
  };
  if (absl::Status s = env_.Offload(std::move(work), std::move(done)); !s.ok()) {
    ++backups_failed_;
    env_.Log(absl::StrCat("level=warn msg=\"backup not started\" why=\"", s.ToString(), "\""));
    return;
  }
  backup_running_ = true;
}

void Node::CheckNewestBackup() {
  struct Result {
    absl::Status status;
    std::optional<RecoveryView::Backup> newest;
    std::vector<std::string> refused;  // "name: why", to log on the env's thread
  };
  auto result = std::make_shared<Result>();
  BackupStore* store = config_.backup.store;
  auto work = [store, keys = config_.backup.keys, cluster = cluster_id_, result] {
    absl::StatusOr<LoadedBackup> b = NewestBackupOf(
        *store, keys, cluster, [&result](const std::string& name, const absl::Status& why) {
          result->refused.push_back(absl::StrCat(name, ": ", why.message()));
        });
    if (b.ok()) {
      result->newest = RecoveryView::Backup{b->name, b->meta.raft_index, b->meta.revision};
    } else if (b.status().code() != absl::StatusCode::kNotFound &&
               b.status().code() != absl::StatusCode::kDataLoss) {
      result->status = b.status();  // NotFound: none; DataLoss: none checks out
    }
  };
  auto done = [this, alive = alive_, result, store] {
    if (!*alive) return;
    backup_check_ = BackupCheck::kDone;
    backup_checked_at_ = env_.clock().Now();
    backup_check_error_ = result->status.ok() ? "" : std::string(result->status.message());
    newest_backup_ = result->newest;
    for (const std::string& r : result->refused) {
      env_.Log(absl::StrCat("level=warn msg=\"recovery: backup refused\" why=\"", r, "\""));
    }
    env_.Log(absl::StrCat(
        "level=info msg=\"recovery: read the newest backup of the cluster\" store=",
        store->Describe(), " cluster=", Hex(cluster_id_),
        !result->status.ok() ? absl::StrCat(" error=\"", backup_check_error_, "\"")
        : newest_backup_.has_value()
            ? absl::StrCat(" backup=", newest_backup_->name, " raft_index=",
                           newest_backup_->raft_index, " revision=", newest_backup_->revision)
            : std::string(" backup=none")));
  };
  backup_check_ = BackupCheck::kRunning;
  if (absl::Status s = env_.Offload(std::move(work), std::move(done)); !s.ok()) {
    backup_check_ = BackupCheck::kDone;
    backup_checked_at_ = env_.clock().Now();
    backup_check_error_ = std::string(s.message());
  }
}

void Node::OnClusterId(uint64_t cluster) {
  if (cluster_id_ != 0) return;
  cluster_id_ = cluster;
  env_.Log(absl::StrCat("level=info msg=\"joined the cluster\" cluster=", Hex(cluster)));
  PublishGossipMeta();
  absl::Status s = RecordIdentity(true);
  if (!s.ok()) {
    // The next start records it again (a joined member accepts any learned cluster id).
    env_.Log(absl::StrCat("level=error msg=\"recording the member identity\" why=\"",
                          s.ToString(), "\""));
  }
}

absl::Status Node::RecordIdentity(bool joined, std::function<void(absl::Status)> done) {
  Identity identity;
  identity.cluster_id = cluster_id_;
  identity.member_id = id_;
  identity.name = config_.name;
  identity.joined = joined;
  identity.restored_from = joined ? "" : restored_from_;
  identity.recovered_from = recovered_from_;
  identity.forcing = forcing_;
  // Durability: the temp file is synced, renamed, and the directory synced in the background;
  // if a crash loses it, the next start writes the same bytes again.
  env::Env& env = env_;  // outlives the node, unlike `this`
  return WriteIdentity(env_, identity, [&env, done = std::move(done)](absl::Status s) {
    if (!s.ok()) {
      env.Log(absl::StrCat("level=error msg=\"recording the member identity\" why=\"",
                           s.ToString(), "\""));
    }
    if (done) done(s);
  });
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
  const auto& addresses = kv_->raft_node().addresses();
  // What the other members publish over gossip (of this cluster only).
  absl::btree_map<uint64_t, std::pair<std::string, GossipMeta>> gossiped;
  if (gossip_ != nullptr) {
    for (const gossip::Member& g : gossip_->memberlist().Members()) {
      std::optional<GossipMeta> meta = DecodeGossipMeta(g.meta);
      if (meta.has_value() && meta->cluster_id == cluster_id_ && cluster_id_ != 0) {
        gossiped[meta->member_id] = {g.name, *meta};
      }
    }
  }
  std::vector<Member> out;
  for (uint64_t id : ms.Members()) {
    Member m;
    if (auto it = known.find(id); it != known.end()) m = *it->second;
    if (auto it = gossiped.find(id); it != gossiped.end()) {
      if (m.name.empty()) m.name = it->second.first;
      if (m.client_url.empty()) m.client_url = it->second.second.client_url;
    }
    // Where the cluster reaches it now (a conf change may have moved or added it).
    if (auto it = addresses.find(id); it != addresses.end()) m.peer_address = it->second;
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
