// Copyright e2d authors.

#include "node/bootstrap.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "env/check.h"
#include "env/status_macros.h"

namespace e2d::node {

namespace {

constexpr char kRecordTemp[] = "bootstrap.tmp";

std::string Hex(uint64_t v) { return absl::StrCat(absl::Hex(v, absl::kZeroPad16)); }

std::string Names(const std::vector<std::string>& names) { return absl::StrJoin(names, ", "); }

BootstrapDecision Wait(std::string why) {
  BootstrapDecision d;
  d.kind = BootstrapDecision::Kind::kWait;
  d.why = std::move(why);
  return d;
}

bool Alive(const BootstrapPeer& p) { return p.state == gossip::MemberState::kAlive; }

// The peer whose meta names member `id` (nullptr if none).
const BootstrapPeer* FindMember(const BootstrapView& v, uint64_t id) {
  for (const BootstrapPeer& p : v.peers) {
    if (p.meta.has_value() && p.meta->member_id == id) return &p;
  }
  return nullptr;
}

Member MemberOf(const BootstrapPeer& p) {
  Member m;
  m.name = p.name;
  m.peer_address = p.meta->peer_address;
  m.client_url = p.meta->client_url;
  return m;
}

}  // namespace

bool BootstrapSet::operator==(const BootstrapSet& o) const {
  if (cluster_id != o.cluster_id || restored_from != o.restored_from || join != o.join ||
      join_id != o.join_id ||
      members.size() != o.members.size()) {
    return false;
  }
  for (size_t i = 0; i < members.size(); ++i) {
    const Member &a = members[i], &b = o.members[i];
    if (a.id != b.id || a.name != b.name || a.peer_address != b.peer_address ||
        a.client_url != b.client_url) {
      return false;
    }
  }
  return true;
}

BootstrapSet MakeBootstrapSet(std::vector<Member> members, const std::string& restored_from) {
  for (Member& m : members) {
    m.id = MemberIdFor(m.peer_address);
    m.learner = false;
  }
  std::sort(members.begin(), members.end(),
            [](const Member& a, const Member& b) { return a.id < b.id; });
  BootstrapSet s;
  s.cluster_id = ClusterIdFor(members, restored_from);
  s.restored_from = restored_from;
  s.members = std::move(members);
  return s;
}

namespace {

// Whether `p` acks `set` at `epoch`, or runs its cluster.
bool Acks(const BootstrapPeer& p, uint64_t epoch, const BootstrapSet& set) {
  if (!p.meta.has_value()) return false;
  if (!p.meta->pending) return p.meta->cluster_id == set.cluster_id;
  return p.meta->ack_epoch == epoch && p.meta->ack_cluster_id == set.cluster_id;
}

// Whether the set with `cluster_id` and member ids `members` can no longer be committed at
// `epoch`: one of its members (this one included) acks another set at that epoch, or has moved
// past it, or runs another cluster (see the header for why each is final).
bool Dead(const BootstrapView& v, uint64_t self_id, uint64_t epoch, uint64_t cluster_id,
          const std::vector<uint64_t>& members) {
  for (uint64_t id : members) {
    if (id == self_id) {
      if (v.acked.has_value() &&
          (v.acked->epoch > epoch ||
           (v.acked->epoch == epoch && v.acked->set.cluster_id != cluster_id))) {
        return true;
      }
      continue;
    }
    const BootstrapPeer* p = FindMember(v, id);
    if (p == nullptr) continue;
    const GossipMeta& m = *p->meta;
    if (!m.pending) {
      if (m.cluster_id != cluster_id) return true;
      continue;
    }
    if (m.ack_epoch > epoch || (m.ack_epoch == epoch && m.ack_cluster_id != cluster_id)) {
      return true;
    }
  }
  return false;
}

std::vector<uint64_t> IdsOf(const BootstrapSet& s) {
  std::vector<uint64_t> ids;
  for (const Member& m : s.members) ids.push_back(m.id);
  return ids;
}

}  // namespace

BootstrapDecision DecideBootstrap(const BootstrapView& v) {
  const uint64_t self_id = MemberIdFor(v.self.peer_address);
  const uint64_t my_epoch = v.acked.has_value() ? v.acked->epoch : 0;

  // Acked: bootstrap once every other member of the set acks it at the same epoch (or runs its
  // cluster, which it does only after seeing every ack). Wait while the ack may still win.
  std::string left;  // why the ack was left behind, if it was
  if (v.acked.has_value()) {
    const BootstrapAck& a = *v.acked;
    std::vector<std::string> waiting;
    for (const Member& m : a.set.members) {
      if (m.id == self_id) continue;
      const BootstrapPeer* p = FindMember(v, m.id);
      if (p == nullptr || !Acks(*p, a.epoch, a.set)) waiting.push_back(m.name);
    }
    if (waiting.empty()) {
      BootstrapDecision d;
      d.kind = BootstrapDecision::Kind::kBootstrap;
      d.ack = a;
      d.why = absl::StrCat("every member of cluster ", Hex(a.set.cluster_id), " acks it at epoch ",
                           a.epoch);
      return d;
    }
    if (!Dead(v, self_id, a.epoch, a.set.cluster_id, IdsOf(a.set))) {
      return Wait(absl::StrCat("acked cluster ", Hex(a.set.cluster_id), " at epoch ", a.epoch,
                               "; waiting for ", Names(waiting), " to ack it"));
    }
    left = absl::StrCat("cluster ", Hex(a.set.cluster_id), " at epoch ", a.epoch,
                        " can no longer form; ");
  }

  // A running cluster this member did not ack: it cannot be part of it. (Members that run
  // with no cluster yet, joiners waiting to be added, are looked at last: they name none.)
  std::vector<const BootstrapPeer*> running;
  for (const BootstrapPeer& p : v.peers) {
    if (p.meta.has_value() && !p.meta->pending) running.push_back(&p);
  }
  std::stable_sort(running.begin(), running.end(),
                   [](const BootstrapPeer* a, const BootstrapPeer* b) {
                     return (a->meta->cluster_id == 0) < (b->meta->cluster_id == 0);
                   });
  for (const BootstrapPeer* pp : running) {
    const BootstrapPeer& p = *pp;
    if (p.state == gossip::MemberState::kDead || p.state == gossip::MemberState::kLeft) continue;
    if (v.join_running && p.meta->cluster_id != 0) {
      BootstrapDecision d;
      d.kind = BootstrapDecision::Kind::kJoin;
      d.ack.set.cluster_id = p.meta->cluster_id;
      d.ack.set.join = true;
      for (const BootstrapPeer& q : v.peers) {
        if (!Alive(q) || !q.meta.has_value() || q.meta->pending ||
            q.meta->cluster_id != p.meta->cluster_id || q.meta->member_id == self_id) {
          continue;
        }
        Member m = MemberOf(q);
        m.id = q.meta->member_id;
        d.ack.set.members.push_back(m);
      }
      std::sort(d.ack.set.members.begin(), d.ack.set.members.end(),
                [](const Member& a, const Member& b) { return a.id < b.id; });
      if (d.ack.set.members.empty()) continue;  // only suspect members run it: wait
      d.why = absl::StrCat("member ", p.name, " already runs cluster ", Hex(p.meta->cluster_id),
                           ": this member joins it (its leader adds it as a learner once the "
                           "cluster lacks a member)");
      return d;
    }
    if (p.meta->cluster_id == 0) {
      return Wait(absl::StrCat("member ", p.name, " runs, waiting to join a cluster not seen "
                               "here yet: waiting to see that cluster"));
    }
    return Wait(absl::StrCat(
        "member ", p.name, " already runs cluster ", Hex(p.meta->cluster_id),
        ", which this member is not part of: add it with etcdctl member add and start it with "
        "--initial-cluster-state existing"));
  }

  // Live acks of others: adopt the best one that includes this member (necessarily at a later
  // epoch than its own ack); leave alone those that do not include it.
  struct Tally {
    int acks = 0;
    std::vector<uint64_t> members;
  };
  std::map<std::pair<uint64_t, uint64_t>, Tally> including, excluding;  // (epoch, cluster id)
  uint64_t max_epoch = my_epoch;
  for (const BootstrapPeer& p : v.peers) {
    if (!p.meta.has_value() || !p.meta->pending || p.meta->ack_epoch == 0) continue;
    max_epoch = std::max(max_epoch, p.meta->ack_epoch);
    if (!Alive(p)) continue;
    const std::vector<uint64_t>& ids = p.meta->ack_members;
    // (A set with this member at an epoch it has passed is dead too: it never acks it there.)
    if (Dead(v, self_id, p.meta->ack_epoch, p.meta->ack_cluster_id, ids)) continue;
    const bool has_self = std::binary_search(ids.begin(), ids.end(), self_id);
    Tally& t = (has_self ? including : excluding)[{p.meta->ack_epoch, p.meta->ack_cluster_id}];
    ++t.acks;
    t.members = ids;
  }
  if (!including.empty()) {
    auto best = including.begin();
    for (auto it = including.begin(); it != including.end(); ++it) {
      const bool later = it->first.first > best->first.first;
      const bool more = it->first.first == best->first.first && it->second.acks > best->second.acks;
      if (later || more) best = it;  // equal: the smaller cluster id (the map's order)
    }
    const auto [epoch, cluster] = best->first;
    if (static_cast<int>(best->second.members.size()) != v.required_size) {
      return Wait(absl::StrCat(left, "others ack cluster ", Hex(cluster), " of ",
                               best->second.members.size(), " members, but this member is told ",
                               v.required_size, " (--required-cluster-size)"));
    }
    std::vector<Member> members;
    for (uint64_t id : best->second.members) {
      if (id == self_id) {
        members.push_back(v.self);
        continue;
      }
      const BootstrapPeer* p = FindMember(v, id);
      if (p == nullptr) {
        return Wait(absl::StrCat(left, "others ack cluster ", Hex(cluster),
                                 ", which names member ", Hex(id), " not seen yet"));
      }
      members.push_back(MemberOf(*p));
    }
    BootstrapSet s = MakeBootstrapSet(std::move(members), v.restore);
    if (s.cluster_id != cluster) {
      return Wait(absl::StrCat(
          left, "others ack cluster ", Hex(cluster),
          ", but the names and addresses seen here, and the backup this member restores (",
          v.restore.empty() ? std::string("none") : v.restore, "), make it ", Hex(s.cluster_id),
          ": every member must be given the same --restore-backup"));
    }
    BootstrapDecision d;
    d.kind = BootstrapDecision::Kind::kAck;
    d.ack.epoch = epoch;
    d.ack.set = std::move(s);
    d.why = absl::StrCat(left, "joins the ", best->second.acks, " member(s) acking it at epoch ",
                         epoch);
    return d;
  }
  if (!excluding.empty()) {
    return Wait(absl::StrCat(left, "others ack cluster ", Hex(excluding.begin()->first.second),
                             ", which does not include this member"));
  }

  // No live acks to adopt: pick the N pending members with the smallest ids once the view is
  // still, at an epoch above every epoch seen.
  std::vector<Member> pending = {v.self};
  pending.back().id = self_id;
  for (const BootstrapPeer& p : v.peers) {
    if (!Alive(p) || !p.meta.has_value() || !p.meta->pending) continue;
    Member m = MemberOf(p);
    m.id = p.meta->member_id;
    if (m.id == self_id) continue;  // a second member at this address: not a candidate
    pending.push_back(m);
  }
  std::sort(pending.begin(), pending.end(),
            [](const Member& a, const Member& b) { return a.id < b.id; });
  pending.erase(std::unique(pending.begin(), pending.end(),
                            [](const Member& a, const Member& b) { return a.id == b.id; }),
                pending.end());
  if (static_cast<int>(pending.size()) < v.required_size) {
    return Wait(absl::StrCat(left, "sees ", pending.size(), " of the ", v.required_size,
                             " members the cluster needs"));
  }
  if (!v.settled) {
    return Wait(absl::StrCat(left, "waiting for the view of pending members to settle"));
  }
  pending.resize(v.required_size);
  const bool chosen = std::any_of(pending.begin(), pending.end(),
                                  [&](const Member& m) { return m.id == self_id; });
  if (!chosen) {
    return Wait(absl::StrCat(left, "the cluster forms without this member (it has a larger "
                                   "member id)"));
  }
  BootstrapDecision d;
  d.kind = BootstrapDecision::Kind::kAck;
  d.fresh = true;
  d.ack.epoch = max_epoch + 1;
  d.ack.set = MakeBootstrapSet(std::move(pending), v.restore);
  d.why = absl::StrCat(left, "the ", v.required_size, " pending members with the smallest ids");
  return d;
}

// ---------------------------------------------------------------------------------------------

namespace {

// "e2d-bootstrap v1\nstate=acked|committed|joined\nepoch=N\ncluster_id=HEX\n", then
// "restore=BACKUP\n" if the cluster starts from a backup, or "self=ID\n" for a member that
// joined a running cluster (its own id; epoch 0, and the members are those it saw running),
// then per member "member=ID PEER CLIENT|- NAME\n" (the name last: it may hold spaces).
std::string RecordText(const Bootstrapper::Record& r) {
  std::string out = absl::StrCat("e2d-bootstrap v1\nstate=",
                                 r.ack.set.join ? "joined"
                                 : r.committed  ? "committed"
                                                : "acked",
                                 "\nepoch=", r.ack.epoch, "\ncluster_id=",
                                 Hex(r.ack.set.cluster_id), "\n");
  if (!r.ack.set.restored_from.empty()) {
    absl::StrAppend(&out, "restore=", r.ack.set.restored_from, "\n");
  }
  if (r.ack.set.join) absl::StrAppend(&out, "self=", Hex(r.ack.set.join_id), "\n");
  for (const Member& m : r.ack.set.members) {
    absl::StrAppend(&out, "member=", Hex(m.id), " ", m.peer_address, " ",
                    m.client_url.empty() ? "-" : m.client_url, " ", m.name, "\n");
  }
  return out;
}

absl::StatusOr<Bootstrapper::Record> ParseRecord(const std::string& text) {
  auto bad = [](const std::string& why) {
    return absl::DataLossError(absl::StrCat("the data directory's file \"",
                                            Bootstrapper::kRecordFile, "\" is damaged: ", why));
  };
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.size() < 5 || lines[0] != "e2d-bootstrap v1") {
    return bad("expected \"e2d-bootstrap v1\", a state, an epoch, a cluster id and members");
  }
  Bootstrapper::Record r;
  bool joined = false;
  if (lines[1] == "state=committed") {
    r.committed = true;
  } else if (lines[1] == "state=joined") {
    r.committed = joined = true;
  } else if (lines[1] != "state=acked") {
    return bad("line 2 is neither state=acked, state=committed nor state=joined");
  }
  if (lines[2].rfind("epoch=", 0) != 0 || !absl::SimpleAtoi(lines[2].substr(6), &r.ack.epoch) ||
      (r.ack.epoch == 0) != joined) {
    return bad("line 3 is not epoch=N (N >= 1; 0 for a joined member)");
  }
  uint64_t cluster = 0;
  if (lines[3].rfind("cluster_id=", 0) != 0 ||
      !absl::SimpleHexAtoi(lines[3].substr(11), &cluster)) {
    return bad("line 4 is not cluster_id=HEX");
  }
  std::string restored_from;
  size_t first_member = 4;
  uint64_t join_id = 0;
  if (joined) {
    if (!absl::StartsWith(lines[4], "self=") ||
        !absl::SimpleHexAtoi(lines[4].substr(5), &join_id) || join_id == 0) {
      return bad("line 5 of a joined member is not self=HEX");
    }
    first_member = 5;
  } else if (absl::StartsWith(lines[4], "restore=")) {
    restored_from = lines[4].substr(8);
    if (restored_from.empty()) return bad("line 5 is restore= without a backup");
    first_member = 5;
  }
  std::vector<Member> members;
  for (size_t i = first_member; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], absl::MaxSplits(' ', 3));
    uint64_t id = 0;
    if (f.size() != 4 || f[0].rfind("member=", 0) != 0 ||
        !absl::SimpleHexAtoi(f[0].substr(7), &id) || f[1].empty() || f[3].empty()) {
      return bad(absl::StrCat("line ", i + 1, " is not member=ID PEER CLIENT NAME"));
    }
    Member m;
    m.id = id;
    m.peer_address = f[1];
    if (f[2] != "-") m.client_url = f[2];
    m.name = f[3];
    members.push_back(std::move(m));
  }
  if (joined) {
    // The running members it joined, as seen then, with the ids they published (members that
    // joined have ids of their own, not their addresses').
    r.ack.set.cluster_id = cluster;
    r.ack.set.members = std::move(members);
    r.ack.set.join = true;
    r.ack.set.join_id = join_id;
    return r;
  }
  r.ack.set = MakeBootstrapSet(members, restored_from);
  for (size_t i = 0; i < members.size(); ++i) {
    if (std::none_of(r.ack.set.members.begin(), r.ack.set.members.end(),
                     [&](const Member& m) { return m.id == members[i].id; })) {
      return bad(absl::StrCat("member ", members[i].name, "'s id does not match its address"));
    }
  }
  if (r.ack.set.cluster_id != cluster) {
    return bad("the cluster id does not match the members");
  }
  return r;
}

}  // namespace

