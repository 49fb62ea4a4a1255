// Copyright e2d authors.
//
// RaftNode: the driver that runs the Raft core on env::Env — the code the real node and the
// simulator both run. It ticks the core on a timer, carries messages over env streams (one
// outbound stream per peer, reconnecting with bounded backoff; whatever cannot be sent is
// dropped, which Raft tolerates), and processes each Ready: send what may go at once, append
// entries and hard state to the WAL, sync it (group commit), then send what waited for the
// persist, apply committed entries, Advance.
//
// A WAL error is fatal for the node (fail-stop: after an fsync error nothing on disk can be
// trusted): the node stops ticking, stepping and sending, and reports it; a supervisor restarts
// it, and recovery decides what survived.
//
// Membership: peers are found in an address book, seeded from the config and extended by the
// addresses that conf changes carry (ConfChangeSingle.address); messages are exchanged with the
// current members only. A node that applied its own removal (and no longer leads: a removed
// leader first hands over, see raft.h), or that a current leader told it is not a member
// (MSG_NOT_MEMBER: a node removed while cut off never receives its removal; the leader answers
// its messages so, once it has committed in its term and applied all it knows committed, and
// only a leader of the node's term or a later one is believed), refuses proposals and reads
// from then on and reports it,
// but keeps answering votes and appends: members that have not learned that the removal
// committed may still need it to elect a leader that tells them (a node that exits at once can
// strand the survivor of a two-node cluster for good). Exiting is the node layer's call.
//
// Snapshots: every snapshot_entries applied entries the node saves the state machine
// (hooks.snapshot_data) to the SnapshotStore, then compacts the core's log, writes the WAL's
// snapshot marker and, once that is durable, releases WAL segments and older snapshot files.
// A follower that needs a snapshot gets it in chunks of snapshot_chunk_bytes, at most
// snapshot_chunks_in_flight unacknowledged, each acknowledged with the contiguous byte count
// received; a transfer that breaks (stream closed, node crashed) is reported to the core, which
// probes and offers it again, and the receiver keeps what it has, so the next attempt resumes
// where the last one stopped. The receiver checks the whole snapshot's CRC32C, saves it, and
// only then steps it into its core; the state machine is restored (hooks.on_restore) before
// any later entry is applied. Recovery loads the snapshot the WAL's marker names (DataLoss,
// naming the file, if it is damaged) and replays the entries after it.

#ifndef E2D_RAFT_RAFT_NODE_H_
#define E2D_RAFT_RAFT_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "env/env.h"
#include "raft/raft.h"
#include "raft/snapshot_store.h"
#include "raft/wal.h"

namespace e2d::raft {

struct RaftNodeConfig {
  Config raft;                                     // id, voters, timeouts, bounds
  // The initial address book: every bootstrap voter but this node (for a joining node: the
  // members it joins).
  absl::btree_map<uint64_t, env::Address> peers;
  // Stamped on every message sent; messages carrying another id are dropped. 0: not known yet
  // (a node joining a running cluster): the first non-zero id heard is adopted, and
  // hooks.on_cluster_id reports it. Nodes with id 0 exchange messages with anyone.
  uint64_t cluster_id = 0;
  absl::Duration tick = absl::Milliseconds(100);   // one Raft tick
  WalOptions wal;
  absl::Duration backoff_min = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(2);
  size_t accepted_streams_max = 64;
  absl::Duration read_timeout = absl::Seconds(2);  // a read not answered by then fails
  size_t reads_pending_max = 1024;
  uint64_t snapshot_entries = 0;  // take a snapshot every this many applied entries (0: never)
  // The state machine holds state that no entry of the log produces (it was restored from a
  // backup, and the log starts after it): the node takes its first snapshot as soon as it
  // applied an entry, whatever snapshot_entries says, so that a member added later receives
  // that state in a snapshot instead of replaying a log that lacks it.
  bool seeded = false;
  std::string snapshot_dir = "snap";
  uint64_t snapshot_bytes_max = 256ull << 20;
  size_t snapshot_chunk_bytes = 64 << 10;
  size_t snapshot_chunks_in_flight = 4;
};

struct RaftNodeHooks {
  // A committed entry, in index order (after a restart, from index 1 again: the state machine
  // is rebuilt by replaying the log), with the core that applies it.
  std::function<void(const raftpb::Entry& entry, const Raft& raft)> on_apply;
  // After every step, tick, proposal and Ready: lets checkers look at the core (role, term,
  // log) right after it changed.
  std::function<void(const Raft& raft)> on_state;
  std::function<void(const absl::Status& why)> on_fatal;
  // This node applied its own removal (it stays passive; see the header comment).
  std::function<void()> on_removed;
  // A joining node learned its cluster's id (see RaftNodeConfig::cluster_id).
  std::function<void(uint64_t cluster_id)> on_cluster_id;
  // The state machine as of the last entry applied, serialized (for a snapshot). Either
  // snapshot_data, called on the node's thread, or snapshot_job (preferred when set), which
  // captures a point-in-time view at once and returns the work that serializes it; that work
  // runs off the node's thread (env::Env::Offload), so it may only touch what it captured.
  std::function<std::string()> snapshot_data;
  std::function<std::function<std::string()>()> snapshot_job;
  // Observation only (metrics): how long each WAL sync took, from issuing it to its
  // completion; and each Ready's committed entries handed to on_apply, with the time they took.
  std::function<void(absl::Duration)> on_wal_synced;
  std::function<void(size_t entries, absl::Duration)> on_applied;
  // Replaces the state machine with a snapshot's (at recovery, or installed from the leader).
  std::function<void(const raftpb::SnapshotMetadata& metadata, const std::string& data)>
      on_restore;
};

class RaftNode {
 public:
  // Recovers from the WAL and starts ticking. Errors: the WAL's (e.g. DataLoss naming file and
  // offset) and the core's validation of the recovered state.
  static absl::StatusOr<std::unique_ptr<RaftNode>> Open(env::Env& env, RaftNodeConfig config,
                                                        RaftNodeHooks hooks);
  ~RaftNode();
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  // Proposes `data`. FailedPrecondition if this node knows no leader or has failed.
  absl::Status Propose(std::string data);

