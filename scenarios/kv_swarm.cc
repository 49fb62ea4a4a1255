// Copyright e2d authors.
//
// kv_swarm: the replicated store (KvServer on Raft) under every fault family, each seed choosing
// its own mix: network faults, partitions, crashes and pauses (two at once, half aimed at the
// leader), torn writes, slow and stalled disks, write EIO and failed fsyncs (fail-stop), clock
// drift and jumps. Six clients run a register workload with compactions; snapshots every 50
// entries, so restarted replicas often catch up through one.

#include "scenarios/registry.h"

namespace e2d::scenarios {

KvScenarioConfig KvSwarmConfig() {
  KvScenarioConfig c;
  c.swarm.nodes = 5;
  c.swarm.duration_ms = 20'000;
  c.swarm.disk_errors = true;
  c.swarm.down_max = 2;
  c.swarm.target_leader = true;
  c.snapshot_entries = 50;
  return c;
}

sim::Scenario KvSwarm() {
  return MakeKvScenario("kv_swarm", "kv store, every fault family, swarm mix", KvSwarmConfig());
}

}  // namespace e2d::scenarios
