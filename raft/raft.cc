// Copyright e2d authors.

#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::raft {
namespace {

using raftpb::Message;
using raftpb::MessageType;
using ull = unsigned long long;

// Context of vote requests sent on a leader's order (MSG_TIMEOUT_NOW): voters grant them even
// within the check-quorum lease, since the leader itself asked for the election.
constexpr char kCampaignTransfer[] = "transfer";

bool IsLocal(MessageType t) {
  return t == raftpb::MSG_HUP || t == raftpb::MSG_BEAT || t == raftpb::MSG_CHECK_QUORUM;
}

// Messages that acknowledge or promise something this node must not forget across a crash:
// they may leave only after the Ready that produced them is durable.
bool NeedsPersist(MessageType t) {
  return t == raftpb::MSG_APP_RESP || t == raftpb::MSG_VOTE || t == raftpb::MSG_VOTE_RESP;
}

bool SameHardState(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() && a.commit() == b.commit();
}

absl::Status ValidateConfig(const Config& c) {
  if (c.id == kNone) return absl::InvalidArgumentError("raft config: id must be non-zero");
  if (!c.voters.empty() && std::find(c.voters.begin(), c.voters.end(), c.id) == c.voters.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft config: id ", c.id, " is not a voter of the bootstrap membership"));
  }
  if (c.voters.size() > kMembersMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft config: more than ", kMembersMax, " bootstrap voters"));
  }
  for (uint64_t v : c.voters) {
    if (v == kNone) return absl::InvalidArgumentError("raft config: voter id 0");
  }
  if (c.election_ticks <= 0 || c.heartbeat_ticks <= 0 || c.heartbeat_ticks >= c.election_ticks) {
    return absl::InvalidArgumentError("raft config: need 0 < heartbeat_ticks < election_ticks");
  }
  if (c.lease_reads && !c.check_quorum) {
    return absl::InvalidArgumentError("raft config: lease_reads requires check_quorum");
  }
  if (c.lease_reads && (c.clock_drift_ticks <= 0 || c.clock_drift_ticks >= c.election_ticks)) {
    return absl::InvalidArgumentError(
        "raft config: lease_reads needs 0 < clock_drift_ticks < election_ticks");
  }
  if (c.pending_reads_max == 0) {
    return absl::InvalidArgumentError("raft config: pending_reads_max must be > 0");
  }
  if (c.inflight_msgs_max == 0 || c.msg_bytes_max == 0) {
    return absl::InvalidArgumentError("raft config: inflight and message bounds must be > 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateState(const DurableState& s) {
  uint64_t expect = s.snapshot_index + 1;
  for (const raftpb::Entry& e : s.entries) {
    if (e.index() != expect) {
      return absl::InvalidArgumentError(
          absl::StrCat("raft state: entry index ", e.index(), " where ", expect, " was expected"));
    }
    ++expect;
  }
  const uint64_t last = s.snapshot_index + s.entries.size();
  if (s.hard_state.commit() > last) {
    return absl::InvalidArgumentError(absl::StrCat("raft state: commit ", s.hard_state.commit(),
                                                   " beyond the last index ", last,
                                                   " (log lost or truncated)"));
  }
  if (s.hard_state.vote() != kNone && s.hard_state.term() == 0) {
    return absl::InvalidArgumentError("raft state: vote without a term");
  }
  if (s.snapshot_index > 0 && !s.conf_state) {
    return absl::InvalidArgumentError("raft state: a snapshot without its membership");
  }
  if (s.conf_state) {
    if (absl::StatusOr<Membership> m = Membership::FromConfState(*s.conf_state); !m.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("raft state: snapshot ", m.status().message()));
    }
  }
  return absl::OkStatus();
}

// A new cluster's first entry (the same bytes on every node that bootstraps it): the
// membership, as a committed conf change at index 1 of term 1. A node joining later learns the
// membership by replicating it like any other entry.
raftpb::Entry BootstrapEntry(const Config& c) {
  std::vector<uint64_t> voters = c.voters;
  std::sort(voters.begin(), voters.end());
  raftpb::ConfChange cc;
  for (uint64_t v : voters) {
    raftpb::ConfChangeSingle* change = cc.add_changes();
    change->set_type(raftpb::CONF_CHANGE_ADD_NODE);
    change->set_node_id(v);
  }
  raftpb::Entry e;
  e.set_type(raftpb::ENTRY_CONF_CHANGE);
  e.set_term(1);
  e.set_index(1);
  e.set_data(cc.SerializeAsString());
  return e;
}

bool IsEmpty(const DurableState& s) {
  return s.entries.empty() && s.snapshot_index == 0 && !s.conf_state && s.hard_state.term() == 0 &&
         s.hard_state.commit() == 0;
}

raftpb::Entry ConfEntry(const raftpb::ConfChange& cc, uint64_t term, uint64_t index) {
  raftpb::Entry e;
  e.set_type(raftpb::ENTRY_CONF_CHANGE);
  e.set_term(term);
  e.set_index(index);
  e.set_data(cc.SerializeAsString());
  return e;
}

// Config::force_new_cluster: the entries that follow the committed prefix of `s` (at term
// `term`), leaving `self` the only member.
absl::StatusOr<std::vector<raftpb::Entry>> ForcedEntries(const DurableState& s, uint64_t self,
                                                         uint64_t term) {
  if (IsEmpty(s)) {
    return absl::FailedPreconditionError(
        "force new cluster: this member has no Raft state to start from");
  }
  // The membership as of the commit index: the snapshot's, then each committed change (a
  // change that fails is a no-op on every node alike, see ApplyConfChange).
  Membership m;
  if (s.conf_state) m = *Membership::FromConfState(*s.conf_state);
  const uint64_t commit = s.hard_state.commit();
  for (const raftpb::Entry& e : s.entries) {
    if (e.index() > commit) break;
    if (e.type() != raftpb::ENTRY_CONF_CHANGE) continue;
    raftpb::ConfChange cc;
    if (!cc.ParseFromString(e.data())) continue;
    if (absl::StatusOr<Membership> next = ApplyChange(m, cc); next.ok()) m = *std::move(next);
  }
  if (!m.voters.contains(self)) {
    return absl::FailedPreconditionError(
        absl::StrCat("force new cluster: member ", absl::Hex(self),
                     " is not a voter of the committed "
                     "membership ",
                     m.ToString(),
                     " (a learner or a removed member holds no committed data "
                     "of its own to start from)"));
  }
  std::vector<raftpb::Entry> out;
  uint64_t index = std::max(commit, s.snapshot_index) + 1;
  auto append = [&](const raftpb::ConfChange& cc) {
    absl::StatusOr<Membership> next = ApplyChange(m, cc);
    E2D_CHECK(next.ok(), "force new cluster: %s", next.status().ToString().c_str());
    m = *std::move(next);
    out.push_back(ConfEntry(cc, term, index++));
  };
  if (m.joint()) {
    raftpb::ConfChange leave;
    leave.set_leave_joint(true);
    append(leave);
  }
  for (uint64_t id : m.Members()) {
    if (id == self) continue;
    raftpb::ConfChange cc;
    raftpb::ConfChangeSingle* change = cc.add_changes();
    change->set_type(raftpb::CONF_CHANGE_REMOVE_NODE);
    change->set_node_id(id);
    append(cc);
  }
  // At least one entry, so that the uncommitted tail is always overwritten, and the new term
  // starts with an entry of its own.
  raftpb::Entry empty;
  empty.set_type(raftpb::ENTRY_NORMAL);
  empty.set_term(term);
  empty.set_index(index);
  out.push_back(std::move(empty));
  E2D_CHECK(m.voters.size() == 1 && m.voters.contains(self) && m.Members().size() == 1,
            "force new cluster left %s", m.ToString().c_str());
  return out;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(const Config& config, DurableState state) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  if (absl::Status s = ValidateState(state); !s.ok()) return s;
  std::vector<raftpb::Entry> forced;
  if (config.force_new_cluster) {
    absl::StatusOr<std::vector<raftpb::Entry>> f =
        ForcedEntries(state, config.id, state.hard_state.term() + 1);
    if (!f.ok()) return f.status();
    forced = *std::move(f);
  }
  const bool bootstrap = IsEmpty(state) && !config.voters.empty();
  auto raft = std::unique_ptr<Raft>(new Raft(config, std::move(state)));
  if (!forced.empty()) {
    // Not durable yet: the first Ready persists the entries (overwriting the uncommitted tail)
    // and the hard state (the new term, commit at the last entry); they are applied after.
    const uint64_t term = forced.front().term();
    raft->log_.Append(forced);
    raft->log_.CommitTo(raft->log_.last_index());
    raft->BecomeFollower(term, kNone);
  }
  if (bootstrap) {
    // Not durable yet: the first Ready persists the entry and the hard state (term 1, commit 1).
    raft->log_.Append({BootstrapEntry(config)});
    raft->log_.CommitTo(1);
    raft->BecomeFollower(1, kNone);
    // What applying the entry will give (again): this node may campaign before that.
    raft->membership_.voters.insert(config.voters.begin(), config.voters.end());
  }
  return raft;
}

Raft::Raft(const Config& config, DurableState state)
    : config_(config),
      random_(config.random_seed),
      term_(state.hard_state.term()),
      vote_(state.hard_state.vote()),
      log_(state.snapshot_index, state.snapshot_term, std::move(state.entries),
           state.hard_state.commit()),
      persisted_hard_state_(state.hard_state) {
  if (state.conf_state) {
    membership_ = *Membership::FromConfState(*state.conf_state);
    *snapshot_.mutable_conf_state() = *state.conf_state;
  }
  snapshot_.set_index(state.snapshot_index);
  snapshot_.set_term(state.snapshot_term);
  BecomeFollower(term_, kNone);
}

const Progress* Raft::progress(uint64_t id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

raftpb::HardState Raft::hard_state() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

std::string Raft::ToString() const {
  return absl::StrFormat("raft[%d %s term=%d vote=%d lead=%d %s %s]", config_.id, RoleName(role_),
                         term_, vote_, lead_, log_.ToString(), membership_.ToString());
}

// ---- Roles ----------------------------------------------------------------------------------

void Raft::Reset(uint64_t term) {
  if (role_ == Role::kLeader) {
    AbortReads(absl::UnavailableError("read index refused: the leader stepped down"));
  }
  reads_.clear();
  beat_ticks_.clear();
  lease_revoked_ = false;
  if (term != term_) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  votes_.clear();
  progress_.clear();
  uncommitted_bytes_ = 0;
  lead_transferee_ = kNone;
  removal_index_ = kNone;
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_ticks + static_cast<int>(random_.Uniform(config_.election_ticks));
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Raft::BecomePreCandidate() {
  E2D_CHECK(role_ != Role::kLeader, "leader cannot become pre-candidate");
  // Pre-vote changes neither term nor vote: a node that cannot win disturbs nobody.
  votes_.clear();
  lead_ = kNone;
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  E2D_CHECK(role_ != Role::kLeader, "leader cannot become candidate");
  Reset(term_ + 1);
  vote_ = config_.id;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  E2D_CHECK(role_ == Role::kCandidate, "only a candidate becomes leader (was %s)", RoleName(role_));
  Reset(term_);
  lead_ = config_.id;
  role_ = Role::kLeader;
  SyncProgressWithMembership();
  // §5.4.2: an entry of the new term lets earlier entries commit (and tells followers).
  raftpb::Entry noop;
  noop.set_term(term_);
  noop.set_index(log_.last_index() + 1);
  log_.Append({noop});
  // No membership change before an entry of this term is applied: a change proposed by an
  // earlier leader may still be in the log, uncommitted (the single-server change bug).
  pending_conf_index_ = noop.index();
}

// Leader: one Progress per member (learners marked), self included.
void Raft::SyncProgressWithMembership() {
  const std::vector<uint64_t> members = membership_.Members();
  absl::erase_if(progress_, [&](const auto& kv) { return !membership_.IsMember(kv.first); });
  for (uint64_t id : members) {
    auto [it, fresh] = progress_.try_emplace(id, log_.last_index() + 1, config_.inflight_msgs_max,
                                             config_.inflight_bytes_max);
    Progress& pr = it->second;
    pr.is_learner = !membership_.IsVoter(id);
    if (fresh && id == config_.id) {
      pr.match = log_.stable_index();  // our own copy counts once it is durable
      pr.BecomeReplicate();
    }
  }
  // The leader itself may have been removed: it keeps a Progress for its own log either way.
  if (!progress_.contains(config_.id)) {
    Progress pr(log_.last_index() + 1, config_.inflight_msgs_max, config_.inflight_bytes_max);
    pr.match = log_.stable_index();
    pr.BecomeReplicate();
    pr.is_learner = true;
    progress_.emplace(config_.id, std::move(pr));
  }
}

bool Raft::promotable() const { return membership_.IsVoter(config_.id); }

// ---- Elections (§5.2, pre-vote) ---------------------------------------------------------------

void Raft::Campaign() {
  if (role_ == Role::kLeader || !promotable()) return;
  CampaignInternal(config_.pre_vote, /*transfer=*/false);
}

void Raft::CampaignInternal(bool pre_vote, bool transfer) {
  uint64_t term;
  MessageType type;
  if (pre_vote) {
    BecomePreCandidate();
    type = raftpb::MSG_PRE_VOTE;
    term = term_ + 1;  // the term we would campaign in; ours stays
  } else {
    BecomeCandidate();
    type = raftpb::MSG_VOTE;
    term = term_;
  }
  if (RecordVote(config_.id, true) == Poll::kWon) {  // a single-voter cluster
    if (pre_vote) {
      CampaignInternal(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t v : membership_.Voters()) {
    if (v == config_.id) continue;
    Message m;
    m.set_type(type);
    m.set_to(v);
    m.set_term(term);
    m.set_index(log_.last_index());
    m.set_log_term(log_.last_term());
    if (transfer) m.set_context(kCampaignTransfer);
    Send(std::move(m));
  }
}

Raft::Poll Raft::RecordVote(uint64_t from, bool granted) {
  votes_.emplace(from, granted);  // the first answer of a voter counts
  switch (membership_.Outcome(votes_)) {
    case VoteResult::kWon:
      return Poll::kWon;
    case VoteResult::kLost:
      return Poll::kLost;
    case VoteResult::kPending:
      break;
  }
  return Poll::kPending;
}

void Raft::Tick() {
  if (role_ == Role::kLeader) {
    ++ticks_;
    ++heartbeat_elapsed_;
    for (auto& [id, pr] : progress_) {
      // A snapshot transfer that neither completed nor failed in time (the driver crashed, a
      // report was lost): never leave the follower paused, probe it again.
      if (pr.state == ProgressState::kSnapshot &&
          ++pr.snapshot_ticks >= config_.snapshot_timeout_ticks) {
        pr.pending_snapshot = 0;
        pr.BecomeProbe();
      }
    }
    ++election_elapsed_;
    if (election_elapsed_ >= config_.election_ticks) {
      election_elapsed_ = 0;
      lead_transferee_ = kNone;  // a transfer not done within an election timeout is abandoned
      if (config_.check_quorum) {
        Message m;
        m.set_type(raftpb::MSG_CHECK_QUORUM);
        Step(m).IgnoreError();
      }
    }
    if (role_ == Role::kLeader && heartbeat_elapsed_ >= config_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      BroadcastHeartbeat();
    }
    return;
  }
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    Campaign();
  }
}

// ---- Step -------------------------------------------------------------------------------------

absl::Status Raft::Propose(std::string data) {
  Message m;
  m.set_type(raftpb::MSG_PROP);
  m.set_from(config_.id);
  m.add_entries()->set_data(std::move(data));
  return Step(m);
}

absl::Status Raft::ProposeConfChange(const raftpb::ConfChange& cc) {
  Message m;
  m.set_type(raftpb::MSG_PROP);
  m.set_from(config_.id);
  raftpb::Entry* e = m.add_entries();
  e->set_type(raftpb::ENTRY_CONF_CHANGE);
  e->set_data(cc.SerializeAsString());
  return Step(m);
}

absl::Status Raft::Step(const Message& m) {
  if (!IsLocal(m.type()) && m.type() != raftpb::MSG_PROP && m.from() == kNone) {
    ++ignored_messages_;
    return absl::OkStatus();
  }
  if (!StepTerm(m)) return absl::OkStatus();
  if (m.type() == raftpb::MSG_READ_INDEX_RESP) {
    StepReadIndexResponse(m);
    return absl::OkStatus();
  }
  switch (m.type()) {
    case raftpb::MSG_HUP:
      Campaign();
      return absl::OkStatus();
    case raftpb::MSG_VOTE:
    case raftpb::MSG_PRE_VOTE:
      StepVoteRequest(m);
      return absl::OkStatus();
    default:
      break;
  }
  switch (role_) {
    case Role::kLeader:
      return StepLeader(m);
    case Role::kCandidate:
    case Role::kPreCandidate:
      return StepCandidate(m);
    case Role::kFollower:
      return StepFollower(m);
  }
  return absl::OkStatus();
}

// Compares the message's term with ours (§5.1). Returns false if the message is stale or
// otherwise finished with here.
bool Raft::StepTerm(const Message& m) {
  if (m.term() == 0 || m.term() == term_) return true;  // local, or our term
  const bool vote_request = m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE;
  if (m.term() > term_) {
    const bool forced = m.context() == kCampaignTransfer;
    if (vote_request && !forced && config_.check_quorum && lead_ != kNone &&
        election_elapsed_ < config_.election_ticks) {
      // We heard from a live leader within the election timeout: this candidate cannot be
      // needed, and must not depose it (check-quorum's leader lease).
      ++ignored_messages_;
      return false;
    }
    if (m.type() == raftpb::MSG_PRE_VOTE) return true;  // a pre-vote never changes our term
    if (m.type() == raftpb::MSG_PRE_VOTE_RESP && !m.reject()) return true;  // counted below
    const bool from_leader = m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT ||
                             m.type() == raftpb::MSG_SNAP;
    BecomeFollower(m.term(), from_leader ? m.from() : kNone);
    return true;
  }
  // m.term() < term_.
  if ((config_.check_quorum || config_.pre_vote) &&
      (m.type() == raftpb::MSG_HEARTBEAT || m.type() == raftpb::MSG_APP)) {
    // A leader cut off from us during our (pre-)elections: tell it our term so it steps down,
    // otherwise it could never learn of it (we do not bump terms on pre-vote).
    Message resp;
    resp.set_type(raftpb::MSG_APP_RESP);
    resp.set_to(m.from());
    Send(std::move(resp));
  } else if (m.type() == raftpb::MSG_PRE_VOTE) {
    Message resp;
    resp.set_type(raftpb::MSG_PRE_VOTE_RESP);
    resp.set_to(m.from());
    resp.set_term(term_);
    resp.set_reject(true);
    Send(std::move(resp));
  } else {
    ++ignored_messages_;
  }
  return false;
}

void Raft::StepVoteRequest(const Message& m) {
  const bool pre = m.type() == raftpb::MSG_PRE_VOTE;
  // We may vote for whom we already voted for, or if we have no vote and no leader in this
  // term; a pre-vote for a later term is granted on the log alone.
  const bool can_vote =
      vote_ == m.from() || (vote_ == kNone && lead_ == kNone) || (pre && m.term() > term_);
  Message resp;
  resp.set_type(pre ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP);
  resp.set_to(m.from());
  const bool up_to_date = log_.IsUpToDate(m.index(), m.log_term()) ||
                          config_.mutation == Mutation::kVoteWithoutLogCheck;
  if (can_vote && up_to_date) {  // §5.4.1
    resp.set_term(m.term());
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from();
    }
  } else {
    resp.set_term(term_);
    resp.set_reject(true);
  }
  Send(std::move(resp));
}

absl::Status Raft::StepLeader(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_BEAT:
      BroadcastHeartbeat();
      return absl::OkStatus();
    case raftpb::MSG_CHECK_QUORUM:
      if (!QuorumActive()) {
        BecomeFollower(term_, kNone);  // §6.2: a leader that cannot reach a quorum steps down
        return absl::OkStatus();
      }
      for (auto& [id, pr] : progress_) {
        if (id != config_.id) pr.recent_active = false;
      }
      return absl::OkStatus();
    case raftpb::MSG_PROP:
      if (lead_transferee_ != kNone) {
        return absl::FailedPreconditionError(absl::StrCat(
            "proposal dropped: leadership is being transferred to ", lead_transferee_));
      }
      return AppendProposal(m);
    case raftpb::MSG_TRANSFER_LEADER:
      StepTransferLeader(m);
      return absl::OkStatus();
    case raftpb::MSG_READ_INDEX:
      return StepReadIndex(m);
    default:
      break;
  }
  auto it = progress_.find(m.from());
  if (it == progress_.end()) {
    ++ignored_messages_;
    return absl::OkStatus();
  }
  Progress& pr = it->second;
  switch (m.type()) {
    case raftpb::MSG_APP_RESP:
      pr.commit = std::max(pr.commit, m.commit());
      StepAppendResponse(m, pr);
      MaybeStepDownAfterRemoval();
      break;
    case raftpb::MSG_HEARTBEAT_RESP:
      pr.commit = std::max(pr.commit, m.commit());
      StepHeartbeatResponse(m, pr);
      MaybeStepDownAfterRemoval();
      break;
    case raftpb::MSG_UNREACHABLE:
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      break;
    default:
      ++ignored_messages_;
  }
  return absl::OkStatus();
}

absl::Status Raft::AppendProposal(const Message& m) {
  if (m.entries_size() == 0) return absl::InvalidArgumentError("empty proposal");
  if (removal_index_ != kNone) {
    return absl::FailedPreconditionError("proposal dropped: this leader was removed");
  }
  uint64_t bytes = 0;
  int conf_changes = 0;
  for (const raftpb::Entry& e : m.entries()) {
    bytes += e.data().size();
    if (e.type() != raftpb::ENTRY_CONF_CHANGE) continue;
    if (++conf_changes > 1) {
      return absl::InvalidArgumentError("proposal dropped: more than one conf change");
    }
    raftpb::ConfChange cc;
    if (!cc.ParseFromString(e.data())) {
      return absl::InvalidArgumentError("proposal dropped: conf change does not parse");
    }
    if (absl::Status s = CheckConfChange(cc); !s.ok()) return s;
  }
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + bytes > config_.uncommitted_bytes_max) {
    return absl::ResourceExhaustedError(absl::StrCat("proposal dropped: ", uncommitted_bytes_,
                                                     " bytes already uncommitted (bound ",
                                                     config_.uncommitted_bytes_max, ")"));
  }
  std::vector<raftpb::Entry> entries(m.entries().begin(), m.entries().end());
  uint64_t index = log_.last_index();
  for (raftpb::Entry& e : entries) {
    e.set_term(term_);
    e.set_index(++index);
  }
  log_.Append(entries);
  uncommitted_bytes_ += bytes;
  for (const raftpb::Entry& e : entries) {
    if (e.type() == raftpb::ENTRY_CONF_CHANGE) pending_conf_index_ = e.index();
  }
  BroadcastAppend();
  return absl::OkStatus();
}

// Leader: may `cc` be appended now?
absl::Status Raft::CheckConfChange(const raftpb::ConfChange& cc) {
  if (pending_conf_index_ > log_.applied()) {
    return absl::FailedPreconditionError(
        absl::StrCat("conf change refused: the change or leader entry at index ",
                     pending_conf_index_, " is not applied yet (applied ", log_.applied(), ")"));
  }
  absl::StatusOr<Membership> next = ApplyChange(membership_, cc);
  if (!next.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("conf change refused: ", next.status().message()));
  }
  if (!next->voters.contains(config_.id)) {
    // A leader never removes (or demotes) itself: if it did, the others could need its vote
    // after it left (two voters: always), yet it may hold entries they lack. It hands
    // leadership to the most up-to-date remaining voter; the change is retried there.
    uint64_t best = kNone, best_match = 0;
    for (uint64_t v : next->voters) {
      auto it = progress_.find(v);
      if (it == progress_.end() || !membership_.IsVoter(v)) continue;
      if (best == kNone || it->second.match > best_match) {
        best = v;
        best_match = it->second.match;
      }
    }
    if (best != kNone) TransferLeadership(best);
    return absl::FailedPreconditionError(
        absl::StrCat("conf change refused: it removes the leader; transfer leadership first",
                     best != kNone ? absl::StrCat(" (now moving to n", best, ")") : ""));
  }
  // Would the new membership have a quorum of voters that are with us right now? A voter counts
  // if it is us, or answered since the last check-quorum round and holds the committed log.
  auto active = [&](uint64_t id) {
    if (id == config_.id) return true;
    auto it = progress_.find(id);
    return it != progress_.end() && it->second.recent_active &&
           it->second.match >= log_.committed();
  };
  if (!next->QuorumHolds(active)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conf change refused: it would lose quorum: too few of the voters of ", next->ToString(),
        " are reachable and caught up (add a new node as a learner first, and replace a "
        "down node before removing a live one)"));
  }
  return absl::OkStatus();
}

