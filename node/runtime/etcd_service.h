// Copyright e2d authors.
//
// EtcdService: the etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance, Auth) over a
// Node. gRPC runs its callbacks on its own threads; every call is handed to the io_context that
// runs the Node (asio::post) and answered from there, so the Node stays single-threaded. The
// answers are etcd's: the same status codes and message texts (clients map errors by text), a
// ResponseHeader on every response, and the stream behaviour etcdctl expects (watch create and
// cancel replies in request order, compaction cancels, keep-alive TTL 0 for an unknown lease).
//
// Requests with the metadata "hasleader: true" (etcd's clients send it on watch and keep-alive
// streams, etcdctl on every call) are refused with "etcdserver: no leader" while this member
// knows no leader.
//
// Bounds: each stream (watch, keep-alive) queues at most kStreamResponsesMax responses for the
// client; a client that does not read them is cut off with Unavailable "etcdserver: stream is
// too slow" (etcd's clients reconnect and resume a watch from the last revision they saw). Each
// stream holds at most kWatchesPerStreamMax watches.
//
// Not served yet (Unimplemented, with a message saying so): MemberAdd, MemberRemove,
// MemberUpdate, MemberPromote, Hash, HashKV; Auth beyond answering that it is not enabled.
// LeaseKeepAlive is answered by any member: a follower renews through the Raft log.
//
// Lifetime: shut the grpc::Server down (which ends every call) before destroying the service,
// and stop the io_context before destroying the Node, so no posted call runs against it.

#ifndef E2D_NODE_RUNTIME_ETCD_SERVICE_H_
#define E2D_NODE_RUNTIME_ETCD_SERVICE_H_

#include <atomic>
#include <memory>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "grpcpp/grpcpp.h"
#include "node/node.h"
#include "node/runtime/rpc.grpc.pb.h"

namespace e2d::node {

inline constexpr size_t kStreamResponsesMax = 1024;
inline constexpr size_t kWatchesPerStreamMax = 1000;
inline constexpr char kServerVersion[] = "3.4.23";  // the etcd API level e2d speaks

// absl status (etcd's message texts) to gRPC status, as etcd's clients expect them.
grpc::Status ToGrpcStatus(const absl::Status& s);

class EtcdService {
 public:
  // `node` must outlive the service and be used only on `io`'s thread.
  EtcdService(boost::asio::io_context& io, Node* node);
  ~EtcdService();

  // The services, for grpc::ServerBuilder::RegisterService.
  std::vector<grpc::Service*> services();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<grpc::Service> kv_, watch_, lease_, cluster_, maintenance_, auth_;
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_ETCD_SERVICE_H_
