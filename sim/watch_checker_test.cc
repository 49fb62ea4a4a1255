// Copyright e2d authors.
//
// Three parts: (1) hand-built histories and streams, one property at a time; (2) the real
// MvccStore + WatchHub under random writes, deletes, txns, compactions, watches, cancels and
// broken streams over hundreds of seeds, which must pass; (3) mutations of the real hub's
// streams (a wrapped Send callback), each of which must be caught with its property's message.

#include "sim/watch_checker.h"

#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "env/check.h"
#include "env/random.h"
#include "gtest/gtest.h"
#include "kv/mem_engine.h"
#include "kv/mvcc.h"
#include "kv/watch.h"

namespace e2d::sim {
namespace {

using kv::WatchRequest;
using kv::WatchResponse;

// `s` is the violation of property `tag` (its message starts "[tag]") and mentions `part`.
void ExpectViolation(const absl::Status& s, absl::string_view tag, absl::string_view part = "") {
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StartsWith(s.message(), absl::StrCat("[", tag, "]"))) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), part)) << s << "\nwanted: " << part;
}

// ---------------------------------------------------------------------------------------------
// Part 1: hand-built histories.

kvpb::KeyValue Kv(const std::string& key, const std::string& value, int64_t mod, int64_t create,
                  int64_t version, int64_t lease = 0) {
  kvpb::KeyValue kv;
  kv.set_key(key);
  kv.set_value(value);
  kv.set_mod_revision(mod);
  kv.set_create_revision(create);
  kv.set_version(version);
  kv.set_lease(lease);
  return kv;
}

kvpb::Event PutEvent(const kvpb::KeyValue& kv, std::optional<kvpb::KeyValue> prev = std::nullopt) {
  kvpb::Event e;
  e.set_type(kvpb::Event::PUT);
  *e.mutable_kv() = kv;
  if (prev) *e.mutable_prev_kv() = *prev;
  return e;
}

kvpb::Event DeleteEvent(const std::string& key, int64_t mod, const kvpb::KeyValue& prev) {
  kvpb::Event e;
  e.set_type(kvpb::Event::DELETE);
  e.mutable_kv()->set_key(key);
  e.mutable_kv()->set_mod_revision(mod);
  *e.mutable_prev_kv() = prev;
  return e;
}

kvpb::Event NoPrev(kvpb::Event e) {
  e.clear_prev_kv();
  return e;
}

constexpr int64_t kWatchId = 7;

WatchResponse Created(int64_t revision) {
  WatchResponse r;
  r.watch_id = kWatchId;
  r.created = true;
  r.revision = revision;
  return r;
}

WatchResponse Events(int64_t revision, std::vector<kvpb::Event> events, bool fragment = false) {
  WatchResponse r;
  r.watch_id = kWatchId;
  r.revision = revision;
  r.events = std::move(events);
  r.fragment = fragment;
  return r;
}

WatchResponse Progress(int64_t revision) { return Events(revision, {}); }

WatchResponse Compacted(int64_t revision, int64_t compact_revision) {
  WatchResponse r = Events(revision, {});
  r.canceled = true;
  r.compacted = true;
  r.compact_revision = compact_revision;
  return r;
}

WatchRequest Request(const std::string& key, const std::string& range_end = "",
                     int64_t start_revision = 0) {
  WatchRequest q;
  q.key = key;
  q.range_end = range_end;
  q.start_revision = start_revision;
  return q;
}

// The reference used by the hand-built tests (a new store is at revision 1):
//   2: put a=1                3: put b=1, put a=2 (a txn)      4: delete a
//   5: put c=1, put a=3       6: put b=2, put c=2, put d=1     7: delete a, delete b, delete c
class HandTest : public ::testing::Test {
 protected:
  HandTest() : HandTest(WatchCheckerOptions{}) {}
  explicit HandTest(WatchCheckerOptions options) : checker_(options) {
    const kvpb::KeyValue a1 = Kv("a", "1", 2, 2, 1), b1 = Kv("b", "1", 3, 3, 1);
    const kvpb::KeyValue a2 = Kv("a", "2", 3, 2, 2), a3 = Kv("a", "3", 5, 5, 1);
    const kvpb::KeyValue c1 = Kv("c", "1", 5, 5, 1), b2 = Kv("b", "2", 6, 3, 2, /*lease=*/9);
    const kvpb::KeyValue c2 = Kv("c", "2", 6, 5, 2), d1 = Kv("d", "1", 6, 6, 1);
    history_[2] = {PutEvent(a1)};
    history_[3] = {PutEvent(b1), PutEvent(a2, a1)};
    history_[4] = {DeleteEvent("a", 4, a2)};
    history_[5] = {PutEvent(c1), PutEvent(a3)};
    history_[6] = {PutEvent(b2, b1), PutEvent(c2, c1), PutEvent(d1)};
    history_[7] = {DeleteEvent("a", 7, a3), DeleteEvent("b", 7, b2), DeleteEvent("c", 7, c2)};
  }
  void Feed(int64_t upto) {
    for (int64_t rev = checker_.reference_revision() + 1; rev <= upto; ++rev) {
      checker_.OnCommit(rev, history_.at(rev));
    }
  }
  // Starts watcher 1 and delivers its created response.
  void Start(const WatchRequest& q, int64_t current_revision, int64_t id = 1) {
    checker_.OnWatchStart(id, q, current_revision);
    ASSERT_TRUE(checker_.OnResponse(id, Created(current_revision)).ok());
  }
  // Event `i` of revision `rev` as a watcher without prev_kv gets it.
  kvpb::Event E(int64_t rev, size_t i) const { return NoPrev(history_.at(rev).at(i)); }
  // ... and as one with prev_kv gets it.
  kvpb::Event P(int64_t rev, size_t i) const { return history_.at(rev).at(i); }

  std::map<int64_t, std::vector<kvpb::Event>> history_;
  WatchChecker checker_;
};

TEST_F(HandTest, AValidStreamPasses) {
  Feed(7);
  WatchRequest q = Request("a", "\0", /*start_revision=*/2);  // every key from "a" on
  q.range_end = std::string(1, '\0');
  q.prev_kv = true;
  Start(q, 7);
  EXPECT_TRUE(checker_.OnResponse(1, Events(7, {P(2, 0), P(3, 0), P(3, 1)})).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Events(7, {P(4, 0), P(5, 0), P(5, 1), P(6, 0)}, true)).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Events(7, {P(6, 1), P(6, 2)})).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Events(7, {P(7, 0), P(7, 1), P(7, 2)})).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Progress(7)).ok());
  EXPECT_TRUE(checker_.CheckDrained().ok()) << checker_.status();
  EXPECT_EQ(checker_.stats().events_checked, 12u);
  EXPECT_EQ(checker_.stats().prev_kvs_checked, 7u);  // the others had no previous value
  checker_.OnWatchEnd(1);
  EXPECT_EQ(checker_.watchers(), 0u);
}

