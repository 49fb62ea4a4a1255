// Copyright e2d authors.
//
// AWS credentials: from the environment, and from a fake EC2 instance metadata service on
// loopback that checks the IMDSv2 session token.

#include "node/runtime/aws_credentials.h"

#include <atomic>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/runtime/fake_http_api.h"

namespace e2d::node {
namespace {

std::function<std::string(const char*)> Env(std::map<std::string, std::string> vars) {
  return [vars](const char* name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
}

TEST(AwsCredentialsTest, EnvironmentKeysComeFirstAndHalfOfThemIsAnError) {
  auto source = AwsCredentialsFromEnvironment(Env(
      {{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "SK"}, {"AWS_SESSION_TOKEN", "T"}}));
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<AwsCredentials> c = (*source)->Get();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->access_key, "AK");
  EXPECT_EQ(c->secret_key, "SK");
  EXPECT_EQ(c->session_token, "T");
  source = AwsCredentialsFromEnvironment(Env({{"AWS_ACCESS_KEY_ID", "AK"}}));
  EXPECT_EQ(source.status().message(),
            "AWS credentials: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY");
  source = AwsCredentialsFromEnvironment(Env({{"AWS_EC2_METADATA_DISABLED", "TRUE"}}));
  EXPECT_TRUE(absl::StrContains(source.status().message(), "need AWS_ACCESS_KEY_ID"))
      << source.status();
  for (const char* bad : {"https://169.254.169.254", "169.254.169.254", "http://[::1", "http://"}) {
    source = AwsCredentialsFromEnvironment(Env({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", bad}}));
    EXPECT_EQ(source.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(source.status().message(), "AWS_EC2_METADATA_SERVICE_ENDPOINT"))
        << source.status();
  }
}

// An instance metadata service with role "e2d-node": every credentials request must carry the
// token its PUT gave; the credentials expire at `expiration`.
struct FakeImds {
  std::atomic<int> requests{0};
  std::atomic<int> generation{1};  // in the keys it hands out
  std::atomic<bool> up{true};
  std::atomic<bool> has_role{true};
  std::string expiration = "2026-12-05T12:00:00Z";
  FakeHttpApi api{[this](const std::string& head) { return Answer(head); }};

  std::string Answer(const std::string& head) {
    ++requests;
    if (!up) return FakeHttpApi::Reply(500, "down");
    if (absl::StartsWith(head, "PUT /latest/api/token ")) {
      if (!absl::StrContains(head, "X-aws-ec2-metadata-token-ttl-seconds: 21600")) {
        return FakeHttpApi::Reply(400, "no ttl");
      }
      return FakeHttpApi::Reply(200, "the-token");
    }
    if (!absl::StrContains(head, "X-aws-ec2-metadata-token: the-token\r\n")) {
      return FakeHttpApi::Reply(401, "");  // IMDSv2 only
    }
    if (absl::StartsWith(head, "GET /latest/meta-data/iam/security-credentials/ ")) {
      return has_role ? FakeHttpApi::Reply(200, "e2d-node\n") : FakeHttpApi::Reply(404, "");
    }
    if (absl::StartsWith(head, "GET /latest/meta-data/iam/security-credentials/e2d-node ")) {
      return FakeHttpApi::Reply(
          200, absl::StrCat(R"({"Code":"Success","LastUpdated":"2026-12-05T06:00:00Z",)",
                            R"("Type":"AWS-HMAC","AccessKeyId":"ASIA)", generation.load(),
                            R"(","SecretAccessKey":"secret","Token":"session",)",
                            R"("Expiration":")", expiration, R"("})"));
    }
    return FakeHttpApi::Reply(404, "");
  }
};

TEST(AwsCredentialsTest, TheInstanceProfileGivesTemporaryCredentialsKeptUntilNearExpiry) {
  FakeImds imds;
  absl::Time now = absl::FromUnixSeconds(0);
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2026-12-05T11:00:00Z", &now, nullptr));
  auto source = AwsCredentialsFromEnvironment(
      Env({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.api.url() + "/"}}), [&now] { return now; });
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<AwsCredentials> c = (*source)->Get();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->access_key, "ASIA1");
  EXPECT_EQ(c->secret_key, "secret");
  EXPECT_EQ(c->session_token, "session");
  EXPECT_EQ(imds.requests, 3);  // token, role, credentials
  // Kept while more than 5 minutes remain.
  now += absl::Minutes(50);
  EXPECT_EQ((*source)->Get()->access_key, "ASIA1");
  EXPECT_EQ(imds.requests, 3);
  // Then fetched again.
  imds.generation = 2;
  imds.expiration = "2026-12-05T18:00:00Z";
  now += absl::Minutes(6);  // 11:56
  EXPECT_EQ((*source)->Get()->access_key, "ASIA2");
  EXPECT_EQ(imds.requests, 6);
  // A failed fetch keeps credentials that are still valid, and says why once they are not.
  imds.up = false;
  now += absl::Hours(5) + absl::Minutes(58);  // 17:54: past the refresh point, not expired
  EXPECT_EQ((*source)->Get()->access_key, "ASIA2");
  now += absl::Minutes(10);
  c = (*source)->Get();
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::StrContains(c.status().message(), "instance metadata service at 127.0.0.1:"))
      << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), "HTTP 500")) << c.status();
}

TEST(AwsCredentialsTest, NoRoleOrNoServiceIsAClearError) {
  FakeImds imds;
  imds.has_role = false;
  auto source =
      AwsCredentialsFromEnvironment(Env({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.api.url()}}));
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<AwsCredentials> c = (*source)->Get();
  EXPECT_TRUE(absl::StrContains(c.status().message(), "no instance profile")) << c.status();
  // Nothing listens: refused at once (a real instance without the service times out in 2 s).
  std::string closed;
  {
    FakeImds gone;
    closed = gone.api.url();
  }
  source = AwsCredentialsFromEnvironment(Env({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", closed}}));
  ASSERT_TRUE(source.ok()) << source.status();
  c = (*source)->Get();
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::StrContains(c.status().message(), "gave none")) << c.status();
}

TEST(AwsCredentialsTest, TheCredentialsDocumentIsCheckedFieldByField) {
  absl::StatusOr<ImdsCredentials> c = ParseImdsCredentials(
      R"({"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T",)"
      R"("Expiration":"2026-12-05T12:00:00Z","Extra":1})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->credentials.access_key, "A");
  EXPECT_EQ(absl::ToUnixSeconds(c->expiration), 1796472000);  // 2026-12-05T12:00:00Z
  for (const char* bad : {"", "not json", R"({"Code":"Failure"})",
                          R"({"Code":"Success","AccessKeyId":"A","Expiration":"x"})",
                          R"({"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S",)"
                          R"("Expiration":"tomorrow"})"}) {
    EXPECT_EQ(ParseImdsCredentials(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace e2d::node
