// Copyright e2d authors.
//
// lincheck: checks one Jepsen etcd / cas-register log for linearizability.
//
//   bazel run //sim:lincheck -- [--steps_max=N] [--memo_bytes_max=N] FILE
//
// Prints a short summary and, as its last line, `linearizable=true` or `linearizable=false`
// (or `linearizable=unknown` when the search hit a bound). Exit code: 0 linearizable, 1 not
// linearizable, 2 usage / unreadable or malformed file (message names the file and line),
// 3 gave up (a bound was hit; raise it to get a verdict).

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sim/lincheck.h"

namespace {

namespace lc = e2d::sim::lincheck;

int Usage(const std::string& why) {
  std::fprintf(stderr,
               "lincheck: %s\nusage: lincheck [--steps_max=N] [--memo_bytes_max=N] FILE\n",
               why.c_str());
  return 2;
}

bool ParseFlag(const std::string& arg, const char* name, uint64_t* out, std::string* error) {
  const std::string prefix = absl::StrCat("--", name, "=");
  if (!absl::StartsWith(arg, prefix)) return false;
  if (!absl::SimpleAtoi(arg.substr(prefix.size()), out) || *out == 0) {
    *error = absl::StrCat("bad value in ", arg, " (expected a positive integer)");
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  lc::CheckOptions options;
  std::string file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string error;
    if (ParseFlag(arg, "steps_max", &options.steps_max, &error) ||
        ParseFlag(arg, "memo_bytes_max", &options.memo_bytes_max, &error)) {
      if (!error.empty()) return Usage(error);
    } else if (absl::StartsWith(arg, "--")) {
      return Usage(absl::StrCat("unknown flag ", arg));
    } else if (!file.empty()) {
      return Usage("exactly one FILE expected");
    } else {
      file = arg;
    }
  }
  if (file.empty()) return Usage("no FILE given");

  absl::StatusOr<lc::History> history = lc::ParseJepsenLogFile(file);
  if (!history.ok()) {
    std::fprintf(stderr, "lincheck: %s\n", std::string(history.status().message()).c_str());
    return 2;
  }
  const lc::CheckResult r = lc::Check(*history, options);
  std::printf("file: %s\n", file.c_str());
  std::printf("operations: %llu checked (%llu of unknown outcome), %llu dropped (:fail, "
              "unknown reads), %llu key(s)\n",
              static_cast<unsigned long long>(r.operations),
              static_cast<unsigned long long>(r.unknown_operations),
              static_cast<unsigned long long>(r.dropped_operations),
              static_cast<unsigned long long>(r.keys));
  std::printf("search: %llu states, %llu steps\n", static_cast<unsigned long long>(r.states),
              static_cast<unsigned long long>(r.steps));
  std::printf("verdict: %s\n", std::string(lc::VerdictName(r.verdict)).c_str());
  if (!r.explanation.empty()) std::printf("why: %s\n", r.explanation.c_str());
  switch (r.verdict) {
    case lc::Verdict::kLinearizable:
      std::printf("linearizable=true\n");
      return 0;
    case lc::Verdict::kNotLinearizable:
      std::printf("linearizable=false\n");
      return 1;
    case lc::Verdict::kUnknown:
      std::printf("linearizable=unknown\n");
      return 3;
  }
  return 2;
}
