// Copyright e2d authors.

#include "sim/watch_checker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "env/check.h"
#include "kv/mvcc.h"

namespace e2d::sim {
namespace {

// A key or value for a message: C-escaped, cut after 40 bytes.
std::string Quote(const std::string& s) {
  constexpr size_t kShownMax = 40;
  const bool cut = s.size() > kShownMax;
  return absl::StrCat("\"", absl::CHexEscape(cut ? s.substr(0, kShownMax) : s),
                      cut ? "\"..." : "\"");
}

const char* TypeName(const kvpb::Event& e) {
  switch (e.type()) {
    case kvpb::Event::PUT:
      return "PUT";
    case kvpb::Event::DELETE:
      return "DELETE";
    default:
      return "UNKNOWN";
  }
}

std::string DescribeKv(const kvpb::KeyValue& kv) {
  return absl::StrCat(Quote(kv.key()), "=", Quote(kv.value()), " (mod ", kv.mod_revision(),
                      ", create ", kv.create_revision(), ", version ", kv.version(), ", lease ",
                      kv.lease(), ")");
}

std::string Describe(const kvpb::Event& e) {
  if (e.type() == kvpb::Event::PUT) return absl::StrCat("PUT ", DescribeKv(e.kv()));
  return absl::StrCat(TypeName(e), " ", Quote(e.kv().key()), " (mod ", e.kv().mod_revision(), ")");
}

bool KvEqual(const kvpb::KeyValue& a, const kvpb::KeyValue& b) {
  return a.key() == b.key() && a.value() == b.value() &&
         a.create_revision() == b.create_revision() && a.mod_revision() == b.mod_revision() &&
         a.version() == b.version() && a.lease() == b.lease();
}

// What differs between `got` and `want`, field by field.
std::string KvDiff(const kvpb::KeyValue& got, const kvpb::KeyValue& want) {
  std::vector<std::string> d;
  if (got.key() != want.key()) {
    d.push_back(absl::StrCat("key ", Quote(got.key()), " != ", Quote(want.key())));
  }
  if (got.value() != want.value()) {
    d.push_back(absl::StrCat("value ", Quote(got.value()), " != ", Quote(want.value())));
  }
  auto field = [&d](const char* name, int64_t g, int64_t w) {
    if (g != w) d.push_back(absl::StrCat(name, " ", g, " != ", w));
  };
  field("create_revision", got.create_revision(), want.create_revision());
  field("mod_revision", got.mod_revision(), want.mod_revision());
  field("version", got.version(), want.version());
  field("lease", got.lease(), want.lease());
  return absl::StrJoin(d, ", ");
}

// Equal as events, prev_kv aside.
bool SameEvent(const kvpb::Event& a, const kvpb::Event& b) {
  return a.type() == b.type() && KvEqual(a.kv(), b.kv());
}

// Empty if a put's kv has the shape every put has, else what is wrong with it.
std::string PutShape(const kvpb::KeyValue& kv) {
  if (kv.version() < 1) return absl::StrCat("version ", kv.version(), " < 1");
  if (kv.create_revision() < 1 || kv.create_revision() > kv.mod_revision()) {
    return absl::StrCat("create_revision ", kv.create_revision(), " outside [1, mod_revision ",
                        kv.mod_revision(), "]");
  }
  if (kv.version() == 1 && kv.create_revision() != kv.mod_revision()) {
    return absl::StrCat("version 1 (a create) but create_revision ", kv.create_revision(),
                        " != mod_revision ", kv.mod_revision());
  }
  if (kv.version() != 1 && kv.create_revision() == kv.mod_revision()) {
    return absl::StrCat("create_revision == mod_revision (a create) but version ", kv.version());
  }
  return "";
}

absl::Status Violation(absl::string_view tag, int64_t watcher, int64_t revision,
                       absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("[", tag, "] watcher ", watcher, " revision ", revision, ": ", what));
}

}  // namespace

WatchChecker::WatchChecker(WatchCheckerOptions options)
    : options_(options), ref_last_(options.initial_revision) {}

// ---- the reference ----

