// Copyright e2d authors.
//
// The Raft consensus core, a value you step (in the design of etcd-io/raft's RawNode): no I/O,
// no clock, no threads. The driver feeds it ticks, messages and proposals, then takes a Ready
// that says what to persist, what to send (and which messages must wait for that persist),
// and which committed entries to apply, and calls Advance once it has done all that.
//
// Implemented here: leader election with randomised timeouts (§5.2), the election restriction
// (§5.4.1), pre-vote and check-quorum (thesis §9.6, §6.2), log replication with fast conflict
// backtracking and per-follower probe/replicate states within bounded inflight windows (§5.3),
// commit only by counting replicas of current-term entries (§5.4.2), and a bound on uncommitted
// proposal bytes, leadership transfer (thesis §3.10), and membership changes (thesis §4:
// learners, single-server changes, joint consensus; see membership.h), and linearizable reads
// (thesis §6.4: ReadIndex, and optional lease reads), and log compaction with snapshots
// (thesis §5: a follower whose next entry was compacted away gets a snapshot).
//
// Snapshots: the core never holds snapshot data. The driver saves the state machine at the
// applied index durably, then calls Compact(applied), which drops the log up to there and makes
// that the snapshot the leader offers. To a follower that needs it the leader sends MSG_SNAP with
// the metadata only (index, term, membership); the driver carries the data (in chunks), saves it
// at the follower and steps the same MSG_SNAP into the follower's core once the data is durable.
// The follower installs it (drops its log unless it holds the snapshot's last entry), and the
// next Ready carries `snapshot`: restore the state machine from it before applying anything
// else. The leader holds no appends for a follower in the snapshot state; it leaves that state
// when the follower acknowledges the snapshot, when the driver reports the transfer failed
// (ReportSnapshot), or after snapshot_timeout_ticks, so a crash mid-transfer never leaves a
// follower paused.
//
// Reads: ReadIndex(context) asks the leader (directly, or forwarded by a follower) for the
// commit index at the time of the request, confirmed by a quorum of heartbeat acknowledgements
// (so a deposed leader cannot answer). The answer comes back as a ReadState in a Ready; the read
// may be served once the applied index reaches it. A leader that has not committed an entry of
// its own term yet, a node that knows no leader, and a leader over its bound of pending reads
// refuse at once with an explicit error (a ReadState with that status when the request was
// forwarded); a leader that steps down fails every read it holds the same way. Nothing is
// dropped silently, except what the network loses: the driver bounds every read with a timeout.
// With lease_reads, a leader answers without the heartbeat round while a quorum has acknowledged
// a heartbeat it sent less than election_ticks - clock_drift_ticks ticks ago (followers ignore
// other candidates for election_ticks after hearing from it: check-quorum's lease), and never
// again in a term in which it asked another node to take over.
//
// Membership changes take effect when their entry is applied (Advance), on every node alike.
// A leader accepts one change at a time (the previous one applied) and none before it has
// applied an entry of its own term (the fix to the single-server change bug of 2015), and it
// refuses a change after which the voters it can currently reach would not form a quorum. A
// leader never removes or demotes itself: it refuses such a change and hands leadership to the
// most up-to-date remaining voter, where the change is retried (removing the leader of a
// two-node cluster would otherwise strand the survivor, which needs the removed node's vote
// while that node may hold entries it lacks). A leader that applies its own removal anyway (an
// earlier leader proposed it) keeps leading, not counting itself, until a quorum of the new
// membership reports a commit index covering the change (not every voter: one may be down for
// good); then it hands over and steps down.
//
// Persistence contract: the driver persists Ready.hard_state and Ready.entries (entries may
// overwrite a suffix of what it persisted before), may send Ready.messages at once, and sends
// Ready.messages_after_persist only once that persist is durable. It applies
// Ready.committed_entries in order after the persist, then calls Advance(ready). At most one
// Ready is outstanding; Step/Tick/Propose may be called while it is.

