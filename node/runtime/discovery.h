// Copyright e2d authors.
//
// Peer discovery: how a member finds the gossip addresses of the others when they are not
// listed on its command line. One interface, one provider per `--peer-discovery` spec:
//
//   file:PATH        one gossip address per line, host or host:port ('#' starts a comment);
//                    read again at every lookup, so a provisioning tool can fill it in later
//   dns:NAME[:PORT]  the addresses of NAME's A records, at PORT (the gossip port by default)
//   dns-srv:NAME     NAME's SRV records (e.g. _e2d-gossip._udp.example.com): each target's
//                    addresses at the record's port
//   etcd:URL         the etcd discovery protocol (etcd's --discovery; e2d's --discovery URL is
//                    the same): URL is a directory of etcd's v2 keys API, such as
//                    https://discovery.etcd.io/TOKEN or http://HOST:2379/v2/keys/discovery/TOKEN
//                    on any etcd serving v2. Its _config/size must equal -n. Each member writes
//                    URL/NAME = "NAME=HOST:PORT" (its gossip address) once, and reads every entry
//                    back at each lookup. Bounded: each request by `http_timeout`, a reply by
//                    kEtcdDiscoveryReplyMax bytes.
//   do-tags:TAG      DigitalOcean droplets tagged TAG (API v2, token from
//                    DIGITALOCEAN_ACCESS_TOKEN): each one's private IPv4 address, else its public
//                    one, at the gossip port. DIGITALOCEAN_API_URL replaces
//                    https://api.digitalocean.com (tests run a fake of the API on loopback).
//
// `--bootstrap-addrs` stays the static list; the runtime joins through the union of both, and
// looks again every `--peer-discovery-interval`, so members that appear later (an autoscaling
// group filling up, DNS records published after boot) are found. A lookup that finds nobody
// changes nothing: it never makes a member bootstrap alone (gossip::Memberlist::UpdateSeeds).
//
// Lookups block; the runtime makes them from the env's offload worker, never from the node's
// thread. Each is bounded: DNS by `dns_timeout` for the whole lookup, a peer file by
// kPeerFileMax bytes, and every result by kDiscoveredMax addresses. Runtime only (the
// simulator hands seeds to gossip directly).

#ifndef E2D_NODE_RUNTIME_DISCOVERY_H_
#define E2D_NODE_RUNTIME_DISCOVERY_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace e2d::node {

inline constexpr size_t kDiscoveredMax = 256;
inline constexpr size_t kPeerFileMax = 1 << 20;
inline constexpr size_t kEtcdDiscoveryReplyMax = 1 << 20;

class PeerDiscovery {
 public:
  virtual ~PeerDiscovery() = default;

  // The spec it was made from, for logs.
  virtual const std::string& spec() const = 0;

  // The gossip addresses found now, as host:port, sorted and without duplicates; possibly
  // none. An error says what failed and where (the file and line, the DNS name and server).
  // Blocking, bounded as the header comment says.
  virtual absl::StatusOr<std::vector<std::string>> Find() = 0;
};

struct DiscoveryOptions {
  uint16_t default_port = 7980;  // for addresses given without one
  // host:port of the DNS server to ask; empty: the system's (/etc/resolv.conf).
  std::string dns_server;
  absl::Duration dns_timeout = absl::Seconds(5);
  // etcd: what this member registers, and the size the URL must say (0: not checked).
  std::string self_name;
  std::string self_address;  // its gossip address as the others reach it, host:port
  int required_size = 0;
  absl::Duration http_timeout = absl::Seconds(10);
  std::string ca_file;  // https discovery URLs: the CA to trust; empty: the system's
  // Where cloud providers read their credentials and endpoints.
  std::function<const char*(const char*)> getenv = [](const char* name) {
    return std::getenv(name);
  };
};

// InvalidArgument naming the spec for an unknown provider or a malformed argument. Nothing is
// looked up here.
absl::StatusOr<std::unique_ptr<PeerDiscovery>> NewPeerDiscovery(std::string_view spec,
                                                                const DiscoveryOptions& options);

// A peer file's content (see file: above). Errors name `where` and the line, e.g.
// "/etc/e2d/peers:3: \"a b\" is not host or host:port".
absl::StatusOr<std::vector<std::string>> ParsePeerList(std::string_view content,
                                                       uint16_t default_port,
                                                       std::string_view where);

// For providers: `found` sorted and without duplicates, or ResourceExhausted naming `what` if
// more than kDiscoveredMax remain.
absl::StatusOr<std::vector<std::string>> BoundedAddresses(std::vector<std::string> found,
                                                          std::string_view what);

// For providers: the environment variable `name` through DiscoveryOptions::getenv, or "".
std::string DiscoveryEnv(const DiscoveryOptions& options, const char* name);

// The gossip addresses an etcd discovery directory lists: the JSON reply of a GET on it, each
// entry's value NAME=HOST[:PORT]. Errors name the entry's key.
absl::StatusOr<std::vector<std::string>> ParseEtcdDiscoveryListing(std::string_view json,
                                                                   uint16_t default_port);

// The cluster size in the JSON reply of a GET on URL/_config/size.
absl::StatusOr<int> ParseEtcdDiscoverySize(std::string_view json);

// One page of DigitalOcean's droplet list: each droplet's private IPv4 address (else its public
// one) at `port`, appended to `found`; true if the reply names a next page.
absl::StatusOr<bool> ParseDigitalOceanDroplets(std::string_view json, uint16_t port,
                                               std::vector<std::string>* found);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_DISCOVERY_H_
