// Copyright e2d authors.

#include "node/runtime/aws_discovery.h"

#include <arpa/inet.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "env/status_macros.h"
#include "env/strings.h"
#include "node/runtime/aws_credentials.h"
#include "node/runtime/http_client.h"
#include "node/runtime/s3_backup_store.h"

namespace e2d::node {
namespace {

constexpr size_t kXmlDepthMax = 64;
constexpr int kPagesMax = 2;
constexpr int kPerPage = 200;  // kPagesMax * kPerPage > kDiscoveredMax

std::string DecodeEntities(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    if (s[0] == '&') {
      static constexpr std::pair<const char*, char> kEntities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool decoded = false;
      for (const auto& [name, ch] : kEntities) {
        if (absl::ConsumePrefix(&s, name)) {
          out.push_back(ch);
          decoded = true;
          break;
        }
      }
      if (decoded) continue;
    }
    out.push_back(s[0]);
    s.remove_prefix(1);
  }
  return out;
}

struct AwsAccess {
  std::shared_ptr<AwsCredentialSource> credentials;
  std::string region;
};

// One AWS query API (EC2 or Auto Scaling) at one endpoint.
class AwsApi {
 public:
  AwsApi(std::string service, HttpTarget endpoint, std::string version, const AwsAccess& access,
         absl::Duration timeout)
      : service_(std::move(service)),
        endpoint_(std::move(endpoint)),
        version_(std::move(version)),
        access_(access),
        timeout_(timeout) {}

  // The body of a 200 reply to Action with `params`, or an error naming the action, the
  // endpoint and AWS's error code and message.
  absl::StatusOr<std::string> Call(const std::string& action,
                                   std::vector<std::pair<std::string, std::string>> params) {
    params.emplace_back("Action", action);
    params.emplace_back("Version", version_);
    const std::string what = absl::StrCat("AWS ", action, " at ", endpoint_.HostHeader());
    absl::StatusOr<AwsCredentials> credentials = access_.credentials->Get();
    if (!credentials.ok()) {
      return absl::Status(credentials.status().code(),
                          absl::StrCat(what, ": ", credentials.status().message()));
    }
    const absl::Time now = absl::Now();
    SigV4Request sig;
    sig.method = "GET";
    sig.canonical_uri = "/";
    sig.query = params;
    sig.payload_sha256_hex = Sha256Hex("");
    sig.headers = {{"host", endpoint_.HostHeader()},
                   {"x-amz-date", AmzDate(now)},
                   {"x-amz-content-sha256", sig.payload_sha256_hex}};
    if (!credentials->session_token.empty()) {
      sig.headers.emplace_back("x-amz-security-token", credentials->session_token);
    }
    HttpRequestSpec request;
    request.path_and_query = absl::StrCat("/?", CanonicalQuery(params));
    for (const auto& [name, value] : sig.headers) {
      if (name != "host") request.headers.emplace_back(name, value);
    }
    request.headers.emplace_back(
        "Authorization", SigV4Authorization(sig, credentials->access_key, credentials->secret_key,
                                            access_.region, now, service_));
    HttpFetchOptions o;
    o.timeout = timeout_;
    o.total = timeout_;
    o.max_body = kEtcdDiscoveryReplyMax;
    absl::StatusOr<HttpReply> reply = HttpFetch(endpoint_, request, o);
    if (!reply.ok())
      return absl::UnavailableError(absl::StrCat(what, ": ", reply.status().message()));
    if (reply->status == 200) return std::move(reply->body);
    const std::string message =
        absl::StrCat(what, ": HTTP ", reply->status, ": ", AwsErrorOf(reply->body));
    if (reply->status == 401 || reply->status == 403) return absl::PermissionDeniedError(message);
    return absl::UnavailableError(message);
  }

