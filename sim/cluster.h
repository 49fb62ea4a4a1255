// Copyright e2d authors.
//
// Cluster: N simulated machines, each with a clock, a disk, an address on the SimNetwork and a
// process built by a factory against env::Env. The harness crashes, restarts, pauses and loses
// processes the way the fault model says:
//  - Crash: the process object is destroyed (all memory gone), its timers and in-flight
//    messages are dropped, its streams break, and its disk keeps only durable data (the unsynced
//    tail possibly torn). Restart builds a new process on the same disk and clock.
//  - Pause/Resume: the process stops running (timers, deliveries and sync completions wait) and
//    later continues where it was; its clock keeps advancing, so overdue timers fire at once.
//  - Lose: permanent loss; the disk is replaced by an empty one. Restart then starts from scratch.

#ifndef E2D_SIM_CLUSTER_H_
#define E2D_SIM_CLUSTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "env/env.h"
#include "sim/sim_clock.h"
#include "sim/sim_disk.h"
#include "sim/sim_network.h"
#include "sim/simulator.h"

namespace e2d::sim {

// What runs on a simulated machine. Destroying it is a crash: it must not touch env in its
// destructor beyond releasing objects env gave it.
class Process {
 public:
  virtual ~Process() = default;
};

using ProcessFactory = std::function<std::unique_ptr<Process>(env::Env& env, NodeId node)>;

// env::Env for one incarnation of one machine.
class SimEnv final : public env::Env {
 public:
  SimEnv(SimClock& clock, env::Network& network, env::FileSystem& fs, env::Random random,
         std::function<void(std::string_view)> log);

  env::Clock& clock() override { return clock_; }
  env::Network& network() override { return network_; }
  env::FileSystem& fs() override { return fs_; }
  env::Random& random() override { return random_; }
  void Log(std::string_view line) override { log_(line); }
  // The work runs at once (what it reads was captured at the call, as in the runtime); `done`
  // comes kOffloadLatency later, so the node goes on working meanwhile, as it does for real.
  static constexpr absl::Duration kOffloadLatency = absl::Milliseconds(10);
  absl::Status Offload(std::function<void()> work, std::function<void()> done) override {
    work();
    clock_.After(kOffloadLatency, std::move(done));
    return absl::OkStatus();
  }

 private:
  SimClock& clock_;
  env::Network& network_;
  env::FileSystem& fs_;
  env::Random random_;
  std::function<void(std::string_view)> log_;
};

// Bound on kept log lines (the tail is printed when a run fails).
inline constexpr size_t kLogLinesMax = 4000;

class Cluster {
 public:
  Cluster(Simulator& sim, ProcessFactory factory);
  ~Cluster();

  // Adds a machine at `address` and starts its process.
  NodeId AddNode(const env::Address& address);

  void Crash(NodeId node);
  void Restart(NodeId node);  // REQUIRES: the node is down (crashes otherwise)
  void Pause(NodeId node);
  void Resume(NodeId node);
  void Lose(NodeId node);     // crash (if up) + empty disk; stays down until Restart

  bool up(NodeId node) const { return machine(node).process != nullptr; }
  bool paused(NodeId node) const { return sim_.paused(node); }
  // The running process, or nullptr if the node is down.
  Process* process(NodeId node) const { return machine(node).process.get(); }
  std::vector<NodeId> nodes() const;
  const env::Address& address(NodeId node) const { return machine(node).address; }
  // Times the node's process was (re)started, starting at 1.
  uint64_t starts(NodeId node) const { return machine(node).starts; }
  // Times the node's disk was lost (Lose), starting at 0.
  uint64_t losses(NodeId node) const { return machine(node).losses; }

  Simulator& sim() { return sim_; }
  SimNetwork& network() { return network_; }
  // The node's view of another address it holds (say a gossip port beside its Raft address),
  // attached on first use and the same view afterwards (processes of later starts get it
  // again); build a SimEnv over it for code that takes an env. Crashes if another node holds it.
  env::Network& network(NodeId node, const env::Address& address);
  SimDisk& disk(NodeId node) { return *machine(node).disk; }
  SimClock& clock(NodeId node) { return *machine(node).clock; }

  // Who leads, as the protocol under test knows it (kNoNode if none); lets fault schedules
  // target "leader". Without a finder, there is never a leader.
  void set_leader_finder(std::function<NodeId()> finder) { leader_finder_ = std::move(finder); }
  NodeId leader() const { return leader_finder_ ? leader_finder_() : kNoNode; }

  // Log: lines are kept (bounded) and, if `echo` is set, also written to stderr.
  void set_echo_log(bool echo) { echo_log_ = echo; }
  void Log(NodeId node, std::string_view line);
  const std::deque<std::string>& log_tail() const { return log_; }

 private:
  struct Machine {
    env::Address address;
    std::unique_ptr<SimClock> clock;
    std::unique_ptr<SimDisk> disk;
    env::Network* network = nullptr;
    std::map<env::Address, env::Network*> more_networks;  // by address
    std::unique_ptr<SimEnv> env;
    std::unique_ptr<Process> process;
    uint64_t starts = 0;
    uint64_t losses = 0;
  };
  const Machine& machine(NodeId node) const;
  Machine& machine(NodeId node);
  void Start(NodeId node);

  Simulator& sim_;
  ProcessFactory factory_;
  SimNetwork network_;
  std::vector<Machine> machines_;  // index = NodeId - 1
  std::function<NodeId()> leader_finder_;
  bool echo_log_ = false;
  std::deque<std::string> log_;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_CLUSTER_H_
