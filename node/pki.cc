// Copyright e2d authors.

#include "node/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "env/check.h"
#include "env/openssl_errors.h"
#include "env/posix_filesystem.h"
#include "env/status_macros.h"
#include "env/strings.h"

namespace e2d::node {
namespace {

using env::ToAbsl;

template <auto kFree>
struct Free {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;

// Indexed by KeyType.
constexpr std::string_view kKeyTypeNames[] = {"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096",
                                              "ed25519"};
// notBefore lies this far in the past, so a machine whose clock is a little behind the signer's
// still accepts a certificate made a moment ago.
constexpr absl::Duration kBackdate = absl::Minutes(5);
constexpr size_t kSerialBytes = 16;         // 128 random bits; DER needs at most 17 of 20 octets.
constexpr size_t kPemBytesMax = 1 << 20;    // A CA file is a few KiB; refuses to slurp /dev/zero.
constexpr size_t kCommonNameBytesMax = 64;  // RFC 5280 ub-common-name.
constexpr size_t kDnsNameBytesMax = 253;
constexpr size_t kHostsMax = 256;
constexpr mode_t kKeyMode = 0600, kCertMode = 0644;

// One leaf certificate GenCerts makes.
struct LeafProfile {
  std::string_view cert_name, key_name, common_name;
  const char* extended_key_usage;  // x509v3_config(5) syntax
};
constexpr LeafProfile kLeafProfiles[] = {
    {kServerCert, kServerKey, "e2d server", "serverAuth"},
    {kPeerCert, kPeerKey, "e2d peer", "serverAuth,clientAuth"},
    {kClientCert, kClientKey, "root", "clientAuth"},
};

using env::DrainOpenSslErrors;

absl::Status SslError(absl::StatusCode code, std::string_view what) {
  return absl::Status(code, absl::StrCat(ToAbsl(what), ": ", DrainOpenSslErrors()));
}

absl::Status CheckValidity(absl::Duration validity) {
  if (validity <= absl::ZeroDuration() || validity > kValidityMax) {
    return absl::InvalidArgumentError(absl::StrCat("certificate validity ",
                                                   absl::FormatDuration(validity), " not in (0, ",
                                                   absl::FormatDuration(kValidityMax), "]"));
  }
  return absl::OkStatus();
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  return absl::StrCat(ToAbsl(dir), dir.back() == '/' ? "" : "/", ToAbsl(name));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// ---- Reading PEM files.

absl::StatusOr<std::string> ReadPemFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return env::ErrnoToStatus(errno, absl::StrCat("opening ", path));
  std::string out;
  char buffer[4096];
  while (out.size() <= kPemBytesMax) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return env::ErrnoToStatus(err, absl::StrCat("reading ", path));
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  OPENSSL_cleanse(buffer, sizeof(buffer));
  if (out.size() > kPemBytesMax) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kPemBytesMax, " bytes, not a PEM file"));
  }
  return out;
}

BioPtr MemoryReader(std::string_view bytes) {
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  E2D_CHECK(bio != nullptr, "BIO_new_mem_buf: %s", DrainOpenSslErrors().c_str());
  return bio;
}

absl::StatusOr<X509Ptr> ParseCertificate(std::string_view pem, const std::string& path) {
  BioPtr bio = MemoryReader(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat(path, " holds no PEM certificate"));
  }
  return cert;
}

// OpenSSL's default would prompt on the terminal for an encrypted key; refuse instead.
int NoPassphrase(char*, int, int, void*) { return -1; }

absl::StatusOr<PkeyPtr> ParsePrivateKey(std::string_view pem, const std::string& path) {
  BioPtr bio = MemoryReader(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat(path, " holds no unencrypted PEM private key"));
  }
  return key;
}

// ---- Building certificates.

absl::StatusOr<PkeyPtr> GenerateKey(KeyType type) {
  EVP_PKEY* key = nullptr;
  switch (type) {
    case KeyType::kEcdsaP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcdsaP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyType::kRsa2048:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
      break;
    case KeyType::kRsa4096:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{4096});
      break;
    case KeyType::kEd25519:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
  }
  if (key == nullptr) {
    return SslError(absl::StatusCode::kInternal,
                    absl::StrCat("generating a ", ToAbsl(KeyTypeName(type)), " key"));
  }
  return PkeyPtr(key);
}

