// Copyright e2d authors.
//
// Histogram: a Prometheus histogram of durations with fixed exponential buckets (1 ms doubling
// to about 8 s, as etcd's disk and apply histograms), rendered in the text exposition format.
// Fixed memory; single-threaded like the Node that owns it.

#ifndef E2D_NODE_METRICS_H_
#define E2D_NODE_METRICS_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace e2d::node {

class Histogram {
 public:
  static constexpr size_t kBuckets = 14;  // upper bounds 0.001 s * 2^i, i = 0..13

  static double UpperBound(size_t i) { return 0.001 * static_cast<double>(1u << i); }

  void Observe(absl::Duration d) {
    const double seconds = absl::ToDoubleSeconds(d);
    sum_seconds_ += seconds;
    ++count_;
    for (size_t i = 0; i < kBuckets; ++i) {
      if (seconds <= UpperBound(i)) {
        ++buckets_[i];
        return;
      }
    }
  }

  uint64_t count() const { return count_; }

  // Appends HELP, TYPE, the cumulative buckets, +Inf, _sum and _count lines.
  void Render(const std::string& name, const std::string& help, std::string* out) const {
    absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      cumulative += buckets_[i];
      absl::StrAppend(out, name, "_bucket{le=\"", UpperBound(i), "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", count_, "\n", name, "_sum ",
                    sum_seconds_, "\n", name, "_count ", count_, "\n");
  }

 private:
  std::array<uint64_t, kBuckets> buckets_{};  // non-cumulative; the +Inf overflow is implied
  double sum_seconds_ = 0;
  uint64_t count_ = 0;
};

}  // namespace e2d::node

#endif  // E2D_NODE_METRICS_H_
