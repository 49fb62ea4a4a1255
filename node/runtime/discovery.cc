// Copyright e2d authors.

#include "node/runtime/discovery.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "env/check.h"
#include "env/status_macros.h"
#include "env/strings.h"
#include "node/runtime/asio_env.h"
#include "node/runtime/aws_discovery.h"
#include "node/runtime/digitalocean.pb.h"
#include "node/runtime/etcd_v2.pb.h"
#include "node/runtime/http_client.h"

namespace e2d::node {
namespace {

constexpr int kDnsClassIn = 1;
constexpr int kDnsTypeSrv = 33;

// A DNS name or an IP address, as a seed may name its host.
bool IsHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char ch : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' &&
        ch != '_' && ch != ':') {
      return false;
    }
  }
  return true;
}

// "host" or "host:port" (IPv6 in brackets) as host:port, or an error naming `entry`.
absl::StatusOr<std::string> NormalizeAddress(absl::string_view entry, uint16_t default_port) {
  std::string address(entry);
  std::string host;
  uint16_t port = 0;
  const bool bracketed = absl::StartsWith(address, "[");
  const bool has_port = bracketed ? absl::StrContains(address, "]:")
                                  : std::count(address.begin(), address.end(), ':') == 1;
  if (!has_port) address = absl::StrCat(address, ":", default_port);
  if (!SplitHostPort(address, &host, &port).ok() || port == 0 || !IsHostName(host) ||
      (!bracketed && absl::StrContains(host, ':'))) {
    return absl::InvalidArgumentError(absl::StrCat("\"", entry, "\" is not host or host:port"));
  }
  if (bracketed) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::vector<std::string> SortedUnique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

class FileDiscovery : public PeerDiscovery {
 public:
  FileDiscovery(std::string spec, std::string path, uint16_t default_port)
      : spec_(std::move(spec)), path_(std::move(path)), default_port_(default_port) {}

  const std::string& spec() const override { return spec_; }

  absl::StatusOr<std::vector<std::string>> Find() override {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("peer file ", path_, " cannot be read"));
    std::string content(kPeerFileMax + 1, '\0');
    in.read(content.data(), static_cast<std::streamsize>(content.size()));
    if (in.bad()) return absl::DataLossError(absl::StrCat("peer file ", path_, ": read failed"));
    content.resize(static_cast<size_t>(in.gcount()));
    if (content.size() > kPeerFileMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer file ", path_, " is larger than ", kPeerFileMax, " bytes"));
    }
    return ParsePeerList(content, default_port_, path_);
  }

 private:
  const std::string spec_;
  const std::string path_;
  const uint16_t default_port_;
};