void WatchChecker::OnCommit(int64_t revision, const std::vector<kvpb::Event>& events) {
  if (!reference_error_.ok()) return;
  std::string wrong;
  if (revision != ref_last_ + 1) {
    wrong = absl::StrCat("revision ", revision, " follows revision ", ref_last_,
                         " (every revision must come once, in order)");
  }
  for (size_t i = 0; i < events.size() && wrong.empty(); ++i) {
    const kvpb::Event& e = events[i];
    if (e.kv().mod_revision() != revision) {
      wrong = absl::StrCat("revision ", revision, " holds ", Describe(e));
    } else if (e.type() != kvpb::Event::PUT && e.type() != kvpb::Event::DELETE) {
      wrong = absl::StrCat("revision ", revision, " holds an event of unknown type ", e.type());
    } else if (e.type() == kvpb::Event::PUT && !PutShape(e.kv()).empty()) {
      wrong = absl::StrCat("revision ", revision, " holds ", Describe(e), ": ", PutShape(e.kv()));
    }
  }
  if (!wrong.empty()) {
    reference_error_ = absl::InternalError("reference history: " + wrong);
    if (first_violation_.ok()) first_violation_ = reference_error_;
    return;
  }
  reference_.push_back(events);
  ref_last_ = revision;
  const std::vector<int64_t> ids(waiting_.begin(), waiting_.end());
  for (int64_t id : ids) {
    Drain(id, watchers_.at(id));
    EraseIfDone(id);
  }
}

void WatchChecker::OnCompact(int64_t revision) {
  compact_revision_ = std::max(compact_revision_, revision);
}

const std::vector<kvpb::Event>& WatchChecker::Reference(int64_t revision) const {
  if (revision <= options_.initial_revision || revision > ref_last_) return empty_;
  return reference_[static_cast<size_t>(revision - options_.initial_revision - 1)];
}

std::vector<const kvpb::Event*> WatchChecker::Matching(const kv::WatchRequest& request,
                                                       int64_t revision) const {
  std::vector<const kvpb::Event*> out;
  for (const kvpb::Event& e : Reference(revision)) {
    if (!kv::KeyInRange(e.kv().key(), request.key, request.range_end)) continue;
    if (e.type() == kvpb::Event::PUT && request.no_put) continue;
    if (e.type() == kvpb::Event::DELETE && request.no_delete) continue;
    out.push_back(&e);
  }
  return out;
}

bool WatchChecker::FirstMissing(const Watcher& w, int64_t before, Missing* out) const {
  for (int64_t rev = std::max(w.next_rev, options_.initial_revision + 1); rev < before; ++rev) {
    const std::vector<const kvpb::Event*> m = Matching(w.request, rev);
    const size_t from = rev == w.next_rev ? w.next_pos : 0;
    if (from < m.size()) {
      *out = Missing{rev, from, m.size(), m[from]};
      return true;
    }
  }
  return false;
}

// ---- watchers ----

void WatchChecker::OnWatchStart(int64_t watcher, const kv::WatchRequest& request,
                                int64_t current_revision) {
  E2D_CHECK(watchers_.find(watcher) == watchers_.end(), "watch checker: watcher %lld started twice",
            static_cast<long long>(watcher));
  Watcher w;
  w.request = request;
  w.start = request.start_revision > 0 ? request.start_revision : current_revision + 1;
  w.next_rev = w.start;
  watchers_.emplace(watcher, std::move(w));
}

void WatchChecker::OnWatchEnd(int64_t watcher) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return;
  it->second.ended_by_caller = true;
  EraseIfDone(watcher);
}

void WatchChecker::EraseIfDone(int64_t id) {
  auto it = watchers_.find(id);
  if (it != watchers_.end() && it->second.ended_by_caller && it->second.waiting.empty()) {
    watchers_.erase(it);
  }
}