// The digest `signer` signs with: none for EdDSA (it hashes internally), one as strong as the
// curve for larger ECDSA keys, SHA-256 otherwise.
const EVP_MD* SigningDigest(EVP_PKEY* signer) {
  if (EVP_PKEY_is_a(signer, "ED25519") || EVP_PKEY_is_a(signer, "ED448")) return nullptr;
  if (EVP_PKEY_is_a(signer, "EC") && EVP_PKEY_get_bits(signer) > 384) return EVP_sha512();
  if (EVP_PKEY_is_a(signer, "EC") && EVP_PKEY_get_bits(signer) > 256) return EVP_sha384();
  return EVP_sha256();
}

bool SetRandomSerial(X509* cert) {
  unsigned char bytes[kSerialBytes];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return false;
  // Unsigned, so always positive as RFC 5280 requires; zero has probability 2^-128.
  BignumPtr serial(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  return serial != nullptr && BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert));
}

// A version-3 certificate for `key` with subject CN=`common_name`, a random serial, and valid
// from kBackdate ago until `validity` from now; no issuer, extensions or signature yet.
absl::StatusOr<X509Ptr> NewCertificate(std::string_view common_name, EVP_PKEY* key,
                                       absl::Duration validity) {
  X509Ptr cert(X509_new());
  if (cert == nullptr) return SslError(absl::StatusCode::kInternal, "X509_new");
  X509* c = cert.get();
  const absl::Time now = absl::Now();
  const auto* name = reinterpret_cast<const unsigned char*>(common_name.data());
  const bool ok =
      X509_set_version(c, X509_VERSION_3) == 1 && SetRandomSerial(c) &&
      X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_UTF8, name,
                                 static_cast<int>(common_name.size()), -1, 0) == 1 &&
      X509_set_pubkey(c, key) == 1 &&
      ASN1_TIME_set(X509_getm_notBefore(c), absl::ToTimeT(now - kBackdate)) != nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(c), absl::ToTimeT(now + validity)) != nullptr;
  if (!ok) {
    return SslError(absl::StatusCode::kInternal,
                    absl::StrCat("starting a certificate for CN=", ToAbsl(common_name)));
  }
  return cert;
}

// Adds the extension `nid` = `value`, written as in x509v3_config(5) ("critical,CA:TRUE").
// `issuer` supplies the authority key identifier; a self-signed certificate is its own issuer.
bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  return extension != nullptr && X509_add_ext(cert, extension.get(), -1) == 1;
}

// ---- Subject alternative names.

struct San {
  int type;           // GEN_IPADD or GEN_DNS
  std::string value;  // the address in network byte order, or the DNS name
};

bool IsDnsName(std::string_view name) {
  if (name.empty() || name.size() > kDnsNameBytesMax) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
           c == '*';
  });
}

absl::StatusOr<San> ParseHost(const std::string& host) {
  unsigned char address[sizeof(in6_addr)];
  // c_str() would stop at an embedded NUL, so "1.2.3.4\0x" must not reach inet_pton.
  const bool has_nul = host.find('\0') != std::string::npos;
  if (!has_nul && ::inet_pton(AF_INET, host.c_str(), address) == 1) {
    return San{GEN_IPADD, std::string(reinterpret_cast<char*>(address), sizeof(in_addr))};
  }
  if (!has_nul && ::inet_pton(AF_INET6, host.c_str(), address) == 1) {
    return San{GEN_IPADD, std::string(reinterpret_cast<char*>(address), sizeof(in6_addr))};
  }
  if (!IsDnsName(host)) {
    return absl::InvalidArgumentError(absl::StrCat("host \"", absl::CHexEscape(host),
                                                   "\" is neither an IP address nor a DNS name"));
  }
  return San{GEN_DNS, host};
}

