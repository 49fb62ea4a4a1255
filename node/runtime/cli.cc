// Copyright e2d authors.

#include "node/runtime/cli.h"

#include <openssl/rand.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/signal_set.hpp"
#include "env/check.h"
#include "gossip/crypto.h"
#include "gossip/gossip_node.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "kv/rocksdb_engine.h"
#include "node/bootstrap.h"
#include "node/node.h"
#include "node/pki.h"
#include "node/runtime/asio_env.h"
#include "node/runtime/etcd_service.h"
#include "node/runtime/backup_stores.h"
#include "node/runtime/discovery.h"
#include "node/runtime/http_server.h"
#include "env/status_macros.h"

namespace e2d::node {

namespace asio = boost::asio;

namespace {

constexpr char kVersion[] = "e2d 0.1 (etcd v3 API " "3.4)";

// ---------------------------------------------------------------------------------------------
// Flags

struct FlagSpec {
  std::string name;
  std::string short_name;  // "" or "n" for -n
  std::string default_value;
  std::string help;
  bool is_bool = false;
};

using FlagValues = std::map<std::string, std::string>;

// Parses argv[first..] against `specs`; no positional arguments are accepted.
absl::StatusOr<FlagValues> ParseFlags(const std::vector<std::string>& args,
                                      const std::vector<FlagSpec>& specs) {
  FlagValues values;
  for (const FlagSpec& s : specs) values[s.name] = s.default_value;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    const FlagSpec* spec = nullptr;
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      for (const FlagSpec& s : specs) {
        if (s.name == name) spec = &s;
      }
      if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    } else if (arg.size() >= 2 && arg[0] == '-') {
      const std::string name = arg.substr(1);
      for (const FlagSpec& s : specs) {
        if (!s.short_name.empty() && s.short_name == name) spec = &s;
      }
      if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    if (spec->is_bool) {
      if (!has_value) value = "true";
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--", spec->name, " takes true or false, not \"", value, "\""));
      }
    } else if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", spec->name, " needs a value"));
      }
      value = args[++i];
    }
    values[spec->name] = value;
  }
  return values;
}

void PrintHelp(const std::string& usage, const std::vector<FlagSpec>& specs) {
  std::printf("%s\n\nFlags:\n", usage.c_str());
  for (const FlagSpec& s : specs) {
    std::string names = s.short_name.empty() ? "    " : absl::StrCat("-", s.short_name, ", ");
    names += "--" + s.name;
    std::printf("  %-28s %s", names.c_str(), s.help.c_str());
    if (!s.default_value.empty()) std::printf(" (default \"%s\")", s.default_value.c_str());
    std::printf("\n");
  }
}

bool WantsHelp(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "help") return true;
  }
  return false;
}

int Fail(const std::string& command, const absl::Status& s, int code = 1) {
  std::fprintf(stderr, "e2d %s: %s\n", command.c_str(), std::string(s.message()).c_str());
  return code;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& name, const std::string& v) {
  absl::Duration d;
  if (!absl::ParseDuration(v, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, "=\"", v, "\" is not a positive duration (e.g. 87600h)"));
  }
  return d;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the ", what, " ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// e2d pki

const std::vector<FlagSpec>& PkiInitFlags() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"ca-cert", "", "ca.crt", "where to write the CA certificate"},
      {"ca-key", "", "ca.key", "where to write the CA private key (mode 0600)"},
      {"key-type", "", "ecdsa-p256", "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-4096 or ed25519"},
      {"validity", "", "87600h", "how long the CA is valid"},
      {"overwrite", "", "", "replace existing files", true},
  };
  return *specs;
}

const std::vector<FlagSpec>& PkiGenFlags() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"ca-cert", "", "ca.crt", "the CA certificate"},
      {"ca-key", "", "ca.key", "the CA private key"},
      {"hosts", "", "",
       "comma-separated names and addresses for the SANs (127.0.0.1, ::1, localhost, this "
       "machine's name and addresses are always added)"},
      {"output-dir", "", ".", "where to write server, peer and client .crt/.key"},
      {"key-type", "", "ecdsa-p256", "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-4096 or ed25519"},
      {"validity", "", "17520h", "how long the certificates are valid (never past the CA)"},
      {"overwrite", "", "", "replace existing files", true},
  };
  return *specs;
}

int PkiMain(const std::vector<std::string>& args) {
  const std::string sub = args.empty() ? "" : args[0];
  const std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  if (sub == "init") {
    if (WantsHelp(rest)) {
      PrintHelp("Usage: e2d pki init [flags]\n\nCreates the cluster CA.", PkiInitFlags());
      return 0;
    }
    absl::StatusOr<FlagValues> f = ParseFlags(rest, PkiInitFlags());
    if (!f.ok()) return Fail("pki init", f.status(), 2);
    CaOptions o;
    o.cert_path = (*f)["ca-cert"];
    o.key_path = (*f)["ca-key"];
    absl::StatusOr<KeyType> kt = ParseKeyType((*f)["key-type"]);
    if (!kt.ok()) return Fail("pki init", kt.status(), 2);
    o.key_type = *kt;
    absl::StatusOr<absl::Duration> v = ParseDurationFlag("validity", (*f)["validity"]);
    if (!v.ok()) return Fail("pki init", v.status(), 2);
    o.validity = *v;
    o.overwrite = (*f)["overwrite"] == "true";
    if (absl::Status s = InitCa(o); !s.ok()) return Fail("pki init", s);
    std::printf("wrote %s and %s\n", o.cert_path.c_str(), o.key_path.c_str());
    return 0;
  }
  if (sub == "gencerts") {
    if (WantsHelp(rest)) {
      PrintHelp("Usage: e2d pki gencerts [flags]\n\nSigns server, peer and client certificates.",
                PkiGenFlags());
      return 0;
    }
    absl::StatusOr<FlagValues> f = ParseFlags(rest, PkiGenFlags());
    if (!f.ok()) return Fail("pki gencerts", f.status(), 2);
    CertOptions o;
    o.ca_cert = (*f)["ca-cert"];
    o.ca_key = (*f)["ca-key"];
    o.output_dir = (*f)["output-dir"];
    for (absl::string_view h : absl::StrSplit((*f)["hosts"], ',', absl::SkipEmpty())) {
      o.hosts.emplace_back(h);
    }
    for (const std::string& h : DetectHostAddresses()) o.hosts.push_back(h);
    absl::StatusOr<KeyType> kt = ParseKeyType((*f)["key-type"]);
    if (!kt.ok()) return Fail("pki gencerts", kt.status(), 2);
    o.key_type = *kt;
    absl::StatusOr<absl::Duration> v = ParseDurationFlag("validity", (*f)["validity"]);
    if (!v.ok()) return Fail("pki gencerts", v.status(), 2);
    o.validity = *v;
    o.overwrite = (*f)["overwrite"] == "true";
    if (absl::Status s = GenCerts(o); !s.ok()) return Fail("pki gencerts", s);
    std::printf("wrote server, peer and client certificates and keys to %s\n",
                o.output_dir.c_str());
    return 0;
  }
  std::fprintf(stderr, "Usage: e2d pki init|gencerts [flags] (--help for the flags)\n");
  return 2;
}

// ---------------------------------------------------------------------------------------------
// e2d run