// One c-ares channel for one lookup, driven with poll() until every query has answered or the
// deadline passed.
class AresLookup {
 public:
  static absl::StatusOr<std::unique_ptr<AresLookup>> Open(const DiscoveryOptions& options) {
    static std::once_flag once;
    static int init_status = ARES_SUCCESS;
    std::call_once(once, [] { init_status = ares_library_init(ARES_LIB_INIT_ALL); });
    if (init_status != ARES_SUCCESS) {
      return absl::InternalError(absl::StrCat("c-ares: ", ares_strerror(init_status)));
    }
    auto lookup = std::unique_ptr<AresLookup>(new AresLookup(options));
    ares_options o{};
    o.timeout =
        static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(options.dns_timeout) / 2));
    o.tries = 2;
    int status = ares_init_options(&lookup->channel_, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (status != ARES_SUCCESS) {
      return absl::UnavailableError(absl::StrCat("DNS: cannot start: ", ares_strerror(status)));
    }
    lookup->open_ = true;
    if (!options.dns_server.empty()) {
      status = ares_set_servers_ports_csv(lookup->channel_, options.dns_server.c_str());
      if (status != ARES_SUCCESS) {
        return absl::InvalidArgumentError(
            absl::StrCat("DNS server \"", options.dns_server, "\": ", ares_strerror(status)));
      }
    }
    return lookup;
  }

  ~AresLookup() {
    if (open_) ares_destroy(channel_);  // runs the callbacks of what is left, cancelled
  }

  // The IPv4 addresses of `name`.
  absl::StatusOr<std::vector<std::string>> Addresses(const std::string& name) {
    struct Result {
      int status = ARES_ENOTFOUND;
      std::vector<std::string> addresses;
    } result;
    ares_gethostbyname(
        channel_, name.c_str(), AF_INET,
        [](void* arg, int status, int, hostent* host) {
          auto* r = static_cast<Result*>(arg);
          r->status = status;
          if (status != ARES_SUCCESS || host == nullptr) return;
          for (char** a = host->h_addr_list; *a != nullptr; ++a) {
            if (r->addresses.size() > kDiscoveredMax) break;
            char text[INET_ADDRSTRLEN];
            if (inet_ntop(AF_INET, *a, text, sizeof text) != nullptr) {
              r->addresses.push_back(text);
            }
          }
        },
        &result);
    E2D_RETURN_IF_ERROR(Run());
    if (result.status != ARES_SUCCESS) return Failed(name, "A", result.status);
    return result.addresses;
  }

  struct Srv {
    std::string target;
    uint16_t port = 0;
  };
  absl::StatusOr<std::vector<Srv>> Services(const std::string& name) {
    struct Result {
      int status = ARES_ENOTFOUND;
      std::vector<Srv> records;
    } result;
    ares_query(
        channel_, name.c_str(), kDnsClassIn, kDnsTypeSrv,
        [](void* arg, int status, int, unsigned char* answer, int length) {
          auto* r = static_cast<Result*>(arg);
          r->status = status;
          if (status != ARES_SUCCESS) return;
          ares_srv_reply* reply = nullptr;
          r->status = ares_parse_srv_reply(answer, length, &reply);
          for (ares_srv_reply* s = reply; s != nullptr; s = s->next) {
            if (r->records.size() > kDiscoveredMax) break;
            r->records.push_back(Srv{s->host, s->port});
          }
          if (reply != nullptr) ares_free_data(reply);
        },
        &result);
    E2D_RETURN_IF_ERROR(Run());
    if (result.status != ARES_SUCCESS) return Failed(name, "SRV", result.status);
    return result.records;
  }

 private:
  explicit AresLookup(const DiscoveryOptions& options)
      : options_(options), deadline_(absl::Now() + options.dns_timeout) {}

  absl::Status Failed(const std::string& name, const char* type, int status) const {
    const std::string server =
        options_.dns_server.empty() ? "the system's DNS server" : options_.dns_server;
    const std::string what = absl::StrCat("DNS ", type, " lookup of \"", name, "\" at ", server,
                                          ": ", ares_strerror(status));
    if (status == ARES_ENOTFOUND || status == ARES_ENODATA) return absl::NotFoundError(what);
    return absl::UnavailableError(what);
  }

  // Drives the channel until nothing is pending, or fails at the deadline.
  absl::Status Run() {
    while (true) {
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      const int bits = ares_getsock(channel_, socks, ARES_GETSOCK_MAXNUM);
      std::vector<pollfd> fds;
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short events = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
        if (events != 0) fds.push_back(pollfd{socks[i], events, 0});
      }
      if (fds.empty()) return absl::OkStatus();  // every query answered
      const absl::Duration left = deadline_ - absl::Now();
      if (left <= absl::ZeroDuration()) {
        ares_cancel(channel_);
        return absl::DeadlineExceededError(absl::StrCat(
            "DNS lookup took longer than ", absl::FormatDuration(options_.dns_timeout), " (server ",
            options_.dns_server.empty() ? "from /etc/resolv.conf" : options_.dns_server, ")"));
      }
      timeval max_wait{};
      const int64_t left_us = absl::ToInt64Microseconds(left);
      max_wait.tv_sec = static_cast<time_t>(left_us / 1000000);
      max_wait.tv_usec = static_cast<suseconds_t>(left_us % 1000000);
      timeval wait{};
      const timeval* t = ares_timeout(channel_, &max_wait, &wait);
      const int ms = static_cast<int>(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
      if (poll(fds.data(), fds.size(), ms) < 0 && errno != EINTR) {
        return absl::InternalError(absl::StrCat("DNS: poll failed, errno ", errno));
      }
      bool any = false;
      for (const pollfd& p : fds) {
        const bool readable = (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        const bool writable = (p.revents & POLLOUT) != 0;
        if (!readable && !writable) continue;
        any = true;
        ares_process_fd(channel_, readable ? p.fd : ARES_SOCKET_BAD,
                        writable ? p.fd : ARES_SOCKET_BAD);
      }
      if (!any) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
  }

  const DiscoveryOptions options_;
  const absl::Time deadline_;
  ares_channel channel_ = nullptr;
  bool open_ = false;
};

class DnsDiscovery : public PeerDiscovery {
 public:
  DnsDiscovery(std::string spec, std::string name, uint16_t port, DiscoveryOptions options)
      : spec_(std::move(spec)), name_(std::move(name)), port_(port), options_(std::move(options)) {}

  const std::string& spec() const override { return spec_; }

  absl::StatusOr<std::vector<std::string>> Find() override {
    E2D_ASSIGN_OR_RETURN(std::unique_ptr<AresLookup> lookup, AresLookup::Open(options_));
    E2D_ASSIGN_OR_RETURN(std::vector<std::string> ips, lookup->Addresses(name_));
    std::vector<std::string> found;
    for (const std::string& ip : ips) found.push_back(absl::StrCat(ip, ":", port_));
    return BoundedAddresses(std::move(found), spec_);
  }

 private:
  const std::string spec_;
  const std::string name_;
  const uint16_t port_;
  const DiscoveryOptions options_;
};

class DnsSrvDiscovery : public PeerDiscovery {
 public:
  DnsSrvDiscovery(std::string spec, std::string name, DiscoveryOptions options)
      : spec_(std::move(spec)), name_(std::move(name)), options_(std::move(options)) {}

  const std::string& spec() const override { return spec_; }

  // Every target whose addresses are found counts; one that fails is skipped, unless all do
  // (then the first failure is the error).
  absl::StatusOr<std::vector<std::string>> Find() override {
    E2D_ASSIGN_OR_RETURN(std::unique_ptr<AresLookup> lookup, AresLookup::Open(options_));
    E2D_ASSIGN_OR_RETURN(std::vector<AresLookup::Srv> records, lookup->Services(name_));
    std::vector<std::string> found;
    absl::Status first_failure;
    for (const AresLookup::Srv& srv : records) {
      if (srv.port == 0 || srv.target.empty() || srv.target == ".") continue;  // "no service"
      absl::StatusOr<std::vector<std::string>> ips = lookup->Addresses(srv.target);
      if (!ips.ok()) {
        if (first_failure.ok()) first_failure = ips.status();
        continue;
      }
      for (const std::string& ip : *ips) found.push_back(absl::StrCat(ip, ":", srv.port));
    }
    if (found.empty() && !first_failure.ok()) return first_failure;
    return BoundedAddresses(std::move(found), spec_);
  }

 private:
  const std::string spec_;
  const std::string name_;
  const DiscoveryOptions options_;
};

absl::StatusOr<etcdv2::Response> ParseEtcdReply(std::string_view json) {
  etcdv2::Response r;
  E2D_RETURN_IF_ERROR(JsonInto(json, &r));
  return r;
}

class EtcdDiscovery : public PeerDiscovery {
 public:
  EtcdDiscovery(std::string spec, std::string url, HttpTarget target, std::string path,
                DiscoveryOptions options)
      : spec_(std::move(spec)),
        url_(std::move(url)),
        target_(std::move(target)),
        path_(std::move(path)),
        options_(std::move(options)) {}

  const std::string& spec() const override { return spec_; }

  // Checks the size once, registers once, then lists.
  absl::StatusOr<std::vector<std::string>> Find() override {
    if (!size_checked_) {
      E2D_ASSIGN_OR_RETURN(HttpReply reply, Fetch("GET", path_ + "/_config/size", ""));
      if (reply.status == 404) {
        return absl::FailedPreconditionError(absl::StrCat("etcd discovery ", url_,
                                                          " has no size: set ", url_,
                                                          "/_config/size to the -n of "
                                                          "the members"));
      }
      E2D_RETURN_IF_ERROR(Expect200(reply, "GET", "/_config/size"));
      absl::StatusOr<int> size = ParseEtcdDiscoverySize(reply.body);
      if (!size.ok()) return Where(size.status(), "/_config/size");
      if (options_.required_size != 0 && *size != options_.required_size) {
        return absl::FailedPreconditionError(
            absl::StrCat("etcd discovery ", url_, " is for a cluster of ", *size,
                         " but this member has -n ", options_.required_size));
      }
      size_checked_ = true;
    }
    if (!registered_ && !options_.self_name.empty()) {
      const std::string entry = absl::StrCat(options_.self_name, "=", options_.self_address);
      E2D_ASSIGN_OR_RETURN(
          HttpReply reply,
          Fetch("PUT", absl::StrCat(path_, "/", UriEncode(options_.self_name, true)),
                absl::StrCat("value=", UriEncode(entry, true))));
      if (reply.status != 201) {
        E2D_RETURN_IF_ERROR(Expect200(reply, "PUT", "/" + options_.self_name));
      }
      registered_ = true;
    }
    E2D_ASSIGN_OR_RETURN(HttpReply reply, Fetch("GET", path_, ""));
    if (reply.status == 404) return std::vector<std::string>{};  // nobody registered yet
    E2D_RETURN_IF_ERROR(Expect200(reply, "GET", ""));
    absl::StatusOr<std::vector<std::string>> found =
        ParseEtcdDiscoveryListing(reply.body, options_.default_port);
    if (!found.ok()) return Where(found.status(), "");
    return found;
  }

 private:
  absl::StatusOr<HttpReply> Fetch(const char* method, const std::string& path,
                                  const std::string& form) {
    HttpRequestSpec request;
    request.method = method;
    request.path_and_query = path;
    if (!form.empty()) {
      request.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      request.body = form;
    }
    HttpFetchOptions o;
    o.timeout = options_.http_timeout;
    o.total = options_.http_timeout;
    o.max_body = kEtcdDiscoveryReplyMax;
    o.ca_file = options_.ca_file;
    absl::StatusOr<HttpReply> reply = HttpFetch(target_, request, o);
    if (!reply.ok()) {
      return absl::UnavailableError(absl::StrCat("etcd discovery ", method, " ", url_,
                                                 path.substr(path_.size()), ": ",
                                                 reply.status().message()));
    }
    return reply;
  }

  absl::Status Expect200(const HttpReply& reply, const char* method, const std::string& sub) {
    if (reply.status == 200) return absl::OkStatus();
    absl::StatusOr<etcdv2::Response> r = ParseEtcdReply(reply.body);
    const std::string why = r.ok() && !r->message().empty()
                                ? absl::StrCat(r->message(), " (etcd error ", r->error_code(), ")")
                                : reply.body.substr(0, 200);
    return absl::UnavailableError(absl::StrCat("etcd discovery ", method, " ", url_, sub, ": HTTP ",
                                               reply.status, ": ", why));
  }

  absl::Status Where(const absl::Status& s, const std::string& sub) {
    return absl::Status(s.code(), absl::StrCat("etcd discovery ", url_, sub, ": ", s.message()));
  }

  const std::string spec_;
  const std::string url_;
  const HttpTarget target_;
  const std::string path_;  // the directory, no trailing slash
  const DiscoveryOptions options_;
  bool size_checked_ = false;
  bool registered_ = false;
};

// Droplets by tag, through DigitalOcean's API v2 (see the header).
class DigitalOceanDiscovery : public PeerDiscovery {
 public:
  static constexpr int kPerPage = 200;
  static constexpr int kPagesMax = 2;  // kPerPage * kPagesMax > kDiscoveredMax

  DigitalOceanDiscovery(std::string spec, std::string tag, HttpTarget api, std::string token,
                        DiscoveryOptions options)
      : spec_(std::move(spec)),
        tag_(std::move(tag)),
        api_(std::move(api)),
        token_(std::move(token)),
        options_(std::move(options)) {}

  const std::string& spec() const override { return spec_; }

  absl::StatusOr<std::vector<std::string>> Find() override {
    std::vector<std::string> found;
    for (int page = 1; page <= kPagesMax; ++page) {
      HttpRequestSpec request;
      request.path_and_query = absl::StrCat("/v2/droplets?tag_name=", UriEncode(tag_, true),
                                            "&per_page=", kPerPage, "&page=", page);
      request.headers.emplace_back("Authorization", absl::StrCat("Bearer ", token_));
      request.headers.emplace_back("Accept", "application/json");
      HttpFetchOptions o;
      o.timeout = options_.http_timeout;
      o.total = options_.http_timeout;
      o.max_body = kEtcdDiscoveryReplyMax;
      absl::StatusOr<HttpReply> reply = HttpFetch(api_, request, o);
      const std::string what =
          absl::StrCat("DigitalOcean droplets tagged ", tag_, " (", api_.HostHeader(), ")");
      if (!reply.ok()) {
        return absl::UnavailableError(absl::StrCat(what, ": ", reply.status().message()));
      }
      if (reply->status != 200) {
        digitalocean::DropletsReply error;
        const std::string why = JsonInto(reply->body, &error).ok() && !error.message().empty()
                                    ? absl::StrCat(error.id(), ": ", error.message())
                                    : reply->body.substr(0, 200);
        const std::string message = absl::StrCat(what, ": HTTP ", reply->status, ": ", why);
        if (reply->status == 401 || reply->status == 403) {
          return absl::PermissionDeniedError(message);
        }
        return absl::UnavailableError(message);
      }
      absl::StatusOr<bool> more =
          ParseDigitalOceanDroplets(reply->body, options_.default_port, &found);
      if (!more.ok()) return absl::DataLossError(absl::StrCat(what, ": ", more.status().message()));
      if (!*more) return BoundedAddresses(std::move(found), spec_);
    }
    return absl::ResourceExhaustedError(
        absl::StrCat(spec_, ": more than ", kPagesMax * kPerPage, " droplets carry the tag"));
  }

 private:
  const std::string spec_;
  const std::string tag_;
  const HttpTarget api_;
  const std::string token_;
  const DiscoveryOptions options_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> BoundedAddresses(std::vector<std::string> found,
                                                          std::string_view what) {
  found = SortedUnique(std::move(found));
  if (found.size() > kDiscoveredMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat(std::string(what), " gave more than ", kDiscoveredMax, " addresses"));
  }
  return found;
}

std::string DiscoveryEnv(const DiscoveryOptions& o, const char* name) {
  const char* v = o.getenv ? o.getenv(name) : nullptr;
  return v == nullptr ? "" : v;
}

absl::StatusOr<bool> ParseDigitalOceanDroplets(std::string_view json, uint16_t port,
                                               std::vector<std::string>* found) {
  digitalocean::DropletsReply reply;
  E2D_RETURN_IF_ERROR(JsonInto(json, &reply));
  for (const digitalocean::Droplet& d : reply.droplets()) {
    if (d.status() == "off" || d.status() == "archive") continue;
    std::string chosen;
    for (const digitalocean::Network& n : d.networks().v4()) {
      if (n.type() == "private" || (chosen.empty() && n.type() == "public")) {
        chosen = n.ip_address();
      }
      if (n.type() == "private") break;
    }
    if (chosen.empty()) continue;  // no IPv4 address yet (a droplet still being made)
    in_addr v4{};
    if (inet_pton(AF_INET, chosen.c_str(), &v4) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("droplet ", d.id(), " (", d.name(), "): \"",
                                                     chosen.substr(0, 60),
                                                     "\" is not an IPv4 address"));
    }
    found->push_back(absl::StrCat(chosen, ":", port));
  }
  return !reply.links().pages().next().empty();
}