#ifndef E2D_RAFT_RAFT_H_
#define E2D_RAFT_RAFT_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "env/random.h"
#include "raft/membership.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/raftpb.pb.h"

namespace e2d::raft {

inline constexpr uint64_t kNone = 0;

// Test-only switches that break one safety rule each, so that tests can prove the scenario
// checkers catch the broken rule (a checker that cannot fail proves nothing). Never set them
// outside tests.
enum class Mutation {
  kNone,
  kVoteWithoutLogCheck,       // grant votes without the §5.4.1 up-to-date check
  kCommitOldTermByCounting,   // commit any entry stored on a majority, ignoring §5.4.2
  kReadWithoutQuorum,         // answer ReadIndex at once, without confirming leadership
};

struct Config {
  uint64_t id = kNone;
  // The bootstrap membership. A node whose durable state is empty writes it as the log's first
  // entry (a conf change adding every voter, committed at index 1 of term 1; the same bytes on
  // every node of a new cluster). Empty for a node that joins an existing cluster: it learns the
  // membership from the leader's log and does not campaign until then.
  std::vector<uint64_t> voters;
  int election_ticks = 10;       // election timeout is random in [election, 2 * election)
  int heartbeat_ticks = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t msg_bytes_max = 1 << 20;             // entry bytes in one append
  size_t inflight_msgs_max = 256;               // appends in flight per follower
  uint64_t inflight_bytes_max = 32ull << 20;    // entry bytes in flight per follower
  uint64_t uncommitted_bytes_max = 64ull << 20; // proposals beyond are refused
  uint64_t apply_bytes_max = 64ull << 20;       // committed entry bytes in one Ready
  bool lease_reads = false;        // requires check_quorum
  int clock_drift_ticks = 2;       // lease margin: 0 < clock_drift_ticks < election_ticks
  size_t pending_reads_max = 4096; // reads a leader holds while confirming its leadership
  int snapshot_timeout_ticks = 100; // a follower in the snapshot state this long is probed again
  uint64_t random_seed = 0;                     // the randomised election timeout's stream
  // Recovery after a majority of the voters is lost for good (etcd's --force-new-cluster): the
  // recovered state is taken as the whole truth. Its entries past the durable commit index are
  // dropped (never acknowledged to a client: a write is acknowledged only once applied, and
  // applied only once its commit is durable), and the next entries, in a new term
  // (recovered term + 1) and committed at once, remove every other member one change at a time
  // (leaving joint consensus first if the committed membership is joint), so that this node
  // is the only voter once it applies them; it then elects itself. Nothing is durable until the
  // first Ready is persisted: a crash before that recovers the old state again. The driver must
  // give the node a new cluster id: members of the old membership hold entries this log no
  // longer has, and must never exchange messages with it. FailedPrecondition from Create if
  // the state is empty, or this node is not a voter of the committed membership.
  bool force_new_cluster = false;
  Mutation mutation = Mutation::kNone;          // tests only
};

// What the node recovered from disk.
struct DurableState {
  raftpb::HardState hard_state;
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  std::vector<raftpb::Entry> entries;  // contiguous after the snapshot
  // The membership as of snapshot_index (a snapshot's; at index 0: a membership given rather
  // than logged, as tests do). Without it, an empty state with Config::voters is bootstrapped.
  std::optional<raftpb::ConfState> conf_state;
};

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// The answer to ReadIndex(context): serve the read once the applied index reaches `index`.
struct ReadState {
  std::string context;
  uint64_t index = 0;
  absl::Status status;  // not OK: the read was refused (no leader, leader not ready, stepped down)
};

struct Ready {
  std::optional<raftpb::HardState> hard_state;          // persist if set
  std::vector<raftpb::Entry> entries;                   // persist (may overwrite a suffix)
  std::vector<raftpb::Message> messages;                // may be sent at once
  std::vector<raftpb::Message> messages_after_persist;  // only once the above is durable
  std::vector<raftpb::Entry> committed_entries;         // apply, in order, after the persist
  std::vector<ReadState> read_states;                   // answers to ReadIndex
  // A snapshot received from the leader, installed: persist its marker (the data is durable
  // already), then restore the state machine from it before applying committed_entries.
  std::optional<raftpb::SnapshotMetadata> snapshot;
};

class Raft {
 public:
  // InvalidArgument for a bad config (no id, id not a voter, ticks <= 0) or a durable state
  // that contradicts itself (commit beyond the log, gap in entries, vote without term).
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config, DurableState state);

