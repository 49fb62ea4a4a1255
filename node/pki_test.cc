// Copyright e2d authors.

#include "node/pki.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace e2d::node {
namespace {

template <auto kFree>
struct Free {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using ExtendedKeyUsagePtr = std::unique_ptr<EXTENDED_KEY_USAGE, Free<EXTENDED_KEY_USAGE_free>>;

bool Contains(const absl::Status& status, std::string_view text) {
  return absl::StrContains(status.message(), absl::string_view(text.data(), text.size()));
}

// A fresh, empty directory under TEST_TMPDIR for each test.
std::string FreshDir(std::string_view name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::filesystem::path dir =
      std::filesystem::path(root != nullptr ? root : "/tmp") / std::string(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::set<std::string> DirEntries(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

X509Ptr ReadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return cert;
}

PkeyPtr ReadKey(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  PkeyPtr key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return key;
}

unsigned FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Whether `leaf` chains to `ca` for `purpose` (X509_PURPOSE_SSL_SERVER or _CLIENT).
bool Verifies(X509* ca, X509* leaf, int purpose) {
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  const bool ok = store != nullptr && ctx != nullptr && X509_STORE_add_cert(store.get(), ca) == 1 &&
                  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) == 1 &&
                  X509_STORE_CTX_set_purpose(ctx.get(), purpose) == 1 &&
                  X509_verify_cert(ctx.get()) == 1;
  ERR_clear_error();
  return ok;
}

std::set<std::string> Sans(X509* cert) {
  std::set<std::string> out;
  NamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.ia5));
    const int size = ASN1_STRING_length(name->d.ia5);
    char text[INET6_ADDRSTRLEN] = "?";
    if (name->type == GEN_DNS) out.insert(absl::StrCat("DNS:", absl::string_view(data, size)));
    if (name->type == GEN_IPADD) {
      ::inet_ntop(size == 4 ? AF_INET : AF_INET6, data, text, sizeof(text));
      out.insert(absl::StrCat("IP:", text));
    }
  }
  return out;
}

// The extendedKeyUsage OIDs of `cert` as short names ("serverAuth", "clientAuth").
std::set<std::string> ExtendedKeyUsages(X509* cert) {
  std::set<std::string> out;
  ExtendedKeyUsagePtr usages(static_cast<EXTENDED_KEY_USAGE*>(
      X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr)));
  for (int i = 0; usages != nullptr && i < sk_ASN1_OBJECT_num(usages.get()); ++i) {
    out.insert(OBJ_nid2sn(OBJ_obj2nid(sk_ASN1_OBJECT_value(usages.get(), i))));
  }
  return out;
}

bool IsCritical(X509* cert, int nid) {
  const int index = X509_get_ext_by_NID(cert, nid, -1);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == 1;
}

struct Pki {
  std::string dir;
  CaOptions ca;
  CertOptions certs;
};

Pki MakeOptions(std::string_view name, KeyType key_type = KeyType::kEcdsaP256) {
  Pki pki;
  pki.dir = FreshDir(name);
  pki.ca.cert_path = pki.dir + "/ca.crt";
  pki.ca.key_path = pki.dir + "/ca.key";
  pki.ca.key_type = key_type;
  pki.certs.ca_cert = pki.ca.cert_path;
  pki.certs.ca_key = pki.ca.key_path;
  pki.certs.output_dir = pki.dir;
  pki.certs.hosts = {"10.0.2.15", "node1.example"};
  pki.certs.key_type = key_type;
  return pki;
}