const std::vector<FlagSpec>& RunFlags() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"name", "", "", "this member's name (default: the host name)"},
      {"data-dir", "", "data", "where the Raft log, snapshots and the store live"},
      {"host", "", "",
       "the address other members and clients reach this node at (default: the first "
       "non-loopback IPv4 address, else 127.0.0.1)"},
      {"client-addr", "", "0.0.0.0:2379", "etcd v3 gRPC API (TLS, client certificates required)"},
      {"peer-addr", "", "0.0.0.0:2380", "Raft transport between members (mutual TLS 1.3)"},
      {"gossip-addr", "", "0.0.0.0:7980",
       "gossip (UDP + TCP, sealed with a key derived from --ca-key): members watch each other "
       "and publish their names and client URLs; off without a CA key"},
      {"metrics-addr", "", "127.0.0.1:2381",
       "HTTP /metrics (Prometheus) and /health, without TLS; \"\" turns it off"},
      {"plaintext-client-addr", "", "",
       "an extra etcd API listener without TLS, for local tools; loopback addresses only"},
      {"required-cluster-size", "n", "1", "the number of members the cluster is made of"},
      {"bootstrap-addrs", "", "",
       "gossip addresses (host[:port], port 7980 by default) of other members. With -n N > 1 "
       "and no --initial-cluster, the members agree over gossip on the N that start the "
       "cluster (needs the certificates of one CA and its key, --ca-key). Default: the hosts "
       "of --initial-cluster at this member's gossip port"},
      {"peer-discovery", "", "",
       "where else to find the other members' gossip addresses, looked up again every "
       "--peer-discovery-interval: file:PATH (one host[:port] per line), dns:NAME[:PORT] (A "
       "records), dns-srv:NAME (SRV records), etcd:URL (etcd's discovery protocol; each member "
       "registers its gossip address), do-tags:TAG (DigitalOcean droplets with that tag; "
       "DIGITALOCEAN_ACCESS_TOKEN), ec2-tags:KEY=VALUE[,...] (running EC2 instances) or "
       "aws-autoscaling-group:NAME (AWS_REGION; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
       "else the instance profile's); "
       "joined with --bootstrap-addrs"},
      {"discovery", "", "",
       "an etcd discovery URL (https://discovery.etcd.io/TOKEN, or a v2 keys directory of any "
       "etcd): the same as --peer-discovery etcd:URL"},
      {"peer-discovery-interval", "", "30s", "how often --peer-discovery looks again"},
      {"peer-discovery-dns-server", "", "",
       "host:port of the DNS server dns: and dns-srv: ask (default: /etc/resolv.conf's)"},
      {"initial-cluster", "", "",
       "static membership: name=host:peerport,... (or name=https://host:peerport) including "
       "this member (default: this member alone)"},
      {"initial-cluster-state", "", "new",
       "new: bootstrap the cluster --initial-cluster names; existing: join a running cluster "
       "that added this member (etcdctl member add), --initial-cluster naming its members"},
      {"ca-cert", "", "", "the cluster CA certificate"},
      {"ca-key", "", "", "the cluster CA key: gossip's key derives from it (not needed to serve)"},
      {"server-cert", "", "", "the certificate served to clients"},
      {"server-key", "", "", "its key"},
      {"peer-cert", "", "", "the certificate between members (serverAuth and clientAuth)"},
      {"peer-key", "", "", "its key"},
      {"client-cert", "", "", "a client certificate (for e2d's own calls to members)"},
      {"client-key", "", "", "its key"},
      {"log-level", "", "info", "debug, info, warn or error"},
      {"snapshot-entries", "", "100000",
       "take a Raft snapshot every this many entries (etcd's --snapshot-count)"},
      {"election-timeout", "", "1s", "Raft election timeout (heartbeats every tenth of it)"},
      {"snapshot-backup-url", "", "",
       "where the leader writes backups of the store: file://DIR, s3://BUCKET[/PREFIX] or "
       "http(s)://HOST[:PORT]/BUCKET[/PREFIX] of an S3-compatible store (credentials from "
       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else the EC2 instance profile's); off if "
       "empty"},
      {"snapshot-backup-interval", "", "1m",
       "how often the leader writes a backup (skipped when nothing changed)"},
      {"snapshot-backup-keep", "", "10", "how many backups of this cluster to keep (newest)"},
      {"snapshot-backup-keep-hourly", "", "0",
       "also keep the newest backup of each of the last this many hours that have one"},
      {"snapshot-backup-keep-daily", "", "0",
       "also keep the newest backup of each of the last this many days (UTC) that have one"},
      {"snapshot-compression", "", "false", "gzip backups (not with --snapshot-encryption)",
       true},
      {"snapshot-encryption", "", "false",
       "encrypt backups: AES-256-CTR + HMAC-SHA-512/256, keys derived from --ca-key", true},
      {"health-check-interval", "", "5s",
       "with gossip bootstrap: how often the leader checks the membership (replaces dead "
       "members, adds nodes waiting to join as learners, promotes them)"},
      {"health-check-timeout", "", "5m",
       "with gossip bootstrap: how long a member must be unseen by gossip and unheard by Raft "
       "before the leader removes it"},
      {"restore-backup", "", "",
       "start a new cluster from a backup: a backup file, or \"latest\" for the newest one "
       "under --snapshot-backup-url that checks out; give every initial member the same one "
       "(encrypted backups need --ca-key); ignored once the data directory holds a member; "
       "with gossip bootstrap, \"latest\" and no backup at all starts an empty cluster"},
  };
  return *specs;
}

struct RunConfig {
  std::string name;
  std::string data_dir;
  std::string host;
  std::string client_addr;
  std::string peer_addr;
  std::string gossip_addr;
  std::vector<std::string> gossip_seeds;  // host:port
  std::string peer_discovery;             // a --peer-discovery spec, or empty
  absl::Duration peer_discovery_interval = absl::Seconds(30);
  std::string peer_discovery_dns_server;
  std::string ca_key;                     // empty: no gossip (its key derives from the CA key)
  std::string plaintext_client_addr;
  std::string metrics_addr;
  AsioEnv::LogLevel log_level = AsioEnv::LogLevel::kInfo;
  std::vector<Member> initial_cluster;  // with gossip_bootstrap: only this member, until agreed
  bool join = false;
  int required_size = 1;
  bool gossip_bootstrap = false;  // -n N > 1 without --initial-cluster
  std::string ca_cert, server_cert, server_key, peer_cert, peer_key;
  uint64_t snapshot_entries = 100000;
  absl::Duration election_timeout = absl::Seconds(1);
  std::string backup_url;  // empty: no backups
  absl::Duration backup_interval = absl::Minutes(1);
  int backup_keep = 10;
  int backup_keep_hourly = 0;
  int backup_keep_daily = 0;
  bool backup_gzip = false;
  bool backup_encrypt = false;
  std::string restore_backup;  // a file, "latest", or empty
  uint64_t member_id = 0;  // 0: from the peer address; else taken when joining through gossip
  absl::Duration health_interval = absl::Seconds(5);
  absl::Duration health_timeout = absl::Minutes(5);
};

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == 0) return "default";
  return buf;
}

std::string DefaultHost() {
  for (const std::string& a : DetectHostAddresses()) {
    boost::system::error_code ec;
    asio::ip::make_address_v4(a, ec);
    if (!ec) return a;
  }
  return "127.0.0.1";
}

uint16_t PortOf(const std::string& addr) {
  std::string host;
  uint16_t port = 0;
  SplitHostPort(addr, &host, &port).IgnoreError();
  return port;
}

DiscoveryOptions DiscoveryOptionsOf(const RunConfig& c) {
  DiscoveryOptions o;
  o.default_port = PortOf(c.gossip_addr);
  o.dns_server = c.peer_discovery_dns_server;
  o.self_name = c.name;
  o.self_address = absl::StrCat(c.host, ":", PortOf(c.gossip_addr));
  o.required_size = c.required_size;
  return o;
}

bool IsLoopback(const std::string& addr) {
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(addr, &host, &port).ok()) return false;
  boost::system::error_code ec;
  const asio::ip::address a = asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    cur += std::string(part);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create directory ", cur, ": ", strerror(errno)));
    }
    cur += "/";
  }
  return absl::OkStatus();
}

