// Copyright e2d authors.
//
// Swarm testing: each seed decides which fault kinds are on for its run and how hard they hit,
// then generates a concrete FaultSchedule. Many seeds thus cover many different mixes, including
// quiet ones, rather than one average mix. The schedule is the only output; runs replay from it.

#ifndef E2D_SIM_SWARM_H_
#define E2D_SIM_SWARM_H_

#include <cstdint>
#include <string>

#include "sim/fault_schedule.h"

namespace e2d::sim {

// Which fault families a scenario allows; the swarm picks a random subset of these per seed.
struct SwarmOptions {
  int nodes = 5;
  int64_t duration_ms = 20'000;
  bool network = true;     // latency, jitter, tail, loss, duplication, clogging, stream breaks
  bool partitions = true;  // isolate, split, one-way, bridge, then heal
  int64_t partition_gap_ms_min = 1000;  // mean time between partitions, drawn per seed in
  int64_t partition_gap_ms_max = 8000;  // [min, max] (small: flapping links)
  bool processes = true;   // crash, restart, pause, resume
  bool lose = false;       // permanent loss of a node's disk
  bool disk = true;        // sync latency and spikes, stalls, torn writes on crash
  bool disk_errors = false;  // write EIO, failed syncs, ENOSPC (the protocol must fail-stop)
  bool corruption = false;   // bit flips and read errors in `corruption_path`
  std::string corruption_path;
  bool clocks = true;      // drift and forward jumps
  int down_max = 2;        // most nodes crashed, paused or lost at the same time
  // Half of the crashes, pauses and isolations hit whoever leads at that moment ("leader"),
  // followed by restart/resume of every node ("*"); for protocols that have a leader.
  bool target_leader = false;
  // true: each allowed family is on for a seed with probability 1/2 (swarm testing);
  // false: every allowed family is on in every run (a focused scenario).
  bool swarm = true;
};

// Deterministic: the same (scenario, seed, options) always gives the same schedule.
FaultSchedule GenerateSwarm(const std::string& scenario, uint64_t seed, const SwarmOptions& options);

}  // namespace e2d::sim

#endif  // E2D_SIM_SWARM_H_