 private:
  const std::string service_;
  const HttpTarget endpoint_;
  const std::string version_;
  const AwsAccess access_;
  const absl::Duration timeout_;
};

// The private addresses of the running instances matching `params` (filters or ids).
absl::StatusOr<std::vector<std::string>> DescribeInstances(
    AwsApi& ec2, std::vector<std::pair<std::string, std::string>> params, bool paged,
    uint16_t port) {
  std::vector<std::string> ips;
  std::string token;
  for (int page = 0; page < kPagesMax; ++page) {
    std::vector<std::pair<std::string, std::string>> p = params;
    if (paged) p.emplace_back("MaxResults", std::to_string(kPerPage));
    if (!token.empty()) p.emplace_back("NextToken", token);
    E2D_ASSIGN_OR_RETURN(std::string body, ec2.Call("DescribeInstances", std::move(p)));
    absl::StatusOr<std::string> next = ParseEc2Instances(body, &ips);
    if (!next.ok()) {
      return absl::DataLossError(absl::StrCat("AWS DescribeInstances: ", next.status().message()));
    }
    token = *next;
    if (token.empty()) {
      std::vector<std::string> found;
      for (const std::string& ip : ips) found.push_back(absl::StrCat(ip, ":", port));
      return BoundedAddresses(std::move(found), "AWS DescribeInstances");
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("more than ", kPagesMax, " pages of instances match"));
}

class Ec2TagsDiscovery : public PeerDiscovery {
 public:
  Ec2TagsDiscovery(std::string spec, std::vector<std::pair<std::string, std::string>> tags,
                   AwsApi ec2, uint16_t port)
      : spec_(std::move(spec)), tags_(std::move(tags)), ec2_(std::move(ec2)), port_(port) {}

  const std::string& spec() const override { return spec_; }

  absl::StatusOr<std::vector<std::string>> Find() override {
    std::vector<std::pair<std::string, std::string>> params;
    int n = 0;
    for (const auto& [key, value] : tags_) {
      ++n;
      params.emplace_back(absl::StrCat("Filter.", n, ".Name"), absl::StrCat("tag:", key));
      params.emplace_back(absl::StrCat("Filter.", n, ".Value.1"), value);
    }
    ++n;
    params.emplace_back(absl::StrCat("Filter.", n, ".Name"), "instance-state-name");
    params.emplace_back(absl::StrCat("Filter.", n, ".Value.1"), "running");
    return DescribeInstances(ec2_, std::move(params), true, port_);
  }

 private:
  const std::string spec_;
  const std::vector<std::pair<std::string, std::string>> tags_;
  AwsApi ec2_;
  const uint16_t port_;
};

class AutoScalingDiscovery : public PeerDiscovery {
 public:
  AutoScalingDiscovery(std::string spec, std::string group, AwsApi autoscaling, AwsApi ec2,
                       uint16_t port)
      : spec_(std::move(spec)),
        group_(std::move(group)),
        autoscaling_(std::move(autoscaling)),
        ec2_(std::move(ec2)),
        port_(port) {}

  const std::string& spec() const override { return spec_; }

  absl::StatusOr<std::vector<std::string>> Find() override {
    E2D_ASSIGN_OR_RETURN(std::string body,
                         autoscaling_.Call("DescribeAutoScalingGroups",
                                           {{"AutoScalingGroupNames.member.1", group_}}));
    absl::StatusOr<std::vector<std::string>> ids = ParseAutoScalingInstances(body);
    if (!ids.ok()) {
      return absl::Status(ids.status().code(),
                          absl::StrCat("autoscaling group ", group_, ": ", ids.status().message()));
    }
    if (ids->empty()) return std::vector<std::string>{};
    if (ids->size() > kDiscoveredMax) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "autoscaling group ", group_, " has more than ", kDiscoveredMax, " instances"));
    }
    std::vector<std::pair<std::string, std::string>> params;
    for (size_t i = 0; i < ids->size(); ++i) {
      params.emplace_back(absl::StrCat("InstanceId.", i + 1), (*ids)[i]);
    }
    return DescribeInstances(ec2_, std::move(params), false, port_);
  }

 private:
  const std::string spec_;
  const std::string group_;
  AwsApi autoscaling_;
  AwsApi ec2_;
  const uint16_t port_;
};