TEST_F(HandTest, CreatedComesFirstOnceWithoutEventsAndFixesTheWatchId) {
  Feed(7);
  checker_.OnWatchStart(1, Request("a"), 7);
  ExpectViolation(checker_.OnResponse(1, Progress(7)), "created", "not created=true");
  checker_.OnWatchStart(2, Request("a"), 1);
  WatchResponse with_events = Created(7);
  with_events.events = {E(2, 0)};
  ExpectViolation(checker_.OnResponse(2, with_events), "created", "carries 1 events");
  Start(Request("a"), 7, 3);
  ExpectViolation(checker_.OnResponse(3, Created(7)), "created", "second created");
  Start(Request("a"), 7, 4);
  WatchResponse other_id = Progress(7);
  other_id.watch_id = kWatchId + 1;
  ExpectViolation(checker_.OnResponse(4, other_id), "created", "watch_id 8");
  EXPECT_EQ(checker_.status().message(),
            "[created] watcher 1 revision 7: the first response is "
            "not created=true");
}

TEST_F(HandTest, NothingFollowsACancelButAWatcherMayStopAnytime) {
  Feed(7);
  Start(Request("b"), 1);
  WatchResponse cancel = Progress(7);
  cancel.canceled = true;
  EXPECT_TRUE(checker_.OnResponse(1, cancel).ok());
  ExpectViolation(checker_.OnResponse(1, Events(7, {E(3, 0)})), "created", "after the watch");
  // Stopping in the middle of a fragmented revision, or with events never delivered, is fine.
  Start(Request("b", "d"), 1, 2);
  EXPECT_TRUE(checker_.OnResponse(2, Events(6, {E(3, 0), E(5, 0), E(6, 0)}, true)).ok());
  checker_.OnWatchEnd(2);
  EXPECT_EQ(checker_.OnResponse(2, Progress(7)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(checker_.OnResponse(99, Progress(7)).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HandTest, ResponseRevisionCoversItsEvents) {
  Feed(7);
  Start(Request("a"), 1);
  ExpectViolation(checker_.OnResponse(1, Events(2, {E(2, 0), E(3, 1)})), "revision",
                  "response's revision 2 is below its event PUT \"a\"=\"2\"");
}

TEST_F(HandTest, OrderedWithinAResponseAndNeverBeforeTheStart) {
  Feed(7);
  Start(Request("a"), 1);
  ExpectViolation(checker_.OnResponse(1, Events(7, {E(3, 1), E(2, 0)})), "ordered",
                  "follows an event of revision 3 in the same response");
  Start(Request("a", "", 3), 7, 2);
  ExpectViolation(checker_.OnResponse(2, Events(7, {E(2, 0)})), "ordered",
                  "precedes the watch's start revision 3");
  // Within one revision, by position: b=1 comes before a=2 at revision 3.
  Start(Request("a", "c", 3), 7, 3);
  ExpectViolation(checker_.OnResponse(3, Events(7, {E(3, 1), E(3, 0)})), "ordered",
                  "(event 2 of 2 of its revision) arrives before PUT \"b\"=\"1\"");
}

TEST_F(HandTest, AnEventBehindAProgressNotificationIsOutOfOrder) {
  Feed(7);
  Start(Request("zz"), 1);  // no events ever
  EXPECT_TRUE(checker_.OnResponse(1, Progress(6)).ok());
  kvpb::Event fake = PutEvent(Kv("zz", "x", 5, 5, 1));
  ExpectViolation(checker_.OnResponse(1, Events(7, {fake})), "ordered",
                  "arrives after the watcher moved past revision 5 (next expected revision 7)");
}

TEST_F(HandTest, UniqueAcrossAndWithinResponses) {
  Feed(7);
  Start(Request("a"), 1);
  EXPECT_TRUE(checker_.OnResponse(1, Events(3, {E(2, 0), E(3, 1)})).ok());
  ExpectViolation(checker_.OnResponse(1, Events(4, {E(3, 1), E(4, 0)})), "unique",
                  "PUT \"a\"=\"2\" (mod 3, create 2, version 2, lease 0) delivered twice");
  Start(Request("a", "c"), 1, 2);
  ExpectViolation(checker_.OnResponse(2, Events(3, {E(2, 0), E(3, 0), E(3, 0), E(3, 1)})), "unique",
                  "delivered twice");
}

TEST_F(HandTest, ReliableNoGapsNoExtras) {
  Feed(7);
  Start(Request("a"), 1);
  EXPECT_TRUE(checker_.OnResponse(1, Events(2, {E(2, 0)})).ok());
  ExpectViolation(checker_.OnResponse(1, Events(5, {E(4, 0), E(5, 1)})), "reliable",
                  "watcher 1 revision 3: missed PUT \"a\"=\"2\"");
  // An event the store never committed, after a complete revision.
  Start(Request("b"), 1, 2);
  kvpb::Event fake = PutEvent(Kv("b", "x", 4, 4, 1));
  ExpectViolation(checker_.OnResponse(2, Events(4, {E(3, 0), fake})), "reliable",
                  "PUT \"b\"=\"x\" (mod 4, create 4, version 1, lease 0) is not in the reference "
                  "history (which has 0 matching events at revision 4)");
}

TEST_F(HandTest, ContentEqualsTheReferenceFieldByField) {
  Feed(7);
  Start(Request("b"), 1);
  kvpb::Event wrong = E(6, 0);
  wrong.mutable_kv()->set_lease(0);
  wrong.mutable_kv()->set_value("22");
  EXPECT_TRUE(checker_.OnResponse(1, Events(3, {E(3, 0)})).ok());
  ExpectViolation(checker_.OnResponse(1, Events(6, {wrong})), "content",
                  "differs from the reference PUT \"b\"=\"2\" (mod 6, create 3, version 2, "
                  "lease 9): value \"22\" != \"2\", lease 0 != 9");
  Start(Request("a"), 3, 2);
  kvpb::Event put_not_delete = PutEvent(Kv("a", "", 4, 2, 3));
  ExpectViolation(checker_.OnResponse(2, Events(4, {put_not_delete})), "content",
                  "type PUT != DELETE");
}

TEST_F(HandTest, APutThatCreatesHasVersionOneAndCreateEqualsMod) {
  Feed(7);
  Start(Request("d"), 1);
  kvpb::Event bad = E(6, 2);
  bad.mutable_kv()->set_create_revision(5);
  ExpectViolation(checker_.OnResponse(1, Events(6, {bad})), "content",
                  "version 1 (a create) but create_revision 5 != mod_revision 6");
  Start(Request("b"), 1, 2);
  bad = E(3, 0);
  bad.mutable_kv()->set_version(2);
  ExpectViolation(checker_.OnResponse(2, Events(3, {bad})), "content",
                  "create_revision == mod_revision (a create) but version 2");
  // The reference is held to the same shape.
  WatchChecker fresh;
  fresh.OnCommit(2, {PutEvent(Kv("a", "1", 2, 1, 1))});
  EXPECT_EQ(fresh.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(fresh.status().message(), "create_revision 1 != mod_revision 2"))
      << fresh.status();
}

TEST_F(HandTest, FiltersAndRangesAreHonoured) {
  Feed(7);
  WatchRequest no_delete = Request("a");
  no_delete.no_delete = true;
  Start(no_delete, 1);
  EXPECT_TRUE(checker_.OnResponse(1, Events(5, {E(2, 0), E(3, 1), E(5, 1)})).ok());
  ExpectViolation(checker_.OnResponse(1, Events(7, {E(7, 0)})), "filter",
                  "DELETE \"a\" (mod 7) delivered to a watch with no_delete");
  WatchRequest no_put = Request("b");
  no_put.no_put = true;
  Start(no_put, 1, 2);
  ExpectViolation(checker_.OnResponse(2, Events(3, {E(3, 0)})), "filter", "with no_put");
  // [b, d): c is in, d is not; from "c" on: d is in; a single key: only itself.
  Start(Request("b", "d"), 5, 3);
  EXPECT_TRUE(checker_.OnResponse(3, Events(6, {E(6, 0), E(6, 1)})).ok());
  Start(Request("b", "d"), 5, 4);
  ExpectViolation(checker_.OnResponse(4, Events(6, {E(6, 0), E(6, 1), E(6, 2)})), "filter",
                  "PUT \"d\"=\"1\" (mod 6, create 6, version 1, lease 0) is outside the watched "
                  "range (key \"b\", range_end \"d\")");
  Start(Request("c", std::string(1, '\0')), 5, 5);
  EXPECT_TRUE(checker_.OnResponse(5, Events(6, {E(6, 1), E(6, 2)})).ok());
  Start(Request("c", std::string(1, '\0')), 5, 6);
  ExpectViolation(checker_.OnResponse(6, Events(6, {E(6, 0)})), "filter", "outside");
  // The reference's matching set follows the range too: skipping d is a gap for "c"+.
  Start(Request("c", std::string(1, '\0')), 5, 7);
  ExpectViolation(checker_.OnResponse(7, Events(7, {E(6, 1), E(7, 2)})), "reliable",
                  "missed PUT \"d\"=\"1\"");
}

TEST_F(HandTest, PrevKvOnlyWhenAskedEqualToTheReference) {
  Feed(7);
  Start(Request("a"), 1);
  ExpectViolation(checker_.OnResponse(1, Events(3, {P(2, 0), P(3, 1)})), "prev_kv",
                  "which the watch did not ask for");
  WatchRequest with = Request("a");
  with.prev_kv = true;
  Start(with, 2, 2);
  kvpb::Event wrong = P(3, 1);
  wrong.mutable_prev_kv()->set_version(5);
  ExpectViolation(checker_.OnResponse(2, Events(3, {wrong})), "prev_kv",
                  "prev_kv differs from the reference: version 5 != 1");
  Start(with, 2, 3);
  ExpectViolation(checker_.OnResponse(3, Events(3, {E(3, 1)})), "prev_kv",
                  "lacks prev_kv \"a\"=\"1\" (mod 2, create 2, version 1, lease 0) although "
                  "revision 2 is readable (compacted only at 0)");
  Start(with, 4, 4);
  kvpb::Event invented = P(5, 1);
  *invented.mutable_prev_kv() = Kv("a", "2", 3, 2, 2);
  ExpectViolation(checker_.OnResponse(4, Events(5, {invented})), "prev_kv",
                  "but the key had no previous value");
}

// MvccStore::History fills prev_kv only where revision R - 1 is readable (R - 1 >= compact
// revision): a watcher catching up from the compact revision itself gets no prev_kv there.
TEST_F(HandTest, PrevKvMayBeAbsentOnlyAtOrBelowTheCompactRevision) {
  Feed(7);
  WatchRequest with = Request("a");
  with.prev_kv = true;
  with.start_revision = 3;
  checker_.OnCompact(2);
  Start(with, 7);
  ExpectViolation(checker_.OnResponse(1, Events(3, {E(3, 1)})), "prev_kv", "lacks prev_kv");
  checker_.OnCompact(3);
  Start(with, 7, 2);
  EXPECT_TRUE(checker_.OnResponse(2, Events(3, {E(3, 1)})).ok());
  ExpectViolation(checker_.OnResponse(2, Events(4, {E(4, 0)})), "prev_kv",
                  "although revision 3 is readable (compacted only at 3)");
  EXPECT_EQ(checker_.stats().prev_kvs_compacted, 1u);
}

TEST_F(HandTest, AtomicRevisionsSplitOnlyByConsecutiveFragments) {
  Feed(7);
  Start(Request("a", "e"), 5);
  ExpectViolation(checker_.OnResponse(1, Events(6, {E(6, 0), E(6, 1)})), "atomic",
                  "revision 6 is split: the response ends after 2 of its 3 matching events "
                  "without fragment=true (next would be PUT \"d\"=\"1\"");
  Start(Request("a", "e"), 5, 2);
  ExpectViolation(checker_.OnResponse(2, Events(6, {E(6, 0), E(6, 1), E(6, 2)}, true)), "atomic",
                  "fragment=true, but the response ends with the last of the 3 matching events");
  Start(Request("a", "e"), 5, 3);
  EXPECT_TRUE(checker_.OnResponse(3, Events(6, {E(6, 0)}, true)).ok());
  ExpectViolation(checker_.OnResponse(3, Progress(6)), "atomic",
                  "a progress notification cuts revision 6");
  Start(Request("b", "e"), 5, 4);  // b, c and d; b and c are deleted at 7
  EXPECT_TRUE(checker_.OnResponse(4, Events(6, {E(6, 0), E(6, 1)}, true)).ok());
  ExpectViolation(checker_.OnResponse(4, Events(7, {E(7, 1)})), "atomic",
                  "revision 6 came with fragment=true, but the next piece starts with DELETE");
  Start(Request("a", "e"), 5, 5);
  EXPECT_TRUE(checker_.OnResponse(5, Events(6, {E(6, 0)}, true)).ok());
  ExpectViolation(checker_.OnResponse(5, Compacted(7, 7)), "atomic", "a compacted response cuts");
  WatchResponse empty_fragment = Progress(6);
  empty_fragment.fragment = true;
  Start(Request("a", "e"), 5, 6);
  ExpectViolation(checker_.OnResponse(6, empty_fragment), "atomic", "without events");
  // Fragments of one revision in a row, the last without the flag: fine.
  Start(Request("a", "e"), 5, 7);
  EXPECT_TRUE(checker_.OnResponse(7, Events(6, {E(6, 0)}, true)).ok());
  EXPECT_TRUE(checker_.OnResponse(7, Events(6, {E(6, 1)}, true)).ok());
  EXPECT_TRUE(checker_.OnResponse(7, Events(7, {E(6, 2), E(7, 0)}, true)).ok());
  EXPECT_TRUE(checker_.OnResponse(7, Events(7, {E(7, 1), E(7, 2)})).ok());
}

TEST_F(HandTest, ProgressClaimsEverythingUpToItsRevision) {
  Feed(7);
  Start(Request("b"), 1);
  ExpectViolation(checker_.OnResponse(1, Progress(3)), "progress",
                  "progress notification at revision 3, but PUT \"b\"=\"1\" (mod 3, create 3, "
                  "version 1, lease 0) (revision 3) was never delivered");
  Start(Request("b"), 1, 2);
  EXPECT_TRUE(checker_.OnResponse(2, Progress(2)).ok());
  EXPECT_TRUE(checker_.OnResponse(2, Events(3, {E(3, 0)})).ok());
  ExpectViolation(checker_.OnResponse(2, Progress(2)), "progress",
                  "at revision 2 after an event of revision 3");
  Start(Request("b"), 1, 3);
  EXPECT_TRUE(checker_.OnResponse(3, Events(5, {E(3, 0)})).ok());
  EXPECT_TRUE(checker_.OnResponse(3, Progress(5)).ok());
  ExpectViolation(checker_.OnResponse(3, Progress(4)), "progress",
                  "went back from revision 5 to 4");
}

TEST_F(HandTest, CompactedMustBeWarrantedAndEndsTheWatch) {
  Feed(7);
  checker_.OnCompact(5);
  Start(Request("a", "", 2), 7);
  EXPECT_TRUE(checker_.OnResponse(1, Compacted(7, 5)).ok());
  ExpectViolation(checker_.OnResponse(1, Progress(7)), "created", "after the watch");
  Start(Request("a", "", 5), 7, 2);  // revision 5 is still readable
  ExpectViolation(checker_.OnResponse(2, Compacted(7, 5)), "compacted",
                  "compact_revision 5, but the watcher's next revision 5 is not below it");
  Start(Request("a", "", 2), 7, 3);
  ExpectViolation(checker_.OnResponse(3, Compacted(7, 6)), "compacted",
                  "compact_revision 6, but the store was compacted only at 5");
  Start(Request("a", "", 2), 7, 4);
  WatchResponse not_canceled = Compacted(7, 5);
  not_canceled.canceled = false;
  ExpectViolation(checker_.OnResponse(4, not_canceled), "compacted", "canceled=false");
  Start(Request("a", "", 2), 7, 5);
  WatchResponse stray = Progress(7);
  stray.compact_revision = 5;
  ExpectViolation(checker_.OnResponse(5, stray), "compacted", "not compacted");
  // Partly caught up, then compacted past its position: fine.
  Start(Request("a", "", 2), 7, 6);
  EXPECT_TRUE(checker_.OnResponse(6, Events(3, {E(2, 0), E(3, 1)})).ok());
  EXPECT_TRUE(checker_.OnResponse(6, Compacted(7, 5)).ok());
}

TEST_F(HandTest, ResponsesAheadOfTheReferenceWaitThenPass) {
  Feed(3);
  WatchRequest q = Request("a");
  q.progress_notify = true;
  Start(q, 3);
  EXPECT_TRUE(checker_.OnResponse(1, Events(4, {E(4, 0)})).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Progress(4)).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Events(5, {E(5, 1)})).ok());
  EXPECT_EQ(checker_.buffered_responses(), 3u);
  checker_.OnWatchEnd(1);  // the waiting responses are still checked
  EXPECT_EQ(checker_.CheckDrained().code(), absl::StatusCode::kFailedPrecondition);
  Feed(4);
  EXPECT_EQ(checker_.buffered_responses(), 1u);
  Feed(7);
  EXPECT_EQ(checker_.buffered_responses(), 0u);
  EXPECT_TRUE(checker_.CheckDrained().ok()) << checker_.status();
  EXPECT_EQ(checker_.stats().events_checked, 2u);
  EXPECT_EQ(checker_.watchers(), 0u);
}

TEST_F(HandTest, ResponsesAheadOfTheReferenceWaitThenFail) {
  Feed(3);
  Start(Request("a"), 3);
  kvpb::Event wrong = E(5, 1);
  wrong.mutable_kv()->set_value("x");
  EXPECT_TRUE(checker_.OnResponse(1, Events(5, {wrong})).ok());
  Feed(4);
  EXPECT_TRUE(checker_.status().ok());
  Feed(5);  // E(4, 0) was never delivered: that is the first violation
  ExpectViolation(checker_.status(), "reliable", "missed DELETE \"a\" (mod 4)");
  ExpectViolation(checker_.OnResponse(1, Progress(7)), "reliable", "missed DELETE");
  EXPECT_EQ(checker_.buffered_responses(), 0u);
}

// A progress notification at a revision the reference has not reached yet also covers the
// events the reference learns later.
TEST_F(HandTest, ProgressAheadOfTheReferenceIsCheckedWhenItCatchesUp) {
  Feed(3);
  Start(Request("a"), 3);
  EXPECT_TRUE(checker_.OnResponse(1, Progress(5)).ok());
  Feed(7);
  ExpectViolation(checker_.status(), "progress", "at revision 5, but DELETE \"a\" (mod 4)");
}

TEST_F(HandTest, CheckDrainedNamesResponsesTheReferenceNeverReached) {
  Feed(7);
  Start(Request("a"), 7);
  kvpb::Event future = PutEvent(Kv("a", "9", 9, 9, 1));
  EXPECT_TRUE(checker_.OnResponse(1, Events(9, {future})).ok());
  const absl::Status s = checker_.CheckDrained();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(),
                                "1 responses still wait for the reference, which "
                                "reached revision 7"))
      << s;
}