absl::StatusOr<std::vector<std::string>> ParseEtcdDiscoveryListing(std::string_view json,
                                                                   uint16_t default_port) {
  E2D_ASSIGN_OR_RETURN(etcdv2::Response r, ParseEtcdReply(json));
  if (!r.has_node() || !r.node().dir()) {
    return absl::InvalidArgumentError("the reply is not a directory listing");
  }
  if (static_cast<size_t>(r.node().nodes_size()) > kDiscoveredMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", kDiscoveredMax, " entries (", r.node().nodes_size(), ")"));
  }
  std::vector<std::string> found;
  for (const etcdv2::Node& n : r.node().nodes()) {
    if (n.dir()) continue;  // not an entry of ours
    const size_t eq = n.value().find('=');
    absl::StatusOr<std::string> address =
        eq == std::string::npos
            ? absl::InvalidArgumentError("no '='")
            : NormalizeAddress(absl::string_view(n.value()).substr(eq + 1), default_port);
    if (eq == 0 || !address.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "entry ", n.key(), ": \"", n.value().substr(0, 100), "\" is not NAME=HOST[:PORT]"));
    }
    found.push_back(*std::move(address));
  }
  return SortedUnique(std::move(found));
}

absl::StatusOr<int> ParseEtcdDiscoverySize(std::string_view json) {
  E2D_ASSIGN_OR_RETURN(etcdv2::Response r, ParseEtcdReply(json));
  int size = 0;
  if (!absl::SimpleAtoi(r.node().value(), &size) || size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the size \"", r.node().value().substr(0, 20), "\" is not a number from 1"));
  }
  return size;
}