absl::Status WatchChecker::OnResponse(int64_t watcher, const kv::WatchResponse& r) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("watch checker: response for watcher ", watcher,
                                                   ", which was never started or has ended"));
  }
  Watcher& w = it->second;
  if (!reference_error_.ok()) return reference_error_;
  if (!w.violation.ok()) return w.violation;
  if (w.ended_by_caller) {
    return absl::InvalidArgumentError(
        absl::StrCat("watch checker: response for watcher ", watcher, " after OnWatchEnd"));
  }
  ++stats_.responses;
  if (absl::Status s = CheckArrival(watcher, w, r); !s.ok()) {
    Fail(watcher, w, s);
    return s;
  }
  if (w.waiting.empty() && Ready(r)) {
    if (absl::Status s = Check(watcher, w, r); !s.ok()) Fail(watcher, w, s);
    return w.violation;
  }
  // Wait for the reference, behind this watcher's earlier waiting responses.
  if (buffered_responses_ + 1 > options_.buffered_responses_max ||
      buffered_events_ + r.events.size() > options_.buffered_events_max) {
    Fail(watcher, w,
         absl::ResourceExhaustedError(absl::StrCat(
             "watch checker: watcher ", watcher, " revision ", r.revision,
             ": cannot buffer the response until the reference (at revision ", ref_last_,
             ") catches up: ", buffered_responses_, " responses with ", buffered_events_,
             " events wait already (bounds ", options_.buffered_responses_max, ", ",
             options_.buffered_events_max, ")")));
    return w.violation;
  }
  buffered_responses_ += 1;
  buffered_events_ += r.events.size();
  w.waiting.push_back(r);
  waiting_.insert(watcher);
  ++stats_.responses_buffered;
  stats_.buffered_responses_peak = std::max(stats_.buffered_responses_peak, buffered_responses_);
  return absl::OkStatus();
}

absl::Status WatchChecker::CheckDrained() const {
  if (!first_violation_.ok()) return first_violation_;
  if (waiting_.empty()) return absl::OkStatus();
  const int64_t id = *waiting_.begin();
  const kv::WatchResponse& r = watchers_.at(id).waiting.front();
  return absl::FailedPreconditionError(
      absl::StrCat("[revision] watcher ", id, " revision ", r.revision, ": ", buffered_responses_,
                   " responses still wait for the reference, which reached revision ", ref_last_,
                   " (compacted at ", compact_revision_, "); the first needs revision ",
                   std::max(r.revision, r.compact_revision)));
}

bool WatchChecker::Ready(const kv::WatchResponse& r) const {
  return std::max(r.revision, r.compact_revision) <= ref_last_;
}

void WatchChecker::Drain(int64_t id, Watcher& w) {
  while (!w.waiting.empty() && w.violation.ok() && Ready(w.waiting.front())) {
    const kv::WatchResponse r = std::move(w.waiting.front());
    w.waiting.pop_front();
    buffered_responses_ -= 1;
    buffered_events_ -= r.events.size();
    if (absl::Status s = Check(id, w, r); !s.ok()) Fail(id, w, s);
  }
  if (w.waiting.empty()) waiting_.erase(id);
}

void WatchChecker::Fail(int64_t id, Watcher& w, absl::Status violation) {
  w.violation = std::move(violation);
  if (first_violation_.ok()) first_violation_ = w.violation;
  for (const kv::WatchResponse& r : w.waiting) {
    buffered_responses_ -= 1;
    buffered_events_ -= r.events.size();
  }
  w.waiting.clear();
  waiting_.erase(id);
}

// ---- checks at arrival (no reference needed) ----

absl::Status WatchChecker::CheckArrival(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  const int64_t rev = r.revision;
  if (w.ended) return Violation("created", id, rev, "a response after the watch was canceled");
  if (!w.got_first) {
    if (!r.created) return Violation("created", id, rev, "the first response is not created=true");
    if (!r.events.empty()) {
      return Violation("created", id, rev,
                       absl::StrCat("the created response carries ", r.events.size(), " events"));
    }
    w.got_first = true;
    w.watch_id = r.watch_id;
  } else if (r.created) {
    return Violation("created", id, rev, "a second created response");
  } else if (r.watch_id != w.watch_id) {
    return Violation(
        "created", id, rev,
        absl::StrCat("watch_id ", r.watch_id, ", but the created response said ", w.watch_id));
  }
  if ((r.canceled || r.compacted) && !r.events.empty()) {
    return Violation("created", id, rev,
                     absl::StrCat("a canceled response carries ", r.events.size(), " events"));
  }
  if (r.compacted && (!r.canceled || r.compact_revision <= 0)) {
    return Violation("compacted", id, rev,
                     absl::StrCat("compacted with canceled=", r.canceled ? "true" : "false",
                                  " and compact_revision ", r.compact_revision,
                                  " (want canceled and a revision > 0)"));
  }
  if (!r.compacted && r.compact_revision != 0) {
    return Violation("compacted", id, rev,
                     absl::StrCat("compact_revision ", r.compact_revision,
                                  " on a response that is not compacted"));
  }
  if (r.fragment && r.events.empty()) {
    return Violation("atomic", id, rev, "fragment=true on a response without events");
  }
  int64_t prev_rev = 0;
  for (const kvpb::Event& e : r.events) {
    if (absl::Status s = CheckArrivalEvent(id, w, r, e, prev_rev); !s.ok()) return s;
    prev_rev = e.kv().mod_revision();
  }
  if (r.canceled || r.compacted) w.ended = true;
  return absl::OkStatus();
}