bool SameSan(const San& a, const San& b) {
  if (a.type != b.type) return false;
  return a.type == GEN_IPADD ? a.value == b.value : absl::EqualsIgnoreCase(a.value, b.value);
}

// `hosts` then the loopback names, each once, in that order.
absl::StatusOr<std::vector<San>> CollectSans(const std::vector<std::string>& hosts) {
  if (hosts.size() > kHostsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat(hosts.size(), " hosts given, at most ", kHostsMax, " allowed"));
  }
  std::vector<San> sans;
  auto add = [&sans](San san) {
    const auto same = [&san](const San& other) { return SameSan(san, other); };
    if (std::none_of(sans.begin(), sans.end(), same)) sans.push_back(std::move(san));
  };
  for (const std::string& host : hosts) {
    E2D_ASSIGN_OR_RETURN(San san, ParseHost(host));
    add(std::move(san));
  }
  for (const char* host : {"127.0.0.1", "::1", "localhost"}) {
    absl::StatusOr<San> san = ParseHost(host);
    E2D_CHECK(san.ok(), "built-in host %s does not parse", host);
    add(*std::move(san));
  }
  return sans;
}

GENERAL_NAME* NewGeneralName(const San& san) {
  ASN1_STRING* value = san.type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (value == nullptr || name == nullptr ||
      ASN1_STRING_set(value, san.value.data(), static_cast<int>(san.value.size())) != 1) {
    ASN1_STRING_free(value);
    GENERAL_NAME_free(name);
    return nullptr;
  }
  GENERAL_NAME_set0_value(name, san.type, value);
  return name;
}

bool AddSans(X509* cert, const std::vector<San>& sans) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return false;
  for (const San& san : sans) {
    GENERAL_NAME* name = NewGeneralName(san);
    if (name == nullptr) return false;
    if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
      GENERAL_NAME_free(name);
      return false;
    }
  }
  return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

// ---- Writing files whole or not at all.

struct OutputFile {
  OutputFile(std::string path, std::string contents, mode_t mode)
      : path(std::move(path)), contents(std::move(contents)), mode(mode) {}
  OutputFile(OutputFile&&) = default;
  OutputFile& operator=(OutputFile&&) = default;
  ~OutputFile() { OPENSSL_cleanse(contents.data(), contents.size()); }  // private keys

  std::string path;
  std::string contents;
  mode_t mode;
};

absl::StatusOr<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return SslError(absl::StatusCode::kInternal, "PEM-encoding a certificate");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

absl::StatusOr<std::string> PrivateKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));  // Cleared when freed.
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError(absl::StatusCode::kInternal, "PEM-encoding a private key");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// AlreadyExists naming the first of `paths` that exists (as anything, even a dangling link).
absl::Status RefuseExisting(const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, " already exists; refusing to replace it without overwrite"));
    }
    if (errno != ENOENT) return env::ErrnoToStatus(errno, absl::StrCat("checking ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TemporaryName(const std::string& path) {
  unsigned char suffix[8];
  if (RAND_bytes(suffix, sizeof(suffix)) != 1) {
    return SslError(absl::StatusCode::kInternal, absl::StrCat("naming a temporary for ", path));
  }
  return absl::StrCat(path, ".tmp-",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(suffix), sizeof(suffix))));
}

