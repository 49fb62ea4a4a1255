// Copyright e2d authors.
//
// The cluster's private PKI: a self-signed CA, and from it the three leaf certificates a node
// uses (server: clients reach it; peer: members reach each other, both ways; client: etcdctl and
// other tools). Files are PEM; private keys are PKCS#8 and mode 0600, certificates mode 0644.
// Every write is whole or absent: each file goes to a temporary name, is synced, then renamed.
// Blocking file I/O and the OS clock and random source: for the `e2d pki` command line, never
// for the simulated node.

#ifndef E2D_NODE_PKI_H_
#define E2D_NODE_PKI_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace e2d::node {

// Key algorithm of a generated key pair. A CA key of this type signs with SHA-256 (P-256, RSA),
// SHA-384 (P-384), or without a separate digest (Ed25519).
enum class KeyType { kEcdsaP256, kEcdsaP384, kRsa2048, kRsa4096, kEd25519 };

// The command-line name of `type`: "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096" or
// "ed25519".
std::string_view KeyTypeName(KeyType type);

// Inverse of KeyTypeName (exact, lower case). InvalidArgument naming `name` and listing every
// valid name otherwise. "ecdsa-p256" is the default the options below use.
absl::StatusOr<KeyType> ParseKeyType(std::string_view name);

// Longest validity accepted for any certificate; far beyond any sensible CA lifetime, it keeps
// notAfter inside what X.509 time fields can represent.
inline constexpr absl::Duration kValidityMax = absl::Hours(24 * 365 * 100);

struct CaOptions {
  std::string cert_path = "ca.crt";
  std::string key_path = "ca.key";
  KeyType key_type = KeyType::kEcdsaP256;
  absl::Duration validity = absl::Hours(24 * 365 * 10);
  std::string common_name = "e2d-ca";
  bool overwrite = false;  // Replace existing files instead of refusing.
};

// Creates a new self-signed CA: a fresh key pair written to `key_path` (mode 0600) and its
// certificate to `cert_path` (mode 0644). The certificate has subject CN=`common_name`, a random
// 128-bit serial, notBefore 5 minutes ago (tolerates clock skew between machines), notAfter
// `validity` from now, and the extensions basicConstraints critical CA:TRUE, keyUsage critical
// keyCertSign+cRLSign, and subjectKeyIdentifier.
// Errors: AlreadyExists naming the file if either file exists and !overwrite (neither file is
// touched then); InvalidArgument for an empty common name, equal paths, or validity not in
// (0, kValidityMax]; NotFound / PermissionDenied / Internal naming the file when it cannot be
// written; Internal with OpenSSL's error text if key generation or signing fails. On any error no
// partly written file is left behind.
absl::Status InitCa(const CaOptions& o);

struct CertOptions {
  std::string ca_cert = "ca.crt";
  std::string ca_key = "ca.key";
  // Names and addresses the node is reached at. Each entry that parses as an IPv4 or IPv6 address
  // becomes an IP SAN, any other a DNS SAN (letters, digits, '.', '-', '_', '*'; at most 253).
  std::vector<std::string> hosts;
  std::string output_dir = ".";  // Must exist.
  KeyType key_type = KeyType::kEcdsaP256;
  absl::Duration validity = absl::Hours(24 * 365 * 2);
  bool overwrite = false;  // Replace existing files instead of refusing.
};

// The files GenCerts writes into CertOptions::output_dir, certificate then key.
inline constexpr std::string_view kServerCert = "server.crt", kServerKey = "server.key";
inline constexpr std::string_view kPeerCert = "peer.crt", kPeerKey = "peer.key";
inline constexpr std::string_view kClientCert = "client.crt", kClientKey = "client.key";

// Signs three leaf certificates with the CA at `ca_cert` / `ca_key`, each with its own fresh key
// pair of `key_type`, into `output_dir`:
//   server.crt/.key  CN "e2d server"  extendedKeyUsage serverAuth
//   peer.crt/.key    CN "e2d peer"    extendedKeyUsage serverAuth, clientAuth
//   client.crt/.key  CN "root"        extendedKeyUsage clientAuth (etcd maps a client CN to a user)
// Every leaf has basicConstraints critical CA:FALSE, keyUsage critical digitalSignature (plus
// keyEncipherment for RSA keys), subject and authority key identifiers, and the SANs: `hosts`
// followed by 127.0.0.1, ::1 and localhost, without duplicates (addresses compared as bytes,
// names without regard to case; the first spelling is kept). Validity as for InitCa, except
// that notAfter never passes the CA's notAfter.
// Errors, all naming the file: NotFound / PermissionDenied if a CA file cannot be read;
// InvalidArgument if it holds no PEM certificate / key (an encrypted key counts: no passphrase
// is asked for); FailedPrecondition if the certificate is not a CA, has expired, or "<ca_key>
// does not match <ca_cert>"; InvalidArgument for a malformed host or a validity not in
// (0, kValidityMax]; AlreadyExists if any output file exists and !overwrite. On any error no
// output file is created or changed, except that an I/O error while renaming the finished files
// into place can leave some of them replaced (each one whole).
absl::Status GenCerts(const CertOptions& o);

// This machine's host name (from gethostname; left out unless it is a valid DNS name, see
// CertOptions::hosts) and the addresses of its up, non-loopback IPv4 interfaces (from
// getifaddrs), deduplicated and sorted as strings. For CertOptions::hosts. Empty
// if the OS reports neither; never fails otherwise.
std::vector<std::string> DetectHostAddresses();

// One line describing the PEM certificate at `pem_path`:
//   subject=CN=e2d server, SANs=IP:10.0.2.15 DNS:localhost, not_after=2027-01-02 03:04:05Z
// (subject in RFC 2253 form, SANs in certificate order, "none" without a SAN extension).
// NotFound / PermissionDenied / InvalidArgument naming the file as for GenCerts.
absl::StatusOr<std::string> CertificateSummary(const std::string& pem_path);

}  // namespace e2d::node

#endif  // E2D_NODE_PKI_H_