class SmallBufferTest : public HandTest {
 protected:
  SmallBufferTest() : HandTest(Options()) {}
  static WatchCheckerOptions Options() {
    WatchCheckerOptions options;
    options.buffered_responses_max = 2;
    return options;
  }
};

TEST_F(SmallBufferTest, TheBufferIsBounded) {
  Feed(2);
  Start(Request("a"), 2);
  EXPECT_TRUE(checker_.OnResponse(1, Events(3, {E(3, 1)})).ok());
  EXPECT_TRUE(checker_.OnResponse(1, Events(4, {E(4, 0)})).ok());
  const absl::Status s = checker_.OnResponse(1, Events(5, {E(5, 1)}));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "2 responses with 2 events wait already")) << s;
  EXPECT_EQ(checker_.buffered_responses(), 0u);  // a failed watcher's buffer is dropped
}

TEST_F(HandTest, TheReferenceMustNotSkipOrRepeatRevisions) {
  checker_.OnCommit(2, history_.at(2));
  checker_.OnCommit(4, history_.at(4));
  EXPECT_EQ(checker_.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(checker_.status().message(),
            "reference history: revision 4 follows revision 2 (every revision must come once, "
            "in order)");
  EXPECT_EQ(checker_.reference_revision(), 2);
  checker_.OnWatchStart(1, Request("a"), 2);
  EXPECT_EQ(checker_.OnResponse(1, Created(2)).code(), absl::StatusCode::kInternal);
  WatchChecker other;
  other.OnCommit(2, history_.at(3));
  EXPECT_TRUE(absl::StrContains(other.status().message(), "revision 2 holds PUT \"b\""))
      << other.status();
}

// ---------------------------------------------------------------------------------------------
// Part 2 and 3: the real MvccStore and WatchHub.

// A store, a hub and the checker, wired as a scenario wires them; every watcher's responses go
// through an optional mutation before the checker sees them. With `lag`, the checker's
// reference is fed only on FeedReference (as if it came from a slower replica).
class Harness {
 public:
  using Mutation = std::function<std::vector<WatchResponse>(const WatchResponse&)>;

  Harness(size_t events_max, bool checker_first, bool lag = false, WatchCheckerOptions options = {})
      : checker_(options), checker_first_(checker_first), lag_(lag) {
    auto store = kv::MvccStore::Open(&engine_);
    E2D_CHECK(store.ok(), "open");
    store_ = std::move(*store);
    hub_ = std::make_unique<kv::WatchHub>(store_.get(), events_max);
    store_->set_on_commit([this](int64_t rev, const std::vector<kvpb::Event>& events) {
      if (lag_) {
        pending_.emplace_back(rev, events);
      } else if (checker_first_) {
        checker_.OnCommit(rev, events);
      }
      hub_->OnCommit(rev, events);
      if (!lag_ && !checker_first_) checker_.OnCommit(rev, events);
    });
  }

  struct Op {
    std::string key;
    std::optional<std::string> value;  // none: delete
    std::string range_end;             // for a delete
    int64_t lease = 0;
  };
  static Op PutOp(const std::string& key, const std::string& value, int64_t lease = 0) {
    Op op;
    op.key = key;
    op.value = value;
    op.lease = lease;
    return op;
  }
  static Op DeleteOp(const std::string& key, const std::string& range_end = "") {
    Op op;
    op.key = key;
    op.range_end = range_end;
    return op;
  }
  void Txn(const std::vector<Op>& ops) {
    kv::MvccStore::Txn t = store_->Begin();
    for (const Op& op : ops) {
      if (op.value) {
        E2D_CHECK(t.Put(op.key, *op.value, op.lease).ok(), "put");
      } else {
        E2D_CHECK(t.DeleteRange(op.key, op.range_end).ok(), "delete");
      }
    }
    E2D_CHECK(t.Commit(++index_).ok(), "commit");
  }
  void Put(const std::string& key, const std::string& value) { Txn({PutOp(key, value)}); }
  void Delete(const std::string& key, const std::string& end = "") { Txn({DeleteOp(key, end)}); }
  void Compact(int64_t revision) {
    E2D_CHECK(store_->Compact(revision, ++index_).ok(), "compact");
    checker_.OnCompact(revision);
  }
  void FeedReference(size_t n) {
    for (; n > 0 && !pending_.empty(); --n) {
      checker_.OnCommit(pending_.front().first, pending_.front().second);
      pending_.pop_front();
    }
  }

  // Starts a watch: the hub gets `request`; the checker `checked` (default: the same).
  // Returns the client id, or -1 if the hub refused.
  int64_t Watch(const WatchRequest& request, Mutation mutation = nullptr,
                std::optional<WatchRequest> checked = std::nullopt) {
    const int64_t id = next_client_++;
    clients_[id].mutation = std::move(mutation);
    checker_.OnWatchStart(id, checked ? *checked : request, store_->revision());
    absl::StatusOr<int64_t> hub_id =
        hub_->Watch(request, [this, id](const WatchResponse& r) { Receive(id, r); });
    if (!hub_id.ok()) {
      End(id);
      return -1;
    }
    clients_[id].hub_id = *hub_id;
    return id;
  }
  // The client cancels: the hub's canceled response is delivered.
  void Cancel(int64_t id) {
    hub_->Cancel(clients_.at(id).hub_id);
    End(id);
  }
  // The stream breaks: nothing more reaches the client.
  void Break(int64_t id) {
    clients_.at(id).broken = true;
    hub_->Cancel(clients_.at(id).hub_id);
    End(id);
  }
  // Ends clients whose watch the hub ended (compacted).
  void Reap() {
    std::vector<int64_t> done;
    for (const auto& [id, c] : clients_) {
      if (c.done) done.push_back(id);
    }
    for (int64_t id : done) End(id);
  }
  std::vector<int64_t> live() const {
    std::vector<int64_t> out;
    for (const auto& [id, c] : clients_) {
      if (!c.done) out.push_back(id);
    }
    return out;
  }
  // OK, or the first violation any response or the reference showed.
  absl::Status status() const { return first_error_.ok() ? checker_.status() : first_error_; }

  kv::MvccStore& store() { return *store_; }
  kv::WatchHub& hub() { return *hub_; }
  WatchChecker& checker() { return checker_; }

 private:
  struct Client {
    int64_t hub_id = 0;
    Mutation mutation;
    bool broken = false;
    bool done = false;
  };
  void Receive(int64_t id, const WatchResponse& r) {
    Client& c = clients_.at(id);
    if (c.broken) return;
    if (r.canceled) c.done = true;
    const std::vector<WatchResponse> out = c.mutation ? c.mutation(r) : std::vector{r};
    for (const WatchResponse& x : out) {
      absl::Status s = checker_.OnResponse(id, x);
      if (!s.ok() && first_error_.ok()) first_error_ = s;
    }
  }
  void End(int64_t id) {
    checker_.OnWatchEnd(id);
    clients_.erase(id);
  }

  kv::MemEngine engine_;
  std::unique_ptr<kv::MvccStore> store_;
  std::unique_ptr<kv::WatchHub> hub_;
  WatchChecker checker_;
  const bool checker_first_;
  const bool lag_;
  std::deque<std::pair<int64_t, std::vector<kvpb::Event>>> pending_;
  uint64_t index_ = 0;
  int64_t next_client_ = 1;
  absl::btree_map<int64_t, Client> clients_;
  absl::Status first_error_;
};

WatchRequest Key(const std::string& key, const std::string& end = "") {
  WatchRequest q;
  q.key = key;
  q.range_end = end;
  return q;
}

const std::vector<std::string> kKeys = {"a", "b", "c", "d/1", "d/2", "d/3", "e"};

struct RandomRun {
  size_t events_max = 1000;
  bool every_key_unfiltered = false;  // watchers see every key, no filters
  int steps = 250;
};

WatchRequest RandomRequest(env::Random& rng, const RandomRun& run, int64_t revision) {
  WatchRequest q;
  const std::string& k = kKeys[rng.Uniform(kKeys.size())];
  const uint64_t kind = run.every_key_unfiltered ? 2 : rng.Uniform(4);
  if (kind == 0) {
    q.key = k;
  } else if (kind == 1) {
    q.key = "d/";
    q.range_end = "d0";
  } else if (kind == 2) {
    q.key = run.every_key_unfiltered ? "a" : k;
    q.range_end = std::string(1, '\0');
  } else {
    q.key = k;
    q.range_end = kKeys[rng.Uniform(kKeys.size())] + "~";
  }
  q.start_revision = rng.Chance(0.5) ? 0 : rng.Range(1, revision + 3);
  if (!run.every_key_unfiltered) {
    q.no_put = rng.Chance(0.15);
    q.no_delete = !q.no_put && rng.Chance(0.15);
  }
  q.prev_kv = rng.Chance(0.5);
  q.progress_notify = rng.Chance(0.5);
  return q;
}

void RandomWrite(env::Random& rng, Harness& h) {
  if (rng.Chance(0.2)) {  // a range delete, alone in its txn
    const std::string& k = kKeys[rng.Uniform(kKeys.size())];
    h.Delete(k, rng.Chance(0.5) ? std::string(1, '\0') : k + "~");
    return;
  }
  std::vector<Harness::Op> ops;
  const size_t n = 1 + rng.Uniform(3);
  for (size_t i = 0; i < n; ++i) {
    const std::string& k = kKeys[rng.Uniform(kKeys.size())];
    bool dup = false;
    for (const Harness::Op& op : ops) dup = dup || op.key == k;
    if (dup) continue;  // as etcd's apply: no key twice in one txn
    if (rng.Chance(0.7)) {
      ops.push_back(Harness::PutOp(k, absl::StrCat("v", rng.Uniform(1000)),
                                   static_cast<int64_t>(rng.Uniform(3))));
    } else {
      ops.push_back(Harness::DeleteOp(k));
    }
  }
  h.Txn(ops);
}

// One seed: random writes, compactions, watches, cancels, broken streams, catch-up rounds and
// progress notifications; then every watcher catches up. Every response goes through `mutation`
// if there is one. Returns the first violation.
absl::Status RunRandom(uint64_t seed, const RandomRun& run, WatchCheckerStats* stats,
                       const Harness::Mutation& mutation = nullptr) {
  env::Random rng(seed);
  const bool lag = rng.Chance(0.3);
  Harness h(run.events_max, /*checker_first=*/rng.Chance(0.5), lag);
  for (int step = 0; step < run.steps && h.status().ok(); ++step) {
    const uint64_t dice = rng.Uniform(100);
    const std::vector<int64_t> live = h.live();
    if (dice < 35) {
      RandomWrite(rng, h);
    } else if (dice < 39) {
      // At any revision, deletes included (see CompactionKeepsTheTombstoneAtItsRevision).
      const kv::MvccStore& s = h.store();
      if (s.revision() > s.compact_revision()) {
        h.Compact(rng.Range(s.compact_revision() + 1, s.revision()));
      }
    } else if (dice < 52) {
      if (live.size() < 10) h.Watch(RandomRequest(rng, run, h.store().revision()), mutation);
    } else if (dice < 56) {
      if (!live.empty()) h.Cancel(live[rng.Uniform(live.size())]);
    } else if (dice < 58) {
      if (!live.empty()) h.Break(live[rng.Uniform(live.size())]);
    } else if (dice < 78) {
      h.hub().CatchUp();
    } else if (dice < 88) {
      h.hub().NotifyProgress();
    } else {
      h.FeedReference(rng.Uniform(4));
    }
    h.Reap();
  }
  for (int round = 0; round < 1000 && h.hub().CatchUp() > 0; ++round) {
  }
  h.hub().NotifyProgress();
  h.FeedReference(SIZE_MAX);
  *stats = h.checker().stats();
  if (!h.status().ok()) return h.status();
  return h.checker().CheckDrained();
}

std::string Summary(const WatchCheckerStats& s) {
  return absl::StrCat("responses ", s.responses, ", events ", s.events_checked, ", prev_kvs ",
                      s.prev_kvs_checked, " (+", s.prev_kvs_compacted, " absent at compaction)",
                      ", fragments ", s.fragments, ", progress ", s.progress_notifications,
                      ", compacted ", s.compacted, ", canceled ", s.canceled, ", waited ",
                      s.responses_buffered);
}

void Add(WatchCheckerStats& sum, const WatchCheckerStats& s) {
  sum.responses += s.responses;
  sum.events_checked += s.events_checked;
  sum.prev_kvs_checked += s.prev_kvs_checked;
  sum.prev_kvs_compacted += s.prev_kvs_compacted;
  sum.fragments += s.fragments;
  sum.progress_notifications += s.progress_notifications;
  sum.compacted += s.compacted;
  sum.canceled += s.canceled;
  sum.responses_buffered += s.responses_buffered;
}

// Events, prev_kvs, compactions, cancels, progress and waiting for the reference all happen.
TEST(RealHubTest, PassesOverManySeeds) {
  WatchCheckerStats sum;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    WatchCheckerStats stats;
    const absl::Status s = RunRandom(seed, RandomRun{}, &stats);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s;
    Add(sum, stats);
  }
  std::printf("%s\n", Summary(sum).c_str());
  EXPECT_GT(sum.events_checked, 10000u);
  EXPECT_GT(sum.prev_kvs_checked, 1000u);
  EXPECT_GT(sum.prev_kvs_compacted, 0u);
  EXPECT_GT(sum.progress_notifications, 1000u);
  EXPECT_GT(sum.compacted, 50u);
  EXPECT_GT(sum.canceled, 100u);
  EXPECT_GT(sum.responses_buffered, 1000u);
}