// Without any certificate flag, the node makes its own CA and certificates under
// <data-dir>/pki on first start (and reuses them later), so `e2d run` alone serves TLS.
absl::Status EnsureCertificates(RunConfig& c, FlagValues& f) {
  const char* names[] = {"ca-cert", "server-cert", "server-key", "peer-cert", "peer-key"};
  int given = 0;
  for (const char* n : names) given += f[n].empty() ? 0 : 1;
  if (c.gossip_bootstrap && given == 0) {
    return absl::InvalidArgumentError(
        "members that bootstrap together need certificates of one CA: make them with e2d pki "
        "init and e2d pki gencerts, and give --ca-cert, --ca-key, --server-cert, --server-key, "
        "--peer-cert and --peer-key");
  }
  if (c.gossip_bootstrap && f["ca-key"].empty()) {
    return absl::InvalidArgumentError(
        "--ca-key is needed with --required-cluster-size > 1 and no --initial-cluster: the "
        "members agree over gossip, which is keyed from the CA key");
  }
  if (given == 0) {
    const std::string dir = c.data_dir + "/pki";
    E2D_RETURN_IF_ERROR(MakeDirs(dir));
    f["ca-cert"] = dir + "/ca.crt";
    f["server-cert"] = dir + "/server.crt";
    f["server-key"] = dir + "/server.key";
    f["peer-cert"] = dir + "/peer.crt";
    f["peer-key"] = dir + "/peer.key";
    struct stat st;
    if (::stat(f["ca-cert"].c_str(), &st) != 0) {
      CaOptions ca;
      ca.cert_path = f["ca-cert"];
      ca.key_path = dir + "/ca.key";
      if (absl::Status s = InitCa(ca); !s.ok()) return s;
      CertOptions certs;
      certs.ca_cert = ca.cert_path;
      certs.ca_key = ca.key_path;
      certs.output_dir = dir;
      certs.hosts = {c.host};
      for (const std::string& h : DetectHostAddresses()) certs.hosts.push_back(h);
      if (absl::Status s = GenCerts(certs); !s.ok()) return s;
      std::fprintf(stderr, "e2d run: created a CA and certificates in %s\n", dir.c_str());
    }
  } else if (given != 5) {
    for (const char* n : names) {
      if (f[n].empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", n, " is missing: give --ca-cert, --server-cert, --server-key, --peer-cert and "
            "--peer-key together, or none of them"));
      }
    }
  }
  c.ca_cert = f["ca-cert"];
  c.ca_key = given == 0 ? c.data_dir + "/pki/ca.key" : f["ca-key"];
  c.server_cert = f["server-cert"];
  c.server_key = f["server-key"];
  c.peer_cert = f["peer-cert"];
  c.peer_key = f["peer-key"];
  return absl::OkStatus();
}

absl::StatusOr<RunConfig> ParseRunConfig(FlagValues& f) {
  RunConfig c;
  c.name = f["name"].empty() ? HostName() : f["name"];
  c.data_dir = f["data-dir"];
  if (c.data_dir.empty()) return absl::InvalidArgumentError("--data-dir is empty");
  c.host = f["host"].empty() ? DefaultHost() : f["host"];
  c.client_addr = f["client-addr"];
  c.peer_addr = f["peer-addr"];
  c.gossip_addr = f["gossip-addr"];
  c.plaintext_client_addr = f["plaintext-client-addr"];
  c.metrics_addr = f["metrics-addr"];
  absl::StatusOr<AsioEnv::LogLevel> level = AsioEnv::ParseLogLevel(f["log-level"]);
  if (!level.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log-level: ", level.status().message()));
  }
  c.log_level = *level;
  std::string h;
  uint16_t p = 0;
  for (const char* n : {"client-addr", "peer-addr", "gossip-addr"}) {
    if (absl::Status s = SplitHostPort(f[n], &h, &p); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--", n, ": ", s.message()));
    }
  }
  if (!c.plaintext_client_addr.empty() && !IsLoopback(c.plaintext_client_addr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--plaintext-client-addr=", c.plaintext_client_addr,
        " is not a loopback address: a listener without TLS is only allowed on loopback"));
  }
  int size = 0;
  if (!absl::SimpleAtoi(f["required-cluster-size"], &size) || size < 1 || size > 9) {
    return absl::InvalidArgumentError(absl::StrCat("--required-cluster-size=\"",
                                                   f["required-cluster-size"],
                                                   "\" is not a cluster size from 1 to 9"));
  }
  c.required_size = size;
  if (!absl::SimpleAtoi(f["snapshot-entries"], &c.snapshot_entries) || c.snapshot_entries < 100) {
    return absl::InvalidArgumentError("--snapshot-entries must be a number of at least 100");
  }
  E2D_ASSIGN_OR_RETURN(c.election_timeout,
                       ParseDurationFlag("election-timeout", f["election-timeout"]));
  if (c.election_timeout < absl::Milliseconds(100) || c.election_timeout > absl::Seconds(50)) {
    return absl::InvalidArgumentError("--election-timeout must be between 100ms and 50s");
  }
  c.backup_url = f["snapshot-backup-url"];
  E2D_ASSIGN_OR_RETURN(c.backup_interval,
                       ParseDurationFlag("snapshot-backup-interval", f["snapshot-backup-interval"]));
  if (c.backup_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--snapshot-backup-interval must be at least 1s");
  }
  if (!absl::SimpleAtoi(f["snapshot-backup-keep"], &c.backup_keep) || c.backup_keep < 1) {
    return absl::InvalidArgumentError("--snapshot-backup-keep must be a number of at least 1");
  }
  for (const auto& [flag, field] : {std::pair{"snapshot-backup-keep-hourly", &c.backup_keep_hourly},
                                    std::pair{"snapshot-backup-keep-daily", &c.backup_keep_daily}}) {
    if (!absl::SimpleAtoi(f[flag], field) || *field < 0 || *field > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " must be a number from 0 to 100000"));
    }
  }
  c.backup_gzip = f["snapshot-compression"] == "true";
  c.backup_encrypt = f["snapshot-encryption"] == "true";
  if (c.backup_gzip && c.backup_encrypt) {
    return absl::InvalidArgumentError(
        "--snapshot-compression and --snapshot-encryption exclude each other (compressing "
        "before encrypting leaks the content through the length)");
  }
  c.restore_backup = f["restore-backup"];
  E2D_ASSIGN_OR_RETURN(c.health_interval,
                       ParseDurationFlag("health-check-interval", f["health-check-interval"]));
  E2D_ASSIGN_OR_RETURN(c.health_timeout,
                       ParseDurationFlag("health-check-timeout", f["health-check-timeout"]));
  if (c.health_interval < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError("--health-check-interval must be at least 100ms");
  }
  if (c.health_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--health-check-timeout must be at least 1s");
  }
  if (c.restore_backup == "latest" && c.backup_url.empty()) {
    return absl::InvalidArgumentError(
        "--restore-backup=latest needs --snapshot-backup-url (where to look for backups)");
  }
  const std::string self_peer = absl::StrCat(c.host, ":", PortOf(c.peer_addr));
  if (f["initial-cluster-state"] != "new" && f["initial-cluster-state"] != "existing") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--initial-cluster-state: \"", f["initial-cluster-state"],
        "\" is neither new nor existing"));
  }
  c.join = f["initial-cluster-state"] == "existing";
  if (c.join && !c.restore_backup.empty()) {
    return absl::InvalidArgumentError(
        "--restore-backup starts a new cluster: it does not go with --initial-cluster-state "
        "existing (a joining member gets the data from the cluster)");
  }
  if (c.join && f["initial-cluster"].empty()) {
    return absl::InvalidArgumentError(
        "--initial-cluster-state existing needs --initial-cluster naming the running members");
  }
  if (f["initial-cluster"].empty()) {
    if (size > 1 && f["bootstrap-addrs"].empty() && f["peer-discovery"].empty() &&
        f["discovery"].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--required-cluster-size=", size,
          " needs --bootstrap-addrs, --peer-discovery or --discovery (how to find the gossip "
          "addresses of the other members, to agree with them on the cluster) or "
          "--initial-cluster"));
    }
    c.gossip_bootstrap = size > 1;
    Member self;
    self.name = c.name;
    self.peer_address = self_peer;
    c.initial_cluster.push_back(self);
  } else {
    for (absl::string_view entry : absl::StrSplit(f["initial-cluster"], ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
      // etcd writes peer URLs (etcdctl member add prints them so); peers speak TLS only.
      if (absl::StartsWith(kv.second, "https://")) kv.second = kv.second.substr(8);
      if (kv.first.empty() || !SplitHostPort(kv.second, &h, &p).ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--initial-cluster: \"", std::string(entry),
            "\" is not name=host:port or name=https://host:port"));
      }
      Member m;
      m.name = kv.first;
      m.peer_address = kv.second;
      c.initial_cluster.push_back(m);
    }
    if (!c.join && static_cast<int>(c.initial_cluster.size()) != size &&
        f["required-cluster-size"] != "1") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster names ", c.initial_cluster.size(),
          " members but --required-cluster-size is ", size));
    }
  }
  bool self_listed = false;
  for (const Member& m : c.initial_cluster) self_listed = self_listed || m.name == c.name;
  if (!self_listed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this member's name \"", c.name, "\" is not in the initial cluster (--name, --initial-cluster)"));
  }
  const std::string client_url = absl::StrCat("https://", c.host, ":", PortOf(c.client_addr));
  for (Member& m : c.initial_cluster) {
    if (m.name == c.name) m.client_url = client_url;
  }
  // Gossip seeds: the bootstrap addresses (port 7980 unless given), or else the other members'
  // hosts at this member's gossip port.
  const uint16_t gossip_port = PortOf(c.gossip_addr);
  for (absl::string_view a : absl::StrSplit(f["bootstrap-addrs"], ',', absl::SkipEmpty())) {
    std::string seed(a);
    if (!SplitHostPort(seed, &h, &p).ok()) seed = absl::StrCat(seed, ":7980");
    if (!SplitHostPort(seed, &h, &p).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bootstrap-addrs: \"", std::string(a), "\" is not host or host:port"));
    }
    c.gossip_seeds.push_back(seed);
  }
  c.peer_discovery = f["peer-discovery"];
  if (!f["discovery"].empty()) {
    if (!c.peer_discovery.empty()) {
      return absl::InvalidArgumentError(
          "--discovery and --peer-discovery exclude each other (--discovery URL is "
          "--peer-discovery etcd:URL)");
    }
    c.peer_discovery = absl::StrCat("etcd:", f["discovery"]);
  }
  c.peer_discovery_dns_server = f["peer-discovery-dns-server"];
  E2D_ASSIGN_OR_RETURN(c.peer_discovery_interval,
                       ParseDurationFlag("peer-discovery-interval", f["peer-discovery-interval"]));
  if (c.peer_discovery_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--peer-discovery-interval must be at least 1s");
  }
  if (!c.peer_discovery.empty()) {
    // Checked now, so that a bad spec fails at start rather than in the log of every lookup.
    E2D_RETURN_IF_ERROR(NewPeerDiscovery(c.peer_discovery, DiscoveryOptionsOf(c)).status());
  }
  if (!c.peer_discovery_dns_server.empty() &&
      !SplitHostPort(c.peer_discovery_dns_server, &h, &p).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--peer-discovery-dns-server: \"",
                                                   c.peer_discovery_dns_server,
                                                   "\" is not host:port"));
  }
  if (c.gossip_seeds.empty() && c.peer_discovery.empty()) {
    for (const Member& m : c.initial_cluster) {
      if (m.name == c.name) continue;
      if (SplitHostPort(m.peer_address, &h, &p).ok()) {
        c.gossip_seeds.push_back(absl::StrCat(h, ":", gossip_port));
      }
    }
  }
  return c;
}

