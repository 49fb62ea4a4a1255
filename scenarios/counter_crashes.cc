// Copyright e2d authors.
//
// counter_crashes: process faults with disk faults, all on in every run: crashes that lose the
// unsynced tail and tear the last write at sector granularity, restarts, pauses, permanent loss
// of a disk, slow syncs and stalls. Durability is checked at every recovery.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario CounterCrashes() {
  CounterScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 20'000;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.lose = true;
  c.swarm.down_max = 2;
  c.swarm.swarm = false;
  return MakeCounterScenario("counter_crashes", "demo counter, crashes, torn writes, disk loss", c);
}

}  // namespace e2d::scenarios