// Small events_max: revisions are fragmented, for filtered and range watchers too (see
// AFragmentEndsAtTheLastMatchingEventOfItsRevision).
TEST(RealHubTest, FragmentsPassOverManySeeds) {
  WatchCheckerStats sum;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    WatchCheckerStats stats;
    RandomRun run;
    run.events_max = 1 + seed % 3;
    run.steps = 150;
    const absl::Status s = RunRandom(seed, run, &stats);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s;
    Add(sum, stats);
  }
  std::printf("%s\n", Summary(sum).c_str());
  EXPECT_GT(sum.fragments, 1000u);
  EXPECT_GT(sum.events_checked, 10000u);
}

// Regression (found by this checker): WatchHub::Deliver decided whether a revision continues
// after a full response from the next event of the whole commit, matching or not, so when the
// rest of the revision did not match the watcher it sent fragment=true and then nothing more of
// that revision (an etcd client holds such events back).
TEST(RealHubTest, AFragmentEndsAtTheLastMatchingEventOfItsRevision) {
  Harness h(/*events_max=*/1, /*checker_first=*/true);
  WatchRequest q;
  q.key = "a";
  h.Watch(q);
  h.Txn({Harness::PutOp("a", "1"), Harness::PutOp("b", "1")});
  EXPECT_TRUE(h.status().ok()) << h.status();
}

