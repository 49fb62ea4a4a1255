// Copyright e2d authors.
//
// AWS credentials for what e2d signs (S3 backups, EC2 and Auto Scaling discovery), found as the
// AWS tools find them, in order:
//  1. the environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN);
//  2. else the EC2 instance metadata service (IMDSv2), for the instance profile's role: a
//     session token (PUT /latest/api/token), the role's name (GET
//     /latest/meta-data/iam/security-credentials/), then its temporary credentials (GET .../ROLE),
//     at http://169.254.169.254 or AWS_EC2_METADATA_SERVICE_ENDPOINT; not if
//     AWS_EC2_METADATA_DISABLED is "true".
// Temporary credentials are kept until 5 minutes before they expire, then fetched again; a
// fetch that fails while the kept ones are still valid keeps them.
//
// Bounds: each metadata request times out after kImdsTimeout (connect, send, receive) and
// kImdsTotal in all; a reply is at most kImdsReplyMax bytes. Runtime only: blocking sockets,
// called from offload workers; Get is thread-safe.

#ifndef E2D_NODE_RUNTIME_AWS_CREDENTIALS_H_
#define E2D_NODE_RUNTIME_AWS_CREDENTIALS_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace e2d::node {

inline constexpr absl::Duration kImdsTimeout = absl::Seconds(2);
inline constexpr absl::Duration kImdsTotal = absl::Seconds(5);
inline constexpr size_t kImdsReplyMax = 64 << 10;
// How long before their expiration temporary credentials are fetched again.
inline constexpr absl::Duration kImdsRefreshBefore = absl::Minutes(5);

struct AwsCredentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty: none
};

class AwsCredentialSource {
 public:
  virtual ~AwsCredentialSource() = default;
  // The credentials to sign with now; an error says where they were looked for and why they
  // are missing. May block on the metadata service.
  virtual absl::StatusOr<AwsCredentials> Get() = 0;
};

// Where the credentials come from, per the environment read through `getenv` ("" for unset).
// InvalidArgument if only one of the two keys is set, if AWS_EC2_METADATA_SERVICE_ENDPOINT is
// not an http:// URL, or if there are no keys and the metadata service is disabled. `now` is
// the wall clock (tests pass their own).
absl::StatusOr<std::shared_ptr<AwsCredentialSource>> AwsCredentialsFromEnvironment(
    const std::function<std::string(const char*)>& getenv,
    std::function<absl::Time()> now = absl::Now);

// The metadata service's credentials document, parsed; exposed for tests and fuzzing.
// InvalidArgument naming what is wrong (not JSON, Code not "Success", a field missing, an
// expiration that is not RFC 3339).
struct ImdsCredentials {
  AwsCredentials credentials;
  absl::Time expiration;
};
absl::StatusOr<ImdsCredentials> ParseImdsCredentials(std::string_view json);

}  // namespace e2d::node

#endif  // E2D_NODE_RUNTIME_AWS_CREDENTIALS_H_