// Fails naming `addr` if nothing can listen there (gRPC would report it only in its own log).
absl::Status CheckCanListen(asio::io_context& io, const std::string& addr) {
  std::string host;
  uint16_t port = 0;
  E2D_RETURN_IF_ERROR(SplitHostPort(addr, &host, &port));
  boost::system::error_code ec;
  const asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("\"", host, "\" is not an IP address"));
  asio::ip::tcp::acceptor probe(io);
  const asio::ip::tcp::endpoint endpoint(ip, port);
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", addr, ": ", ec.message()));
  return absl::OkStatus();
}

// /metrics and /health (etcd's shapes: {"health":"true"} or "false" with a reason, 503).
HttpResponse ServeHttp(const Node& node, const std::string& path) {
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", node.MetricsText()};
  }
  if (path == "/health") {
    const NodeStatus s = node.Status();
    if (s.failed) {
      return {503, "application/json", "{\"health\":\"false\",\"reason\":\"storage failed\"}"};
    }
    if (s.leader == 0) {
      return {503, "application/json", "{\"health\":\"false\",\"reason\":\"no leader\"}"};
    }
    return {200, "application/json", "{\"health\":\"true\"}"};
  }
  return {404, "text/plain; charset=utf-8", "not found: try /metrics or /health\n"};
}

// Gossip bootstrap (node/bootstrap.h): the members this one starts its cluster with, agreed
// with the others over gossip or recorded by an earlier start; nullopt if a signal stopped the
// wait. Runs the io loop until then.
absl::StatusOr<std::optional<BootstrapSet>> AgreeOnCluster(asio::io_context& io, AsioEnv& env,
                                                           gossip::GossipNode* gossip,
                                                           const RunConfig& c,
                                                           const std::string& restore) {
  E2D_ASSIGN_OR_RETURN(std::optional<Bootstrapper::Record> record, Bootstrapper::Read(env.fs()));
  if (record.has_value() && record->committed) {
    env.Log(absl::StrCat("level=info msg=\"bootstrap: restarting in the cluster agreed before\" "
                         "cluster=", absl::Hex(record->ack.set.cluster_id, absl::kZeroPad16)));
    return std::optional<BootstrapSet>(record->ack.set);
  }
  E2D_ASSIGN_OR_RETURN(const bool has_identity, Node::HasIdentity(env.fs()));
  if (has_identity) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the data directory ", c.data_dir, " holds a member that was not bootstrapped through "
        "gossip: start it with the --initial-cluster it was created with"));
  }
  BootstrapperConfig bc;
  bc.required_size = c.required_size;
  bc.self = c.initial_cluster.front();
  bc.restore = restore;
  bc.join_running = true;
  std::optional<absl::StatusOr<BootstrapSet>> result;
  Bootstrapper bootstrapper(env, gossip, bc,
                            [&result](absl::StatusOr<BootstrapSet> s) { result = std::move(s); });
  // (shared: the handler may still be queued when this function returns)
  auto stopped = std::make_shared<bool>(false);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([stopped](const boost::system::error_code& ec, int) {
    if (!ec) *stopped = true;
  });
  bootstrapper.Start();
  while (!result.has_value() && !*stopped && !io.stopped()) io.run_one();
  signals.cancel();
  if (!result.has_value()) return std::optional<BootstrapSet>();
  E2D_RETURN_IF_ERROR(result->status());
  return std::optional<BootstrapSet>(**result);
}

// The backup --restore-backup names, read and checked whole before the data directory is
// opened; nullopt if the data directory holds a member already (it keeps its own data).
// `name`, if given, is the backup the cluster agreed on (through gossip, recorded before a
// restart): that one exactly.
absl::StatusOr<std::optional<NodeConfig::Restore>> LoadRestore(AsioEnv& env, const RunConfig& c,
                                                               BackupStore* store,
                                                               const std::string& name = "") {
  E2D_ASSIGN_OR_RETURN(const bool has_identity, Node::HasIdentity(env.fs()));
  if (has_identity) {
    env.Log(absl::StrCat("level=warn msg=\"the data directory holds a member already: it keeps "
                         "its data and --restore-backup is ignored\" data_dir=", c.data_dir));
    return std::optional<NodeConfig::Restore>();
  }
  std::optional<BackupKeys> keys;
  if (!c.ca_key.empty()) {
    E2D_ASSIGN_OR_RETURN(const std::string ca_key, ReadFile(c.ca_key, "CA key"));
    E2D_ASSIGN_OR_RETURN(keys, DeriveBackupKeys(ca_key));
  }
  absl::StatusOr<LoadedBackup> loaded;
  if (!name.empty() && c.restore_backup == "latest") {
    absl::StatusOr<std::string> bytes = store->Get(name);
    loaded = bytes.ok() ? DecodeBackup(name, *bytes, keys) : bytes.status();
  } else if (c.restore_backup == "latest") {
    loaded = NewestBackup(*store, keys, [&env](const std::string& name, const absl::Status& why) {
      env.Log(absl::StrCat("level=warn msg=\"backup refused, trying an older one\" backup=", name,
                           " why=\"", why.message(), "\""));
    });
    // With gossip bootstrap the flag is standing configuration (every unit file has it): no
    // backup at all is the first start of a cluster, which starts empty. Backups that are all
    // refused are never taken for none.
    if (c.gossip_bootstrap && loaded.status().code() == absl::StatusCode::kNotFound) {
      env.Log(absl::StrCat("level=info msg=\"no backup to restore: a new cluster starts empty\" "
                           "url=", store->Describe()));
      return std::optional<NodeConfig::Restore>();
    }
  } else {
    std::string path = c.restore_backup;
    if (absl::StartsWith(path, "file://")) path = path.substr(7);
    absl::StatusOr<std::string> bytes = ReadFile(path, "backup");
    if (!bytes.ok()) return bytes.status();
    std::string base = path;
    if (const size_t slash = base.rfind('/'); slash != std::string::npos) {
      base = base.substr(slash + 1);
    }
    if (!name.empty() && base != name) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--restore-backup: the cluster agreed to restore ", name, ", not ", base));
    }
    loaded = DecodeBackup(base, *bytes, keys);
  }
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("--restore-backup: ", loaded.status().message()));
  }
  env.Log(absl::StrCat("level=info msg=\"restoring from a backup\" backup=", loaded->name,
                       " revision=", loaded->meta.revision, " of_cluster=",
                       absl::Hex(loaded->meta.cluster_id, absl::kZeroPad16),
                       " members=\"", absl::StrJoin(loaded->meta.members, ", "), "\""));
  return std::optional<NodeConfig::Restore>(NodeConfig::Restore{loaded->name, loaded->store});
}

