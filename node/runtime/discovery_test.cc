// Copyright e2d authors.

#include "node/runtime/discovery.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/runtime/fake_http_api.h"

namespace e2d::node {
namespace {

using ::testing::HasSubstr;

// --- The peer file ---------------------------------------------------------------------------

TEST(ParsePeerListTest, TakesHostsAndPortsSkipsCommentsSortsAndDeduplicates) {
  absl::StatusOr<std::vector<std::string>> peers = ParsePeerList(
      "# the peers\n10.0.0.2\n  10.0.0.1:7000  # first\n\nnode-3.example.com\n[::1]:7980\n"
      "10.0.0.2:7980\n",
      7980, "peers");
  ASSERT_TRUE(peers.ok()) << peers.status();
  EXPECT_EQ(*peers, (std::vector<std::string>{"10.0.0.1:7000", "10.0.0.2:7980", "[::1]:7980",
                                              "node-3.example.com:7980"}));
  peers = ParsePeerList("", 7980, "peers");
  ASSERT_TRUE(peers.ok());
  EXPECT_TRUE(peers->empty());
}

TEST(ParsePeerListTest, BadLinesAreNamedByFileAndLine) {
  for (const char* bad :
       {"a b", "host:", "host:0", "host:70000", "host:x", "::1", "[::1", "h\xc3\xa9te", "a/b"}) {
    absl::StatusOr<std::vector<std::string>> peers =
        ParsePeerList(absl::StrCat("10.0.0.1\n", bad, "\n"), 7980, "/etc/e2d/peers");
    ASSERT_FALSE(peers.ok()) << bad;
    EXPECT_EQ(peers.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(peers.status().message()), HasSubstr("/etc/e2d/peers:2: ")) << bad;
  }
}

TEST(ParsePeerListTest, MoreThanTheBoundIsRefused) {
  std::string content;
  for (size_t i = 0; i <= kDiscoveredMax; ++i)
    content += absl::StrCat("10.0.", i / 250, ".", i % 250, "\n");
  absl::StatusOr<std::vector<std::string>> peers = ParsePeerList(content, 7980, "peers");
  EXPECT_EQ(peers.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(PeerDiscoveryTest, BadSpecsSayWhatIsExpected) {
  for (const char* spec : {"", "file", "file:", "dns:", "dns:a b", "dns:host:x", "dns-srv:a:1",
                           "dns-srv:", "consul:x", "dns:[::1]:5"}) {
    absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery(spec, {});
    ASSERT_FALSE(d.ok()) << spec;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("--peer-discovery")) << spec;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("file:PATH")) << spec;
  }
}

TEST(PeerDiscoveryTest, AFileIsReadAgainAtEveryLookup) {
  const std::string path = absl::StrCat(testing::TempDir(), "/peers");
  std::remove(path.c_str());
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery("file:" + path, {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->Find().status().code(), absl::StatusCode::kNotFound);
  std::ofstream(path) << "10.0.0.1\n";
  EXPECT_EQ(*(*d)->Find(), std::vector<std::string>{"10.0.0.1:7980"});
  std::ofstream(path) << "10.0.0.1\n10.0.0.2:1\n";
  EXPECT_EQ(*(*d)->Find(), (std::vector<std::string>{"10.0.0.1:7980", "10.0.0.2:1"}));
  std::ofstream(path) << "10.0.0.1\nnot an address\n";
  EXPECT_THAT(std::string((*d)->Find().status().message()), HasSubstr(path + ":2"));
  std::ofstream(path) << std::string(kPeerFileMax + 1, '#');
  EXPECT_THAT(std::string((*d)->Find().status().message()), HasSubstr("larger than"));
}

// --- etcd discovery --------------------------------------------------------------------------

// Replies as etcd 3.4's v2 keys API gives them (captured from `etcd --enable-v2`).
TEST(EtcdDiscoveryTest, AListingGivesEveryEntrysAddress) {
  absl::StatusOr<std::vector<std::string>> found = ParseEtcdDiscoveryListing(
      R"({"action":"get","node":{"key":"/discovery/tok1","dir":true,"nodes":[)"
      R"({"key":"/discovery/tok1/m2","value":"m2=10.0.0.2","modifiedIndex":6,"createdIndex":6},)"
      R"({"key":"/discovery/tok1/m1","value":"m1=10.0.0.1:7001","modifiedIndex":5,)"
      R"("createdIndex":5},{"key":"/discovery/tok1/sub","dir":true}],)"
      R"("modifiedIndex":4,"createdIndex":4}})",
      7980);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, (std::vector<std::string>{"10.0.0.1:7001", "10.0.0.2:7980"}));
  found = ParseEtcdDiscoveryListing(
      R"({"action":"get","node":{"key":"/discovery/tok1","dir":true}})", 7980);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_TRUE(found->empty());
}

TEST(EtcdDiscoveryTest, BadRepliesAreRefusedNamingTheEntry) {
  const std::string entry_head = R"({"action":"get","node":{"key":"/d","dir":true,"nodes":[)";
  for (const std::string& bad : {
           std::string("not json"),
           std::string(R"({"action":"get","node":{"key":"/d/x","value":"x"}})"),  // not a dir
           entry_head + R"({"key":"/d/m1","value":"m1"}]}})",
           entry_head + R"({"key":"/d/m1","value":"=10.0.0.1"}]}})",
           entry_head + R"({"key":"/d/m1","value":"m1=https://10.0.0.1:2380"}]}})",
           entry_head + R"({"key":"/d/m1","value":"m1=a b"}]}})",
           std::string(R"({"action":"get","node":{"dir":true,"nodes":[{"dir":7}]}})"),
       }) {
    absl::StatusOr<std::vector<std::string>> found = ParseEtcdDiscoveryListing(bad, 7980);
    EXPECT_FALSE(found.ok()) << bad;
    if (absl::StrContains(absl::string_view(bad), "/d/m1")) {
      EXPECT_THAT(std::string(found.status().message()), HasSubstr("entry /d/m1")) << bad;
    }
  }
  std::string many = entry_head;
  for (size_t i = 0; i <= kDiscoveredMax; ++i) {
    absl::StrAppend(&many, i == 0 ? "" : ",", R"({"key":"/d/m)", i, R"(","value":"m=10.0.0.1"})");
  }
  many += "]}}";
  EXPECT_EQ(ParseEtcdDiscoveryListing(many, 7980).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(EtcdDiscoveryTest, TheSizeIsANumber) {
  EXPECT_EQ(
      *ParseEtcdDiscoverySize(R"({"action":"get","node":{"key":"/d/_config/size","value":"3"}})"),
      3);
  for (const char* bad :
       {R"({"node":{"value":"three"}})", R"({"node":{"value":"0"}})", R"({"node":{}})", "<html>"}) {
    EXPECT_FALSE(ParseEtcdDiscoverySize(bad).ok()) << bad;
  }
}

TEST(EtcdDiscoveryTest, BadUrlsAreRefused) {
  for (const char* spec :
       {"etcd:discovery.etcd.io/abc", "etcd:https://discovery.etcd.io", "etcd:https:///abc",
        "etcd:http://a b/x", "etcd:http://h/x?y=1", "etcd:ftp://h/x"}) {
    absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery(spec, {});
    ASSERT_FALSE(d.ok()) << spec;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("etcd:URL")) << spec;
  }
  EXPECT_TRUE(NewPeerDiscovery("etcd:https://discovery.etcd.io/abc/", {}).ok());
  EXPECT_TRUE(NewPeerDiscovery("etcd:http://127.0.0.1:2379/v2/keys/discovery/abc", {}).ok());
}

// An etcd that is not there: the lookup fails within its bound, naming the URL.
TEST(EtcdDiscoveryTest, AnUnreachableUrlIsNamed) {
  DiscoveryOptions o;
  o.http_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d =
      NewPeerDiscovery("etcd:http://127.0.0.1:1/v2/keys/discovery/abc", o);
  ASSERT_TRUE(d.ok()) << d.status();
  absl::Status s = (*d)->Find().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("http://127.0.0.1:1/v2/keys/discovery/abc"));
}

// --- Cloud providers -------------------------------------------------------------------------

// An HTTP/1.1 server on loopback for one request at a time: `handler` gets the request line and
// headers (as received) and returns the whole reply. Runs on its own thread until destroyed.
std::string Droplet(int id, const std::string& status, const std::string& v4) {
  return absl::StrCat(R"({"id":)", id, R"(,"name":"d)", id, R"(","status":")", status,
                      R"(","networks":{"v4":[)", v4, R"(],"v6":[]},"tags":["e2d"]})");
}

