// Copyright e2d authors.
//
// Runs clusters of KvServers (kv/server: MVCC store + lessor + watches on RaftNode, each replica
// on its own in-memory engine whose crash keeps only synced batches and a random prefix of the
// rest) under a fault schedule, with these oracles on:
//  - linearizability: simulated clients run register workloads (read = linearizable Range,
//    write = Put, delete, cas = Txn comparing the value or create_revision 0) over a few keys;
//    a fifth of the reads range over every register at once (checked as one read per key at
//    the same instant). Each operation is recorded with its virtual call and return times and
//    its outcome (ok, fail, or unknown for a timeout or a crash); at the end sim/lincheck checks
//    the whole history, per key. A "gave up" verdict fails the run too: a history the checker
//    cannot decide is a workload to fix, not a pass;
//  - replica agreement: every replica commits the same events at every revision (a hash of
//    each revision's events, compared across replicas and across restarts);
//  - recovery: a replica restarts from its engine and WAL (or a snapshot) without error unless
//    an I/O error was injected;
//  - leases: a lease client grants short leases, attaches a key, keeps some alive through the
//    leader and lets them expire; a read begun after a lease's revocation was applied on any
//    replica must not return the value attached to it;
//  - liveness: once faults heal, a write through some replica is acknowledged and every
//    replica reaches its revision within converge_ms_max.
//  - watches: watch clients hold watches on random replicas (a key, the prefix, everything;
//    random filters, prev_kv, progress notifications, start revisions in the past) and resume
//    elsewhere from the next revision when a watch ends; sim/watch_checker checks every
//    response against the history the replicas committed;
// Clients also compact now and then (behind the latest revision they saw), so reads, watches
// and snapshots meet compacted history.

#ifndef E2D_SCENARIOS_KV_HARNESS_H_
#define E2D_SCENARIOS_KV_HARNESS_H_

#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "sim/swarm.h"

namespace e2d::scenarios {

struct KvScenarioConfig {
  sim::SwarmOptions swarm;
  int clients = 6;           // concurrent clients (each one operation at a time)
  int keys = 4;              // registers "k0".."k{keys-1}"
  int64_t think_ms_max = 60;  // pause between a client's operations, uniform in [0, this]
  int64_t client_timeout_ms = 6'000;  // no answer by then (the replica crashed): unknown
  int watchers = 3;          // watch clients (see the header comment)
  int compact_percent = 3;   // of client actions, compactions
  uint64_t snapshot_entries = 0;  // each replica snapshots every this many entries (0: never)
  int64_t converge_ms_max = 60'000;
  // The mutation self-test: replicas serve linearizable reads locally (kv/server.h).
  bool mutation_local_reads = false;
  // ... and revocations that keep the lease's keys (kv/server.h).
  bool mutation_revoke_keeps_keys = false;
};

sim::ScenarioResult RunKv(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                          const KvScenarioConfig& config);

sim::Scenario MakeKvScenario(std::string name, std::string description, KvScenarioConfig config);

}  // namespace e2d::scenarios

#endif  // E2D_SCENARIOS_KV_HARNESS_H_