// Runs the node until SIGINT or SIGTERM.
// Recovery from the loss of a majority (node/recovery.h) restarts the member in this process:
// Serve returns, having closed everything, and RunMain serves again. A member that steps aside
// first moves its data (never deletes it) into "superseded-<unix seconds>" in the data
// directory: through "superseded-<unix seconds>.tmp", completed by the next start if a crash
// cut it short (a member must never start with half of its old data).
constexpr const char* kMemberData[] = {"kv",        "wal",           "snap", "member",
                                       "member.tmp", "bootstrap", "bootstrap.tmp"};

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", dir, ": ", strerror(errno)));
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync ", dir, ": ", strerror(err)));
  return absl::OkStatus();
}

// Moves the member's data still in `data_dir` into `data_dir/tmp_name`, then renames that to
// the name without ".tmp".
absl::Status CompleteSetAside(const std::string& data_dir, const std::string& tmp_name) {
  const std::string tmp = absl::StrCat(data_dir, "/", tmp_name);
  for (const char* name : kMemberData) {
    const std::string from = absl::StrCat(data_dir, "/", name);
    if (access(from.c_str(), F_OK) != 0) continue;
    if (rename(from.c_str(), absl::StrCat(tmp, "/", name).c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("moving ", from, " into ", tmp, ": ", strerror(errno)));
    }
  }
  E2D_RETURN_IF_ERROR(SyncDirectory(tmp));
  const std::string done = tmp.substr(0, tmp.size() - 4);
  if (rename(tmp.c_str(), done.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", strerror(errno)));
  }
  return SyncDirectory(data_dir);
}

// Completes a set-aside a crash interrupted.
absl::Status CompleteInterruptedSetAside(const std::string& data_dir) {
  DIR* d = opendir(data_dir.c_str());
  if (d == nullptr) return absl::OkStatus();  // created later
  std::vector<std::string> pending;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (absl::StartsWith(name, "superseded-") && absl::EndsWith(name, ".tmp")) {
      pending.push_back(name);
    }
  }
  closedir(d);
  for (const std::string& name : pending) {
    std::fprintf(stderr, "level=warn msg=\"completing an interrupted set-aside\" dir=%s/%s\n",
                 data_dir.c_str(), name.c_str());
    E2D_RETURN_IF_ERROR(CompleteSetAside(data_dir, name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SetAside(const std::string& data_dir) {
  const std::string name =
      absl::StrCat("superseded-", absl::ToUnixSeconds(absl::Now()), ".tmp");
  const std::string tmp = absl::StrCat(data_dir, "/", name);
  if (mkdir(tmp.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", tmp, ": ", strerror(errno)));
  }
  E2D_RETURN_IF_ERROR(SyncDirectory(data_dir));
  E2D_RETURN_IF_ERROR(CompleteSetAside(data_dir, name));
  return tmp.substr(0, tmp.size() - 4);
}

// Recovery by restore (RecoveryDecision::kRestore) spans a restart: it is recorded in the file
// "recovery-restore" in the data directory, outside the member's data (a set-aside leaves it),
// before the data is set aside. The next start opens the backup alone, and removes the record
// once the member it creates is recorded; a crash anywhere in between finishes the restore at
// the next start (and the set-aside, if the crash came before it).
constexpr char kPendingRestoreFile[] = "recovery-restore";

struct PendingRestore {
  std::string backup;     // the backup's name in the backup store
  uint64_t recovers = 0;  // the lost cluster it starts again
};

absl::Status WritePendingRestore(const std::string& data_dir, const PendingRestore& p) {
  const std::string path = absl::StrCat(data_dir, "/", kPendingRestoreFile);
  const std::string tmp = path + ".tmp";
  const std::string text = absl::StrCat("e2d-recovery-restore v1\nbackup=", p.backup,
                                        "\nrecovers=", absl::Hex(p.recovers, absl::kZeroPad16),
                                        "\n");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", tmp, ": ", strerror(errno)));
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  fsync(fd) == 0;
  const int err = errno;
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("write ", tmp, ": ", strerror(err)));
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", strerror(errno)));
  }
  return SyncDirectory(data_dir);
}

// nullopt if no restore is pending. DataLoss, naming the file, if it is damaged.
absl::StatusOr<std::optional<PendingRestore>> ReadPendingRestore(const std::string& data_dir) {
  const std::string path = absl::StrCat(data_dir, "/", kPendingRestoreFile);
  if (access(path.c_str(), F_OK) != 0) return std::optional<PendingRestore>();
  E2D_ASSIGN_OR_RETURN(const std::string text, ReadFile(path, "pending restore"));
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  PendingRestore p;
  if (lines.size() != 3 || lines[0] != "e2d-recovery-restore v1" ||
      !absl::StartsWith(lines[1], "backup=") || !absl::StartsWith(lines[2], "recovers=") ||
      !IsStoreObjectName(lines[1].substr(7)) ||
      !absl::SimpleHexAtoi(lines[2].substr(9), &p.recovers) || p.recovers == 0) {
    return absl::DataLossError(absl::StrCat(
        path, " is damaged: expected \"e2d-recovery-restore v1\", backup=<name> and "
        "recovers=<cluster id>, one per line (remove it to start without the restore)"));
  }
  p.backup = lines[1].substr(7);
  return std::optional<PendingRestore>(p);
}

absl::Status RemovePendingRestore(const std::string& data_dir) {
  const std::string path = absl::StrCat(data_dir, "/", kPendingRestoreFile);
  if (unlink(path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("remove ", path, ": ", strerror(errno)));
  }
  return SyncDirectory(data_dir);
}

// The restore `p` asks for, at a start: nullopt if an earlier start completed it (the record
// can go); otherwise the backup, read and checked whole, with this member's cluster (itself
// alone) recorded as bootstrapped from it and c.initial_cluster set to it. Member data of the
// lost cluster still here (a crash came before the set-aside) is set aside first.
absl::StatusOr<std::optional<NodeConfig::Restore>> StartPendingRestore(
    asio::io_context& io, AsioEnv& env, RunConfig& c, const PendingRestore& p,
    BackupStore* store, const std::optional<BackupKeys>& keys) {
  E2D_ASSIGN_OR_RETURN(std::optional<Bootstrapper::Record> record, Bootstrapper::Read(env.fs()));
  E2D_ASSIGN_OR_RETURN(const bool has_identity, Node::HasIdentity(env.fs()));
  const bool ours =
      record.has_value() && record->committed && record->ack.set.restored_from == p.backup;
  if (ours && has_identity) return std::optional<NodeConfig::Restore>();
  if (!ours && (record.has_value() || has_identity)) {
    E2D_ASSIGN_OR_RETURN(const std::string aside, SetAside(c.data_dir));
    env.Log(absl::StrCat("level=warn msg=\"recovery: completing an interrupted restore: the "
                         "lost cluster's data was set aside\" moved_to=", aside));
  }
  if (store == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "recovery: this member is to restore the backup ", p.backup, " (", c.data_dir, "/",
        kPendingRestoreFile, "), but no --snapshot-backup-url says where backups are"));
  }
  absl::StatusOr<std::string> bytes = store->Get(p.backup);
  absl::StatusOr<LoadedBackup> loaded =
      bytes.ok() ? DecodeBackup(p.backup, *bytes, keys) : bytes.status();
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("recovery: reading the backup to restore, ", p.backup,
                                     ", from ", store->Describe(), ": ",
                                     loaded.status().message()));
  }
  Bootstrapper::Record r;
  r.committed = true;
  r.ack.epoch = 1;
  r.ack.set = MakeBootstrapSet({c.initial_cluster.front()}, p.backup);
  std::optional<absl::Status> written;
  Bootstrapper::WriteRecord(env, r, [&written](absl::Status s) { written = s; });
  while (!written.has_value() && !io.stopped()) io.run_one();
  if (!written.has_value()) return absl::AbortedError("recovery: stopped during the restore");
  E2D_RETURN_IF_ERROR(*written);
  c.initial_cluster = r.ack.set.members;
  env.Log(absl::StrCat("level=warn msg=\"recovery: starting the cluster again alone from a "
                       "backup\" backup=", p.backup, " revision=", loaded->meta.revision,
                       " raft_index=", loaded->meta.raft_index, " from_cluster=",
                       absl::Hex(p.recovers, absl::kZeroPad16), " cluster=",
                       absl::Hex(r.ack.set.cluster_id, absl::kZeroPad16)));
  return std::optional<NodeConfig::Restore>(
      NodeConfig::Restore{loaded->name, std::move(loaded->store), p.recovers});
}

