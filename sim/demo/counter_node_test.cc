// Copyright e2d authors.

#include "sim/demo/counter_node.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sim/cluster.h"

namespace e2d::demo {
namespace {

TEST(CounterRecordTest, RoundTripsAndDetectsDamage) {
  const std::string r = EncodeCounterRecord(123456789);
  ASSERT_EQ(r.size(), kCounterRecordSizeBytes);
  uint64_t v = 0;
  ASSERT_TRUE(DecodeCounterRecord(r, &v).ok());
  EXPECT_EQ(v, 123456789u);
  for (size_t i = 0; i < r.size(); ++i) {
    std::string bad = r;
    bad[i] ^= 0x10;
    EXPECT_FALSE(DecodeCounterRecord(bad, &v).ok()) << "byte " << i;
  }
  EXPECT_FALSE(DecodeCounterRecord(r.substr(0, 15), &v).ok());
  EXPECT_FALSE(DecodeCounterRecord(std::string(16, '\0'), &v).ok());
}

struct Proc final : sim::Process {
  Proc(env::Env& env, CounterConfig c, CounterHooks h) : node(env, std::move(c), std::move(h)) {}
  CounterNode node;
};

class CounterClusterTest : public ::testing::Test {
 protected:
  void Start(int n) {
    for (int i = 1; i <= n; ++i) addresses_.push_back(absl::StrCat("10.0.0.", i, ":7980"));
    cluster_ = std::make_unique<sim::Cluster>(sim_, [this](env::Env& env, sim::NodeId id) {
      CounterConfig c;
      for (const auto& a : addresses_) {
        if (a != addresses_[id - 1]) c.peers.push_back(a);
      }
      CounterHooks h;
      h.on_recovered = [this, id](uint64_t v) { recovered_.push_back({id, v}); };
      return std::make_unique<Proc>(env, std::move(c), std::move(h));
    });
    for (const auto& a : addresses_) cluster_->AddNode(a);
  }
  CounterNode* node(sim::NodeId id) {
    auto* p = static_cast<Proc*>(cluster_->process(id));
    return p ? &p->node : nullptr;
  }

  sim::Simulator sim_{3};
  std::vector<env::Address> addresses_;
  std::unique_ptr<sim::Cluster> cluster_;
  std::vector<std::pair<sim::NodeId, uint64_t>> recovered_;
};

TEST_F(CounterClusterTest, NodesCountAndLearnEachOthersValues) {
  Start(3);
  sim_.RunUntil(3'000'000'000);
  for (sim::NodeId q = 1; q <= 3; ++q) {
    ASSERT_TRUE(node(q)->ready());
    EXPECT_GT(node(q)->durable_value(), 20u);  // ~50 ticks in 3 s, minus sync waits
    for (sim::NodeId p = 1; p <= 3; ++p) {
      if (p == q) continue;
      EXPECT_GT(node(q)->known(addresses_[p - 1]), 10u) << q << " about " << p;
      EXPECT_LE(node(q)->known(addresses_[p - 1]), node(p)->durable_value());
    }
  }
}

TEST_F(CounterClusterTest, RecoveryCutsATornTailAndKeepsDurableValues) {
  Start(1);
  cluster_->disk(1).faults().tear_on_crash = false;
  sim_.RunUntil(1'000'000'000);
  const uint64_t durable = node(1)->durable_value();
  ASSERT_GT(durable, 5u);
  cluster_->Crash(1);
  // Half a record of garbage after the last whole record, as a torn append would leave.
  env::OpenOptions o;
  auto file = cluster_->disk(1).fs().Open(kCounterLogPath, o);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("\x01\x02\x03\x04\x05\x06\x07").ok());
  const uint64_t size_with_garbage = *(*file)->Size();
  file->reset();
  cluster_->Restart(1);
  ASSERT_EQ(recovered_.size(), 2u);
  EXPECT_GE(recovered_[1].second, durable);
  auto after = cluster_->disk(1).LiveContents(kCounterLogPath);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->size() % kCounterRecordSizeBytes, 0u);
  EXPECT_LT(after->size(), size_with_garbage);
  sim_.RunUntil(2'000'000'000);
  EXPECT_GT(node(1)->durable_value(), recovered_[1].second);
}

TEST_F(CounterClusterTest, WriteErrorFailStopsTheWriterButItStillAnswers) {
  Start(2);
  sim_.RunUntil(500'000'000);
  cluster_->disk(1).faults().write_error_probability = 1.0;
  sim_.RunUntil(1'000'000'000);
  EXPECT_TRUE(node(1)->broken());
  const uint64_t frozen = node(1)->durable_value();
  sim_.RunUntil(3'000'000'000);
  EXPECT_EQ(node(1)->durable_value(), frozen);
  EXPECT_EQ(node(2)->known(addresses_[0]), frozen);  // still gossips its last value
  EXPECT_FALSE(node(2)->broken());
}

TEST_F(CounterClusterTest, PartitionStopsLearningAndHealResumesIt) {
  Start(2);
  sim_.RunUntil(1'000'000'000);
  cluster_->network().Isolate(1);
  sim_.RunUntil(1'500'000'000);  // let in-flight messages land
  const uint64_t known_at_cut = node(2)->known(addresses_[0]);
  sim_.RunUntil(4'000'000'000);
  EXPECT_EQ(node(2)->known(addresses_[0]), known_at_cut);
  EXPECT_GT(node(1)->durable_value(), known_at_cut + 10);
  cluster_->network().Heal();
  sim_.RunUntil(6'000'000'000);
  EXPECT_GT(node(2)->known(addresses_[0]), known_at_cut + 10);
}

}  // namespace
}  // namespace e2d::demo
