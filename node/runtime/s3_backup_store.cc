// Copyright e2d authors.

#include "node/runtime/s3_backup_store.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "env/check.h"
#include "env/strings.h"

namespace e2d::node {

namespace {


std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const unsigned char* r =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  E2D_CHECK(r != nullptr && len == 32, "HMAC-SHA-256 is unavailable in this OpenSSL");
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string Getenv(const std::function<const char*(const char*)>& getenv, const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : v;
}


// AWS's bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
absl::Status CheckBucket(absl::string_view b, absl::string_view url) {
  bool ok = b.size() >= 3 && b.size() <= 63 && absl::ascii_isalnum(b.front()) &&
            absl::ascii_isalnum(b.back());
  for (const char c : b) {
    ok = ok && ((c >= 'a' && c <= 'z') || absl::ascii_isdigit(c) || c == '.' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("--snapshot-backup-url ", url, ": bad bucket name \"", b,
                     "\" (3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit)"));
  }
  return absl::OkStatus();
}

// "bucket/some/prefix/" -> bucket, "some/prefix/".
absl::Status SplitBucketPath(absl::string_view path, absl::string_view url, S3Config* c) {
  const size_t slash = path.find('/');
  c->bucket = std::string(path.substr(0, slash));
  if (absl::Status s = CheckBucket(c->bucket, url); !s.ok()) return s;
  absl::string_view prefix = slash == absl::string_view::npos ? "" : path.substr(slash + 1);
  while (absl::ConsumeSuffix(&prefix, "/")) {
  }
  if (absl::StrContains(prefix, "//") || absl::StartsWith(prefix, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--snapshot-backup-url ", url, ": empty path segment in the prefix"));
  }
  for (const char c : prefix) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("--snapshot-backup-url ", url, ": control character in the prefix"));
    }
  }
  c->prefix = prefix.empty() ? "" : absl::StrCat(prefix, "/");
  return absl::OkStatus();
}

// Decodes XML's predefined entities and character references (ASCII ones).
std::string XmlUnescape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    const size_t semi = s.find(';', i);
    if (semi == absl::string_view::npos || semi - i > 10) {
      out.push_back(s[i]);
      continue;
    }
    const absl::string_view ent = s.substr(i + 1, semi - i - 1);
    uint32_t code = 0;
    if (ent == "amp") {
      out.push_back('&');
    } else if (ent == "lt") {
      out.push_back('<');
    } else if (ent == "gt") {
      out.push_back('>');
    } else if (ent == "quot") {
      out.push_back('"');
    } else if (ent == "apos") {
      out.push_back('\'');
    } else if (absl::StartsWith(ent, "#x") && absl::SimpleHexAtoi(ent.substr(2), &code) &&
               code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else if (absl::StartsWith(ent, "#") && absl::SimpleAtoi(ent.substr(1), &code) &&
               code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else {
      out.append(s.data() + i, semi - i + 1);
    }
    i = semi;
  }
  return out;
}

// The text of the first <tag>...</tag> in `xml` at or after `from`, and where it ends.
bool TagText(absl::string_view xml, absl::string_view tag, size_t from, std::string* text,
             size_t* end) {
  const std::string open = absl::StrCat("<", tag, ">");
  const std::string close = absl::StrCat("</", tag, ">");
  const size_t a = xml.find(open, from);
  if (a == absl::string_view::npos) return false;
  const size_t b = xml.find(close, a + open.size());
  if (b == absl::string_view::npos) return false;
  *text = XmlUnescape(xml.substr(a + open.size(), b - a - open.size()));
  if (end != nullptr) *end = b + close.size();
  return true;
}

}  // namespace

bool IsS3Url(std::string_view url_in) {
  const absl::string_view url = env::ToAbsl(url_in);
  return absl::StartsWith(url, "s3://") || absl::StartsWith(url, "https://") ||
         absl::StartsWith(url, "http://");
}