// --peer-discovery at work: a lookup on the env's offload worker every interval (one at a
// time); what it finds, with the static seeds, becomes gossip's seeds. Logs a change of what
// is found, and a failure when its reason changes (digits aside: an error may quote a
// timestamp) or ten minutes after it was last logged. Lives on the node's thread.
class DiscoveryLoop {
 public:
  DiscoveryLoop(AsioEnv& env, gossip::GossipNode& gossip, std::unique_ptr<PeerDiscovery> d,
                std::vector<std::string> static_seeds, absl::Duration interval)
      : env_(env), state_(std::make_shared<State>()), interval_(interval) {
    state_->discovery = std::move(d);
    state_->gossip = &gossip;
    state_->static_seeds = std::move(static_seeds);
    Lookup();
  }
  ~DiscoveryLoop() {
    state_->gossip = nullptr;  // a lookup still on the worker finds nobody to tell
    if (timer_.has_value()) env_.clock().Cancel(*timer_);
  }
  DiscoveryLoop(const DiscoveryLoop&) = delete;
  DiscoveryLoop& operator=(const DiscoveryLoop&) = delete;

 private:
  struct State {
    std::shared_ptr<PeerDiscovery> discovery;
    gossip::GossipNode* gossip = nullptr;  // null once the loop is gone
    std::vector<std::string> static_seeds;
    absl::StatusOr<std::vector<std::string>> found = std::vector<std::string>{};
    std::vector<std::string> last_found;
    bool failing = false;
    std::string failure_key;  // the last failure's reason without its digits
    env::Instant failure_logged;
  };

  void Lookup() {
    timer_.reset();
    std::shared_ptr<State> state = state_;
    absl::Status s = env_.Offload(
        [state, d = state->discovery] { state->found = d->Find(); },
        [this, state] {
          if (state->gossip == nullptr) return;
          Found(*state);
          timer_ = env_.clock().After(interval_, [this] { Lookup(); });
        });
    if (!s.ok()) {  // the worker is full (backups): try again next period
      env_.Log(absl::StrCat("level=warn msg=\"peer discovery: lookup not started\" why=\"",
                            s.message(), "\""));
      timer_ = env_.clock().After(interval_, [this] { Lookup(); });
    }
  }

  void Found(State& state) {
    const std::string& spec = state.discovery->spec();
    if (!state.found.ok()) {
      const env::Instant now = env_.clock().Now();
      std::string key(state.found.status().message());
      key.erase(std::remove_if(key.begin(), key.end(),
                               [](char ch) { return absl::ascii_isdigit(ch); }),
                key.end());
      if (!state.failing || key != state.failure_key ||
          now - state.failure_logged >= absl::Minutes(10)) {
        env_.Log(absl::StrCat("level=warn msg=\"peer discovery failed; trying again every ",
                              absl::FormatDuration(interval_), "\" spec=\"", spec, "\" why=\"",
                              state.found.status().message(), "\""));
        state.failure_logged = now;
        state.failure_key = std::move(key);
      }
      state.failing = true;
      return;
    }
    state.failing = false;
    if (*state.found != state.last_found) {
      env_.Log(absl::StrCat("level=info msg=\"peer discovery\" spec=\"", spec, "\" found=\"",
                            absl::StrJoin(*state.found, ","), "\""));
      state.last_found = *state.found;
    }
    std::vector<std::string> seeds = state.static_seeds;
    seeds.insert(seeds.end(), state.found->begin(), state.found->end());
    std::sort(seeds.begin(), seeds.end());
    seeds.erase(std::unique(seeds.begin(), seeds.end()), seeds.end());
    state.gossip->UpdateSeeds(std::move(seeds));
  }

  AsioEnv& env_;
  const std::shared_ptr<State> state_;
  const absl::Duration interval_;
  std::optional<env::TimerId> timer_;
};