// Every node, when the entry is applied.
void Raft::ApplyConfChange(const raftpb::Entry& e) {
  raftpb::ConfChange cc;
  absl::StatusOr<Membership> next = cc.ParseFromString(e.data())
                                        ? ApplyChange(membership_, cc)
                                        : absl::InvalidArgumentError("conf change does not parse");
  if (!next.ok()) {
    // Checked when proposed, against the same membership every node has at this index; a
    // change that still fails (an old leader's) is a no-op everywhere alike.
    ++ignored_conf_changes_;
    return;
  }
  membership_ = *std::move(next);
  if (role_ != Role::kLeader) {
    if (!promotable() && role_ != Role::kFollower) BecomeFollower(term_, kNone);
    return;
  }
  SyncProgressWithMembership();
  if (!membership_.IsVoter(config_.id) && removal_index_ == kNone) removal_index_ = e.index();
  // The quorum changed: entries may now be committed, and new members need the log.
  MaybeCommit();
  BroadcastAppend();
}

// Joint consensus is a passage, not a place: a leader (the one that entered it, or a later one)
// proposes leaving as soon as no other change is pending.
void Raft::MaybeAutoLeave() {
  if (role_ != Role::kLeader || !membership_.joint() || !membership_.auto_leave ||
      pending_conf_index_ > log_.applied() || lead_transferee_ != kNone) {
    return;
  }
  raftpb::Entry leave;
  leave.set_type(raftpb::ENTRY_CONF_CHANGE);
  raftpb::ConfChange lc;
  lc.set_leave_joint(true);
  leave.set_data(lc.SerializeAsString());
  leave.set_term(term_);
  leave.set_index(log_.last_index() + 1);
  log_.Append({leave});
  pending_conf_index_ = leave.index();
  BroadcastAppend();
}