// The whole flow for one key type: every property the brief asks of the CA and the leaves.
void CheckFullPki(KeyType key_type) {
  SCOPED_TRACE(KeyTypeName(key_type));
  Pki pki = MakeOptions(absl::StrCat("full-", static_cast<int>(key_type)), key_type);
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr ca = ReadCert(pki.ca.cert_path);
  ASSERT_NE(ca, nullptr);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_TRUE(IsCritical(ca.get(), NID_basic_constraints));
  EXPECT_TRUE(IsCritical(ca.get(), NID_key_usage));
  EXPECT_EQ(X509_get_key_usage(ca.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(ca.get()), nullptr);
  EXPECT_EQ(FileMode(pki.ca.key_path), 0600u);
  EXPECT_EQ(FileMode(pki.ca.cert_path), 0644u);

  const std::set<std::string> expected_sans = {"IP:10.0.2.15", "DNS:node1.example", "IP:127.0.0.1",
                                               "IP:::1", "DNS:localhost"};
  struct Leaf {
    std::string_view cert, key;
    bool server, client;
  };
  for (const Leaf& leaf :
       {Leaf{kServerCert, kServerKey, true, false}, Leaf{kPeerCert, kPeerKey, true, true},
        Leaf{kClientCert, kClientKey, false, true}}) {
    SCOPED_TRACE(leaf.cert);
    const std::string cert_path = pki.dir + "/" + std::string(leaf.cert);
    const std::string key_path = pki.dir + "/" + std::string(leaf.key);
    X509Ptr cert = ReadCert(cert_path);
    PkeyPtr key = ReadKey(key_path);
    ASSERT_NE(cert, nullptr);
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
    EXPECT_EQ(Verifies(ca.get(), cert.get(), X509_PURPOSE_SSL_SERVER), leaf.server);
    EXPECT_EQ(Verifies(ca.get(), cert.get(), X509_PURPOSE_SSL_CLIENT), leaf.client);
    std::set<std::string> ekus;
    if (leaf.server) ekus.insert("serverAuth");
    if (leaf.client) ekus.insert("clientAuth");
    EXPECT_EQ(ExtendedKeyUsages(cert.get()), ekus);
    EXPECT_EQ(Sans(cert.get()), expected_sans);
    EXPECT_EQ(X509_check_host(cert.get(), "node1.example", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(cert.get(), "10.0.2.15", 0), 1);
    EXPECT_EQ(X509_check_ca(cert.get()), 0);
    EXPECT_TRUE(IsCritical(cert.get(), NID_basic_constraints));
    EXPECT_TRUE(IsCritical(cert.get(), NID_key_usage));
    uint32_t key_usage = KU_DIGITAL_SIGNATURE;
    if (key_type == KeyType::kRsa2048 || key_type == KeyType::kRsa4096) {
      key_usage |= KU_KEY_ENCIPHERMENT;
    }
    EXPECT_EQ(X509_get_key_usage(cert.get()), key_usage);
    EXPECT_NE(X509_get0_authority_key_id(cert.get()), nullptr);
    EXPECT_LE(ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(ca.get())), 0);
    EXPECT_EQ(FileMode(key_path), 0600u);
    EXPECT_EQ(FileMode(cert_path), 0644u);
  }
  // Nothing else, in particular no temporary file, is left in the directory.
  EXPECT_EQ(DirEntries(pki.dir),
            (std::set<std::string>{"ca.crt", "ca.key", "server.crt", "server.key", "peer.crt",
                                   "peer.key", "client.crt", "client.key"}));
}

TEST(PkiTest, EcdsaP256IsTheDefaultAndWorks) {
  EXPECT_EQ(CaOptions().key_type, KeyType::kEcdsaP256);
  EXPECT_EQ(CertOptions().key_type, KeyType::kEcdsaP256);
  CheckFullPki(KeyType::kEcdsaP256);
}

TEST(PkiTest, EcdsaP384Works) { CheckFullPki(KeyType::kEcdsaP384); }
TEST(PkiTest, Rsa2048Works) { CheckFullPki(KeyType::kRsa2048); }
TEST(PkiTest, Rsa4096Works) { CheckFullPki(KeyType::kRsa4096); }
TEST(PkiTest, Ed25519Works) { CheckFullPki(KeyType::kEd25519); }

TEST(PkiTest, LeafKeyTypeMayDifferFromTheCas) {
  Pki pki = MakeOptions("mixed", KeyType::kEd25519);
  pki.certs.key_type = KeyType::kRsa2048;
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr ca = ReadCert(pki.ca.cert_path);
  X509Ptr server = ReadCert(pki.dir + "/server.crt");
  EXPECT_TRUE(Verifies(ca.get(), server.get(), X509_PURPOSE_SSL_SERVER));
}

TEST(PkiTest, SansAreDeduplicated) {
  Pki pki = MakeOptions("dedup");
  pki.certs.hosts = {"LOCALHOST",     "127.0.0.1",   "0:0::1",        "node1.example",
                     "Node1.Example", "2001:db8::7", "2001:0db8:0::7"};
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr peer = ReadCert(pki.dir + "/peer.crt");
  EXPECT_EQ(Sans(peer.get()), (std::set<std::string>{"DNS:LOCALHOST", "IP:127.0.0.1", "IP:::1",
                                                     "DNS:node1.example", "IP:2001:db8::7"}));
}

TEST(PkiTest, LeafNeverOutlivesTheCa) {
  Pki pki = MakeOptions("clamp");
  pki.ca.validity = absl::Hours(24);
  pki.certs.validity = absl::Hours(24 * 365 * 5);
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr ca = ReadCert(pki.ca.cert_path);
  X509Ptr client = ReadCert(pki.dir + "/client.crt");
  EXPECT_EQ(ASN1_TIME_compare(X509_get0_notAfter(client.get()), X509_get0_notAfter(ca.get())), 0);
}

TEST(PkiTest, ExistingFilesAreRefusedUnlessOverwrite) {
  Pki pki = MakeOptions("overwrite");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  const absl::Status again = InitCa(pki.ca);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_TRUE(Contains(again, pki.ca.key_path)) << again;
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr before = ReadCert(pki.dir + "/server.crt");
  const absl::Status refused = GenCerts(pki.certs);
  EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists) << refused;
  EXPECT_TRUE(Contains(refused, "server.key")) << refused;

  pki.certs.overwrite = true;
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  X509Ptr after = ReadCert(pki.dir + "/server.crt");
  EXPECT_NE(
      ASN1_INTEGER_cmp(X509_get0_serialNumber(before.get()), X509_get0_serialNumber(after.get())),
      0);
  pki.ca.overwrite = true;
  EXPECT_TRUE(InitCa(pki.ca).ok());
}