TEST(DigitalOceanDiscoveryTest, TaggedDropletsGiveTheirPrivateAddressesElsePublic) {
  std::vector<std::string> found;
  absl::StatusOr<bool> more = ParseDigitalOceanDroplets(
      absl::StrCat(R"({"droplets":[)",
                   Droplet(1, "active",
                           R"({"ip_address":"203.0.113.1","type":"public"},)"
                           R"({"ip_address":"10.10.0.1","type":"private"})"),
                   ",", Droplet(2, "active", R"({"ip_address":"203.0.113.2","type":"public"})"),
                   ",", Droplet(3, "new", ""), ",",
                   Droplet(4, "off", R"({"ip_address":"10.10.0.4","type":"private"})"),
                   R"(],"links":{},"meta":{"total":4}})"),
      7980, &found);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
  EXPECT_EQ(found, (std::vector<std::string>{"10.10.0.1:7980", "203.0.113.2:7980"}));
  found.clear();
  EXPECT_FALSE(
      ParseDigitalOceanDroplets(
          absl::StrCat(R"({"droplets":[)",
                       Droplet(1, "active", R"({"ip_address":"x y","type":"private"})"), "]}"),
          7980, &found)
          .ok());
  EXPECT_FALSE(ParseDigitalOceanDroplets(R"({"droplets":7})", 7980, &found).ok());
}

