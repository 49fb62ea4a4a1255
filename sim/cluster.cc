// Copyright e2d authors.

#include "sim/cluster.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_format.h"
#include "env/check.h"

namespace e2d::sim {

SimEnv::SimEnv(SimClock& clock, env::Network& network, env::FileSystem& fs,
               env::Random random, std::function<void(std::string_view)> log)
    : clock_(clock), network_(network), fs_(fs), random_(random), log_(std::move(log)) {}

Cluster::Cluster(Simulator& sim, ProcessFactory factory)
    : sim_(sim), factory_(std::move(factory)), network_(sim, sim.ForkRandom("net")) {}

Cluster::~Cluster() {
  // Processes go first: they hold streams and files that point into the network and disks.
  for (Machine& m : machines_) m.process.reset();
}

const Cluster::Machine& Cluster::machine(NodeId node) const {
  E2D_CHECK(node >= 1 && node <= machines_.size(), "unknown node %u", node);
  return machines_[node - 1];
}

Cluster::Machine& Cluster::machine(NodeId node) {
  E2D_CHECK(node >= 1 && node <= machines_.size(), "unknown node %u", node);
  return machines_[node - 1];
}

std::vector<NodeId> Cluster::nodes() const {
  std::vector<NodeId> ids;
  for (size_t i = 0; i < machines_.size(); ++i) ids.push_back(static_cast<NodeId>(i + 1));
  return ids;
}

NodeId Cluster::AddNode(const env::Address& address) {
  const NodeId node = sim_.AddNode();
  E2D_CHECK(node == machines_.size() + 1, "cluster and simulator disagree on node ids");
  Machine m;
  m.address = address;
  // Each clock starts at its own epoch, so code that compares instants across nodes breaks.
  env::Random clock_random = sim_.ForkRandom(absl::StrFormat("clock/%u", node));
  m.clock = std::make_unique<SimClock>(
      sim_, node, static_cast<int64_t>(clock_random.Uniform(1'000'000'000'000)));
  m.disk = std::make_unique<SimDisk>(sim_, node, sim_.ForkRandom(absl::StrFormat("disk/%u", node)));
  m.network = &network_.Attach(node, address);
  machines_.push_back(std::move(m));
  Start(node);
  return node;
}

env::Network& Cluster::network(NodeId node, const env::Address& address) {
  Machine& m = machine(node);
  if (address == m.address) return *m.network;
  auto [it, fresh] = m.more_networks.try_emplace(address, nullptr);
  if (fresh) it->second = &network_.Attach(node, address);
  return *it->second;
}

void Cluster::Start(NodeId node) {
  Machine& m = machine(node);
  E2D_CHECK(m.process == nullptr, "node %u is already up", node);
  ++m.starts;
  env::Random random =
      sim_.ForkRandom(absl::StrFormat("process/%u/%llu", node,
                                      static_cast<unsigned long long>(m.starts)));
  m.env = std::make_unique<SimEnv>(*m.clock, *m.network, m.disk->fs(), random,
                                   [this, node](std::string_view line) { Log(node, line); });
  sim_.Record(node, "process.start", m.starts);
  m.process = factory_(*m.env, node);
  E2D_CHECK(m.process != nullptr, "factory returned no process for node %u", node);
}

void Cluster::Crash(NodeId node) {
  Machine& m = machine(node);
  if (m.process == nullptr) return;
  // Order matters: cut the network and drop events first, so the process's destructor (which
  // closes streams and files) has nothing left to notify.
  sim_.Crash(node);
  network_.Crash(node);
  m.clock->ForgetTimers();
  m.process.reset();
  m.env.reset();
  const CrashReport report = m.disk->Crash();
  Log(node, absl::StrFormat("crash: %llu pending disk ops lost, %llu kept, %llu torn",
                            static_cast<unsigned long long>(report.pending_ops_lost),
                            static_cast<unsigned long long>(report.pending_ops_kept),
                            static_cast<unsigned long long>(report.torn_writes)));
}

void Cluster::Restart(NodeId node) {
  E2D_CHECK(machine(node).process == nullptr, "restart of node %u which is up", node);
  Start(node);
}

void Cluster::Pause(NodeId node) {
  if (machine(node).process == nullptr || sim_.paused(node)) return;
  sim_.Pause(node);
}

void Cluster::Resume(NodeId node) { sim_.Resume(node); }

void Cluster::Lose(NodeId node) {
  Crash(node);
  machine(node).disk->Wipe();
  ++machine(node).losses;
  sim_.Record(node, "disk.lost", 0);
  Log(node, "lost: disk replaced by an empty one");
}

void Cluster::Log(NodeId node, std::string_view line) {
  std::string entry = absl::StrFormat("%14.6fs n%u %s", sim_.now_ns() / 1e9, node, line);
  if (echo_log_) std::fprintf(stderr, "%s\n", entry.c_str());
  log_.push_back(std::move(entry));
  if (log_.size() > kLogLinesMax) log_.pop_front();
}

}  // namespace e2d::sim