// Regression (found by this checker): KeyIndex::Compact(at) dropped a generation whose
// tombstone is at revision `at` itself, tombstone record included, while revision `at` stays
// readable, so a watcher catching up from `at` missed that DELETE. etcd had the same bug
// (etcd-io/etcd#18089, fixed by #18274). The kept lone tombstone must also survive reopening
// the store (etcd #19179), which kv/mvcc_test checks.
TEST(RealHubTest, CompactionKeepsTheTombstoneAtItsRevision) {
  Harness h(1000, true);
  h.Put("k", "v1");  // revision 2
  h.Delete("k");     // revision 3
  h.Put("j", "v1");  // revision 4
  h.Compact(3);
  WatchRequest q = Key("k", "l");
  q.start_revision = 3;  // readable: reads below 3 fail, reads at 3 do not
  h.Watch(q);
  h.hub().CatchUp();
  h.Put("k", "v2");
  EXPECT_TRUE(h.status().ok()) << h.status();
}

// ---- mutations: each must be caught, with its property's message ----

// Applies `f` to the first response with events that satisfies `when`, passes others through.
Harness::Mutation Once(std::function<bool(const WatchResponse&)> when,
                       std::function<std::vector<WatchResponse>(const WatchResponse&)> f) {
  auto done = std::make_shared<bool>(false);
  return [done, when, f](const WatchResponse& r) {
    if (*done || r.events.empty() || !when(r)) return std::vector<WatchResponse>{r};
    *done = true;
    return f(r);
  };
}
std::function<bool(const WatchResponse&)> AtRevision(int64_t rev) {
  return [rev](const WatchResponse& r) { return r.events[0].kv().mod_revision() == rev; };
}