absl::StatusOr<S3Config> ParseS3Url(const std::string& url,
                                    const std::function<const char*(const char*)>& getenv) {
  S3Config c;
  c.url = url;
  c.region = Getenv(getenv, "AWS_REGION");
  if (c.region.empty()) c.region = Getenv(getenv, "AWS_DEFAULT_REGION");
  if (c.region.empty()) c.region = "us-east-1";
  for (const char ch : c.region) {
    if (!absl::ascii_isalnum(ch) && ch != '-') {
      return absl::InvalidArgumentError(absl::StrCat("AWS_REGION: bad region \"", c.region, "\""));
    }
  }
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "s3://")) {
    if (absl::Status s = SplitBucketPath(rest, url, &c); !s.ok()) return s;
    std::string endpoint = Getenv(getenv, "AWS_ENDPOINT_URL_S3");
    const char* endpoint_var = "AWS_ENDPOINT_URL_S3";
    if (endpoint.empty()) {
      endpoint = Getenv(getenv, "AWS_ENDPOINT_URL");
      endpoint_var = "AWS_ENDPOINT_URL";
    }
    if (!endpoint.empty()) {
      absl::string_view e = endpoint;
      bool tls = true;
      if (!absl::ConsumePrefix(&e, "https://")) {
        if (!absl::ConsumePrefix(&e, "http://")) {
          return absl::InvalidArgumentError(absl::StrCat(
              endpoint_var, " \"", endpoint, "\" is not http://HOST[:PORT] or https://..."));
        }
        tls = false;
      }
      while (absl::ConsumeSuffix(&e, "/")) {
      }
      if (absl::StrContains(e, "/")) {
        return absl::InvalidArgumentError(
            absl::StrCat(endpoint_var, " \"", endpoint, "\": a path is not supported"));
      }
      if (absl::Status s = ParseAuthority(env::ToStd(e), tls, &c.endpoint, endpoint_var);
          !s.ok()) {
        return s;
      }
    } else {
      // AWS itself. A dotted bucket name would not match the wildcard certificate of the
      // virtual host, so it goes path-style.
      c.virtual_host = !absl::StrContains(c.bucket, ".");
      c.endpoint.tls = true;
      c.endpoint.port = 443;
      c.endpoint.host = c.virtual_host ? absl::StrCat(c.bucket, ".s3.", c.region, ".amazonaws.com")
                                       : absl::StrCat("s3.", c.region, ".amazonaws.com");
    }
  } else {
    bool tls = true;
    if (!absl::ConsumePrefix(&rest, "https://")) {
      if (!absl::ConsumePrefix(&rest, "http://")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--snapshot-backup-url \"", url,
            "\" is not file://DIR, s3://BUCKET[/PREFIX] or http(s)://HOST[:PORT]/BUCKET[/PREFIX]"));
      }
      tls = false;
    }
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos || slash + 1 == rest.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--snapshot-backup-url ", url, ": no bucket (http(s)://HOST[:PORT]/BUCKET[/PREFIX])"));
    }
    if (absl::Status s = ParseAuthority(env::ToStd(rest.substr(0, slash)), tls, &c.endpoint,
                                        absl::StrCat("--snapshot-backup-url ", url));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = SplitBucketPath(rest.substr(slash + 1), url, &c); !s.ok()) return s;
  }
  c.ca_file = Getenv(getenv, "AWS_CA_BUNDLE");
  absl::StatusOr<std::shared_ptr<AwsCredentialSource>> credentials =
      AwsCredentialsFromEnvironment([&getenv](const char* name) { return Getenv(getenv, name); });
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--snapshot-backup-url ", url, ": ", credentials.status().message()));
  }
  c.credentials = *std::move(credentials);
  return c;
}


std::string Sha256Hex(std::string_view data_in) {
  const absl::string_view data = env::ToAbsl(data_in);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  E2D_CHECK(EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) == 1,
            "SHA-256 is unavailable in this OpenSSL");
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(out), len));
}

std::string AmzDate(absl::Time t) {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", t, absl::UTCTimeZone());
}

std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) enc.emplace_back(UriEncode(k, true), UriEncode(v, true));
  std::sort(enc.begin(), enc.end());
  std::vector<std::string> parts;
  parts.reserve(enc.size());
  for (const auto& [k, v] : enc) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrJoin(parts, "&");
}