// The endpoint of one service: its own variable, AWS_ENDPOINT_URL, or AWS's regional host.
absl::StatusOr<HttpTarget> Endpoint(const DiscoveryOptions& o, const char* variable,
                                    const std::string& host_prefix, const std::string& region) {
  std::string url = DiscoveryEnv(o, variable);
  const char* from = variable;
  if (url.empty()) {
    url = DiscoveryEnv(o, "AWS_ENDPOINT_URL");
    from = "AWS_ENDPOINT_URL";
  }
  HttpTarget target;
  if (url.empty()) {
    target.tls = true;
    target.port = 443;
    target.host = absl::StrCat(host_prefix, ".", region, ".amazonaws.com");
    return target;
  }
  absl::string_view rest = url;
  const bool tls = absl::ConsumePrefix(&rest, "https://");
  while (absl::ConsumeSuffix(&rest, "/")) {
  }
  if ((!tls && !absl::ConsumePrefix(&rest, "http://")) || absl::StrContains(rest, "/") ||
      !ParseAuthority(env::ToStd(rest), tls, &target, from).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, " \"", url, "\" is not http(s)://HOST[:PORT]"));
  }
  return target;
}

bool IsTagText(absl::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < ' ' || c == 127 || ch == ',') return false;
  }
  return true;
}

}  // namespace