  // Asks for leadership to move to voter `to` (see Raft::TransferLeadership).
  void TransferLeadership(uint64_t to);

  // A linearizable read (see Raft::ReadIndex): `done` gets the read index once this node has
  // applied at least that far (serve the read from the state machine right then), or an error:
  // refused (no leader, leader not ready, stepped down), ResourceExhausted past
  // reads_pending_max, DeadlineExceeded after read_timeout (e.g. the request or its answer was
  // lost). `done` may run before ReadIndex returns, for an immediate refusal.
  void ReadIndex(std::function<void(absl::StatusOr<uint64_t>)> done);

  // Proposes a membership change (see Raft::ProposeConfChange); an added node's
  // ConfChangeSingle.address tells every member where to reach it.
  absl::Status ProposeConfChange(const raftpb::ConfChange& cc);

  const Raft& raft() const { return *raft_; }
  bool failed() const { return failed_; }
  bool removed() const { return removed_; }
  uint64_t messages_dropped() const { return messages_dropped_; }
  // Where each other member is reached (the config's peers and the addresses conf changes
  // carried).
  const absl::btree_map<uint64_t, env::Address>& addresses() const { return addresses_; }
  // Adds where `id` is reached if the address book has no entry for it (a hint, say from
  // gossip, for a joining node whose config named only some members: the log's addresses and
  // the config's win). At most kMembersMax * 2 entries. Returns whether it was added.
  bool LearnAddress(uint64_t id, const env::Address& address);
  // Tells node `id` that it is not a member (MSG_NOT_MEMBER), if this node is a current leader
  // whose membership does not hold it, at most once a second per node. For a removed node that
  // never speaks first (a learner), found by its owner some other way (gossip).
  void TellNotMember(uint64_t id);
  // This node's cluster id (0 while a joining node has not heard from its cluster yet).
  uint64_t cluster_id() const { return cluster_id_; }
  // Messages dropped because they came from another cluster.
  uint64_t foreign_messages() const { return foreign_messages_; }
  uint64_t wal_syncs() const { return wal_syncs_; }
  uint64_t snapshots_saved() const { return snapshots_saved_; }
  uint64_t snapshots_installed() const { return snapshots_installed_; }
  uint64_t snapshot_chunks_sent() const { return snapshot_chunks_sent_; }

 private:
  struct Outbound {
    std::unique_ptr<env::Stream> stream;
    bool closed = false;
    env::Instant retry_at;
    absl::Duration backoff;
  };
  struct Inbound {
    std::unique_ptr<env::Stream> stream;
    bool closed = false;
  };