absl::Status WriteAndSync(int fd, const OutputFile& file) {
  // The file was created 0600 so a key is never readable by others; now the final mode,
  // whatever the umask.
  if (::fchmod(fd, file.mode) != 0) return env::ErrnoToStatus(errno, absl::StrCat("chmod ", file.path));
  size_t done = 0;
  while (done < file.contents.size()) {
    const ssize_t n = ::write(fd, file.contents.data() + done, file.contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return env::ErrnoToStatus(errno, absl::StrCat("writing ", file.path));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return env::ErrnoToStatus(errno, absl::StrCat("fsync ", file.path));
  return absl::OkStatus();
}

// Writes `file` to a fresh temporary name beside it and returns that name; on error nothing is
// left behind.
absl::StatusOr<std::string> WriteTemporary(const OutputFile& file) {
  E2D_ASSIGN_OR_RETURN(const std::string temporary, TemporaryName(file.path));
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return env::ErrnoToStatus(errno, absl::StrCat("creating a temporary file for ", file.path));
  }
  absl::Status status = WriteAndSync(fd, file);
  if (::close(fd) != 0 && status.ok()) {
    status = env::ErrnoToStatus(errno, absl::StrCat("closing ", file.path));
  }
  if (!status.ok()) {
    ::unlink(temporary.c_str());
    return status;
  }
  return temporary;
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return env::ErrnoToStatus(errno, absl::StrCat("opening directory ", dir));
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return r == 0 ? absl::OkStatus() : env::ErrnoToStatus(err, absl::StrCat("fsync directory ", dir));
}

// Writes every file to a temporary name first; only when all of them are written and synced are
// they renamed into place, so an error leaves no partly written file (see GenCerts for the one
// exception: a failing rename).
absl::Status WriteFiles(const std::vector<OutputFile>& files) {
  std::vector<std::string> temporaries;
  auto remove_from = [&temporaries](size_t first) {
    for (size_t i = first; i < temporaries.size(); ++i) ::unlink(temporaries[i].c_str());
  };
  for (const OutputFile& file : files) {
    absl::StatusOr<std::string> temporary = WriteTemporary(file);
    if (!temporary.ok()) {
      remove_from(0);
      return temporary.status();
    }
    temporaries.push_back(*std::move(temporary));
  }
  std::set<std::string> dirs;
  for (size_t i = 0; i < files.size(); ++i) {
    if (::rename(temporaries[i].c_str(), files[i].path.c_str()) != 0) {
      const absl::Status status = env::ErrnoToStatus(errno, absl::StrCat("renaming into ", files[i].path));
      remove_from(i);
      return status;
    }
    dirs.insert(DirectoryOf(files[i].path));
  }
  for (const std::string& dir : dirs) E2D_RETURN_IF_ERROR(SyncDirectory(dir));
  return absl::OkStatus();
}

// Appends the PEM files of `key` (0600) and `cert` (0644) to `files`.
absl::Status AddPemFiles(EVP_PKEY* key, const std::string& key_path, X509* cert,
                         const std::string& cert_path, std::vector<OutputFile>* files) {
  E2D_ASSIGN_OR_RETURN(std::string key_pem, PrivateKeyPem(key));
  files->emplace_back(key_path, std::move(key_pem), kKeyMode);
  E2D_ASSIGN_OR_RETURN(std::string cert_pem, CertificatePem(cert));
  files->emplace_back(cert_path, std::move(cert_pem), kCertMode);
  return absl::OkStatus();
}

// ---- The CA and the leaves.

struct Ca {
  X509Ptr cert;
  PkeyPtr key;
};

absl::Status CheckCa(X509* cert, EVP_PKEY* key, const CertOptions& o) {
  if (X509_check_ca(cert) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(o.ca_cert, " is not a CA certificate (no basicConstraints CA:TRUE)"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(o.ca_cert, " has expired"));
  }
  if (X509_check_private_key(cert, key) != 1) {
    return SslError(absl::StatusCode::kFailedPrecondition,
                    absl::StrCat(o.ca_key, " does not match ", o.ca_cert));
  }
  return absl::OkStatus();
}

absl::StatusOr<Ca> LoadCa(const CertOptions& o) {
  E2D_ASSIGN_OR_RETURN(const std::string cert_pem, ReadPemFile(o.ca_cert));
  E2D_ASSIGN_OR_RETURN(X509Ptr cert, ParseCertificate(cert_pem, o.ca_cert));
  E2D_ASSIGN_OR_RETURN(std::string key_pem, ReadPemFile(o.ca_key));
  absl::StatusOr<PkeyPtr> key = ParsePrivateKey(key_pem, o.ca_key);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!key.ok()) return key.status();
  E2D_RETURN_IF_ERROR(CheckCa(cert.get(), key->get(), o));
  return Ca{std::move(cert), *std::move(key)};
}

// A leaf never outlives its CA: past the CA's notAfter it would fail verification anyway, and
// a later date only misleads whoever reads it.
bool ClampNotAfter(X509* cert, X509* ca) {
  if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(ca)) <= 0) return true;
  return X509_set1_notAfter(cert, X509_get0_notAfter(ca)) == 1;
}

