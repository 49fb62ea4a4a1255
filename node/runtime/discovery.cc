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
#include "node/runtime/asio_env.h"

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

absl::StatusOr<std::vector<std::string>> Bounded(std::vector<std::string> found,
                                                 const std::string& what) {
  found = SortedUnique(std::move(found));
  if (found.size() > kDiscoveredMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " gave more than ", kDiscoveredMax, " addresses"));
  }
  return found;
}

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
    return Bounded(std::move(found), spec_);
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
    return Bounded(std::move(found), spec_);
  }

 private:
  const std::string spec_;
  const std::string name_;
  const DiscoveryOptions options_;
};

}  // namespace

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
                     " (expected file:PATH, dns:NAME[:PORT] or dns-srv:NAME)"));
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
  return bad(absl::StrCat("unknown provider \"", provider, "\""));
}

}  // namespace e2d::node