// A removed leader steps down once a quorum of the new membership has reported a commit index
// that covers its removal: they apply it and can elect a leader among themselves. (Waiting for
// every voter kept it leading forever when one was down for good: it refuses proposals, so it
// could not even remove that one.) The most up-to-date of them is asked to campaign at once.
void Raft::MaybeStepDownAfterRemoval() {
  if (role_ != Role::kLeader || removal_index_ == kNone) return;
  auto knows = [this](uint64_t v) { return progress_.at(v).commit >= removal_index_; };
  if (!membership_.QuorumHolds(knows)) return;
  uint64_t best = kNone, best_match = 0;
  for (uint64_t v : membership_.Voters()) {
    const Progress& pr = progress_.at(v);
    if (knows(v) && (best == kNone || pr.match > best_match)) {
      best = v;
      best_match = pr.match;
    }
  }
  if (best != kNone) SendTimeoutNow(best);
  BecomeFollower(term_, kNone);
}

void Raft::StepAppendResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject()) {
    uint64_t next_probe = m.reject_hint();
    if (m.log_term() > 0) next_probe = log_.FindConflictByTerm(m.reject_hint(), m.log_term()).first;
    if (pr.MaybeDecrTo(m.index(), next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(m.from(), true);
    }
    return;
  }
  const bool was_paused = pr.paused();
  if (!pr.MaybeUpdate(m.index())) return;
  if (pr.state == ProgressState::kProbe) {
    pr.BecomeReplicate();
  } else if (pr.state == ProgressState::kReplicate) {
    pr.inflights.FreeLE(m.index());
  } else if (pr.state == ProgressState::kSnapshot && pr.match >= pr.pending_snapshot) {
    pr.BecomeReplicate();  // the follower installed the snapshot (or caught up otherwise)
  }
  if (MaybeCommit()) {
    BroadcastAppend();
  } else if (was_paused) {
    SendAppend(m.from(), true);
  }
  // Fill the window with whatever is left (bounded by the inflight limits).
  while (SendAppend(m.from(), false)) {
  }
  if (m.from() == lead_transferee_ && pr.match == log_.last_index()) SendTimeoutNow(m.from());
}

