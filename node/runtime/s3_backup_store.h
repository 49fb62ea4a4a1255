// Copyright e2d authors.
//
// S3BackupStore: backups as objects in an S3 bucket, or in any S3-compatible store (MinIO,
// DigitalOcean Spaces, s3rver), signed with AWS Signature Version 4.
//
//   s3://BUCKET[/PREFIX]          AWS S3 (https://BUCKET.s3.REGION.amazonaws.com); with
//                                 AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL set, that endpoint
//                                 instead, path-style
//   https://HOST[:PORT]/BUCKET[/PREFIX]
//   http://HOST[:PORT]/BUCKET[/PREFIX]
//                                 any S3-compatible endpoint, path-style (plain http only for
//                                 a trusted network: the backups then travel unencrypted unless
//                                 --snapshot-encryption is on)
//
// From the environment, as the AWS tools read them: the credentials (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, else the instance profile's: see
// node/runtime/aws_credentials.h), AWS_REGION or AWS_DEFAULT_REGION (default us-east-1),
// AWS_CA_BUNDLE (a PEM file of CAs to trust instead of the system's).
//
// Put is one PUT: S3 makes an object visible whole or not at all, so a half-written backup is
// never listed. List pages through ListObjectsV2 under the prefix, keeping the names directly
// under it that end in ".bkp". Each call is one HTTP request per page, with no retry of its own
// (the backup writer's next period, or the operator, retries). Runtime only: blocking sockets,
// called from the env's offload worker.
//
// Bounds: an object read is at most kS3ObjectMax bytes, a list page kS3ListPageMax bytes, a
// listing kS3ListPagesMax pages; each request times out after kS3Timeout.

#ifndef E2D_NODE_RUNTIME_S3_BACKUP_STORE_H_
#define E2D_NODE_RUNTIME_S3_BACKUP_STORE_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "node/backup_store.h"
#include "node/runtime/aws_credentials.h"
#include "node/runtime/http_client.h"

namespace e2d::node {

inline constexpr size_t kS3ObjectMax = size_t{4} << 30;
inline constexpr size_t kS3ListPageMax = 16 << 20;
inline constexpr int kS3ListPagesMax = 10000;
inline constexpr absl::Duration kS3Timeout = absl::Seconds(60);

struct S3Config {
  std::string url;  // as given, for logs (it holds no secret)
  HttpTarget endpoint;
  bool virtual_host = false;  // the bucket is in the host name, not the path
  std::string bucket;
  std::string prefix;  // "" or "dir/.../" (ends with '/')
  std::string region;
  std::shared_ptr<AwsCredentialSource> credentials;  // node/runtime/aws_credentials.h
  std::string ca_file;
};

// Parses a backup URL of the forms above, reading the environment through `getenv` (nullptr or
// "" for an unset variable). InvalidArgument, naming what is wrong, for anything else.
absl::StatusOr<S3Config> ParseS3Url(const std::string& url,
                                    const std::function<const char*(const char*)>& getenv);

// True if `url` is one S3BackupStore takes (s3://, http://, https://).
bool IsS3Url(std::string_view url);

// --- AWS Signature Version 4, exposed for tests ---

std::string Sha256Hex(std::string_view data);

struct SigV4Request {
  std::string method;
  std::string canonical_uri;  // the path, already UriEncode'd (slashes kept)
  std::vector<std::pair<std::string, std::string>> query;  // raw names and values
  // Every header to sign (host, x-amz-date and x-amz-content-sha256 among them), any case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_sha256_hex;
};

// The query string both signed and sent: sorted, names and values UriEncode'd.
std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query);

// The Authorization header's value for `request` at `now` (which must be the x-amz-date), for
// the AWS service named (its signing name: s3, ec2, autoscaling).
std::string SigV4Authorization(const SigV4Request& request, const std::string& access_key,
                               const std::string& secret_key, const std::string& region,
                               absl::Time now, const std::string& service = "s3");

// x-amz-date's form: 20130524T000000Z.
std::string AmzDate(absl::Time t);

// --- ListObjectsV2 replies and errors, exposed for tests ---

struct S3ListPage {
  // Whole keys, entities decoded, with their LastModified (0 if absent or unreadable).
  std::vector<BackupObject> objects;
  bool truncated = false;
  std::string next_token;
};
absl::StatusOr<S3ListPage> ParseS3ListPage(std::string_view xml);

// The error a non-2xx reply stands for: NotFound for 404, PermissionDenied for 401/403,
// Unavailable for 5xx, FailedPrecondition otherwise; the message holds S3's Code and Message.
absl::Status S3ReplyError(const HttpReply& reply, std::string_view what);

class S3BackupStore final : public BackupStore {
 public:
  // `now` gives the wall-clock time requests are signed with.
  S3BackupStore(S3Config config, std::function<absl::Time()> now);

  absl::Status Put(const std::string& name, std::string_view bytes) override;
  absl::StatusOr<std::vector<BackupObject>> ListObjects() override;
  absl::StatusOr<std::string> Get(const std::string& name) override;
  absl::Status Delete(const std::string& name) override;
  std::string Describe() const override { return config_.url; }

 private:
  // Signs and sends one request for the object `key` ("" for the bucket).
  absl::StatusOr<HttpReply> Send(const std::string& method, const std::string& key,
                                 const std::vector<std::pair<std::string, std::string>>& query,
                                 std::string_view body, size_t max_body);

  S3Config config_;
  std::function<absl::Time()> now_;
};

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_S3_BACKUP_STORE_H_
