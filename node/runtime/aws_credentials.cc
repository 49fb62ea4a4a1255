// Copyright e2d authors.

#include "node/runtime/aws_credentials.h"

#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "env/status_macros.h"
#include "env/strings.h"
#include "node/runtime/aws_imds.pb.h"
#include "node/runtime/http_client.h"

namespace e2d::node {
namespace {

class StaticCredentials final : public AwsCredentialSource {
 public:
  explicit StaticCredentials(AwsCredentials c) : c_(std::move(c)) {}
  absl::StatusOr<AwsCredentials> Get() override { return c_; }

 private:
  const AwsCredentials c_;
};

class ImdsCredentialSource final : public AwsCredentialSource {
 public:
  ImdsCredentialSource(HttpTarget endpoint, std::function<absl::Time()> now)
      : endpoint_(std::move(endpoint)), now_(std::move(now)) {}

  absl::StatusOr<AwsCredentials> Get() override {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = now_();
    if (kept_.has_value() && now < kept_->expiration - kImdsRefreshBefore) {
      return kept_->credentials;
    }
    absl::StatusOr<ImdsCredentials> fetched = Fetch();
    if (fetched.ok()) {
      kept_ = *std::move(fetched);
      return kept_->credentials;
    }
    if (kept_.has_value() && now < kept_->expiration) return kept_->credentials;
    return absl::Status(
        fetched.status().code(),
        absl::StrCat("AWS credentials: none in the environment (AWS_ACCESS_KEY_ID, "
                     "AWS_SECRET_ACCESS_KEY), and the EC2 instance metadata service at ",
                     endpoint_.HostHeader(), " gave none: ", fetched.status().message()));
  }

 private:
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& path,
                                   std::vector<std::pair<std::string, std::string>> headers) {
    HttpRequestSpec request;
    request.method = method;
    request.path_and_query = path;
    request.headers = std::move(headers);
    HttpFetchOptions options;
    options.timeout = kImdsTimeout;
    options.total = kImdsTotal;
    options.max_body = kImdsReplyMax;
    E2D_ASSIGN_OR_RETURN(HttpReply reply, HttpFetch(endpoint_, request, options));
    if (reply.status != 200) {
      const absl::Status s(
          reply.status == 404 ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable,
          absl::StrCat(method, " ", path, ": HTTP ", reply.status));
      return s;
    }
    return std::move(reply.body);
  }

  absl::StatusOr<ImdsCredentials> Fetch() {
    E2D_ASSIGN_OR_RETURN(
        const std::string token,
        Call("PUT", "/latest/api/token", {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}}));
    const std::vector<std::pair<std::string, std::string>> auth = {
        {"X-aws-ec2-metadata-token", std::string(absl::StripAsciiWhitespace(token))}};
    constexpr char kRoles[] = "/latest/meta-data/iam/security-credentials/";
    absl::StatusOr<std::string> roles = Call("GET", kRoles, auth);
    if (!roles.ok() && roles.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError("the instance has no instance profile (no IAM role)");
    }
    E2D_RETURN_IF_ERROR(roles.status());
    // One role per instance profile: the first line.
    const std::string role(
        absl::StripAsciiWhitespace(absl::string_view(*roles).substr(0, roles->find('\n'))));
    if (role.empty() || role.find_first_of("/?#% ") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the instance profile's role name is not one: \"", role.substr(0, 80), "\""));
    }
    E2D_ASSIGN_OR_RETURN(const std::string document, Call("GET", absl::StrCat(kRoles, role), auth));
    absl::StatusOr<ImdsCredentials> parsed = ParseImdsCredentials(document);
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(),
                          absl::StrCat("role ", role, ": ", parsed.status().message()));
    }
    return parsed;
  }

  const HttpTarget endpoint_;
  const std::function<absl::Time()> now_;
  std::mutex mu_;
  std::optional<ImdsCredentials> kept_;  // guarded by mu_
};

}  // namespace

absl::StatusOr<ImdsCredentials> ParseImdsCredentials(std::string_view json) {
  awsimds::Credentials c;
  E2D_RETURN_IF_ERROR(JsonInto(json, &c));
  if (c.code() != "Success") {
    return absl::InvalidArgumentError(absl::StrCat("the credentials document says Code \"",
                                                   c.code().substr(0, 80), "\", not \"Success\""));
  }
  if (c.access_key_id().empty() || c.secret_access_key().empty() || c.expiration().empty()) {
    return absl::InvalidArgumentError(
        "the credentials document lacks AccessKeyId, SecretAccessKey or Expiration");
  }
  ImdsCredentials out;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, c.expiration(), &out.expiration, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("the credentials' Expiration \"",
                                                   c.expiration().substr(0, 80),
                                                   "\" is not an RFC 3339 time: ", err));
  }
  out.credentials.access_key = c.access_key_id();
  out.credentials.secret_key = c.secret_access_key();
  out.credentials.session_token = c.token();
  return out;
}

absl::StatusOr<std::shared_ptr<AwsCredentialSource>> AwsCredentialsFromEnvironment(
    const std::function<std::string(const char*)>& getenv, std::function<absl::Time()> now) {
  AwsCredentials c;
  c.access_key = getenv("AWS_ACCESS_KEY_ID");
  c.secret_key = getenv("AWS_SECRET_ACCESS_KEY");
  c.session_token = getenv("AWS_SESSION_TOKEN");
  if (!c.access_key.empty() && !c.secret_key.empty()) {
    return std::shared_ptr<AwsCredentialSource>(std::make_shared<StaticCredentials>(c));
  }
  if (!c.access_key.empty() || !c.secret_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AWS credentials: ", c.access_key.empty() ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID",
        " is set without ", c.access_key.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"));
  }
  if (absl::AsciiStrToLower(getenv("AWS_EC2_METADATA_DISABLED")) == "true") {
    return absl::InvalidArgumentError(
        "AWS credentials: need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment "
        "(the EC2 instance metadata service is off: AWS_EC2_METADATA_DISABLED=true)");
  }
  std::string endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (endpoint.empty()) endpoint = "http://169.254.169.254";
  absl::string_view rest = endpoint;
  HttpTarget target;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("AWS_EC2_METADATA_SERVICE_ENDPOINT \"", endpoint,
                                                   "\" is not http://HOST[:PORT]"));
  }
  absl::ConsumeSuffix(&rest, "/");
  E2D_RETURN_IF_ERROR(
      ParseAuthority(env::ToStd(rest), false, &target, "AWS_EC2_METADATA_SERVICE_ENDPOINT"));
  return std::shared_ptr<AwsCredentialSource>(
      std::make_shared<ImdsCredentialSource>(std::move(target), std::move(now)));
}

}  // namespace e2d::node