  RaftNode(env::Env& env, RaftNodeConfig config, RaftNodeHooks hooks, std::unique_ptr<Wal> wal,
           std::unique_ptr<Raft> raft, std::unique_ptr<SnapshotStore> store,
           std::optional<StoredSnapshot> snapshot);
  void Start();
  void OnTick();
  // Ticks the core once for every tick interval the clock says has passed since the last tick
  // (at most a bounded number at once). A paused process or a delayed timer thus never leaves
  // the core believing less time has passed than has: the leader lease depends on it.
  void CatchUpTicks();
  void ProcessReady();
  // Sends what waited for the persist, applies, advances. Does not start the next Ready.
  void CompleteReady(Ready ready, absl::Status persisted);
  void SendAll(const std::vector<raftpb::Message>& messages);
  void SendTo(const raftpb::Message& m);
  Outbound* OutboundFor(uint64_t peer);
  // Stamps the cluster id on `m` and sends it to m.to(); false if it could not be sent.
  bool Deliver(raftpb::Message& m);
  void OnAccept(std::unique_ptr<env::Stream> stream);
  void OnMessage(const std::string& bytes);
  void Observe();
  void Fail(const absl::Status& why);
  void LearnAddresses(const raftpb::Entry& e);
  void MaybeTellNotMember(const raftpb::Message& m);
  void OnNotMember(const raftpb::Message& m);
  void MaybeSaveSnapshot();
  void SaveSnapshot(const raftpb::SnapshotMetadata& meta, std::shared_ptr<std::string> data);
  void AfterSnapshotDurable(uint64_t index, uint64_t term);
  void StartTransfer(const raftpb::Message& m);
  void SendChunks(uint64_t peer);
  void AbortTransfer(uint64_t peer);
  void OnChunk(const raftpb::Message& m);
  void OnChunkAck(const raftpb::Message& m);
  void AckChunk(uint64_t to, const raftpb::SnapshotMetadata& meta, uint64_t next, bool reject);
  void AnswerReads(const std::vector<ReadState>& states);
  void ServeReads();
  void FailReads(const absl::Status& why);
  bool stopped() const { return failed_; }

  env::Env& env_;
  const RaftNodeConfig config_;
  const RaftNodeHooks hooks_;
  std::unique_ptr<Wal> wal_;
  std::unique_ptr<Raft> raft_;
  std::unique_ptr<SnapshotStore> store_;
  std::optional<StoredSnapshot> snapshot_;  // the newest one, to send to followers
  std::optional<uint32_t> snapshot_crc_;    // of snapshot_->data, once a transfer needed it
  // Snapshots received and stepped into the core, by index, until the Ready installing each is
  // durable (then it becomes snapshot_). While a slow disk persists one, the leader may send
  // newer ones; past 4 waiting, the next is refused (the leader offers it again later).
  absl::btree_map<uint64_t, StoredSnapshot> installing_;
  // The index the state machine reflects (the last entry applied or snapshot restored through
  // the hooks). Reads are served against it, never against the core's applied index, which
  // jumps to a received snapshot's index before the install is durable and restored.
  uint64_t sm_applied_ = 0;
  bool snapshot_saving_ = false;
  uint64_t snapshot_retry_from_ = 0;  // after a failed save: count snapshot_entries from here
  struct Transfer {  // sending a snapshot to one follower
    raftpb::SnapshotMetadata meta;
    uint64_t acked = 0;  // bytes the follower confirmed
    uint64_t next = 0;   // bytes sent
  };
  absl::btree_map<uint64_t, Transfer> transfers_;
  struct Receive {  // receiving one from the leader
    raftpb::SnapshotMetadata meta;
    uint64_t total = 0;
    uint32_t crc = 0;
    std::string data;
    bool saving = false;
  };
  std::optional<Receive> receive_;
  uint64_t snapshots_saved_ = 0;
  uint64_t snapshots_installed_ = 0;
  uint64_t snapshot_chunks_sent_ = 0;
  absl::btree_map<uint64_t, env::Address> addresses_;  // the address book
  absl::btree_map<uint64_t, Outbound> outbound_;      // current members but this node
  std::vector<Inbound> inbound_;
  bool ready_in_progress_ = false;
  bool failed_ = false;
  bool removed_ = false;
  bool was_member_ = false;  // this node has been a member since it started
  // Leader: when each non-member was last told it is not a member (bounded).
  absl::btree_map<uint64_t, env::Instant> told_not_member_;
  env::TimerId tick_timer_ = 0;
  env::Instant last_tick_;
  struct PendingRead {
    std::function<void(absl::StatusOr<uint64_t>)> done;
    env::Instant deadline;
    std::optional<uint64_t> index;  // set once the leader answered
  };
  absl::btree_map<uint64_t, PendingRead> reads_;  // by context (a per-node sequence number)
  uint64_t read_seq_ = 0;
  uint64_t messages_dropped_ = 0;
  uint64_t cluster_id_ = 0;
  uint64_t foreign_messages_ = 0;
  uint64_t wal_syncs_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace e2d::raft

#endif  // E2D_RAFT_RAFT_NODE_H_