TEST(MutationTest, DroppedEventIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("k"),
          Once(AtRevision(3), [](const WatchResponse&) { return std::vector<WatchResponse>{}; }));
  h.Put("k", "v1");
  h.Put("k", "v2");
  EXPECT_TRUE(h.status().ok());  // nothing tells yet
  h.Put("k", "v3");
  ExpectViolation(
      h.status(), "reliable",
      "watcher 1 revision 3: missed PUT \"k\"=\"v2\" (mod 3, create 2, version 2, "
      "lease 0) (event 1 of 1 of its revision); the next delivered is PUT \"k\"=\"v3\"");
}

TEST(MutationTest, DroppedEventIsCaughtByAProgressNotification) {
  Harness h(1000, true);
  WatchRequest q = Key("k");
  q.progress_notify = true;
  h.Watch(q,
          Once(AtRevision(3), [](const WatchResponse&) { return std::vector<WatchResponse>{}; }));
  h.Put("k", "v1");
  h.Put("k", "v2");
  h.hub().NotifyProgress();
  ExpectViolation(h.status(), "progress",
                  "progress notification at revision 3, but PUT \"k\"=\"v2\"");
}

TEST(MutationTest, DuplicatedEventIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("k"), Once(AtRevision(3), [](const WatchResponse& r) {
            return std::vector<WatchResponse>{r, r};
          }));
  h.Put("k", "v1");
  h.Put("k", "v2");
  ExpectViolation(h.status(), "unique",
                  "PUT \"k\"=\"v2\" (mod 3, create 2, version 2, lease 0) "
                  "delivered twice");
}