TEST(DigitalOceanDiscoveryTest, TheApiIsAskedWithTheTokenAndTagAcrossPages) {
  std::vector<std::string> heads;
  std::mutex mu;
  FakeHttpApi api([&](const std::string& head) {
    std::lock_guard<std::mutex> lock(mu);
    heads.push_back(head);
    if (!absl::StrContains(head, "\r\nAuthorization: Bearer tok-123\r\n")) {
      return FakeHttpApi::Reply(401,
                                R"({"id":"unauthorized","message":"Unable to authenticate you"})");
    }
    if (absl::StartsWith(head, "GET /v2/droplets?tag_name=e2d-prod&per_page=200&page=1 ")) {
      return FakeHttpApi::Reply(
          200, absl::StrCat(R"({"droplets":[)",
                            Droplet(1, "active", R"({"ip_address":"10.0.0.1","type":"private"})"),
                            R"(],"links":{"pages":{"next":"https://x/v2/droplets?page=2"}},)",
                            R"("meta":{"total":2}})"));
    }
    if (absl::StartsWith(head, "GET /v2/droplets?tag_name=e2d-prod&per_page=200&page=2 ")) {
      return FakeHttpApi::Reply(
          200, absl::StrCat(R"({"droplets":[)",
                            Droplet(2, "active", R"({"ip_address":"10.0.0.2","type":"private"})"),
                            R"(],"links":{"pages":{}},"meta":{"total":2}})"));
    }
    return FakeHttpApi::Reply(404, R"({"id":"not_found","message":"nothing here"})");
  });
  std::map<std::string, std::string> environment = {{"DIGITALOCEAN_ACCESS_TOKEN", "tok-123"},
                                                    {"DIGITALOCEAN_API_URL", api.url()}};
  DiscoveryOptions o;
  o.getenv = [&environment](const char* name) -> const char* {
    auto it = environment.find(name);
    return it == environment.end() ? nullptr : it->second.c_str();
  };
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d = NewPeerDiscovery("do-tags:e2d-prod", o);
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::vector<std::string>> found = (*d)->Find();
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, (std::vector<std::string>{"10.0.0.1:7980", "10.0.0.2:7980"}));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(heads.size(), 2u);
  }

  environment["DIGITALOCEAN_ACCESS_TOKEN"] = "wrong";
  d = NewPeerDiscovery("do-tags:e2d-prod", o);
  ASSERT_TRUE(d.ok()) << d.status();
  absl::Status s = (*d)->Find().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("Unable to authenticate you"));

  environment.erase("DIGITALOCEAN_ACCESS_TOKEN");
  EXPECT_THAT(std::string(NewPeerDiscovery("do-tags:e2d-prod", o).status().message()),
              HasSubstr("DIGITALOCEAN_ACCESS_TOKEN"));
  environment["DIGITALOCEAN_ACCESS_TOKEN"] = "tok-123";
  environment["DIGITALOCEAN_API_URL"] = "ftp://x";
  EXPECT_THAT(std::string(NewPeerDiscovery("do-tags:e2d-prod", o).status().message()),
              HasSubstr("DIGITALOCEAN_API_URL"));
  environment["DIGITALOCEAN_API_URL"] = api.url();
  EXPECT_FALSE(NewPeerDiscovery("do-tags:a b", o).ok());
}