TEST(PkiTest, OneExistingOutputLeavesTheOthersUnwritten) {
  Pki pki = MakeOptions("partial");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  WriteText(pki.dir + "/client.crt", "mine");
  const absl::Status status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_TRUE(Contains(status, "client.crt")) << status;
  EXPECT_EQ(DirEntries(pki.dir), (std::set<std::string>{"ca.crt", "ca.key", "client.crt"}));
}

TEST(PkiTest, KeyFromAnotherCaIsFailedPrecondition) {
  Pki first = MakeOptions("first-ca");
  Pki second = MakeOptions("second-ca");
  ASSERT_TRUE(InitCa(first.ca).ok());
  ASSERT_TRUE(InitCa(second.ca).ok());
  first.certs.ca_key = second.ca.key_path;
  const absl::Status status = GenCerts(first.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(
      Contains(status, absl::StrCat(second.ca.key_path, " does not match ", first.ca.cert_path)))
      << status;
  EXPECT_EQ(DirEntries(first.dir), (std::set<std::string>{"ca.crt", "ca.key"}));
}

TEST(PkiTest, GarbageOrMissingCaFilesAreClearErrors) {
  Pki pki = MakeOptions("garbage");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  const std::string key_pem = [&] {
    std::ifstream in(pki.ca.key_path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  WriteText(pki.ca.cert_path, "this is not a certificate\n");
  absl::Status status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(Contains(status, pki.ca.cert_path)) << status;
  EXPECT_TRUE(Contains(status, "no PEM certificate")) << status;

  WriteText(pki.ca.cert_path, key_pem);  // A key where the certificate belongs.
  status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  pki.certs.ca_cert = pki.dir + "/missing.crt";
  status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(Contains(status, "missing.crt")) << status;
  EXPECT_EQ(DirEntries(pki.dir), (std::set<std::string>{"ca.crt", "ca.key"}));
}

TEST(PkiTest, GarbageCaKeyIsAClearError) {
  Pki pki = MakeOptions("garbage-key");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  WriteText(pki.ca.key_path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  const absl::Status status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(Contains(status, pki.ca.key_path)) << status;
}

TEST(PkiTest, LeafCertificateIsNotAcceptedAsCa) {
  Pki pki = MakeOptions("leaf-as-ca");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  CertOptions o = pki.certs;
  o.ca_cert = pki.dir + "/server.crt";
  o.ca_key = pki.dir + "/server.key";
  o.output_dir = FreshDir("leaf-as-ca-out");
  const absl::Status status = GenCerts(o);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(Contains(status, "not a CA")) << status;
}

TEST(PkiTest, BadOptionsAreInvalidArgument) {
  Pki pki = MakeOptions("bad-options");
  CaOptions ca = pki.ca;
  ca.validity = absl::ZeroDuration();
  EXPECT_EQ(InitCa(ca).code(), absl::StatusCode::kInvalidArgument);
  ca = pki.ca;
  ca.common_name = "";
  EXPECT_EQ(InitCa(ca).code(), absl::StatusCode::kInvalidArgument);
  ca = pki.ca;
  ca.key_path = ca.cert_path;
  EXPECT_EQ(InitCa(ca).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(DirEntries(pki.dir).empty());

  ASSERT_TRUE(InitCa(pki.ca).ok());
  for (const std::string& host :
       {std::string("has space"), std::string(""), std::string("a,b"), std::string("fe80::1%eth0"),
        std::string("1.2.3.4\0x", 9), std::string(300, 'a')}) {
    CertOptions o = pki.certs;
    o.hosts = {host};
    const absl::Status status = GenCerts(o);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  }
  CertOptions o = pki.certs;
  o.validity = -absl::Hours(1);
  EXPECT_EQ(GenCerts(o).code(), absl::StatusCode::kInvalidArgument);
  o.validity = absl::InfiniteDuration();
  EXPECT_EQ(GenCerts(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DirEntries(pki.dir), (std::set<std::string>{"ca.crt", "ca.key"}));
}

TEST(PkiTest, MissingOutputDirectoryIsNotFound) {
  Pki pki = MakeOptions("no-output-dir");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  pki.certs.output_dir = pki.dir + "/absent";
  const absl::Status status = GenCerts(pki.certs);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(Contains(status, "absent/server.key")) << status;
  EXPECT_EQ(DirEntries(pki.dir), (std::set<std::string>{"ca.crt", "ca.key"}));
}

TEST(PkiTest, ParseKeyTypeRoundTripsAndListsValidNames) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa2048,
                       KeyType::kRsa4096, KeyType::kEd25519}) {
    absl::StatusOr<KeyType> parsed = ParseKeyType(KeyTypeName(type));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(*ParseKeyType("ecdsa-p256"), KeyType::kEcdsaP256);
  for (std::string_view bad : {"", "rsa", "RSA-2048", "ecdsa-p256 ", "dsa-1024"}) {
    const absl::Status status = ParseKeyType(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(Contains(status, "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-4096, ed25519")) << status;
  }
}

TEST(PkiTest, DetectHostAddressesIsSortedWithoutLoopback) {
  const std::vector<std::string> hosts = DetectHostAddresses();
  EXPECT_TRUE(std::is_sorted(hosts.begin(), hosts.end()));
  for (const std::string& host : hosts) EXPECT_FALSE(absl::StartsWith(host, "127.")) << host;
}

TEST(PkiTest, CertificateSummaryIsOneLine) {
  Pki pki = MakeOptions("summary");
  ASSERT_TRUE(InitCa(pki.ca).ok());
  ASSERT_TRUE(GenCerts(pki.certs).ok());
  absl::StatusOr<std::string> summary = CertificateSummary(pki.dir + "/server.crt");
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(absl::StartsWith(*summary,
                               "subject=CN=e2d server, SANs=IP:10.0.2.15 "
                               "DNS:node1.example IP:127.0.0.1 IP:::1 DNS:localhost, "
                               "not_after=20"))
      << *summary;
  EXPECT_TRUE(absl::EndsWith(*summary, "Z")) << *summary;
  EXPECT_EQ(summary->find('\n'), std::string::npos);
  EXPECT_EQ(CertificateSummary(pki.ca.key_path).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace e2d::node