absl::Status MakeLeaf(const LeafProfile& profile, const Ca& ca, const std::vector<San>& sans,
                      const CertOptions& o, std::vector<OutputFile>* files) {
  const std::string cert_path = JoinPath(o.output_dir, profile.cert_name);
  E2D_ASSIGN_OR_RETURN(PkeyPtr key, GenerateKey(o.key_type));
  E2D_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(profile.common_name, key.get(), o.validity));
  X509* c = cert.get();
  X509* issuer = ca.cert.get();
  // keyEncipherment only means something for RSA key transport (TLS 1.2 RSA key exchange).
  const char* key_usage = EVP_PKEY_is_a(key.get(), "RSA")
                              ? "critical,digitalSignature,keyEncipherment"
                              : "critical,digitalSignature";
  const bool ok = X509_set_issuer_name(c, X509_get_subject_name(issuer)) == 1 &&
                  ClampNotAfter(c, issuer) &&
                  AddExtension(c, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
                  AddExtension(c, issuer, NID_key_usage, key_usage) &&
                  AddExtension(c, issuer, NID_ext_key_usage, profile.extended_key_usage) &&
                  AddExtension(c, issuer, NID_subject_key_identifier, "hash") &&
                  AddExtension(c, issuer, NID_authority_key_identifier, "keyid:always") &&
                  AddSans(c, sans) && X509_sign(c, ca.key.get(), SigningDigest(ca.key.get())) > 0;
  if (!ok) return SslError(absl::StatusCode::kInternal, absl::StrCat("building ", cert_path));
  return AddPemFiles(key.get(), JoinPath(o.output_dir, profile.key_name), c, cert_path, files);
}

// ---- Describing certificates.

std::string GeneralNameText(const GENERAL_NAME* name) {
  int type = 0;
  const auto* value = static_cast<const ASN1_STRING*>(GENERAL_NAME_get0_value(name, &type));
  const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(value));
  const size_t size = static_cast<size_t>(ASN1_STRING_length(value));
  if (type == GEN_DNS) return absl::StrCat("DNS:", absl::CHexEscape(absl::string_view(data, size)));
  if (type != GEN_IPADD) return absl::StrCat("other:", type);
  char text[INET6_ADDRSTRLEN] = "?";
  if (size == sizeof(in_addr)) ::inet_ntop(AF_INET, data, text, sizeof(text));
  if (size == sizeof(in6_addr)) ::inet_ntop(AF_INET6, data, text, sizeof(text));
  return absl::StrCat("IP:", text);
}

std::string SanText(X509* cert) {
  NamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ERR_clear_error();
  if (names == nullptr) return "none";
  std::vector<std::string> texts;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    texts.push_back(GeneralNameText(sk_GENERAL_NAME_value(names.get(), i)));
  }
  return absl::StrJoin(texts, " ");
}

}  // namespace

std::string_view KeyTypeName(KeyType type) {
  const size_t index = static_cast<size_t>(type);
  E2D_CHECK(index < std::size(kKeyTypeNames), "KeyType %zu out of range", index);
  return kKeyTypeNames[index];
}

absl::StatusOr<KeyType> ParseKeyType(std::string_view name) {
  for (size_t i = 0; i < std::size(kKeyTypeNames); ++i) {
    if (name == kKeyTypeNames[i]) return static_cast<KeyType>(i);
  }
  std::vector<absl::string_view> names;
  for (std::string_view valid : kKeyTypeNames) names.push_back(ToAbsl(valid));
  return absl::InvalidArgumentError(absl::StrCat("unknown key type \"",
                                                 absl::CHexEscape(ToAbsl(name)),
                                                 "\"; valid: ", absl::StrJoin(names, ", ")));
}