int Serve(RunConfig c, std::optional<RecoveryDecision>* restart) {
  // SIGUSR1 asks the leader for a backup (handled below once the member serves). Until then,
  // and again after an earlier Serve's handler is gone (asio restores the default action, which
  // ends the process), it is ignored: `systemctl kill -s USR1` must never stop a member that
  // is still bootstrapping or restarting.
  signal(SIGUSR1, SIG_IGN);
  asio::io_context io;
  // Every check that can fail on bad input (certificates, ports) comes before the data
  // directory is opened, so a refused start leaves it as it was.
  absl::StatusOr<std::string> ca = ReadFile(c.ca_cert, "CA certificate");
  absl::StatusOr<std::string> cert = ReadFile(c.server_cert, "server certificate");
  absl::StatusOr<std::string> key = ReadFile(c.server_key, "server key");
  for (const auto* s : {&ca, &cert, &key}) {
    if (!s->ok()) return Fail("run", s->status());
  }
  // The server's own TLS context checks that the key matches the certificate.
  if (absl::StatusOr<std::unique_ptr<asio::ssl::context>> check =
          MakeTlsContext({c.ca_cert, c.server_cert, c.server_key}, true);
      !check.ok()) {
    return Fail("run", check.status());
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = *ca;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});

  TlsConfig peer_tls{c.ca_cert, c.peer_cert, c.peer_key};
  std::string advertise;
  for (const Member& m : c.initial_cluster) {
    if (m.name == c.name) advertise = m.peer_address;
  }
  absl::StatusOr<std::unique_ptr<AsioNetwork>> net =
      AsioNetwork::Listen(io, c.peer_addr, advertise, &peer_tls);
  if (!net.ok()) return Fail("run", net.status());
  for (const std::string& addr : {c.client_addr, c.plaintext_client_addr}) {
    if (addr.empty()) continue;
    if (absl::Status s = CheckCanListen(io, addr); !s.ok()) return Fail("run", s);
  }
  // Gossip: plain TCP and UDP on its own address, every message sealed with a key derived from
  // the CA key (so only holders of the CA key take part); off without a CA key.
  std::unique_ptr<AsioNetwork> gossip_net;
  std::optional<gossip::Key> gossip_key;
  gossip::Config gc;  // checked here, before the data directory is opened
  if (!c.ca_key.empty()) {
    absl::StatusOr<std::string> ca_key = ReadFile(c.ca_key, "CA key");
    if (!ca_key.ok()) return Fail("run", ca_key.status());
    absl::StatusOr<gossip::Key> key = gossip::DeriveKey(*ca_key, gossip::kGossipKeyLabel);
    if (!key.ok()) return Fail("run", key.status());
    gossip_key = *key;
    absl::StatusOr<std::unique_ptr<AsioNetwork>> g = AsioNetwork::Listen(
        io, c.gossip_addr, absl::StrCat(c.host, ":", PortOf(c.gossip_addr)), nullptr);
    if (!g.ok()) return Fail("run", g.status());
    gossip_net = std::move(*g);
    gc.name = c.name;
    gc.addr = gossip_net->local_address();
    // Grows with every start, so that peers refuse replays from an earlier run.
    gc.session = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    if (absl::Status s = gc.Validate(); !s.ok()) return Fail("run", s);
  }
  // Backups: the store and keys are checked here too, before the data directory is opened.
  std::unique_ptr<BackupStore> backup_store;
  std::optional<BackupKeys> backup_keys;
  if (c.backup_encrypt) {
    if (c.ca_key.empty()) {
      return Fail("run", absl::InvalidArgumentError(
                             "--snapshot-encryption needs --ca-key (the keys derive from it)"));
    }
    absl::StatusOr<std::string> ca_key = ReadFile(c.ca_key, "CA key");
    if (!ca_key.ok()) return Fail("run", ca_key.status());
    absl::StatusOr<BackupKeys> keys = DeriveBackupKeys(*ca_key);
    if (!keys.ok()) return Fail("run", keys.status());
    backup_keys = *keys;
  }
  if (!c.backup_url.empty()) {
    absl::StatusOr<std::unique_ptr<BackupStore>> bs = OpenBackupStore(c.backup_url);
    if (!bs.ok()) return Fail("run", bs.status());
    backup_store = std::move(*bs);
  }
  Node* serving = nullptr;  // set once the node is open
  std::unique_ptr<HttpServer> http;
  if (!c.metrics_addr.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> h =
        HttpServer::Listen(io, c.metrics_addr, [&serving](const std::string& path) {
          if (serving == nullptr) return HttpResponse{503, "text/plain", "starting\n"};
          return ServeHttp(*serving, path);
        });
    if (!h.ok()) return Fail("run", h.status());
    http = std::move(*h);
  }

  AsioEnv env(io, c.data_dir, std::move(*net));
  env.set_log_level(c.log_level);
  std::unique_ptr<AsioEnv> gossip_env;
  std::unique_ptr<gossip::GossipNode> gossip;
  std::unique_ptr<DiscoveryLoop> discovery;  // before gossip goes, and its env
  if (gossip_net != nullptr) {
    gossip_env = std::make_unique<AsioEnv>(io, c.data_dir, std::move(gossip_net));
    gossip_env->set_log_level(c.log_level);
    gossip = std::make_unique<gossip::GossipNode>(*gossip_env, gc, gossip::Keyring(*gossip_key));
    gossip->set_event_handler([&env](const gossip::Event& e) {
      env.Log(absl::StrCat("level=info msg=\"gossip\" event=", gossip::EventKindName(e.kind),
                           " member=", e.member.name, " addr=", e.member.addr));
    });
    gossip->Join(c.gossip_seeds);
    if (!c.peer_discovery.empty()) {
      absl::StatusOr<std::unique_ptr<PeerDiscovery>> d =
          NewPeerDiscovery(c.peer_discovery, DiscoveryOptionsOf(c));
      if (!d.ok()) return Fail("run", d.status());
      discovery = std::make_unique<DiscoveryLoop>(*gossip_env, *gossip, *std::move(d),
                                                  c.gossip_seeds, c.peer_discovery_interval);
    }
  }
  // A recovery's restore (see PendingRestore): the member starts its cluster alone from the
  // backup, recorded as bootstrapped so that later starts restart in it.
  std::optional<NodeConfig::Restore> restore;
  absl::StatusOr<std::optional<PendingRestore>> pending = ReadPendingRestore(c.data_dir);
  if (!pending.ok()) return Fail("run", pending.status());
  if (pending->has_value()) {
    absl::StatusOr<std::optional<NodeConfig::Restore>> r =
        StartPendingRestore(io, env, c, **pending, backup_store.get(), backup_keys);
    if (!r.ok()) return Fail("run", r.status());
    restore = *std::move(r);
    if (!restore.has_value()) {
      // Done by an earlier start that stopped before it removed the record.
      if (absl::Status s = RemovePendingRestore(c.data_dir); !s.ok()) return Fail("run", s);
      pending->reset();
    }
  }
  // A restore is decided before a gossip bootstrap (the backup is part of what the members
  // agree on), unless this member bootstrapped already (its record says which backup).
  if (!pending->has_value() && !c.restore_backup.empty()) {
    absl::StatusOr<std::optional<Bootstrapper::Record>> record = Bootstrapper::Read(env.fs());
    if (!record.ok()) return Fail("run", record.status());
    if (!c.gossip_bootstrap || !record->has_value() || !(*record)->committed) {
      absl::StatusOr<std::optional<NodeConfig::Restore>> r =
          LoadRestore(env, c, backup_store.get());
      if (!r.ok()) return Fail("run", r.status());
      restore = *std::move(r);
    }
  }
  if (c.gossip_bootstrap && !pending->has_value()) {
    absl::StatusOr<std::optional<BootstrapSet>> agreed =
        AgreeOnCluster(io, env, gossip.get(), c, restore.has_value() ? restore->name : "");
    if (!agreed.ok()) return Fail("run", agreed.status());
    if (!agreed->has_value()) {
      env.Log("level=info msg=\"stopping\" during=bootstrap");
      return 0;
    }
    if ((*agreed)->join) {
      // Joining a running cluster: its members as gossip showed them, and this member.
      Member self = c.initial_cluster.front();
      c.initial_cluster = (*agreed)->members;
      c.initial_cluster.push_back(self);
      c.join = true;
      c.member_id = (*agreed)->join_id;
    } else {
      c.initial_cluster = (*agreed)->members;
    }
    const std::string& agreed_restore = (*agreed)->restored_from;
    if (agreed_restore.empty()) {
      restore.reset();
    } else if (!restore.has_value() || restore->name != agreed_restore) {
      absl::StatusOr<bool> has_identity = Node::HasIdentity(env.fs());
      if (!has_identity.ok()) return Fail("run", has_identity.status());
      if (*has_identity) {
        restore.reset();  // restarted: the member's own data
      } else if (c.restore_backup.empty()) {
        return Fail("run", absl::FailedPreconditionError(absl::StrCat(
                               "the cluster was agreed to restore ", agreed_restore,
                               ": start this member with --restore-backup")));
      } else {
        absl::StatusOr<std::optional<NodeConfig::Restore>> r =
            LoadRestore(env, c, backup_store.get(), agreed_restore);
        if (!r.ok()) return Fail("run", r.status());
        restore = *std::move(r);
      }
    }
  }
  NodeConfig nc;
  nc.name = c.name;
  nc.member_id = c.member_id;
  nc.initial_cluster = c.initial_cluster;
  nc.join = c.join;
  nc.tick = c.election_timeout / 10;
  nc.election_ticks = 10;
  nc.snapshot_entries = c.snapshot_entries;
  if (backup_store != nullptr) {
    nc.backup.store = backup_store.get();
    nc.backup.interval = c.backup_interval;
    nc.backup.keep = c.backup_keep;
    nc.backup.keep_hourly = c.backup_keep_hourly;
    nc.backup.keep_daily = c.backup_keep_daily;
    nc.backup.gzip = c.backup_gzip;
    nc.backup.keys = backup_keys;
    nc.backup.iv = [] {
      std::array<uint8_t, kBackupIvSize> iv;
      E2D_CHECK(RAND_bytes(iv.data(), static_cast<int>(iv.size())) == 1,
                "the CSPRNG failed to give a backup IV");
      return iv;
    };
    nc.backup.unix_seconds = [] { return static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now())); };
  }
  nc.restore = std::move(restore);
  if (c.gossip_bootstrap) {
    nc.manage.enabled = true;
    nc.manage.required_size = c.required_size;
    nc.manage.interval = c.health_interval;
    nc.manage.health_timeout = c.health_timeout;
  }
  // Recovery: the node asks once; this stops serving (see RunMain for what comes next).
  std::optional<RecoveryDecision> recovery;
  std::function<void()> stop_serving;  // set once the server runs
  if (nc.manage.enabled) {
    nc.manage.on_recovery = [&](const RecoveryDecision& d) {
      auto stop = [&, d] {
        recovery = d;
        env.Log(absl::StrCat("level=warn msg=\"recovery: restarting this member\" action=",
                             d.kind == RecoveryDecision::Kind::kForce     ? "force-new-cluster"
                             : d.kind == RecoveryDecision::Kind::kRestore ? "restore-backup"
                                                                          : "step-aside"));
        if (stop_serving) stop_serving();
      };
      if (d.kind != RecoveryDecision::Kind::kForce) return stop();
      Node::PrepareRecovery(env, [&env, stop](absl::Status s) {
        if (!s.ok()) {
          return env.Log(absl::StrCat("level=error msg=\"recovery: the forced start could not be "
                                      "recorded; this member keeps waiting\" why=\"",
                                      s.message(), "\""));
        }
        stop();
      });
    };
  }
  if (absl::Status s = Node::CheckDataDir(env, nc); !s.ok()) return Fail("run", s);
  absl::StatusOr<std::unique_ptr<kv::RocksDbEngine>> engine =
      kv::RocksDbEngine::Open(c.data_dir + "/kv");
  if (!engine.ok()) return Fail("run", engine.status());
  // Offloaded work (snapshots) reads the engine: let it finish before the engine goes, on every
  // way out of this function (this is destroyed before the engine, after the node).
  struct DrainOffloaded {
    AsioEnv& env;
    ~DrainOffloaded() { env.DrainOffloaded(); }
  } drain{env};
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Open(env, engine->get(), nc);
  if (!node.ok()) return Fail("run", node.status());
  if (pending->has_value()) {
    // The member is recorded, restored: later starts restart it from its own data.
    if (absl::Status s = RemovePendingRestore(c.data_dir); !s.ok()) return Fail("run", s);
  }
  serving = node->get();
  if (gossip != nullptr) (*node)->AttachGossip(gossip.get());

  EtcdService service(io, node->get());
  grpc::ServerBuilder builder;
  int client_port = 0;
  int plaintext_port = 0;
  builder.AddListeningPort(c.client_addr, grpc::SslServerCredentials(ssl), &client_port);
  if (!c.plaintext_client_addr.empty()) {
    builder.AddListeningPort(c.plaintext_client_addr, grpc::InsecureServerCredentials(),
                             &plaintext_port);
  }
  for (grpc::Service* s : service.services()) builder.RegisterService(s);
  // etcd's limits: requests up to 1.5 MiB plus 512 KiB of gRPC overhead, responses unbounded;
  // clients may ping every 5 s, also without calls in flight (etcdctl pings every 10 s).
  builder.SetMaxReceiveMessageSize(2 << 20);
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || client_port == 0 ||
      (!c.plaintext_client_addr.empty() && plaintext_port == 0)) {
    return Fail("run", absl::UnavailableError(absl::StrCat(
                           "cannot listen for clients on ", c.client_addr,
                           c.plaintext_client_addr.empty() ? "" : " or ",
                           c.plaintext_client_addr, " (in use?)")));
  }
  env.Log(absl::StrCat("level=info msg=\"serving\" name=", c.name, " member_id=",
                       absl::Hex((*node)->id(), absl::kZeroPad16), " cluster_id=",
                       absl::Hex((*node)->cluster_id(), absl::kZeroPad16), " client=",
                       c.client_addr, " peer=", c.peer_addr,
                       c.plaintext_client_addr.empty() ? "" : " plaintext_client=",
                       c.plaintext_client_addr, http ? " metrics=" : "",
                       http ? http->local_address() : "", " data_dir=", c.data_dir));

  // SIGUSR1: a backup on demand (`systemctl kill -s USR1 e2d`); the outcome is logged.
  asio::signal_set backup_signal(io, SIGUSR1);
  std::function<void()> await_backup_signal = [&] {
    backup_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      const absl::Status s = (*node)->BackupNow();
      env.Log(s.ok() ? std::string("level=info msg=\"backup on demand started\"")
                     : absl::StrCat("level=warn msg=\"backup on demand refused\" why=\"",
                                    s.message(), "\""));
      await_backup_signal();
    });
  };
  await_backup_signal();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::thread stopper;
  stop_serving = [&] {
    if (stopper.joinable()) return;
    // Shutdown waits for calls in flight, which need the io loop: run it from another thread.
    stopper = std::thread([&] {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      asio::post(io, [&io] { io.stop(); });
    });
  };
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    env.Log(absl::StrCat("level=info msg=\"stopping\" signal=", signo));
    recovery.reset();  // a signal stops the member, whatever recovery asked
    stop_serving();
  });
  io.run();
  backup_signal.cancel();
  if (stopper.joinable()) stopper.join();
  env.DrainOffloaded();
  server.reset();
  http.reset();
  serving = nullptr;
  if (gossip != nullptr) {
    (*node)->AttachGossip(nullptr);
    gossip.reset();
  }
  node->reset();
  *restart = recovery;
  return 0;
}