  // One unit of logical time (the driver calls it every heartbeat interval / heartbeat_ticks).
  void Tick();

  // Handles a message from a peer (or a local one: MSG_HUP, MSG_BEAT, MSG_PROP).
  // Errors: FailedPrecondition "proposal dropped" when a proposal cannot be accepted (no leader,
  // or this leader is over its uncommitted bound: ResourceExhausted). Malformed messages
  // (unknown sender for a response, zero `from`) are ignored and counted.
  absl::Status Step(const raftpb::Message& m);

  // Proposes `data` as a normal entry (forwarded to the leader when this node follows one).
  absl::Status Propose(std::string data);

  // Proposes a membership change (forwarded to the leader when this node follows one). On the
  // leader: FailedPrecondition if a change is still pending, if this leader has not applied an
  // entry of its term yet, if the change is invalid for the current membership (see
  // membership.h), or if the voters it has heard from recently (and that have caught up to the
  // commit index) would not form a quorum of the new membership, e.g. adding a voter that is not
  // running or removing a live one while another is down ("add it as a learner first"), or if it
  // removes this leader (which then starts a leadership transfer: retry on the new leader).
  absl::Status ProposeConfChange(const raftpb::ConfChange& cc);

  // Asks for a linearizable read index (see the header comment). Errors at once when this node
  // cannot even try (no leader known, leader not ready, too many pending reads); otherwise the
  // answer, possibly a refusal, comes as a ReadState with this context.
  absl::Status ReadIndex(std::string context);

  // The metadata of a snapshot of the state machine as applied now (index, term, membership).
  raftpb::SnapshotMetadata SnapshotMetadataNow() const;
  // Log compaction: the driver has durably saved the state machine as `metadata` describes
  // (taken with SnapshotMetadataNow, perhaps a while ago). Drops the log up to its index.
  // FailedPrecondition if that is not past the current snapshot, not applied, or its term does
  // not match the log.
  absl::Status Compact(const raftpb::SnapshotMetadata& metadata);
  // The newest snapshot: the local one, or the one installed from the leader.
  const raftpb::SnapshotMetadata& snapshot() const { return snapshot_; }

  // Leader: the driver could not deliver the snapshot to `to` (the stream broke, the follower
  // refused it): probe the follower again.
  void ReportSnapshotFailure(uint64_t to);

  // Starts an election now (as if the election timeout fired).
  void Campaign();

  // Asks the leader (this node, or forwarded to it) to hand leadership to voter `to`: it brings
  // `to` up to date, then tells it to campaign at once (MSG_TIMEOUT_NOW). Proposals are refused
  // while a transfer is pending; a transfer that has not completed within an election timeout
  // is abandoned.
  void TransferLeadership(uint64_t to);
  uint64_t lead_transferee() const { return lead_transferee_; }

  bool HasReady() const;
  Ready GetReady();  // REQUIRES: no Ready outstanding (crashes otherwise)
  void Advance(const Ready& ready);