std::string SigV4Authorization(const SigV4Request& r, const std::string& access_key,
                               const std::string& secret_key, const std::string& region,
                               absl::Time now, const std::string& service) {
  std::vector<std::pair<std::string, std::string>> headers;
  headers.reserve(r.headers.size());
  for (const auto& [k, v] : r.headers) {
    headers.emplace_back(absl::AsciiStrToLower(k), std::string(absl::StripAsciiWhitespace(v)));
  }
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers;
  std::vector<std::string> names;
  for (const auto& [k, v] : headers) {
    absl::StrAppend(&canonical_headers, k, ":", v, "\n");
    names.push_back(k);
  }
  const std::string signed_headers = absl::StrJoin(names, ";");
  const std::string canonical =
      absl::StrCat(r.method, "\n", r.canonical_uri, "\n", CanonicalQuery(r.query), "\n",
                   canonical_headers, "\n", signed_headers, "\n", r.payload_sha256_hex);
  const std::string date = absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone());
  const std::string scope = absl::StrCat(date, "/", region, "/", service, "/aws4_request");
  const std::string to_sign =
      absl::StrCat("AWS4-HMAC-SHA256\n", AmzDate(now), "\n", scope, "\n", Sha256Hex(canonical));
  std::string key = HmacSha256(absl::StrCat("AWS4", secret_key), date);
  key = HmacSha256(key, region);
  key = HmacSha256(key, service);
  key = HmacSha256(key, "aws4_request");
  const std::string sig = HmacSha256(key, to_sign);
  return absl::StrCat("AWS4-HMAC-SHA256 Credential=", access_key, "/", scope,
                      ",SignedHeaders=", signed_headers,
                      ",Signature=", absl::BytesToHexString(sig));
}

absl::StatusOr<S3ListPage> ParseS3ListPage(std::string_view xml_in) {
  const absl::string_view xml = env::ToAbsl(xml_in);
  if (!absl::StrContains(xml, "<ListBucketResult")) {
    return absl::DataLossError(
        absl::StrCat("s3: a list reply without <ListBucketResult>: \"", xml.substr(0, 120), "\""));
  }
  S3ListPage page;
  size_t pos = 0;
  while (true) {
    const size_t contents = xml.find("<Contents>", pos);
    if (contents == absl::string_view::npos) break;
    const size_t contents_end = xml.find("</Contents>", contents);
    if (contents_end == absl::string_view::npos) {
      return absl::DataLossError("s3: a list reply with an unclosed <Contents>");
    }
    BackupObject object;
    const absl::string_view block = xml.substr(0, contents_end);
    if (!TagText(block, "Key", contents, &object.name, nullptr)) {
      return absl::DataLossError("s3: a list reply with a <Contents> without <Key>");
    }
    std::string modified;
    absl::Time t;
    std::string err;
    if (TagText(block, "LastModified", contents, &modified, nullptr) &&
        absl::ParseTime(absl::RFC3339_full, modified, &t, &err)) {
      object.modified_unix_seconds = absl::ToUnixSeconds(t);
    }
    page.objects.push_back(std::move(object));
    pos = contents_end;
  }
  std::string truncated;
  page.truncated = TagText(xml, "IsTruncated", 0, &truncated, nullptr) && truncated == "true";
  if (page.truncated && (!TagText(xml, "NextContinuationToken", 0, &page.next_token, nullptr) ||
                         page.next_token.empty())) {
    return absl::DataLossError("s3: a truncated list reply without a NextContinuationToken");
  }
  return page;
}

absl::Status S3ReplyError(const HttpReply& reply, std::string_view what_in) {
  const absl::string_view what = env::ToAbsl(what_in);
  std::string code;
  std::string message;
  TagText(reply.body, "Code", 0, &code, nullptr);
  TagText(reply.body, "Message", 0, &message, nullptr);
  std::string text = absl::StrCat(what, ": HTTP ", reply.status);
  if (!code.empty()) absl::StrAppend(&text, " ", code);
  if (!message.empty()) absl::StrAppend(&text, ": ", message);
  if (reply.status == 404) return absl::NotFoundError(text);
  if (reply.status == 401 || reply.status == 403) return absl::PermissionDeniedError(text);
  if (reply.status >= 500) return absl::UnavailableError(text);
  return absl::FailedPreconditionError(text);
}

S3BackupStore::S3BackupStore(S3Config config, std::function<absl::Time()> now)
    : config_(std::move(config)), now_(std::move(now)) {}

