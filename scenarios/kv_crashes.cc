// Copyright e2d authors.
//
// kv_crashes: a 3-replica store whose replicas crash (leader half the time), lose unsynced
// engine batches and torn WAL tails, and restart; snapshots every 30 entries, so a restarted
// replica that fell behind catches up through an engine snapshot.

#include "scenarios/registry.h"

namespace e2d::scenarios {

KvScenarioConfig KvCrashesConfig() {
  KvScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 20'000;
  c.swarm.swarm = false;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.processes = true;
  c.swarm.disk = true;
  c.swarm.down_max = 1;
  c.swarm.target_leader = true;
  c.snapshot_entries = 30;
  return c;
}

sim::Scenario KvCrashes() {
  return MakeKvScenario("kv_crashes", "kv store, crashes with torn writes and snapshot catch-up",
                        KvCrashesConfig());
}

}  // namespace e2d::scenarios