  uint64_t id() const { return config_.id; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  Role role() const { return role_; }
  const RaftLog& log() const { return log_; }
  const Progress* progress(uint64_t id) const;
  const Membership& membership() const { return membership_; }
  uint64_t pending_conf_index() const { return pending_conf_index_; }
  raftpb::HardState hard_state() const;
  uint64_t ignored_messages() const { return ignored_messages_; }
  uint64_t ignored_conf_changes() const { return ignored_conf_changes_; }
  std::string ToString() const;

 private:
  Raft(const Config& config, DurableState state);

  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();

  enum class Poll { kPending, kWon, kLost };
  void CampaignInternal(bool pre_vote, bool transfer);
  void StepTransferLeader(const raftpb::Message& m);
  void SendTimeoutNow(uint64_t to);
  Poll RecordVote(uint64_t from, bool granted);

  bool StepTerm(const raftpb::Message& m);  // false: the message is done with
  void StepVoteRequest(const raftpb::Message& m);
  absl::Status StepLeader(const raftpb::Message& m);
  absl::Status StepCandidate(const raftpb::Message& m);
  absl::Status StepFollower(const raftpb::Message& m);
  void StepAppendResponse(const raftpb::Message& m, Progress& pr);
  void StepHeartbeatResponse(const raftpb::Message& m, Progress& pr);

  void HandleAppend(const raftpb::Message& m);
  void HandleSnapshot(const raftpb::Message& m);
  bool SendSnapshot(uint64_t to, Progress& pr);
  void HandleHeartbeat(const raftpb::Message& m);
  absl::Status AppendProposal(const raftpb::Message& m);

  void Send(raftpb::Message m);
  bool SendAppend(uint64_t to, bool send_if_empty);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  bool MaybeCommit();
  bool QuorumActive() const;
  bool promotable() const;
  absl::Status CheckConfChange(const raftpb::ConfChange& cc);  // may start a transfer
  void ApplyConfChange(const raftpb::Entry& e);
  void SyncProgressWithMembership();
  void MaybeStepDownAfterRemoval();
  void MaybeAutoLeave();
  absl::Status StepReadIndex(const raftpb::Message& m);
  void RespondRead(uint64_t to, const std::string& context, uint64_t index, absl::Status status);
  void StepReadIndexResponse(const raftpb::Message& m);
  void AckRead(uint64_t from, const std::string& read_id);
  void AbortReads(const absl::Status& why);
  bool LeaseValid() const;
  void BroadcastHeartbeatWith(const std::string& context);
  uint64_t ApplyLimit(uint64_t pending_last) const;

  const Config config_;
  env::Random random_;
  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  uint64_t lead_ = kNone;
  Role role_ = Role::kFollower;
  RaftLog log_;
  Membership membership_;
  uint64_t pending_conf_index_ = 0;  // leader: no new change until this index is applied
  uint64_t removal_index_ = 0;       // leader: the applied change that removed it (0: none)
  absl::btree_map<uint64_t, Progress> progress_;  // leader only: every member, self included
  absl::btree_map<uint64_t, bool> votes_;          // candidate: who granted / rejected
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  uint64_t uncommitted_bytes_ = 0;  // leader: payload bytes proposed and not yet committed
  uint64_t lead_transferee_ = kNone;  // leader: the voter leadership is being handed to
  // Leader: reads waiting for a quorum to confirm leadership, oldest first.
  struct PendingRead {
    std::string id;       // the heartbeat context that confirms it
    uint64_t from;        // who asked (this node, or a follower)
    std::string context;  // the asker's
    uint64_t index;       // the commit index when it arrived
    absl::btree_set<uint64_t> acks;
  };
  std::deque<PendingRead> reads_;
  uint64_t read_seq_ = 0;
  std::vector<ReadState> read_states_;
  // Leader lease: heartbeat rounds and the tick each was sent at (bounded), acks per follower
  // in Progress::acked_beat.
  uint64_t ticks_ = 0;
  uint64_t beat_seq_ = 0;
  std::deque<std::pair<uint64_t, uint64_t>> beat_ticks_;
  bool lease_revoked_ = false;
  raftpb::SnapshotMetadata snapshot_;                       // the newest one
  std::optional<raftpb::SnapshotMetadata> pending_snapshot_;  // installed, not yet in a Ready
  std::vector<raftpb::Message> msgs_;
  std::vector<raftpb::Message> msgs_after_persist_;
  raftpb::HardState persisted_hard_state_;
  bool ready_outstanding_ = false;
  uint64_t ignored_messages_ = 0;
  uint64_t ignored_conf_changes_ = 0;
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_RAFT_H_
