// Copyright e2d authors.
//
// The process-level faults, each shown to have its observable effect: crash loses exactly the
// unsynced writes, a torn write is visible after restart, pause holds timers and resume fires
// the overdue ones, lose wipes the disk, and a crash breaks the peers' streams.

#include "sim/cluster.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace e2d::sim {
namespace {

// A process whose behaviour is a lambda run at construction.
class ScriptProcess final : public Process {
 public:
  explicit ScriptProcess(std::function<void()> on_destroy) : on_destroy_(std::move(on_destroy)) {}
  ~ScriptProcess() override {
    if (on_destroy_) on_destroy_();
  }
  std::vector<std::unique_ptr<env::Stream>> streams;
  std::unique_ptr<env::File> file;

 private:
  std::function<void()> on_destroy_;
};

using Script = std::function<void(env::Env&, NodeId, ScriptProcess&)>;

ProcessFactory FactoryFor(Script script) {
  return [script](env::Env& env, NodeId n) {
    auto p = std::make_unique<ScriptProcess>(nullptr);
    script(env, n, *p);
    return p;
  };
}

std::unique_ptr<env::File> OpenOrDie(env::Env& env, const char* path) {
  env::OpenOptions o;
  o.create = true;
  auto f = env.fs().Open(path, o);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

// A second address per machine (a gossip port beside the Raft one): the same view on every
// start, its handlers installed again by each incarnation.
TEST(ClusterTest, ASecondAddressIsKeptAcrossRestarts) {
  Simulator sim(3);
  Cluster* cluster_ptr = nullptr;
  std::vector<std::string> got;
  Cluster cluster(sim, FactoryFor([&](env::Env&, NodeId n, ScriptProcess&) {
    env::Network& gossip = cluster_ptr->network(n, absl::StrCat("10.0.0.", n, ":7980"));
    gossip.SetDatagramHandler([&got, n](const env::Address& from, std::string payload) {
      got.push_back(absl::StrCat(n, "<", from, "|", payload));
    });
  }));
  cluster_ptr = &cluster;
  cluster.AddNode("10.0.0.1:2380");
  cluster.AddNode("10.0.0.2:2380");
  env::Network& g1 = cluster.network(1, "10.0.0.1:7980");
  EXPECT_EQ(&g1, &cluster.network(1, "10.0.0.1:7980"));
  EXPECT_EQ(&cluster.network(1, "10.0.0.1:2380"), &cluster.network(1, cluster.address(1)));
  ASSERT_TRUE(g1.SendDatagram("10.0.0.2:7980", "a").ok());
  sim.RunUntil(sim.now_ns() + 10'000'000);
  cluster.Crash(2);
  cluster.Restart(2);
  ASSERT_TRUE(g1.SendDatagram("10.0.0.2:7980", "b").ok());
  sim.RunUntil(sim.now_ns() + 10'000'000);
  EXPECT_EQ(got, (std::vector<std::string>{"2<10.0.0.1:7980|a", "2<10.0.0.1:7980|b"}));
}

TEST(ClusterTest, CrashLosesExactlyTheUnsyncedWrites) {
  Simulator sim(1);
  std::string recovered;
  bool synced = false;
  Cluster cluster(sim, FactoryFor([&](env::Env& env, NodeId, ScriptProcess& p) {
    p.file = OpenOrDie(env, "data");
    auto size = p.file->Size();
    if (*size > 0) {
      recovered = *p.file->ReadAt(0, *size);
      return;
    }
    ASSERT_TRUE(p.file->Append("durable|").ok());
    p.file->Sync([&](absl::Status s) {
      ASSERT_TRUE(s.ok());
      env.fs().SyncDir("", [&](absl::Status s2) { synced = s2.ok(); });
    });
  }));
  NodeId n = cluster.AddNode("10.0.0.1:1");
  cluster.disk(n).faults().tear_on_crash = false;
  sim.RunUntilTrue([&] { return synced; }, 1'000'000'000);
  ASSERT_TRUE(synced);
  auto* p = static_cast<ScriptProcess*>(cluster.process(n));
  ASSERT_TRUE(p->file->Append("volatile").ok());
  cluster.Crash(n);
  EXPECT_FALSE(cluster.up(n));
  cluster.Restart(n);
  EXPECT_EQ(recovered, "durable|");
  EXPECT_EQ(cluster.starts(n), 2u);
}

TEST(ClusterTest, TornWriteIsVisibleAfterRestartForSomeSeeds) {
  int torn = 0, whole_or_none = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    Simulator sim(seed);
    std::string seen;
    Cluster cluster(sim, FactoryFor([&](env::Env& env, NodeId, ScriptProcess& p) {
      p.file = OpenOrDie(env, "log");
      seen = *p.file->ReadAt(0, 1 << 20);
    }));
    NodeId n = cluster.AddNode("10.0.0.1:1");
    bool dir_synced = false;
    cluster.disk(n).fs().SyncDir("", [&](absl::Status s) { dir_synced = s.ok(); });
    sim.RunUntilTrue([&] { return dir_synced; }, 1'000'000'000);
    auto* p = static_cast<ScriptProcess*>(cluster.process(n));
    ASSERT_TRUE(p->file->Append(std::string(3 * 512, 'x')).ok());  // never synced
    cluster.Crash(n);
    cluster.Restart(n);
    if (seen.empty() || seen == std::string(3 * 512, 'x')) {
      ++whole_or_none;
    } else {
      ++torn;
      // What was kept is a prefix of whole sectors of the write; no later sector survived whole.
      const std::string sector(512, 'x');
      size_t kept = 0;
      while (kept < seen.size() && seen.compare(kept, 512, sector) == 0) kept += 512;
      EXPECT_LT(kept, 3u * 512) << "seed " << seed;
      for (size_t at = kept; at < seen.size(); at += 512) {
        EXPECT_NE(seen.compare(at, 512, sector), 0) << "seed " << seed << " sector at " << at;
      }
    }
  }
  EXPECT_GT(torn, 0);
  EXPECT_GT(whole_or_none, 0);
}

TEST(ClusterTest, PauseHoldsTimersAndResumeFiresOverdueOnes) {
  Simulator sim(1);
  std::vector<int64_t> fired_at;
  Cluster cluster(sim, FactoryFor([&](env::Env& env, NodeId, ScriptProcess&) {
    env.clock().After(absl::Milliseconds(10), [&] { fired_at.push_back(sim.now_ns()); });
  }));
  NodeId n = cluster.AddNode("10.0.0.1:1");
  cluster.Pause(n);
  sim.RunUntil(50'000'000);
  EXPECT_TRUE(fired_at.empty());
  cluster.Resume(n);
  sim.RunUntil(50'000'000);
  EXPECT_EQ(fired_at, (std::vector<int64_t>{50'000'000}));
}

TEST(ClusterTest, LoseWipesTheDisk) {
  Simulator sim(1);
  std::vector<std::string> listings;
  Cluster cluster(sim, FactoryFor([&](env::Env& env, NodeId, ScriptProcess& p) {
    listings.push_back(absl::StrJoin(*env.fs().List(""), ","));
    p.file = OpenOrDie(env, "f");
  }));
  NodeId n = cluster.AddNode("10.0.0.1:1");
  bool done = false;
  cluster.disk(n).fs().SyncDir("", [&](absl::Status) { done = true; });
  sim.RunUntilTrue([&] { return done; }, 1'000'000'000);
  cluster.Crash(n);
  cluster.Restart(n);  // the synced directory entry survives a crash ...
  cluster.Lose(n);
  cluster.Restart(n);  // ... but not the loss of the disk
  EXPECT_EQ(listings, (std::vector<std::string>{"", "f", ""}));
  EXPECT_EQ(cluster.losses(n), 1u);
}

TEST(ClusterTest, CrashBreaksPeerStreamsAndDropsTimers) {
  Simulator sim(1);
  std::vector<std::string> closes;
  int timer_fired = 0;
  Cluster cluster(sim, FactoryFor([&](env::Env& env, NodeId n, ScriptProcess& p) {
    if (n == 1) {
      env.network().SetAcceptHandler([&p](std::unique_ptr<env::Stream> s) {
        s->SetHandlers([](std::string) {}, [](absl::Status) {});
        p.streams.push_back(std::move(s));
      });
      env.clock().After(absl::Seconds(1), [&] { ++timer_fired; });
    } else {
      p.streams.push_back(env.network().Connect("10.0.0.1:1"));
      p.streams.back()->SetHandlers([](std::string) {},
                                    [&](absl::Status s) { closes.push_back(s.ToString()); });
    }
  }));
  NodeId a = cluster.AddNode("10.0.0.1:1");
  cluster.AddNode("10.0.0.2:1");
  sim.RunUntil(100'000'000);
  ASSERT_TRUE(closes.empty());
  cluster.Crash(a);
  sim.RunUntil(2'000'000'000);
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_NE(closes[0].find("UNAVAILABLE"), std::string::npos) << closes[0];
  EXPECT_EQ(timer_fired, 0);
}

TEST(ClusterTest, ClocksStartAtDifferentEpochs) {
  Simulator sim(1);
  Cluster cluster(sim, FactoryFor([](env::Env&, NodeId, ScriptProcess&) {}));
  NodeId a = cluster.AddNode("a:1"), b = cluster.AddNode("b:1");
  EXPECT_NE(cluster.clock(a).Now().ns, cluster.clock(b).Now().ns);
}

}  // namespace
}  // namespace e2d::sim
