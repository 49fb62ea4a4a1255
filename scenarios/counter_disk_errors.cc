// Copyright e2d authors.
//
// counter_disk_errors: write EIO, failed fsyncs (whose data a later fsync does not save),
// ENOSPC, latency spikes and stalls, with crashes. A node that hits an error fail-stops and is
// restarted at the heal; durability must hold for everything it reported durable.

#include "scenarios/registry.h"

namespace e2d::scenarios {

sim::Scenario CounterDiskErrors() {
  CounterScenarioConfig c;
  c.swarm.nodes = 3;
  c.swarm.duration_ms = 20'000;
  c.swarm.network = false;
  c.swarm.partitions = false;
  c.swarm.clocks = false;
  c.swarm.disk_errors = true;
  c.swarm.swarm = false;
  return MakeCounterScenario("counter_disk_errors", "demo counter, EIO, failed syncs, ENOSPC", c);
}

}  // namespace e2d::scenarios