Bootstrapper::Bootstrapper(env::Env& env, gossip::GossipNode* gossip, BootstrapperConfig config,
                           std::function<void(absl::StatusOr<BootstrapSet>)> done)
    : env_(env), gossip_(gossip), config_(std::move(config)), done_(std::move(done)) {
  E2D_CHECK(gossip_ != nullptr, "a bootstrapper needs gossip");
  E2D_CHECK(config_.required_size >= 1, "required size %d", config_.required_size);
}

Bootstrapper::~Bootstrapper() {
  *alive_ = false;
  if (timer_ != 0) env_.clock().Cancel(timer_);
}

absl::StatusOr<std::optional<Bootstrapper::Record>> Bootstrapper::Read(env::FileSystem& fs) {
  E2D_ASSIGN_OR_RETURN(const bool exists, fs.Exists(kRecordFile));
  if (!exists) return std::optional<Record>();
  E2D_ASSIGN_OR_RETURN(std::unique_ptr<env::File> f, fs.Open(kRecordFile, {}));
  E2D_ASSIGN_OR_RETURN(const std::string text, f->ReadAt(0, 64 << 10));
  E2D_ASSIGN_OR_RETURN(Record r, ParseRecord(text));
  return std::optional<Record>(std::move(r));
}

void Bootstrapper::Start() {
  absl::StatusOr<std::optional<Record>> r = Read(env_.fs());
  if (!r.ok()) return Finish(r.status());
  if (r->has_value()) {
    if ((*r)->committed) return Finish((*r)->ack.set);
    acked_ = (*r)->ack;
    env_.Log(absl::StrCat("level=info msg=\"bootstrap: acked before this start\" cluster=",
                          Hex(acked_->set.cluster_id), " epoch=", acked_->epoch));
  }
  last_change_ = env_.clock().Now();
  Publish();
  timer_ = env_.clock().After(config_.poll, [this] { Poll(); });
}