absl::Status WatchChecker::CheckArrivalEvent(int64_t id, const Watcher& w,
                                             const kv::WatchResponse& r, const kvpb::Event& e,
                                             int64_t prev_rev) const {
  const kvpb::KeyValue& kv = e.kv();
  const int64_t rev = kv.mod_revision();
  const kv::WatchRequest& q = w.request;
  if (e.type() != kvpb::Event::PUT && e.type() != kvpb::Event::DELETE) {
    return Violation("content", id, rev, absl::StrCat("an event of unknown type ", e.type()));
  }
  if (rev < 1) return Violation("content", id, rev, absl::StrCat(Describe(e), ": no mod_revision"));
  if (rev > r.revision) {
    return Violation(
        "revision", id, rev,
        absl::StrCat("the response's revision ", r.revision, " is below its event ", Describe(e)));
  }
  if (rev < prev_rev) {
    return Violation("ordered", id, rev,
                     absl::StrCat(Describe(e), " follows an event of revision ", prev_rev,
                                  " in the same response"));
  }
  if (!kv::KeyInRange(kv.key(), q.key, q.range_end)) {
    return Violation("filter", id, rev,
                     absl::StrCat(Describe(e), " is outside the watched range (key ", Quote(q.key),
                                  ", range_end ", Quote(q.range_end), ")"));
  }
  if ((e.type() == kvpb::Event::PUT && q.no_put) ||
      (e.type() == kvpb::Event::DELETE && q.no_delete)) {
    return Violation("filter", id, rev,
                     absl::StrCat(Describe(e), " delivered to a watch with ",
                                  q.no_put ? "no_put" : "no_delete"));
  }
  if (!q.prev_kv && e.has_prev_kv()) {
    return Violation(
        "prev_kv", id, rev,
        absl::StrCat(Describe(e), " carries prev_kv, which the watch did not ask for"));
  }
  if (e.type() == kvpb::Event::PUT) {
    if (std::string wrong = PutShape(kv); !wrong.empty()) {
      return Violation("content", id, rev, absl::StrCat(Describe(e), ": ", wrong));
    }
  }
  return absl::OkStatus();
}

// ---- checks against the reference (in order, once it reached the response's revision) ----

absl::Status WatchChecker::Check(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  ++stats_.responses_checked;
  if (r.compacted) {
    ++stats_.compacted;
    return CheckCompacted(id, w, r);
  }
  if (r.canceled) {  // may cut even a fragmented revision: the client asked for it
    ++stats_.canceled;
    return absl::OkStatus();
  }
  if (r.created) return absl::OkStatus();
  if (!r.events.empty()) return CheckEvents(id, w, r);
  ++stats_.progress_notifications;
  return CheckProgress(id, w, r);
}

absl::Status WatchChecker::CheckEvents(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  for (size_t i = 0; i < r.events.size(); ++i) {
    if (absl::Status s = CheckEvent(id, w, r, i); !s.ok()) return s;
  }
  return CheckResponseEnd(id, w, r);
}