TEST(MutationTest, ReorderedEventsOfOneRevisionAreCaught) {
  Harness h(1000, true);
  h.Watch(Key("a", "z"), Once(AtRevision(2), [](WatchResponse r) {
            std::swap(r.events[0], r.events[1]);
            return std::vector<WatchResponse>{r};
          }));
  h.Txn({Harness::PutOp("a", "1"), Harness::PutOp("b", "1")});
  ExpectViolation(h.status(), "ordered",
                  "PUT \"b\"=\"1\" (mod 2, create 2, version 1, lease 0) (event 2 of 2 of its "
                  "revision) arrives before PUT \"a\"=\"1\"");
}

TEST(MutationTest, ReorderedRevisionsInOneResponseAreCaught) {
  Harness h(1000, true);
  h.Put("k", "v1");
  h.Put("k", "v2");
  WatchRequest q = Key("k");
  q.start_revision = 2;  // both come in one catch-up response
  h.Watch(q, Once(AtRevision(2), [](WatchResponse r) {
            std::swap(r.events[0], r.events[1]);
            return std::vector<WatchResponse>{r};
          }));
  h.hub().CatchUp();
  ExpectViolation(h.status(), "ordered", "follows an event of revision 3 in the same response");
}

// Across responses, the later one arriving first is a gap at that moment.
TEST(MutationTest, ReorderedResponsesAreCaughtAsAGap) {
  Harness h(1000, true);
  auto held = std::make_shared<std::optional<WatchResponse>>();
  h.Watch(Key("k"), [held](const WatchResponse& r) {
    if (!r.events.empty() && r.events[0].kv().mod_revision() == 2) {
      *held = r;
      return std::vector<WatchResponse>{};
    }
    std::vector<WatchResponse> out{r};
    if (*held && !r.events.empty()) out.push_back(**held);
    return out;
  });
  h.Put("k", "v1");
  h.Put("k", "v2");
  ExpectViolation(h.status(), "reliable", "watcher 1 revision 2: missed PUT \"k\"=\"v1\"");
}

TEST(MutationTest, RevisionSplitWithoutFragmentIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("a", "z"), Once(AtRevision(2), [](const WatchResponse& r) {
            WatchResponse first = r, rest = r;
            first.events.resize(1);
            rest.events.erase(rest.events.begin());
            return std::vector<WatchResponse>{first, rest};
          }));
  h.Txn({Harness::PutOp("a", "1"), Harness::PutOp("b", "1"), Harness::PutOp("c", "1")});
  ExpectViolation(h.status(), "atomic",
                  "revision 2 is split: the response ends after 1 of its 3 matching events "
                  "without fragment=true");
}

TEST(MutationTest, LostFragmentFlagIsCaught) {
  Harness h(/*events_max=*/2, true);
  h.Watch(Key("a", "z"), [](WatchResponse r) {
    r.fragment = false;
    return std::vector<WatchResponse>{r};
  });
  h.Txn({Harness::PutOp("a", "1"), Harness::PutOp("b", "1"), Harness::PutOp("c", "1")});
  ExpectViolation(h.status(), "atomic", "ends after 2 of its 3 matching events");
}

TEST(MutationTest, CorruptedPrevKvIsCaught) {
  Harness h(1000, true);
  WatchRequest q = Key("k");
  q.prev_kv = true;
  h.Watch(q, Once(AtRevision(3), [](WatchResponse r) {
            r.events[0].mutable_prev_kv()->set_value("bogus");
            return std::vector<WatchResponse>{r};
          }));
  h.Put("k", "v1");
  h.Put("k", "v2");
  ExpectViolation(h.status(), "prev_kv",
                  "prev_kv differs from the reference: value \"bogus\" != \"v1\"");
}

