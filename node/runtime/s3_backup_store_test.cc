// Copyright e2d authors.
//
// The S3 store's pure parts: URL and environment parsing, Signature Version 4 against AWS's
// published example, list replies and error replies. node/test/s3_test.sh drives the whole
// store against a real S3-compatible server (s3rver) and a real S3 client (s3cmd).

#include "node/runtime/s3_backup_store.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/time/civil_time.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

struct FakeEnv {
  std::map<std::string, std::string> vars = {{"AWS_ACCESS_KEY_ID", "AK"},
                                             {"AWS_SECRET_ACCESS_KEY", "SK"}};
  std::function<const char*(const char*)> Fn() {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

absl::Time At(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

// AWS's documented example for S3 (GET /test.txt with a Range header, "Signature Calculations
// for the Authorization Header: Transferring Payload in a Single Chunk").
TEST(SigV4Test, AwsPublishedGetObjectExample) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/test.txt";
  r.payload_sha256_hex = Sha256Hex("");
  ASSERT_EQ(r.payload_sha256_hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", r.payload_sha256_hex},
               {"x-amz-date", "20130524T000000Z"}};
  const absl::Time t = At(2013, 5, 24, 0, 0, 0);
  EXPECT_EQ(AmzDate(t), "20130524T000000Z");
  EXPECT_EQ(SigV4Authorization(r, "AKIAIOSFODNN7EXAMPLE",
                               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", t),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  // Any change to what is signed changes the signature.
  SigV4Request other = r;
  other.canonical_uri = "/test.txU";
  EXPECT_NE(SigV4Authorization(other, "AKIAIOSFODNN7EXAMPLE",
                               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", t),
            SigV4Authorization(r, "AKIAIOSFODNN7EXAMPLE",
                               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", t));
}

// AWS's documented example for a service other than S3 (IAM ListUsers, "Signature Version 4
// signing process"), also what botocore's SigV4Auth computes for it.
TEST(SigV4Test, AwsPublishedIamExample) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"Version", "2010-05-08"}, {"Action", "ListUsers"}};
  r.payload_sha256_hex = Sha256Hex("");
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
               {"Host", "iam.amazonaws.com"},
               {"X-Amz-Date", "20150830T123600Z"}};
  EXPECT_EQ(SigV4Authorization(r, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               "us-east-1", At(2015, 8, 30, 12, 36, 0), "iam"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request,"
            "SignedHeaders=content-type;host;x-amz-date,"
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST(SigV4Test, EncodingAndCanonicalQuery) {
  EXPECT_EQ(UriEncode("a b/c~d_e.f-g+h", false), "a%20b/c~d_e.f-g%2Bh");
  EXPECT_EQ(UriEncode("a/b", true), "a%2Fb");
  EXPECT_EQ(UriEncode("\xff", true), "%FF");
  EXPECT_EQ(CanonicalQuery({{"prefix", "e2d/x y"}, {"list-type", "2"}, {"delimiter", "/"}}),
            "delimiter=%2F&list-type=2&prefix=e2d%2Fx%20y");
  EXPECT_EQ(CanonicalQuery({}), "");
}

TEST(S3UrlTest, AwsVirtualHostPathStyleAndEndpoints) {
  FakeEnv env;
  absl::StatusOr<S3Config> c = ParseS3Url("s3://my-bucket/e2d/prod/", env.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->virtual_host);
  EXPECT_EQ(c->endpoint.host, "my-bucket.s3.us-east-1.amazonaws.com");
  EXPECT_TRUE(c->endpoint.tls);
  EXPECT_EQ(c->endpoint.HostHeader(), "my-bucket.s3.us-east-1.amazonaws.com");
  EXPECT_EQ(c->bucket, "my-bucket");
  EXPECT_EQ(c->prefix, "e2d/prod/");
  ASSERT_NE(c->credentials, nullptr);
  EXPECT_EQ(c->credentials->Get()->access_key, "AK");

  env.vars["AWS_REGION"] = "eu-west-3";
  c = ParseS3Url("s3://dotted.bucket", env.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->virtual_host);  // a dotted name would not match the wildcard certificate
  EXPECT_EQ(c->endpoint.host, "s3.eu-west-3.amazonaws.com");
  EXPECT_EQ(c->prefix, "");
  EXPECT_EQ(c->region, "eu-west-3");

  env.vars["AWS_ENDPOINT_URL"] = "http://127.0.0.1:4568/";
  c = ParseS3Url("s3://b12/p", env.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->virtual_host);
  EXPECT_FALSE(c->endpoint.tls);
  EXPECT_EQ(c->endpoint.HostHeader(), "127.0.0.1:4568");
  EXPECT_EQ(c->prefix, "p/");

  c = ParseS3Url("https://nyc3.digitaloceanspaces.com/space-1/backups", env.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->endpoint.tls);
  EXPECT_EQ(c->endpoint.port, 443);
  EXPECT_EQ(c->endpoint.HostHeader(), "nyc3.digitaloceanspaces.com");
  EXPECT_EQ(c->bucket, "space-1");
  EXPECT_EQ(c->prefix, "backups/");

  c = ParseS3Url("http://[::1]:9000/bkt", env.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->endpoint.host, "::1");
  EXPECT_EQ(c->endpoint.HostHeader(), "[::1]:9000");
}

TEST(S3UrlTest, BadUrlsAndMissingCredentialsAreRefusedClearly) {
  FakeEnv env;
  auto message = [&env](const std::string& url) {
    absl::StatusOr<S3Config> c = ParseS3Url(url, env.Fn());
    EXPECT_FALSE(c.ok()) << url;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << url;
    return std::string(c.status().message());
  };
  EXPECT_TRUE(absl::StrContains(message("s3://UPPER/x"), "bad bucket name \"UPPER\""));
  EXPECT_TRUE(absl::StrContains(message("s3://ab"), "bad bucket name"));
  EXPECT_TRUE(absl::StrContains(message("s3://-ab/x"), "bad bucket name"));
  EXPECT_TRUE(absl::StrContains(message("s3://abc/x//y"), "empty path segment"));
  EXPECT_TRUE(absl::StrContains(message("http://host:99999/abc"), "bad port"));
  EXPECT_TRUE(absl::StrContains(message("http://host/"), "no bucket"));
  EXPECT_TRUE(absl::StrContains(message("http://ho st/abc"), "bad host"));
  EXPECT_TRUE(absl::StrContains(message("ftp://x/abc"), "is not file://DIR"));
  env.vars["AWS_ENDPOINT_URL_S3"] = "ftp://x";
  EXPECT_TRUE(absl::StrContains(message("s3://abc"), "AWS_ENDPOINT_URL_S3"));
  env.vars.erase("AWS_ENDPOINT_URL_S3");
  env.vars.erase("AWS_SECRET_ACCESS_KEY");
  EXPECT_TRUE(absl::StrContains(message("s3://abc"), "AWS_SECRET_ACCESS_KEY"));
}

TEST(S3ListTest, PagesKeysAndTokens) {
  absl::StatusOr<S3ListPage> p = ParseS3ListPage(
      "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Name>b</Name><Prefix>e2d/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
      "<NextContinuationToken>t&amp;1</NextContinuationToken>"
      "<Contents><Key>e2d/a&amp;b.bkp</Key><LastModified>2026-12-04T17:02:12.000Z"
      "</LastModified><Size>3</Size></Contents>"
      "<Contents><Key>e2d/c&#x2F;d.bkp</Key><LastModified>garbled</LastModified></Contents>"
      "<CommonPrefixes><Prefix>e2d/sub/</Prefix></CommonPrefixes></ListBucketResult>");
  ASSERT_TRUE(p.ok()) << p.status();
  // 2026-12-04T17:02:12Z is 1796403732; an unreadable time is 0 (the oldest possible).
  EXPECT_EQ(p->objects, (std::vector<BackupObject>{{"e2d/a&b.bkp", 1796403732},
                                                   {"e2d/c/d.bkp", 0}}));
  EXPECT_TRUE(p->truncated);
  EXPECT_EQ(p->next_token, "t&1");

  p = ParseS3ListPage("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->objects.empty());
  EXPECT_FALSE(p->truncated);

  EXPECT_EQ(ParseS3ListPage("<html>proxy error</html>").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseS3ListPage("<ListBucketResult><Contents><Key>x</Key>").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseS3ListPage("<ListBucketResult><IsTruncated>true</IsTruncated>"
                            "</ListBucketResult>")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);  // truncated without a token would loop forever
}

TEST(S3ListTest, ErrorRepliesMapToStatusCodes) {
  HttpReply r;
  r.status = 403;
  r.body =
      "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
      "does not match</Message></Error>";
  absl::Status s = S3ReplyError(r, "backup: cannot list s3://b");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "backup: cannot list s3://b: HTTP 403 SignatureDoesNotMatch: The request signature "
            "we calculated does not match");
  r.status = 404;
  r.body = "<Error><Code>NoSuchBucket</Code></Error>";
  EXPECT_EQ(S3ReplyError(r, "x").code(), absl::StatusCode::kNotFound);
  r.status = 503;
  r.body = "";
  EXPECT_EQ(S3ReplyError(r, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(S3ReplyError(r, "x").message(), "x: HTTP 503");
}

TEST(S3StoreTest, NamesAreCheckedBeforeAnyRequest) {
  FakeEnv env;
  absl::StatusOr<S3Config> c = ParseS3Url("http://127.0.0.1:1/bucket", env.Fn());
  ASSERT_TRUE(c.ok());
  S3BackupStore store(*c, [] { return absl::UnixEpoch(); });
  EXPECT_EQ(store.Put("../x.bkp", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Get(".hidden").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Delete("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Describe(), "http://127.0.0.1:1/bucket");
}

}  // namespace
}  // namespace e2d::node