void Raft::StepTransferLeader(const Message& m) {
  const uint64_t to = m.from();  // the transferee travels as `from`
  if (to == config_.id || !membership_.IsVoter(to) || to == lead_transferee_) return;
  if (removal_index_ != kNone) return;  // a removed leader is handing over by itself
  lead_transferee_ = to;
  election_elapsed_ = 0;  // the transfer gets one election timeout
  if (progress_.at(to).match == log_.last_index()) {
    SendTimeoutNow(to);
  } else {
    SendAppend(to, true);
  }
}

void Raft::SendTimeoutNow(uint64_t to) {
  lease_revoked_ = true;  // `to` may be elected within our lease: no more lease reads this term
  Message m;
  m.set_type(raftpb::MSG_TIMEOUT_NOW);
  m.set_to(to);
  Send(std::move(m));
}

void Raft::TransferLeadership(uint64_t to) {
  Message m;
  m.set_type(raftpb::MSG_TRANSFER_LEADER);
  m.set_from(to);
  Step(m).IgnoreError();
}

void Raft::StepHeartbeatResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.acked_beat = std::max(pr.acked_beat, m.index());
  if (!m.context().empty()) AckRead(m.from(), m.context());
  pr.probe_sent = false;
  // A full window with no acks may mean lost appends: let one more through per heartbeat.
  if (pr.state == ProgressState::kReplicate && pr.inflights.full()) pr.inflights.FreeFirstOne();
  if (pr.match < log_.last_index()) SendAppend(m.from(), true);
}