TEST(MutationTest, DroppedPrevKvIsCaught) {
  Harness h(1000, true);
  WatchRequest q = Key("k");
  q.prev_kv = true;
  h.Watch(q, Once(AtRevision(3), [](WatchResponse r) {
            r.events[0].clear_prev_kv();
            return std::vector<WatchResponse>{r};
          }));
  h.Put("k", "v1");
  h.Delete("k");
  ExpectViolation(h.status(), "prev_kv", "DELETE \"k\" (mod 3) lacks prev_kv");
}

TEST(MutationTest, IgnoredFiltersAreCaught) {
  Harness h(1000, true);
  WatchRequest no_delete = Key("k");
  no_delete.no_delete = true;
  h.Watch(Key("k"), nullptr, no_delete);  // the hub ignores no_delete
  WatchRequest single = Key("k");
  h.Watch(Key("k", "l"), nullptr, single);  // ... or the range
  WatchRequest without_prev = Key("k");
  WatchRequest with_prev = Key("k");
  with_prev.prev_kv = true;
  h.Watch(with_prev, nullptr, without_prev);  // ... or sends prev_kv unasked
  h.Put("k", "v1");
  EXPECT_TRUE(h.status().ok());  // fine for every watcher
  h.Put("k2", "v1");
  h.Delete("k");
  ExpectViolation(h.checker().OnResponse(1, WatchResponse{}), "filter",
                  "watcher 1 revision 4: DELETE \"k\" (mod 4) delivered to a watch with no_delete");
  ExpectViolation(h.checker().OnResponse(2, WatchResponse{}), "filter",
                  "watcher 2 revision 3: PUT \"k2\"=\"v1\" (mod 3, create 3, version 1, lease 0) "
                  "is outside the watched range");
  ExpectViolation(h.checker().OnResponse(3, WatchResponse{}), "prev_kv",
                  "watcher 3 revision 4: DELETE \"k\" (mod 4) carries prev_kv, which the watch did "
                  "not ask for");
}

TEST(MutationTest, SkippedRevisionIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("a", "z"),
          Once(AtRevision(3), [](const WatchResponse&) { return std::vector<WatchResponse>{}; }));
  h.Put("a", "1");
  h.Txn({Harness::PutOp("b", "1"), Harness::PutOp("c", "1")});
  h.Put("a", "2");
  ExpectViolation(h.status(), "reliable",
                  "watcher 1 revision 3: missed PUT \"b\"=\"1\" (mod 3, create 3, version 1, "
                  "lease 0) (event 1 of 2 of its revision)");
}

TEST(MutationTest, CorruptedValueIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("k"), Once(AtRevision(2), [](WatchResponse r) {
            r.events[0].mutable_kv()->set_value("v9");
            return std::vector<WatchResponse>{r};
          }));
  h.Put("k", "v1");
  ExpectViolation(h.status(), "content", "value \"v9\" != \"v1\"");
}

TEST(MutationTest, UnwarrantedCompactionIsCaught) {
  Harness h(1000, true);
  for (int i = 0; i < 4; ++i) h.Put("k", absl::StrCat("v", i));  // revisions 2..5
  h.Compact(4);
  WatchRequest q = Key("k");
  q.start_revision = 3;
  h.Watch(q, [](WatchResponse r) {
    if (r.compacted) r.compact_revision = 3;  // not above the watcher's next revision
    return std::vector<WatchResponse>{r};
  });
  h.hub().CatchUp();
  ExpectViolation(h.status(), "compacted",
                  "compact_revision 3, but the watcher's next revision 3 is not below it");
}

TEST(MutationTest, MissingCreatedIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("k"), [](const WatchResponse& r) {
    return r.created ? std::vector<WatchResponse>{} : std::vector<WatchResponse>{r};
  });
  h.Put("k", "v1");
  ExpectViolation(h.status(), "created", "the first response is not created=true");
}

TEST(MutationTest, ResponseRevisionBelowItsEventsIsCaught) {
  Harness h(1000, true);
  h.Watch(Key("k"), [](WatchResponse r) {
    r.revision -= 1;
    return std::vector<WatchResponse>{r};
  });
  h.Put("k", "v1");
  ExpectViolation(h.status(), "revision", "the response's revision 1 is below its event");
}

// The same mutations, with the reference lagging: caught once it catches up.
TEST(MutationTest, CaughtWhenTheReferenceLags) {
  Harness h(1000, true, /*lag=*/true);
  h.Watch(Key("k"), Once(AtRevision(3), [](const WatchResponse& r) {
            return std::vector<WatchResponse>{r, r};
          }));
  h.Put("k", "v1");
  h.Put("k", "v2");
  EXPECT_TRUE(h.status().ok());
  EXPECT_EQ(h.checker().buffered_responses(), 3u);
  h.FeedReference(1);
  EXPECT_TRUE(h.status().ok());
  h.FeedReference(1);
  ExpectViolation(h.status(), "unique", "delivered twice");
}

// Random runs with one response duplicated or one event's value changed, at a random point:
// always caught, with the same message when the run is repeated (determinism).
TEST(MutationTest, RandomDuplicatesAndCorruptionsAreAlwaysCaught) {
  int applied = 0;
  for (uint64_t seed = 1; seed <= 80; ++seed) {
    const bool duplicate = seed % 2 == 0;
    const int victim = 1 + static_cast<int>(seed % 50);  // the victim-th response with events
    auto run_once = [&](bool* hit) {
      auto count = std::make_shared<int>(0);
      auto hit_flag = std::make_shared<bool>(false);
      Harness::Mutation m = [=](WatchResponse r) {
        if (r.events.empty() || ++*count != victim) return std::vector<WatchResponse>{r};
        *hit_flag = true;
        if (duplicate) return std::vector<WatchResponse>{r, r};
        kvpb::Event& e = r.events[seed % r.events.size()];
        e.mutable_kv()->set_value(e.kv().value() + "!");
        return std::vector<WatchResponse>{r};
      };
      WatchCheckerStats stats;
      const absl::Status s = RunRandom(seed, RandomRun{}, &stats, m);
      *hit = *hit_flag;
      return s;
    };
    bool hit = false;
    const absl::Status s = run_once(&hit);
    if (!hit) {
      EXPECT_TRUE(s.ok()) << "seed " << seed << ": " << s;
      continue;
    }
    ++applied;
    ExpectViolation(s, duplicate ? "unique" : "content", duplicate ? "delivered twice" : "!\"");
    bool again = false;
    EXPECT_EQ(run_once(&again), s) << "seed " << seed;
  }
  EXPECT_GT(applied, 60);
}

}  // namespace
}  // namespace e2d::sim