absl::Status WalkXml(
    std::string_view xml_in,
    const std::function<void(const std::vector<std::string>&, const std::string&)>& on_text,
    const std::function<void(const std::vector<std::string>&)>& on_close) {
  absl::string_view xml = env::ToAbsl(xml_in);
  std::vector<std::string> path;
  std::string text;
  auto at = [&xml_in, &xml] { return xml_in.size() - xml.size(); };
  while (!xml.empty()) {
    const size_t lt = xml.find('<');
    if (lt == absl::string_view::npos) {
      if (!absl::StripAsciiWhitespace(xml).empty()) {
        return absl::InvalidArgumentError(absl::StrCat("XML: text after the document at ", at()));
      }
      break;
    }
    text.append(xml.data(), lt);
    xml.remove_prefix(lt);
    auto skip_to = [&](absl::string_view end) {
      const size_t e = xml.find(end);
      if (e == absl::string_view::npos) return false;
      xml.remove_prefix(e + end.size());
      return true;
    };
    if (absl::StartsWith(xml, "<?")) {
      if (!skip_to("?>")) return absl::InvalidArgumentError("XML: unclosed <?");
      continue;
    }
    if (absl::StartsWith(xml, "<!--")) {
      if (!skip_to("-->")) return absl::InvalidArgumentError("XML: unclosed comment");
      continue;
    }
    if (absl::StartsWith(xml, "<![CDATA[")) {
      const size_t e = xml.find("]]>");
      if (e == absl::string_view::npos) return absl::InvalidArgumentError("XML: unclosed CDATA");
      text.append(xml.data() + 9, e - 9);
      xml.remove_prefix(e + 3);
      continue;
    }
    if (absl::StartsWith(xml, "<!")) {
      if (!skip_to(">")) return absl::InvalidArgumentError("XML: unclosed <!");
      continue;
    }
    const size_t gt = xml.find('>');
    if (gt == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("XML: unclosed tag at ", at()));
    }
    absl::string_view tag = xml.substr(1, gt - 1);
    xml.remove_prefix(gt + 1);
    const bool closing = absl::ConsumePrefix(&tag, "/");
    const bool empty = absl::ConsumeSuffix(&tag, "/");
    absl::string_view name = tag.substr(0, std::min(tag.find_first_of(" \t\r\n"), tag.size()));
    if (const size_t colon = name.find(':'); colon != absl::string_view::npos) {
      name.remove_prefix(colon + 1);  // the local name
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("XML: empty tag at ", at()));
    if (closing) {
      if (path.empty() || path.back() != name) {
        return absl::InvalidArgumentError(
            absl::StrCat("XML: </", name, "> at ", at(), " closes nothing open"));
      }
      if (!absl::StripAsciiWhitespace(text).empty()) on_text(path, DecodeEntities(text));
      on_close(path);
      path.pop_back();
    } else {
      if (path.size() >= kXmlDepthMax) {
        return absl::InvalidArgumentError(absl::StrCat("XML: deeper than ", kXmlDepthMax));
      }
      path.emplace_back(name);
      if (empty) {
        on_close(path);
        path.pop_back();
      }
    }
    text.clear();
  }
  if (!path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("XML: <", path.back(), "> never closes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseEc2Instances(std::string_view xml, std::vector<std::string>* ips) {
  // DescribeInstancesResponse/reservationSet/item/instancesSet/item/...
  auto instance = [](const std::vector<std::string>& p, size_t extra) {
    return p.size() == 5 + extra && p[1] == "reservationSet" && p[2] == "item" &&
           p[3] == "instancesSet" && p[4] == "item";
  };
  std::string ip, state, next_token;
  bool any = false;
  absl::Status bad;
  E2D_RETURN_IF_ERROR(WalkXml(
      xml,
      [&](const std::vector<std::string>& p, const std::string& text) {
        if (instance(p, 1) && p[5] == "privateIpAddress") ip = text;
        if (instance(p, 2) && p[5] == "instanceState" && p[6] == "name") state = text;
        if (p.size() == 2 && p[1] == "nextToken") next_token = text;
      },
      [&](const std::vector<std::string>& p) {
        if (p.size() == 1) any = p[0] == "DescribeInstancesResponse";
        if (!instance(p, 0)) return;
        in_addr v4{};
        if (state == "running" && !ip.empty()) {
          if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
            ips->push_back(ip);
          } else if (bad.ok()) {
            bad = absl::InvalidArgumentError(
                absl::StrCat("\"", ip.substr(0, 60), "\" is not an IPv4 address"));
          }
        }
        ip.clear();
        state.clear();
      }));
  E2D_RETURN_IF_ERROR(bad);
  if (!any) return absl::InvalidArgumentError("not a DescribeInstancesResponse");
  return next_token;
}

absl::StatusOr<std::vector<std::string>> ParseAutoScalingInstances(std::string_view xml) {
  // DescribeAutoScalingGroupsResponse/DescribeAutoScalingGroupsResult/AutoScalingGroups/member/
  // Instances/member/...
  auto member = [](const std::vector<std::string>& p, size_t extra) {
    return p.size() == 6 + extra && p[1] == "DescribeAutoScalingGroupsResult" &&
           p[2] == "AutoScalingGroups" && p[3] == "member" && p[4] == "Instances" &&
           p[5] == "member";
  };
  std::vector<std::string> ids;
  std::string id, lifecycle;
  int groups = 0;
  bool any = false;
  E2D_RETURN_IF_ERROR(WalkXml(
      xml,
      [&](const std::vector<std::string>& p, const std::string& text) {
        if (member(p, 1) && p[6] == "InstanceId") id = text;
        if (member(p, 1) && p[6] == "LifecycleState") lifecycle = text;
      },
      [&](const std::vector<std::string>& p) {
        if (p.size() == 1) any = p[0] == "DescribeAutoScalingGroupsResponse";
        if (p.size() == 4 && p[2] == "AutoScalingGroups" && p[3] == "member") ++groups;
        if (!member(p, 0)) return;
        if (lifecycle == "InService" && !id.empty()) ids.push_back(id);
        id.clear();
        lifecycle.clear();
      }));
  if (!any) return absl::InvalidArgumentError("not a DescribeAutoScalingGroupsResponse");
  if (groups == 0) return absl::NotFoundError("no such group");
  for (const std::string& i : ids) {
    if (!absl::StartsWith(i, "i-") || i.size() > 32) {
      return absl::InvalidArgumentError(absl::StrCat("\"", i.substr(0, 40), "\" is not an id"));
    }
  }
  return ids;
}