absl::Status Raft::StepCandidate(const Message& m) {
  const MessageType my_response =
      role_ == Role::kPreCandidate ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP;
  switch (m.type()) {
    case raftpb::MSG_PROP:
      return absl::FailedPreconditionError("proposal dropped: no leader (election in progress)");
    case raftpb::MSG_READ_INDEX: {
      absl::Status no =
          absl::UnavailableError("read index refused: no leader (election in progress)");
      if (m.from() == config_.id) return no;
      RespondRead(m.from(), m.entries_size() > 0 ? m.entries(0).data() : "", 0, no);
      return absl::OkStatus();
    }
    case raftpb::MSG_APP:
      BecomeFollower(m.term(), m.from());
      HandleAppend(m);
      return absl::OkStatus();
    case raftpb::MSG_SNAP:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      return absl::OkStatus();
    case raftpb::MSG_HEARTBEAT:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      return absl::OkStatus();
    default:
      break;
  }
  if (m.type() != my_response) {
    ++ignored_messages_;
    return absl::OkStatus();
  }
  switch (RecordVote(m.from(), !m.reject())) {
    case Poll::kWon:
      if (role_ == Role::kPreCandidate) {
        CampaignInternal(false, /*transfer=*/false);
      } else {
        BecomeLeader();
        BroadcastAppend();
      }
      break;
    case Poll::kLost:
      BecomeFollower(term_, kNone);
      break;
    case Poll::kPending:
      break;
  }
  return absl::OkStatus();
}