absl::StatusOr<HttpReply> S3BackupStore::Send(
    const std::string& method, const std::string& key,
    const std::vector<std::pair<std::string, std::string>>& query, std::string_view body,
    size_t max_body) {
  std::string path = config_.virtual_host ? "" : absl::StrCat("/", config_.bucket);
  if (!key.empty() || config_.virtual_host) absl::StrAppend(&path, "/", UriEncode(key, false));
  absl::StatusOr<AwsCredentials> credentials = config_.credentials->Get();
  if (!credentials.ok()) {
    return absl::Status(credentials.status().code(),
                        absl::StrCat("backup ", config_.url, ": ", credentials.status().message()));
  }
  const absl::Time now = now_();
  SigV4Request sig;
  sig.method = method;
  sig.canonical_uri = path;
  sig.query = query;
  sig.payload_sha256_hex = Sha256Hex(body);
  sig.headers = {{"host", config_.endpoint.HostHeader()},
                 {"x-amz-content-sha256", sig.payload_sha256_hex},
                 {"x-amz-date", AmzDate(now)}};
  if (!credentials->session_token.empty()) {
    sig.headers.emplace_back("x-amz-security-token", credentials->session_token);
  }
  HttpRequestSpec req;
  req.method = method;
  req.path_and_query = query.empty() ? path : absl::StrCat(path, "?", CanonicalQuery(query));
  for (size_t i = 1; i < sig.headers.size(); ++i) req.headers.push_back(sig.headers[i]);
  req.headers.emplace_back(
      "Authorization",
      SigV4Authorization(sig, credentials->access_key, credentials->secret_key, config_.region,
                         now));
  if (method == "PUT") req.headers.emplace_back("Content-Type", "application/octet-stream");
  req.body = body;
  HttpFetchOptions options;
  options.timeout = kS3Timeout;
  options.max_body = max_body;
  options.ca_file = config_.ca_file;
  absl::StatusOr<HttpReply> reply = HttpFetch(config_.endpoint, req, options);
  if (!reply.ok()) {
    return absl::Status(reply.status().code(),
                        absl::StrCat("backup ", config_.url, ": ", reply.status().message()));
  }
  return reply;
}

absl::Status S3BackupStore::Put(const std::string& name, std::string_view bytes) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  const std::string key = config_.prefix + name;
  absl::StatusOr<HttpReply> reply = Send("PUT", key, {}, bytes, 1 << 20);
  if (!reply.ok()) return reply.status();
  if (reply->status / 100 != 2) {
    return S3ReplyError(*reply, absl::StrCat("backup: cannot put ", config_.url, " ", name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BackupObject>> S3BackupStore::ListObjects() {
  std::vector<BackupObject> names;
  std::string token;
  for (int page_no = 0;; ++page_no) {
    if (page_no == kS3ListPagesMax) {
      return absl::ResourceExhaustedError(
          absl::StrCat("backup: listing ", config_.url, " took over ", kS3ListPagesMax, " pages"));
    }
    std::vector<std::pair<std::string, std::string>> query = {{"list-type", "2"},
                                                              {"delimiter", "/"}};
    if (!config_.prefix.empty()) query.emplace_back("prefix", config_.prefix);
    if (!token.empty()) query.emplace_back("continuation-token", token);
    absl::StatusOr<HttpReply> reply = Send("GET", "", query, "", kS3ListPageMax);
    if (!reply.ok()) return reply.status();
    if (reply->status != 200) {
      return S3ReplyError(*reply, absl::StrCat("backup: cannot list ", config_.url));
    }
    absl::StatusOr<S3ListPage> page = ParseS3ListPage(reply->body);
    if (!page.ok()) {
      return absl::DataLossError(
          absl::StrCat("backup: listing ", config_.url, ": ", page.status().message()));
    }
    for (const BackupObject& o : page->objects) {
      absl::string_view rest = o.name;
      if (!absl::ConsumePrefix(&rest, config_.prefix)) continue;
      std::string name(rest);
      if (IsStoreObjectName(name) && absl::EndsWith(name, ".bkp")) {
        names.push_back({std::move(name), o.modified_unix_seconds});
      }
    }
    if (!page->truncated) break;
    token = std::move(page->next_token);
  }
  return names;
}

absl::StatusOr<std::string> S3BackupStore::Get(const std::string& name) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  absl::StatusOr<HttpReply> reply = Send("GET", config_.prefix + name, {}, "", kS3ObjectMax);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) {
    return S3ReplyError(*reply, absl::StrCat("backup: cannot get ", config_.url, " ", name));
  }
  return std::move(reply->body);
}

absl::Status S3BackupStore::Delete(const std::string& name) {
  if (absl::Status s = CheckStoreObjectName(name); !s.ok()) return s;
  absl::StatusOr<HttpReply> reply = Send("DELETE", config_.prefix + name, {}, "", 1 << 20);
  if (!reply.ok()) return reply.status();
  if (reply->status / 100 != 2 && reply->status != 404) {
    return S3ReplyError(*reply, absl::StrCat("backup: cannot delete ", config_.url, " ", name));
  }
  return absl::OkStatus();
}

}  // namespace e2d::node