std::string AwsErrorOf(std::string_view xml) {
  std::string code, message;
  const absl::Status s = WalkXml(
      xml,
      [&](const std::vector<std::string>& p, const std::string& text) {
        if (p.size() >= 2 && p[p.size() - 2] == "Error") {
          if (p.back() == "Code" && code.empty()) code = text;
          if (p.back() == "Message" && message.empty()) message = text;
        }
      },
      [](const std::vector<std::string>&) {});
  if (!s.ok() || code.empty()) return std::string(xml.substr(0, 200));
  return absl::StrCat(code, ": ", message);
}

absl::StatusOr<std::unique_ptr<PeerDiscovery>> NewAwsDiscovery(std::string_view spec,
                                                               std::string_view provider,
                                                               std::string_view arg_in,
                                                               const DiscoveryOptions& options) {
  const absl::string_view arg = env::ToAbsl(arg_in);
  auto bad = [&spec](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--peer-discovery \"", env::ToAbsl(spec), "\": ", why));
  };
  // The argument first, then the credentials.
  std::vector<std::pair<std::string, std::string>> tags;
  if (provider == "ec2-tags") {
    for (absl::string_view pair : absl::StrSplit(arg, ',')) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (!IsTagText(kv.first) || !absl::StrContains(pair, '=') ||
          (!kv.second.empty() && !IsTagText(kv.second))) {
        return bad(absl::StrCat("\"", pair, "\" is not KEY=VALUE"));
      }
      tags.emplace_back(std::string(kv.first), std::string(kv.second));
    }
    if (tags.size() > 10) return bad("more than 10 tags");
  } else if (!IsTagText(arg)) {
    return bad("not an autoscaling group name");
  }
  AwsAccess access;
  access.region = DiscoveryEnv(options, "AWS_REGION");
  if (access.region.empty()) access.region = DiscoveryEnv(options, "AWS_DEFAULT_REGION");
  if (access.region.empty()) access.region = "us-east-1";
  for (const char ch : access.region) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '-') {
      return bad(absl::StrCat("AWS_REGION \"", access.region, "\" is not a region"));
    }
  }
  absl::StatusOr<std::shared_ptr<AwsCredentialSource>> credentials = AwsCredentialsFromEnvironment(
      [&options](const char* name) { return DiscoveryEnv(options, name); });
  if (!credentials.ok()) return bad(credentials.status().message());
  access.credentials = *std::move(credentials);
  absl::StatusOr<HttpTarget> ec2_endpoint =
      Endpoint(options, "AWS_ENDPOINT_URL_EC2", "ec2", access.region);
  if (!ec2_endpoint.ok()) return bad(ec2_endpoint.status().message());
  AwsApi ec2("ec2", *ec2_endpoint, "2016-11-15", access, options.http_timeout);
  if (provider == "ec2-tags") {
    return std::make_unique<Ec2TagsDiscovery>(std::string(spec), std::move(tags), std::move(ec2),
                                              options.default_port);
  }
  absl::StatusOr<HttpTarget> autoscaling_endpoint =
      Endpoint(options, "AWS_ENDPOINT_URL_AUTO_SCALING", "autoscaling", access.region);
  if (!autoscaling_endpoint.ok()) return bad(autoscaling_endpoint.status().message());
  AwsApi autoscaling("autoscaling", *autoscaling_endpoint, "2011-01-01", access,
                     options.http_timeout);
  return std::make_unique<AutoScalingDiscovery>(std::string(spec), std::string(arg),
                                                std::move(autoscaling), std::move(ec2),
                                                options.default_port);
}

}  // namespace e2d::node
