// Copyright e2d authors.
//
// kv_partitions: a 3-replica store under partitions only (isolations, splits, one-way and
// bridge partitions, flapping), every seed: the case where a stale leader would serve stale
// reads or acknowledge writes it cannot commit.

#include "scenarios/registry.h"

namespace e2d::scenarios {

KvScenarioConfig KvPartitionsConfig() {
  KvScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 20'000;
  c.swarm.swarm = false;
  c.swarm.network = false;
  c.swarm.processes = false;
  c.swarm.disk = false;
  c.swarm.clocks = false;
  c.swarm.partitions = true;
  c.swarm.target_leader = true;
  return c;
}

sim::Scenario KvPartitions() {
  return MakeKvScenario("kv_partitions", "kv store, partitions only", KvPartitionsConfig());
}

}  // namespace e2d::scenarios