absl::Status Raft::StepFollower(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_PROP: {
      if (lead_ == kNone) return absl::FailedPreconditionError("proposal dropped: no leader");
      Message fwd = m;
      fwd.set_to(lead_);
      Send(std::move(fwd));
      return absl::OkStatus();
    }
    case raftpb::MSG_APP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppend(m);
      return absl::OkStatus();
    case raftpb::MSG_HEARTBEAT:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      return absl::OkStatus();
    case raftpb::MSG_SNAP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      return absl::OkStatus();
    case raftpb::MSG_TIMEOUT_NOW:
      // The leader hands over: campaign at once, skipping pre-vote (it asked for this).
      if (promotable()) CampaignInternal(/*pre_vote=*/false, /*transfer=*/true);
      return absl::OkStatus();
    case raftpb::MSG_READ_INDEX: {
      if (m.from() != config_.id) {  // the asker thinks we lead: we do not
        RespondRead(m.from(), m.entries_size() > 0 ? m.entries(0).data() : "", 0,
                    absl::UnavailableError("read index refused: asked a follower"));
        return absl::OkStatus();
      }
      if (lead_ == kNone) return absl::UnavailableError("read index refused: no leader");
      Message fwd = m;
      fwd.set_to(lead_);
      Send(std::move(fwd));
      return absl::OkStatus();
    }
    case raftpb::MSG_TRANSFER_LEADER: {
      if (lead_ == kNone) return absl::OkStatus();
      Message fwd = m;
      fwd.set_to(lead_);
      Send(std::move(fwd));
      return absl::OkStatus();
    }
    default:
      ++ignored_messages_;
      return absl::OkStatus();
  }
}

void Raft::HandleAppend(const Message& m) {
  Message resp;
  resp.set_type(raftpb::MSG_APP_RESP);
  resp.set_to(m.from());
  if (m.index() < log_.committed()) {  // everything up to commit is ours already
    resp.set_index(log_.committed());
    resp.set_commit(log_.committed());
    Send(std::move(resp));
    return;
  }
  std::vector<raftpb::Entry> entries(m.entries().begin(), m.entries().end());
  if (std::optional<uint64_t> last =
          log_.MaybeAppend(m.index(), m.log_term(), m.commit(), entries)) {
    resp.set_index(*last);
    resp.set_commit(log_.committed());
    Send(std::move(resp));
    return;
  }
  // §5.3 with fast backtracking: point the leader at the last entry that could match.
  auto [hint_index, hint_term] =
      log_.FindConflictByTerm(std::min(m.index(), log_.last_index()), m.log_term());
  resp.set_index(m.index());
  resp.set_reject(true);
  resp.set_reject_hint(hint_index);
  resp.set_log_term(hint_term);
  Send(std::move(resp));
}

// A snapshot from the leader, its data durable at the driver already.
void Raft::HandleSnapshot(const Message& m) {
  const raftpb::SnapshotMetadata& meta = m.snapshot().metadata();
  Message resp;
  resp.set_type(raftpb::MSG_APP_RESP);
  resp.set_to(m.from());
  if (meta.index() <= log_.committed()) {  // we are past it
    resp.set_index(log_.committed());
    resp.set_commit(log_.committed());
    Send(std::move(resp));
    return;
  }
  if (log_.MatchTerm(meta.index(), meta.term())) {  // we hold its last entry: just commit
    log_.CommitTo(meta.index());
    resp.set_index(meta.index());
    resp.set_commit(log_.committed());
    Send(std::move(resp));
    return;
  }
  absl::StatusOr<Membership> membership = Membership::FromConfState(meta.conf_state());
  if (!membership.ok()) {
    ++ignored_messages_;
    return;
  }
  log_.Restore(meta.index(), meta.term());
  membership_ = *std::move(membership);
  snapshot_ = meta;
  pending_snapshot_ = meta;
  resp.set_index(meta.index());
  resp.set_commit(meta.index());
  Send(std::move(resp));  // after the persist, with the snapshot's marker
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(std::min(m.commit(), log_.last_index()));
  Message resp;
  resp.set_type(raftpb::MSG_HEARTBEAT_RESP);
  resp.set_to(m.from());
  resp.set_context(m.context());
  resp.set_index(m.index());  // the heartbeat round, for the leader lease
  resp.set_commit(log_.committed());
  Send(std::move(resp));
}

// ---- Sending ----------------------------------------------------------------------------------

void Raft::Send(Message m) {
  // A forwarded transfer request carries the transferee as `from`; everything else is ours.
  if (m.type() != raftpb::MSG_TRANSFER_LEADER) m.set_from(config_.id);
  const MessageType t = m.type();
  if (t == raftpb::MSG_VOTE || t == raftpb::MSG_VOTE_RESP || t == raftpb::MSG_PRE_VOTE ||
      t == raftpb::MSG_PRE_VOTE_RESP) {
    E2D_CHECK(m.term() != 0, "vote message without a term");  // set by the caller
  } else if (t != raftpb::MSG_PROP) {
    m.set_term(term_);  // proposals are forwarded without a term (local to the leader)
  }
  (NeedsPersist(t) ? msgs_after_persist_ : msgs_).push_back(std::move(m));
}

