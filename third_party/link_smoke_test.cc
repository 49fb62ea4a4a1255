// Proves that every wrapped system library compiles, links and does one real thing.

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "third_party/smoke.grpc.pb.h"
#include "third_party/smoke.pb.h"

namespace {

TEST(LinkSmoke, Abseil) {
  absl::btree_map<int, std::string> m;
  m[2] = absl::StrCat("b", 2);
  m[1] = "a";
  absl::StatusOr<int> v = absl::NotFoundError("nope");
  EXPECT_EQ(m.begin()->second, "a");
  EXPECT_TRUE(absl::IsNotFound(v.status()));
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
}

TEST(LinkSmoke, ProtobufRoundTrip) {
  e2d::smoke::Ping in;
  in.set_text("hello");
  in.set_seq(42);
  std::string wire;
  ASSERT_TRUE(in.SerializeToString(&wire));
  e2d::smoke::Ping out;
  ASSERT_TRUE(out.ParseFromString(wire));
  EXPECT_EQ(out.text(), "hello");
  EXPECT_EQ(out.seq(), 42u);
}

TEST(LinkSmoke, GrpcInProcessCall) {
  class EchoImpl final : public e2d::smoke::Echo::Service {
    grpc::Status Call(grpc::ServerContext*, const e2d::smoke::Ping* req,
                      e2d::smoke::Ping* resp) override {
      resp->set_text(req->text());
      resp->set_seq(req->seq() + 1);
      return grpc::Status::OK;
    }
  };
  EchoImpl service;
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto channel = server->InProcessChannel(grpc::ChannelArguments());
  auto stub = e2d::smoke::Echo::NewStub(channel);
  grpc::ClientContext ctx;
  e2d::smoke::Ping req, resp;
  req.set_text("x");
  req.set_seq(7);
  ASSERT_TRUE(stub->Call(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.seq(), 8u);
  server->Shutdown();
}

TEST(LinkSmoke, RocksDbPutGet) {
  const char* tmp = getenv("TEST_TMPDIR");
  ASSERT_NE(tmp, nullptr);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, std::string(tmp) + "/smoke_db", &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "k", &value).ok());
  EXPECT_EQ(value, "v");
}

TEST(LinkSmoke, OpenSslSha256) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest("abc", 3, digest, &len, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(len, 32u);
  EXPECT_EQ(digest[0], 0xba);  // SHA-256("abc") = ba7816bf...
  EXPECT_EQ(digest[1], 0x78);
}

TEST(LinkSmoke, ZlibRoundTrip) {
  const std::string in(1000, 'z');
  uLongf out_len = compressBound(in.size());
  std::string out(out_len, '\0');
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(out.data()), &out_len,
                     reinterpret_cast<const Bytef*>(in.data()), in.size()),
            Z_OK);
  EXPECT_LT(out_len, in.size());
  std::string back(in.size(), '\0');
  uLongf back_len = back.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(back.data()), &back_len,
                       reinterpret_cast<const Bytef*>(out.data()), out_len),
            Z_OK);
  EXPECT_EQ(back, in);
}

TEST(LinkSmoke, BoostAsioRunsPostedWork) {
  boost::asio::io_context io;
  int ran = 0;
  boost::asio::post(io, [&] { ++ran; });
  io.run();
  EXPECT_EQ(ran, 1);
}

TEST(LinkSmoke, GmockMatchers) {
  std::vector<int> v = {1, 2, 3};
  EXPECT_THAT(v, ::testing::ElementsAre(1, 2, 3));
}

void BM_Nothing(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(state.iterations());
}

TEST(LinkSmoke, GoogleBenchmarkRegisters) {
  auto* b = benchmark::RegisterBenchmark("smoke/nothing", BM_Nothing);
  ASSERT_NE(b, nullptr);
  b->Iterations(10);
  EXPECT_EQ(benchmark::RunSpecifiedBenchmarks(), 1u);
}

}  // namespace