void Bootstrapper::Publish() {
  GossipMeta meta;
  meta.pending = true;
  meta.member_id = MemberIdFor(config_.self.peer_address);
  meta.peer_address = config_.self.peer_address;
  meta.client_url = config_.self.client_url;
  if (acked_.has_value()) {
    meta.ack_epoch = acked_->epoch;
    meta.ack_cluster_id = acked_->set.cluster_id;
    for (const Member& m : acked_->set.members) meta.ack_members.push_back(m.id);
  }
  if (absl::Status s = gossip_->SetMeta(EncodeGossipMeta(meta)); !s.ok()) {
    env_.Log(absl::StrCat("level=warn msg=\"bootstrap: gossip meta not published\" why=\"",
                          s.ToString(), "\""));
  }
}

void Bootstrapper::Poll() {
  timer_ = 0;
  if (finished_) return;
  BootstrapView v;
  v.required_size = config_.required_size;
  v.self = config_.self;
  v.restore = config_.restore;
  v.join_running = config_.join_running;
  v.acked = acked_;
  std::vector<uint64_t> pending;
  for (const gossip::Member& m : gossip_->memberlist().Members()) {
    if (m.name == config_.self.name) continue;
    BootstrapPeer p;
    p.name = m.name;
    p.state = m.state;
    p.meta = DecodeGossipMeta(m.meta);
    if (p.state == gossip::MemberState::kAlive && p.meta.has_value() && p.meta->pending) {
      pending.push_back(p.meta->member_id);
    }
    v.peers.push_back(std::move(p));
  }
  std::sort(pending.begin(), pending.end());
  const env::Instant now = env_.clock().Now();
  if (pending != last_pending_) {
    last_pending_ = std::move(pending);
    last_change_ = now;
  }
  v.settled = now - last_change_ >= config_.settle;
  BootstrapDecision d = DecideBootstrap(v);
  // After an epoch died, a fresh pick waits a random part of the settle time: the first member
  // to pick is then likely adopted by the others instead of racing them again.
  if (d.kind == BootstrapDecision::Kind::kAck && d.fresh && d.ack.epoch > 1) {
    if (!fresh_delayed_) {
      fresh_delayed_ = true;
      const int64_t spread_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(config_.settle));
      fresh_not_before_ = now + absl::Milliseconds(static_cast<int64_t>(
                                    env_.random().Uniform(static_cast<uint64_t>(spread_ms))));
    }
    if (now < fresh_not_before_) {
      const uint64_t epoch = d.ack.epoch;
      d = BootstrapDecision();
      d.why = absl::StrCat("will pick a set at epoch ", epoch, " unless another comes first");
    }
  }
  if (d.kind != BootstrapDecision::Kind::kWait) fresh_delayed_ = false;
  if (d.why != why_) {
    why_ = d.why;
    env_.Log(absl::StrCat("level=info msg=\"bootstrap\" ",
                          d.kind == BootstrapDecision::Kind::kWait   ? "waits"
                          : d.kind == BootstrapDecision::Kind::kAck  ? "acks"
                          : d.kind == BootstrapDecision::Kind::kJoin ? "joins"
                                                                     : "bootstraps",
                          d.kind == BootstrapDecision::Kind::kWait
                              ? ""
                              : absl::StrCat(" cluster=", Hex(d.ack.set.cluster_id),
                                             " epoch=", d.ack.epoch),
                          " why=\"", d.why, "\""));
  }
  auto again = [this] { timer_ = env_.clock().After(config_.poll, [this] { Poll(); }); };
  switch (d.kind) {
    case BootstrapDecision::Kind::kWait:
      return again();
    case BootstrapDecision::Kind::kAck: {
      Record r;
      r.ack = d.ack;
      // Durable before it is published: an ack must survive a crash, or a restarted member
      // could ack another set at the same epoch after its first ack let others commit.
      return Write(r, [this, ack = d.ack, again] {
        acked_ = ack;
        Publish();
        again();
      });
    }
    case BootstrapDecision::Kind::kBootstrap:
    case BootstrapDecision::Kind::kJoin: {
      Record r;
      r.committed = true;
      r.ack = d.ack;
      if (d.kind == BootstrapDecision::Kind::kJoin) {
        while (r.ack.set.join_id == 0 ||
               r.ack.set.join_id == MemberIdFor(config_.self.peer_address)) {
          r.ack.set.join_id = env_.random().Next();
        }
        d.ack.set.join_id = r.ack.set.join_id;
      }
      return Write(r, [this, set = d.ack.set] { Finish(set); });
    }
  }
}