absl::StatusOr<std::vector<std::string>> ParsePeerList(std::string_view content,
                                                       uint16_t default_port,
                                                       std::string_view where) {
  const std::string where_name(where);
  std::vector<std::string> found;
  int line_number = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(content.data(), content.size()), '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    absl::StatusOr<std::string> address = NormalizeAddress(line, default_port);
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_name, ":", line_number, ": ", address.status().message()));
    }
    found.push_back(*std::move(address));
    if (found.size() > kDiscoveredMax) {
      return absl::ResourceExhaustedError(
          absl::StrCat(where_name, ":", line_number, ": more than ", kDiscoveredMax, " addresses"));
    }
  }
  return SortedUnique(std::move(found));
}

absl::StatusOr<std::unique_ptr<PeerDiscovery>> NewPeerDiscovery(std::string_view spec,
                                                                const DiscoveryOptions& options) {
  const std::string whole(spec);
  const absl::string_view text(whole);
  auto bad = [&whole](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--peer-discovery \"", whole, "\": ", why,
                     " (expected file:PATH, dns:NAME[:PORT], dns-srv:NAME, etcd:URL, do-tags:TAG, "
                     "ec2-tags:KEY=VALUE[,...] or aws-autoscaling-group:NAME)"));
  };
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) return bad("no provider");
  const absl::string_view provider = text.substr(0, colon);
  const absl::string_view arg = text.substr(colon + 1);
  if (arg.empty()) return bad("empty argument");
  if (provider == "file") {
    return std::make_unique<FileDiscovery>(whole, std::string(arg), options.default_port);
  }
  if (provider == "dns") {
    absl::StatusOr<std::string> address = NormalizeAddress(arg, options.default_port);
    if (!address.ok() || absl::StartsWith(arg, "[")) return bad("not NAME or NAME:PORT");
    std::string host;
    uint16_t port = 0;
    E2D_CHECK(SplitHostPort(*address, &host, &port).ok(), "normalized address %s",
              address->c_str());
    return std::make_unique<DnsDiscovery>(whole, host, port, options);
  }
  if (provider == "dns-srv") {
    if (!IsHostName(arg) || absl::StrContains(arg, ':')) return bad("not a DNS name");
    return std::make_unique<DnsSrvDiscovery>(whole, std::string(arg), options);
  }
  if (provider == "etcd") {
    absl::string_view rest = arg;
    bool tls = true;
    if (!absl::ConsumePrefix(&rest, "https://")) {
      if (!absl::ConsumePrefix(&rest, "http://")) return bad("not an http:// or https:// URL");
      tls = false;
    }
    while (absl::ConsumeSuffix(&rest, "/")) {
    }
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) return bad("no path (the discovery directory)");
    HttpTarget target;
    if (!ParseAuthority(env::ToStd(rest.substr(0, slash)), tls, &target, "host").ok()) {
      return bad("bad host");
    }
    const absl::string_view path = rest.substr(slash);
    for (const char ch : path) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c <= ' ' || c == '?' || c == '#' || c >= 127) {
        return bad("the path has a space, '?', '#' or a control byte");
      }
    }
    return std::make_unique<EtcdDiscovery>(whole, std::string(arg), std::move(target),
                                           std::string(path), options);
  }
  if (provider == "do-tags") {
    if (!IsHostName(arg) || absl::StrContains(arg, ':')) {
      return bad("a tag is letters, digits, '-', '_' and '.'");
    }
    std::string token = DiscoveryEnv(options, "DIGITALOCEAN_ACCESS_TOKEN");
    if (token.empty()) token = DiscoveryEnv(options, "DIGITALOCEAN_TOKEN");
    if (token.empty()) return bad("needs DIGITALOCEAN_ACCESS_TOKEN in the environment");
    std::string api = DiscoveryEnv(options, "DIGITALOCEAN_API_URL");
    if (api.empty()) api = "https://api.digitalocean.com";
    absl::string_view rest = api;
    const bool tls = absl::ConsumePrefix(&rest, "https://");
    HttpTarget target;
    if ((!tls && !absl::ConsumePrefix(&rest, "http://")) || absl::StrContains(rest, "/") ||
        !ParseAuthority(env::ToStd(rest), tls, &target, "host").ok()) {
      return bad(absl::StrCat("DIGITALOCEAN_API_URL \"", api, "\" is not http(s)://HOST[:PORT]"));
    }
    return std::make_unique<DigitalOceanDiscovery>(whole, std::string(arg), std::move(target),
                                                   std::move(token), options);
  }
  if (provider == "ec2-tags" || provider == "aws-autoscaling-group") {
    return NewAwsDiscovery(whole, env::ToStd(provider), env::ToStd(arg), options);
  }
  return bad(absl::StrCat("unknown provider \"", provider, "\""));
}

}  // namespace e2d::node