int RunMain(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    PrintHelp(
        "Usage: e2d run [flags]\n\n"
        "Runs one member. Without flags: a single-member cluster with its data, CA and\n"
        "certificates under ./data (talk to it with etcdctl --cacert data/pki/ca.crt\n"
        "--cert data/pki/client.crt --key data/pki/client.key).",
        RunFlags());
    return 0;
  }
  absl::StatusOr<FlagValues> f = ParseFlags(args, RunFlags());
  if (!f.ok()) return Fail("run", f.status(), 2);
  absl::StatusOr<RunConfig> c = ParseRunConfig(*f);
  if (!c.ok()) return Fail("run", c.status(), 2);
  if (absl::Status s = MakeDirs(c->data_dir); !s.ok()) return Fail("run", s);
  if (absl::Status s = EnsureCertificates(*c, *f); !s.ok()) return Fail("run", s);
  if (absl::Status s = CompleteInterruptedSetAside(c->data_dir); !s.ok()) return Fail("run", s);
  // Recovery restarts (see Serve): a force, or a step aside then a join; bounded all the same.
  constexpr int kRestartsMax = 8;
  for (int restarts = 0;; ++restarts) {
    std::optional<RecoveryDecision> restart;
    const int rc = Serve(*c, &restart);
    if (!restart.has_value()) return rc;
    if (restarts == kRestartsMax) {
      return Fail("run", absl::AbortedError(absl::StrCat("recovery restarted this member ",
                                                         kRestartsMax, " times: giving up")));
    }
    if (restart->kind == RecoveryDecision::Kind::kRestore) {
      // Recorded before anything moves: the next start (this one or, after a crash, the
      // process's next) finishes what is left.
      if (absl::Status s =
              WritePendingRestore(c->data_dir, PendingRestore{restart->backup, restart->cluster});
          !s.ok()) {
        return Fail("run", s);
      }
    }
    if (restart->kind == RecoveryDecision::Kind::kStepAside ||
        restart->kind == RecoveryDecision::Kind::kRestore) {
      absl::StatusOr<std::string> aside = SetAside(c->data_dir);
      if (!aside.ok()) return Fail("run", aside.status());
      std::fprintf(stderr,
                   "level=warn msg=\"recovery: this member's data was set aside; %s\" "
                   "moved_to=%s\n",
                   restart->kind == RecoveryDecision::Kind::kRestore
                       ? "it starts the cluster again alone from the backup"
                       : "it starts again empty and joins the running cluster",
                   aside->c_str());
    }
  }
}

}  // namespace

int CliMain(int argc, char** argv) {
  // Under `bazel run`, relative paths (the data directory, certificates) mean the directory the
  // command was typed in, not Bazel's runfiles tree.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd != 0) {
    if (::chdir(wd) != 0) {
      std::fprintf(stderr, "e2d: cannot enter %s: %s\n", wd, strerror(errno));
      return 1;
    }
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string command = args.empty() ? "" : args[0];
  const std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  if (command == "run") return RunMain(rest);
  if (command == "pki") return PkiMain(rest);
  if (command == "version" || command == "--version") {
    std::printf("%s\n", kVersion);
    return 0;
  }
  const bool help = command == "help" || command == "--help" || command == "-h";
  if (!help && !command.empty()) {
    std::fprintf(stderr, "e2d: unknown command \"%s\" (e2d --help lists them)\n", command.c_str());
    return 2;
  }
  std::fprintf(help ? stdout : stderr,
               "Usage: e2d <command> [flags]\n\n"
               "Commands:\n"
               "  run            run a member (e2d run --help)\n"
               "  pki init       create the cluster CA\n"
               "  pki gencerts   sign server, peer and client certificates\n"
               "  version        print the version\n");
  return help ? 0 : 2;
}

}  // namespace e2d::node
