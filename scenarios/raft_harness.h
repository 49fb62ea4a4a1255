// Copyright e2d authors.
//
// Runs RaftNode (raft/raft_node) clusters under a fault schedule with the Raft invariant
// checker on, after every Ready of every node:
//  - Election Safety: at most one leader per term;
//  - Leader Completeness: a new leader's log holds every entry already known committed;
//  - State Machine Safety (which implies Log Matching on the committed prefix): no two nodes
//    ever hold different entries at an index either has declared committed (checked on every
//    node's commit index, not only on what it applied), nor apply different entries at one
//    index; every node applies indexes in order without gaps;
//  - a committed entry is never lost: restarted nodes replay their WAL and re-apply the same
//    entries, and recovery from torn writes and lost fsyncs never fails (it may fail only on an
//    injected I/O error, never with DataLoss or an inconsistent state);
//  - liveness: once every fault is healed and every node restarted, a leader exists and a
//    fresh proposal is applied by every node within a bound of simulated time.
// A client acts on a random live node every 20-200 ms throughout: it proposes a unique value
// (most of its actions), reads (18%: linearizable reads are checked to be served at an index at
// least as high as anything declared committed when they began), or asks the node to move
// leadership to a random voter (transfer_percent, 2% by default). An operator
// may change the membership through the leader every 0.5-2 s (see Operator); the liveness check
// then covers the members of the final membership, and a node that applied its own removal
// stops, as a removed etcd member does.

#ifndef E2D_SCENARIOS_RAFT_HARNESS_H_
#define E2D_SCENARIOS_RAFT_HARNESS_H_

#include <cstdint>
#include <string>

#include "raft/raft.h"
#include "sim/scenario.h"
#include "sim/swarm.h"

namespace e2d::scenarios {

// What the operator does to the membership.
enum class Operator {
  kNone,
  // Random changes: add a spare as learner, promote, remove a voter or learner, demote, swap a
  // voter for a learner in one joint-consensus change.
  kChurn,
  // Replace every original voter, one at a time: add a spare as learner, promote it, remove an
  // original. Liveness also requires that no original is left once faults heal.
  kReplaceAll,
  // A two-voter cluster whose leader is removed again and again (then a spare is added and
  // promoted to get back to two).
  kRemoveLeader,
};

struct RaftScenarioConfig {
  sim::SwarmOptions swarm;
  int voters = 0;  // the bootstrap voters are nodes 1..voters (0: all); the rest are spares
  Operator op = Operator::kNone;
  int64_t converge_ms_max = 60'000;  // liveness bound after the heal
  raft::Mutation mutation = raft::Mutation::kNone;  // the mutation self-test breaks a rule
  uint64_t msg_bytes_max = 1 << 20;  // entry bytes per append (small: one entry per message)
  bool lease_reads = false;  // reads served on the leader lease (see raft.h)
  int transfer_percent = 2;  // of the client's actions, leadership transfers
  uint64_t snapshot_entries = 0;       // each node snapshots every this many entries (0: never)
  size_t snapshot_chunk_bytes = 512;   // small: a snapshot travels in several chunks
  size_t snapshot_filler_bytes = 3000; // snapshot size beyond the state itself
  // A nemesis aimed at the moment a leader advances its commit index: with this chance it
  // crashes right then (its messages still in flight are lost) and restarts 0.3-3 s later.
  double crash_leader_on_commit = 0;
  // ... and at the moment a node becomes the first leader of a term: with this chance it is
  // cut off from everyone at once (it keeps what it wrote, nobody else has it) for 0.3-3 s.
  double isolate_new_leader = 0;
};

sim::ScenarioResult RunRaft(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                            const RaftScenarioConfig& config);

sim::Scenario MakeRaftScenario(std::string name, std::string description,
                               RaftScenarioConfig config);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_RAFT_HARNESS_H_