bool Raft::SendAppend(uint64_t to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.paused()) return false;
  const uint64_t prev_index = pr.next - 1;
  if (prev_index < log_.snapshot_index()) return SendSnapshot(to, pr);  // compacted away
  std::vector<raftpb::Entry> entries;
  if (pr.next <= log_.last_index()) {
    entries = log_.Slice(pr.next, log_.last_index() + 1, config_.msg_bytes_max);
  }
  if (entries.empty() && !send_if_empty) return false;
  Message m;
  m.set_type(raftpb::MSG_APP);
  m.set_to(to);
  m.set_index(prev_index);
  m.set_log_term(log_.TermOr0(prev_index));
  m.set_commit(log_.committed());
  uint64_t bytes = 0;
  for (raftpb::Entry& e : entries) {
    bytes += e.ByteSizeLong();
    *m.add_entries() = std::move(e);
  }
  pr.SentEntries(m.entries_size() > 0 ? m.entries(m.entries_size() - 1).index() : prev_index,
                 bytes);
  Send(std::move(m));
  return true;
}

bool Raft::SendSnapshot(uint64_t to, Progress& pr) {
  E2D_CHECK(snapshot_.index() == log_.snapshot_index(), "snapshot %llu but log compacted to %llu",
            (ull)snapshot_.index(), (ull)log_.snapshot_index());
  Message m;
  m.set_type(raftpb::MSG_SNAP);
  m.set_to(to);
  *m.mutable_snapshot()->mutable_metadata() = snapshot_;
  pr.BecomeSnapshot(snapshot_.index());
  pr.snapshot_ticks = 0;
  Send(std::move(m));
  return true;
}

void Raft::ReportSnapshotFailure(uint64_t to) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(to);
  if (it == progress_.end() || it->second.state != ProgressState::kSnapshot) return;
  it->second.pending_snapshot = 0;
  it->second.BecomeProbe();
}

raftpb::SnapshotMetadata Raft::SnapshotMetadataNow() const {
  raftpb::SnapshotMetadata m;
  m.set_index(log_.applied());
  m.set_term(log_.TermOr0(log_.applied()));
  *m.mutable_conf_state() = membership_.ToConfState();
  return m;
}

absl::Status Raft::Compact(const raftpb::SnapshotMetadata& metadata) {
  const uint64_t index = metadata.index();
  if (index > log_.applied() || index <= log_.snapshot_index() || index > log_.stable_index() ||
      !log_.MatchTerm(index, metadata.term())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "compact at ", index, "/", metadata.term(), ": must be applied (", log_.applied(),
        "), in the log, and past the snapshot ", log_.snapshot_index()));
  }
  log_.CompactTo(index);
  snapshot_ = metadata;
  return absl::OkStatus();
}

void Raft::BroadcastAppend() {
  for (auto& [id, pr] : progress_) {
    if (id != config_.id) SendAppend(id, true);
  }
}

void Raft::BroadcastHeartbeat() {
  // Carries the newest pending read, so a lost round is retried by the next heartbeat.
  BroadcastHeartbeatWith(reads_.empty() ? "" : reads_.back().id);
}

void Raft::BroadcastHeartbeatWith(const std::string& context) {
  ++beat_seq_;
  beat_ticks_.emplace_back(beat_seq_, ticks_);
  while (beat_ticks_.size() > 1024) beat_ticks_.pop_front();  // bound: older rounds are useless
  for (auto& [id, pr] : progress_) {
    if (id == config_.id) continue;
    Message m;
    m.set_type(raftpb::MSG_HEARTBEAT);
    m.set_to(id);
    m.set_index(beat_seq_);
    m.set_context(context);
    // Never tell a follower to commit past what it is known to hold.
    m.set_commit(std::min(pr.match, log_.committed()));
    Send(std::move(m));
  }
}

bool Raft::MaybeCommit() {
  const uint64_t quorum_index =
      membership_.CommittedIndex([&](uint64_t id) { return progress_.at(id).match; });
  if (config_.mutation == Mutation::kCommitOldTermByCounting && quorum_index > log_.committed() &&
      quorum_index <= log_.last_index()) {
    log_.CommitTo(quorum_index);
    return true;
  }
  return log_.MaybeCommit(quorum_index, term_);  // §5.4.2: only current-term entries by count
}

bool Raft::QuorumActive() const {
  return membership_.QuorumHolds(
      [&](uint64_t id) { return id == config_.id || progress_.at(id).recent_active; });
}

// ---- Reads (thesis §6.4) -----------------------------------------------------------------------

absl::Status Raft::ReadIndex(std::string context) {
  Message m;
  m.set_type(raftpb::MSG_READ_INDEX);
  m.set_from(config_.id);
  m.add_entries()->set_data(std::move(context));
  return Step(m);
}

absl::Status Raft::StepReadIndex(const Message& m) {
  const std::string context = m.entries_size() > 0 ? m.entries(0).data() : "";
  const bool local = m.from() == config_.id;
  auto refuse = [&](absl::Status why) {
    if (local) return why;
    RespondRead(m.from(), context, 0, std::move(why));
    return absl::OkStatus();
  };
  if (log_.TermOr0(log_.committed()) != term_) {
    // Until then our commit index may lag what an earlier leader committed.
    return refuse(absl::UnavailableError(
        "read index refused: the leader has not committed an entry of its term yet"));
  }
  if (removal_index_ != kNone) {
    return refuse(absl::UnavailableError("read index refused: the leader was removed"));
  }
  const uint64_t index = log_.committed();
  const bool alone = membership_.QuorumHolds([&](uint64_t id) { return id == config_.id; });
  if (alone || LeaseValid() || config_.mutation == Mutation::kReadWithoutQuorum) {
    RespondRead(m.from(), context, index, absl::OkStatus());
    return absl::OkStatus();
  }
  if (reads_.size() >= config_.pending_reads_max) {
    return refuse(absl::ResourceExhaustedError(absl::StrCat("read index refused: ", reads_.size(),
                                                            " reads already pending (bound ",
                                                            config_.pending_reads_max, ")")));
  }
  PendingRead r;
  r.id = absl::StrCat("r", ++read_seq_);
  r.from = m.from();
  r.context = context;
  r.index = index;
  if (membership_.IsVoter(config_.id)) r.acks.insert(config_.id);
  reads_.push_back(std::move(r));
  BroadcastHeartbeatWith(reads_.back().id);
  return absl::OkStatus();
}