// --- DNS -------------------------------------------------------------------------------------

// A DNS server on loopback UDP that answers A and SRV questions from its tables, NXDOMAIN for
// names it does not know, and nothing at all for names in `silent` (a server that does not
// answer). Runs on its own thread until destroyed.
class FakeDnsServer {
 public:
  struct Srv {
    uint16_t port;
    std::string target;
  };

  FakeDnsServer() {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~FakeDnsServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }

  std::map<std::string, std::vector<std::string>> a;  // name -> IPv4 addresses
  std::map<std::string, std::vector<Srv>> srv;
  std::set<std::string> silent;

  void Start() {
    thread_ = std::thread([this] { Serve(); });
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int questions() const { return questions_; }

 private:
  static void Put16(std::string& out, uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xff));
  }
  static void PutName(std::string& out, const std::string& name) {
    for (absl::string_view label : absl::StrSplit(name, '.', absl::SkipEmpty())) {
      out.push_back(static_cast<char>(label.size()));
      out.append(label.data(), label.size());
    }
    out.push_back(0);
  }

  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;  // wakes to see stop_
      char buf[512];
      sockaddr_in from{};
      socklen_t from_len = sizeof from;
      const ssize_t n =
          recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 17) continue;
      ++questions_;
      // The question: labels from byte 12, then type and class.
      std::string name;
      size_t i = 12;
      while (i < static_cast<size_t>(n) && buf[i] != 0) {
        const size_t len = static_cast<uint8_t>(buf[i]);
        if (!name.empty()) name += ".";
        name.append(buf + i + 1, std::min(len, static_cast<size_t>(n) - i - 1));
        i += len + 1;
      }
      if (i + 5 > static_cast<size_t>(n)) continue;
      const uint16_t type = static_cast<uint16_t>(static_cast<uint8_t>(buf[i + 1]) << 8 |
                                                  static_cast<uint8_t>(buf[i + 2]));
      const std::string question(buf + 12, i + 5 - 12);
      if (silent.contains(name)) continue;
      std::vector<std::string> answers;
      for (const std::string& ip :
           type == 1 && a.contains(name) ? a[name] : std::vector<std::string>{}) {
        std::string rr;
        Put16(rr, 0xc00c);
        Put16(rr, 1);
        Put16(rr, 1);
        rr.append("\0\0\0\x3c", 4);  // TTL 60
        Put16(rr, 4);
        in_addr v4{};
        inet_pton(AF_INET, ip.c_str(), &v4);
        rr.append(reinterpret_cast<const char*>(&v4), 4);
        answers.push_back(rr);
      }
      for (const Srv& s : type == 33 && srv.contains(name) ? srv[name] : std::vector<Srv>{}) {
        std::string data;
        Put16(data, 10);  // priority
        Put16(data, 5);   // weight
        Put16(data, s.port);
        PutName(data, s.target);
        std::string rr;
        Put16(rr, 0xc00c);
        Put16(rr, 33);
        Put16(rr, 1);
        rr.append("\0\0\0\x3c", 4);
        Put16(rr, static_cast<uint16_t>(data.size()));
        rr += data;
        answers.push_back(rr);
      }
      const bool known = a.contains(name) || srv.contains(name);
      std::string reply(buf, 2);              // the query's id
      Put16(reply, known ? 0x8180 : 0x8183);  // a response, recursion; NXDOMAIN if unknown
      Put16(reply, 1);
      Put16(reply, static_cast<uint16_t>(answers.size()));
      Put16(reply, 0);
      Put16(reply, 0);
      reply += question;
      for (const std::string& rr : answers) reply += rr;
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> questions_{0};
};