absl::Status WatchChecker::CheckEvent(int64_t id, Watcher& w, const kv::WatchResponse& r,
                                      size_t i) {
  const kvpb::Event& e = r.events[i];
  const int64_t rev = e.kv().mod_revision();
  if (rev < w.start) {
    return Violation("ordered", id, rev,
                     absl::StrCat(Describe(e), " precedes the watch's start revision ", w.start));
  }
  const std::vector<const kvpb::Event*> m = Matching(w.request, rev);
  const size_t expected = rev == w.next_rev ? w.next_pos : 0;
  // Where `e` is in M(rev): at or after the expected position if it is there, else before.
  int found = -1;
  for (size_t j = expected; j < m.size() && found < 0; ++j) {
    if (SameEvent(*m[j], e)) found = static_cast<int>(j);
  }
  for (size_t j = 0; j < std::min(expected, m.size()) && found < 0; ++j) {
    if (SameEvent(*m[j], e)) found = static_cast<int>(j);
  }
  if (rev < w.next_rev || (found >= 0 && static_cast<size_t>(found) < expected)) {
    if (found >= 0)
      return Violation("unique", id, rev, absl::StrCat(Describe(e), " delivered twice"));
    return Violation("ordered", id, rev,
                     absl::StrCat(Describe(e), " arrives after the watcher moved past revision ",
                                  rev, " (next expected revision ", w.next_rev, ")"));
  }
  if (w.in_fragment && rev != w.next_rev) {
    return Violation("atomic", id, rev,
                     absl::StrCat("revision ", w.next_rev, " came with fragment=true, but the ",
                                  "next piece starts with ", Describe(e)));
  }
  w.in_fragment = false;
  if (Missing miss; FirstMissing(w, rev, &miss)) {
    return Violation(
        "reliable", id, miss.revision,
        absl::StrCat("missed ", Describe(*miss.event), " (event ", miss.position + 1, " of ",
                     miss.count, " of its revision); the next delivered is ", Describe(e)));
  }
  if (found != static_cast<int>(expected)) return CheckMisplaced(id, w, r, i, m, expected, found);
  if (absl::Status s = CheckPrevKv(id, w, e, *m[expected]); !s.ok()) return s;
  w.next_rev = rev;
  w.next_pos = expected + 1;
  w.last_event_rev = rev;
  ++stats_.events_checked;
  return absl::OkStatus();
}

// `e` = r.events[i] is not the expected event m[expected] of its revision: say why.
absl::Status WatchChecker::CheckMisplaced(int64_t id, const Watcher& w, const kv::WatchResponse& r,
                                          size_t i, const std::vector<const kvpb::Event*>& m,
                                          size_t expected, int found) const {
  const kvpb::Event& e = r.events[i];
  const int64_t rev = e.kv().mod_revision();
  if (found > static_cast<int>(expected)) {  // skipped m[expected]: later in this response?
    const kvpb::Event& skipped = *m[expected];
    for (size_t j = i + 1; j < r.events.size(); ++j) {
      if (!SameEvent(r.events[j], skipped)) continue;
      return Violation("ordered", id, rev,
                       absl::StrCat(Describe(e), " (event ", found + 1, " of ", m.size(),
                                    " of its revision) arrives before ", Describe(skipped),
                                    " (event ", expected + 1, ")"));
    }
    return Violation("reliable", id, rev,
                     absl::StrCat("missed ", Describe(skipped), " (event ", expected + 1, " of ",
                                  m.size(), " of its revision); the next delivered is ",
                                  Describe(e), " (event ", found + 1, ")"));
  }
  // Equal to none of M(rev): compare with the reference event of the same key, if there is one.
  const kvpb::Event* same_key = nullptr;
  for (size_t j = 0; j < m.size(); ++j) {
    const size_t k = (expected + j) % m.size();  // from the expected position on
    if (m[k]->kv().key() == e.kv().key()) {
      same_key = m[k];
      break;
    }
  }
  if (same_key == nullptr) {
    return Violation("reliable", id, rev,
                     absl::StrCat(Describe(e), " is not in the reference history (which has ",
                                  m.size(), " matching events at revision ", rev, ")"));
  }
  std::string diff = KvDiff(e.kv(), same_key->kv());
  if (e.type() != same_key->type()) {
    diff = absl::StrCat("type ", TypeName(e), " != ", TypeName(*same_key), diff.empty() ? "" : ", ",
                        diff);
  }
  return Violation(
      "content", id, rev,
      absl::StrCat(Describe(e), " differs from the reference ", Describe(*same_key), ": ", diff));
}