void Raft::RespondRead(uint64_t to, const std::string& context, uint64_t index,
                       absl::Status status) {
  if (to == config_.id) {
    read_states_.push_back(ReadState{context, index, std::move(status)});
    return;
  }
  Message m;
  m.set_type(raftpb::MSG_READ_INDEX_RESP);
  m.set_to(to);
  m.set_index(index);
  m.add_entries()->set_data(context);
  if (!status.ok()) {
    m.set_reject(true);
    m.set_context(std::string(status.message()));
  }
  Send(std::move(m));
}

void Raft::StepReadIndexResponse(const Message& m) {
  ReadState rs;
  rs.context = m.entries_size() > 0 ? m.entries(0).data() : "";
  rs.index = m.index();
  if (m.reject()) {
    rs.status = absl::UnavailableError(absl::StrCat("leader n", m.from(), ": ", m.context()));
  }
  read_states_.push_back(std::move(rs));
}

// A heartbeat acknowledgement for read `read_id`: once a quorum has acknowledged it, we were the
// leader when it arrived, and so it and every read before it may be answered.
void Raft::AckRead(uint64_t from, const std::string& read_id) {
  auto it = std::find_if(reads_.begin(), reads_.end(),
                         [&](const PendingRead& r) { return r.id == read_id; });
  if (it == reads_.end() || !membership_.IsVoter(from)) return;
  it->acks.insert(from);
  if (!membership_.QuorumHolds([&](uint64_t id) { return it->acks.contains(id); })) return;
  const size_t done = static_cast<size_t>(it - reads_.begin()) + 1;
  for (size_t i = 0; i < done; ++i) {
    PendingRead r = std::move(reads_.front());
    reads_.pop_front();
    RespondRead(r.from, r.context, r.index, absl::OkStatus());
  }
}

void Raft::AbortReads(const absl::Status& why) {
  while (!reads_.empty()) {
    PendingRead r = std::move(reads_.front());
    reads_.pop_front();
    RespondRead(r.from, r.context, 0, why);
  }
}

bool Raft::LeaseValid() const {
  if (!config_.lease_reads || lease_revoked_ || role_ != Role::kLeader) return false;
  const uint64_t confirmed = membership_.CommittedIndex(
      [&](uint64_t id) { return id == config_.id ? beat_seq_ : progress_.at(id).acked_beat; });
  for (const auto& [seq, tick] : beat_ticks_) {
    if (seq == confirmed) {
      return ticks_ - tick <
             static_cast<uint64_t>(config_.election_ticks - config_.clock_drift_ticks);
    }
  }
  return false;  // never confirmed, or too long ago to remember
}

// ---- Ready ------------------------------------------------------------------------------------

// Committed entries may be applied once durable here too: up to the stable index, or up to the
// last entry the Ready being built persists.
uint64_t Raft::ApplyLimit(uint64_t pending_last) const {
  return std::min(log_.committed(), std::max(log_.stable_index(), pending_last));
}

bool Raft::HasReady() const {
  if (ready_outstanding_) return false;
  if (!SameHardState(hard_state(), persisted_hard_state_)) return true;
  if (log_.HasUnpersisted() || !msgs_.empty() || !msgs_after_persist_.empty()) return true;
  if (!read_states_.empty() || pending_snapshot_) return true;
  return ApplyLimit(0) > log_.applied();
}

Ready Raft::GetReady() {
  E2D_CHECK(!ready_outstanding_, "GetReady before Advance of the previous Ready");
  Ready r;
  const raftpb::HardState hs = hard_state();
  if (!SameHardState(hs, persisted_hard_state_)) r.hard_state = hs;
  r.entries = log_.TakeUnpersisted();
  const uint64_t apply_to = ApplyLimit(r.entries.empty() ? 0 : r.entries.back().index());
  if (apply_to > log_.applied()) {
    r.committed_entries = log_.Slice(log_.applied() + 1, apply_to + 1, config_.apply_bytes_max);
  }
  r.snapshot = std::move(pending_snapshot_);
  pending_snapshot_.reset();
  r.read_states = std::move(read_states_);
  read_states_.clear();
  r.messages = std::move(msgs_);
  r.messages_after_persist = std::move(msgs_after_persist_);
  msgs_.clear();
  msgs_after_persist_.clear();
  ready_outstanding_ = true;
  return r;
}

void Raft::Advance(const Ready& r) {
  E2D_CHECK(ready_outstanding_, "Advance without an outstanding Ready");
  ready_outstanding_ = false;
  if (r.hard_state) persisted_hard_state_ = *r.hard_state;
  log_.StableTo(r.entries);
  // Unless a snapshot installed since this Ready was taken supersedes them (it covers them).
  if (!r.committed_entries.empty() && r.committed_entries.back().index() > log_.applied()) {
    log_.AppliedTo(r.committed_entries.back().index());
    for (const raftpb::Entry& e : r.committed_entries) {
      if (e.type() == raftpb::ENTRY_CONF_CHANGE) ApplyConfChange(e);
    }
    if (role_ == Role::kLeader) {
      for (const raftpb::Entry& e : r.committed_entries) {
        if (e.term() == term_)
          uncommitted_bytes_ -= std::min<uint64_t>(uncommitted_bytes_, e.data().size());
      }
    }
  }
  if (role_ == Role::kLeader) {
    // Our own durable entries count towards the quorum only now (the leader's disk may be slow).
    Progress& self = progress_.at(config_.id);
    if (self.MaybeUpdate(log_.stable_index()) && MaybeCommit()) BroadcastAppend();
    MaybeAutoLeave();
  }
}

}  // namespace e2d::raft