void Bootstrapper::Write(const Record& record, std::function<void()> then) {
  WriteRecord(env_, record, [this, alive = alive_, then = std::move(then)](absl::Status s) {
    if (!*alive) return;
    if (!s.ok()) return Finish(s);
    then();
  });
}

void Bootstrapper::WriteRecord(env::Env& env, const Record& record,
                               std::function<void(absl::Status)> done) {
  env::FileSystem& fs = env.fs();
  absl::StatusOr<std::unique_ptr<env::File>> f =
      fs.Open(kRecordTemp, {.create = true, .truncate = true});
  absl::Status s = f.status();
  if (s.ok()) s = (*f)->Append(RecordText(record));
  if (!s.ok()) {
    env.clock().After(absl::ZeroDuration(), [done = std::move(done), s] { done(s); });
    return;
  }
  std::shared_ptr<env::File> file(std::move(*f));
  file->Sync([&env, file, done = std::move(done)](absl::Status s) mutable {
    if (s.ok()) s = env.fs().Rename(kRecordTemp, kRecordFile);
    if (!s.ok()) return done(s);
    env.fs().SyncDir("", std::move(done));
  });
}

void Bootstrapper::Finish(absl::StatusOr<BootstrapSet> result) {
  if (finished_) return;
  finished_ = true;
  if (!result.ok()) {
    result = absl::Status(result.status().code(),
                          absl::StrCat("bootstrap: ", result.status().message()));
  }
  // Never inside Start() or a caller's stack: the caller may destroy this object in `done`.
  env_.clock().After(absl::ZeroDuration(), [alive = alive_, done = done_, result] {
    if (*alive) done(result);
  });
}

}  // namespace e2d::node