absl::Status WatchChecker::CheckPrevKv(int64_t id, const Watcher& w, const kvpb::Event& got,
                                       const kvpb::Event& ref) {
  if (!w.request.prev_kv) return absl::OkStatus();  // absence is checked at arrival
  const int64_t rev = got.kv().mod_revision();
  if (!ref.has_prev_kv()) {
    if (!got.has_prev_kv()) return absl::OkStatus();
    return Violation("prev_kv", id, rev,
                     absl::StrCat(Describe(got), " carries prev_kv ", DescribeKv(got.prev_kv()),
                                  ", but the key had no previous value"));
  }
  if (!got.has_prev_kv()) {
    // MvccStore::History fills prev_kv only where revision rev - 1 is still readable.
    if (rev <= compact_revision_) {
      ++stats_.prev_kvs_compacted;
      return absl::OkStatus();
    }
    return Violation("prev_kv", id, rev,
                     absl::StrCat(Describe(got), " lacks prev_kv ", DescribeKv(ref.prev_kv()),
                                  " although revision ", rev - 1,
                                  " is readable (compacted only at ", compact_revision_, ")"));
  }
  if (std::string diff = KvDiff(got.prev_kv(), ref.prev_kv()); !diff.empty()) {
    return Violation("prev_kv", id, rev,
                     absl::StrCat(Describe(got), ": prev_kv differs from the reference: ", diff));
  }
  ++stats_.prev_kvs_checked;
  return absl::OkStatus();
}

absl::Status WatchChecker::CheckResponseEnd(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  const int64_t last = r.events.back().kv().mod_revision();  // == w.next_rev now
  const std::vector<const kvpb::Event*> m = Matching(w.request, last);
  if (r.fragment) {
    ++stats_.fragments;
    if (w.next_pos >= m.size()) {
      return Violation("atomic", id, last,
                       absl::StrCat("fragment=true, but the response ends with the last of the ",
                                    m.size(), " matching events of revision ", last));
    }
    w.in_fragment = true;
    return absl::OkStatus();
  }
  if (w.next_pos < m.size()) {
    return Violation(
        "atomic", id, last,
        absl::StrCat("revision ", last, " is split: the response ends after ", w.next_pos,
                     " of its ", m.size(), " matching events without fragment=true (next would be ",
                     Describe(*m[w.next_pos]), ")"));
  }
  w.next_rev = last + 1;
  w.next_pos = 0;
  return absl::OkStatus();
}

absl::Status WatchChecker::CheckProgress(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  const int64_t p = r.revision;
  if (w.in_fragment) {
    return Violation("atomic", id, p,
                     absl::StrCat("a progress notification cuts revision ", w.next_rev,
                                  ", which came with fragment=true"));
  }
  if (p < w.last_event_rev) {
    return Violation("progress", id, p,
                     absl::StrCat("progress notification at revision ", p,
                                  " after an event of revision ", w.last_event_rev));
  }
  if (p < w.last_progress_rev) {
    return Violation("progress", id, p,
                     absl::StrCat("progress notification went back from revision ",
                                  w.last_progress_rev, " to ", p));
  }
  if (Missing miss; FirstMissing(w, p + 1, &miss)) {
    return Violation(
        "progress", id, p,
        absl::StrCat("progress notification at revision ", p, ", but ", Describe(*miss.event),
                     " (revision ", miss.revision, ") was never delivered"));
  }
  w.last_progress_rev = p;
  if (p + 1 > w.next_rev) {
    w.next_rev = p + 1;
    w.next_pos = 0;
  }
  return absl::OkStatus();
}

absl::Status WatchChecker::CheckCompacted(int64_t id, Watcher& w, const kv::WatchResponse& r) {
  const int64_t c = r.compact_revision;
  if (w.in_fragment) {
    return Violation("atomic", id, r.revision,
                     absl::StrCat("a compacted response cuts revision ", w.next_rev,
                                  ", which came with fragment=true"));
  }
  if (c <= w.next_rev) {
    return Violation("compacted", id, r.revision,
                     absl::StrCat("compact_revision ", c, ", but the watcher's next revision ",
                                  w.next_rev, " is not below it, so it is still readable"));
  }
  if (c > compact_revision_) {
    return Violation("compacted", id, r.revision,
                     absl::StrCat("compact_revision ", c, ", but the store was compacted only at ",
                                  compact_revision_));
  }
  return absl::OkStatus();
}

}  // namespace e2d::sim