DiscoveryOptions OptionsFor(const FakeDnsServer& server) {
  DiscoveryOptions o;
  o.dns_server = server.address();
  o.dns_timeout = absl::Seconds(2);
  return o;
}

TEST(PeerDiscoveryTest, DnsARecordsGiveAddressesAtTheGossipPortOrTheOneGiven) {
  FakeDnsServer dns;
  dns.a["peers.e2d.test"] = {"10.1.0.3", "10.1.0.1", "10.1.0.2"};
  dns.Start();
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d =
      NewPeerDiscovery("dns:peers.e2d.test", OptionsFor(dns));
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::vector<std::string>> found = (*d)->Find();
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, (std::vector<std::string>{"10.1.0.1:7980", "10.1.0.2:7980", "10.1.0.3:7980"}));
  d = NewPeerDiscovery("dns:peers.e2d.test:7001", OptionsFor(dns));
  ASSERT_TRUE(d.ok()) << d.status();
  found = (*d)->Find();
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->front(), "10.1.0.1:7001");
}

TEST(PeerDiscoveryTest, DnsSrvRecordsGiveEachTargetsAddressesAtItsPort) {
  FakeDnsServer dns;
  dns.srv["_e2d-gossip._udp.e2d.test"] = {
      {7001, "m1.e2d.test"}, {7002, "m2.e2d.test"}, {7003, "gone.e2d.test"}};
  dns.a["m1.e2d.test"] = {"10.2.0.1"};
  dns.a["m2.e2d.test"] = {"10.2.0.2", "10.2.0.22"};
  dns.Start();
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d =
      NewPeerDiscovery("dns-srv:_e2d-gossip._udp.e2d.test", OptionsFor(dns));
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::vector<std::string>> found = (*d)->Find();
  ASSERT_TRUE(found.ok()) << found.status();
  // gone.e2d.test has no address: skipped, the others count.
  EXPECT_EQ(*found, (std::vector<std::string>{"10.2.0.1:7001", "10.2.0.22:7002", "10.2.0.2:7002"}));
}

TEST(PeerDiscoveryTest, DnsFailuresNameTheNameAndTheServer) {
  FakeDnsServer dns;
  dns.srv["_only-dead._udp.e2d.test"] = {{7001, "gone.e2d.test"}};
  dns.silent.insert("slow.e2d.test");
  dns.Start();
  absl::StatusOr<std::unique_ptr<PeerDiscovery>> d =
      NewPeerDiscovery("dns:missing.e2d.test", OptionsFor(dns));
  ASSERT_TRUE(d.ok());
  absl::Status s = (*d)->Find().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing.e2d.test"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(dns.address()));

  d = NewPeerDiscovery("dns-srv:_only-dead._udp.e2d.test", OptionsFor(dns));
  ASSERT_TRUE(d.ok());
  s = (*d)->Find().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("gone.e2d.test"));

  // A server that never answers: the lookup ends at its bound.
  DiscoveryOptions o = OptionsFor(dns);
  o.dns_timeout = absl::Milliseconds(600);
  d = NewPeerDiscovery("dns:slow.e2d.test", o);
  ASSERT_TRUE(d.ok());
  const absl::Time start = absl::Now();
  s = (*d)->Find().status();
  EXPECT_FALSE(s.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30)) << "the bound did not hold";
  EXPECT_GE(dns.questions(), 3);
}

}  // namespace
}  // namespace e2d::node
