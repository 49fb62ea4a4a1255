// Copyright e2d authors.
//
// Raft core throughput, without I/O: a 3-node cluster in one loop, every Ready "persisted" at
// once and every message delivered at once. Measures proposals committed (and applied on all
// three nodes) per second, for batches of 1 and 64 proposals per round.
// Run: bazel run -c opt //bench:raft_bench

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "env/check.h"
#include "raft/raft.h"

namespace {

using e2d::raft::Raft;

class Loop {
 public:
  Loop() {
    for (uint64_t id = 1; id <= 3; ++id) {
      e2d::raft::Config c;
      c.id = id;
      c.voters = {1, 2, 3};
      c.random_seed = id;
      auto r = Raft::Create(c, {});
      E2D_CHECK(r.ok(), "create");
      nodes_.push_back(std::move(*r));
    }
    nodes_[0]->Campaign();
    Run();
    E2D_CHECK(nodes_[0]->role() == e2d::raft::Role::kLeader, "no leader");
  }


  // Steps every node until nothing is left to do; returns entries applied by node 3.
  uint64_t Run() {
    uint64_t applied = 0;
    bool busy = true;
    while (busy) {
      busy = false;
      for (size_t i = 0; i < nodes_.size(); ++i) {
        Raft& r = *nodes_[i];
        if (!r.HasReady()) continue;
        busy = true;
        e2d::raft::Ready rd = r.GetReady();
        for (auto& m : rd.messages) queue_.push_back(std::move(m));
        for (auto& m : rd.messages_after_persist) queue_.push_back(std::move(m));
        if (i == 2) applied += rd.committed_entries.size();
        r.Advance(rd);
      }
      while (!queue_.empty()) {
        busy = true;
        e2d::raftpb::Message m = std::move(queue_.front());
        queue_.pop_front();
        nodes_[m.to() - 1]->Step(m).IgnoreError();
      }
    }
    return applied;
  }

  Raft& leader() { return *nodes_[0]; }

  // A heartbeat round carries the commit index to the followers.
  void Heartbeat() {
    e2d::raftpb::Message beat;
    beat.set_type(e2d::raftpb::MSG_BEAT);
    leader().Step(beat).IgnoreError();
  }

 private:
  std::vector<std::unique_ptr<Raft>> nodes_;
  std::deque<e2d::raftpb::Message> queue_;
};

void BM_ProposeToCommit3Nodes(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Loop loop;
  const std::string payload(128, 'x');
  uint64_t committed = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) loop.leader().Propose(payload).IgnoreError();
    committed += loop.Run();
    loop.Heartbeat();
    committed += loop.Run();
  }
  E2D_CHECK(committed >= static_cast<uint64_t>(batch) * state.iterations(),
            "follower applied %llu of %llu proposals", static_cast<unsigned long long>(committed),
            static_cast<unsigned long long>(batch * state.iterations()));
  state.counters["commits/s"] =
      benchmark::Counter(static_cast<double>(committed), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ProposeToCommit3Nodes)->Arg(1)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