absl::Status InitCa(const CaOptions& o) {
  E2D_RETURN_IF_ERROR(CheckValidity(o.validity));
  if (o.common_name.empty() || o.common_name.size() > kCommonNameBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CA common name must be 1 to ", kCommonNameBytesMax, " bytes, not ", o.common_name.size()));
  }
  if (o.cert_path == o.key_path) {
    return absl::InvalidArgumentError(absl::StrCat("CA certificate and key both at ", o.cert_path));
  }
  if (!o.overwrite) E2D_RETURN_IF_ERROR(RefuseExisting({o.key_path, o.cert_path}));
  E2D_ASSIGN_OR_RETURN(PkeyPtr key, GenerateKey(o.key_type));
  E2D_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(o.common_name, key.get(), o.validity));
  X509* c = cert.get();
  const bool ok = X509_set_issuer_name(c, X509_get_subject_name(c)) == 1 &&
                  AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE") &&
                  AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") &&
                  AddExtension(c, c, NID_subject_key_identifier, "hash") &&
                  X509_sign(c, key.get(), SigningDigest(key.get())) > 0;
  if (!ok) return SslError(absl::StatusCode::kInternal, absl::StrCat("building ", o.cert_path));
  std::vector<OutputFile> files;
  E2D_RETURN_IF_ERROR(AddPemFiles(key.get(), o.key_path, c, o.cert_path, &files));
  return WriteFiles(files);
}

absl::Status GenCerts(const CertOptions& o) {
  E2D_RETURN_IF_ERROR(CheckValidity(o.validity));
  E2D_ASSIGN_OR_RETURN(const std::vector<San> sans, CollectSans(o.hosts));
  if (!o.overwrite) {
    std::vector<std::string> paths;
    for (const LeafProfile& profile : kLeafProfiles) {
      paths.push_back(JoinPath(o.output_dir, profile.key_name));
      paths.push_back(JoinPath(o.output_dir, profile.cert_name));
    }
    E2D_RETURN_IF_ERROR(RefuseExisting(paths));
  }
  E2D_ASSIGN_OR_RETURN(const Ca ca, LoadCa(o));
  std::vector<OutputFile> files;
  for (const LeafProfile& profile : kLeafProfiles) {
    E2D_RETURN_IF_ERROR(MakeLeaf(profile, ca, sans, o, &files));
  }
  return WriteFiles(files);
}

std::vector<std::string> DetectHostAddresses() {
  std::vector<std::string> hosts;
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && IsDnsName(name)) hosts.emplace_back(name);
  ifaddrs* addresses = nullptr;
  if (::getifaddrs(&addresses) == 0) {
    for (const ifaddrs* a = addresses; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
      if ((a->ifa_flags & IFF_LOOPBACK) != 0 || (a->ifa_flags & IFF_UP) == 0) continue;
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      char text[INET_ADDRSTRLEN];
      if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) {
        hosts.emplace_back(text);
      }
    }
    ::freeifaddrs(addresses);
  }
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  return hosts;
}

absl::StatusOr<std::string> CertificateSummary(const std::string& pem_path) {
  E2D_ASSIGN_OR_RETURN(const std::string pem, ReadPemFile(pem_path));
  E2D_ASSIGN_OR_RETURN(const X509Ptr cert, ParseCertificate(pem, pem_path));
  BioPtr subject(BIO_new(BIO_s_mem()));
  BioPtr not_after(BIO_new(BIO_s_mem()));
  if (subject == nullptr || not_after == nullptr ||
      X509_NAME_print_ex(subject.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253) <
          0 ||
      ASN1_TIME_print_ex(not_after.get(), X509_get0_notAfter(cert.get()), ASN1_DTFLGS_ISO8601) !=
          1) {
    return SslError(absl::StatusCode::kInvalidArgument, absl::StrCat("describing ", pem_path));
  }
  char* subject_text = nullptr;
  const long subject_size = BIO_get_mem_data(subject.get(), &subject_text);
  char* not_after_text = nullptr;
  const long not_after_size = BIO_get_mem_data(not_after.get(), &not_after_text);
  return absl::StrCat("subject=", absl::string_view(subject_text, subject_size),
                      ", SANs=", SanText(cert.get()),
                      ", not_after=", absl::string_view(not_after_text, not_after_size));
}

}  // namespace e2d::node
