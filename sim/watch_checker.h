// Copyright e2d authors.
//
// WatchChecker: the oracle for etcd v3 watch guarantees that the KV scenarios run over every
// watch stream. It is incremental: each response is checked as it arrives (or, if it names a
// revision the reference has not reached yet, as soon as the reference does), so a scenario can
// stop at the first bad response.
//
// Inputs. The reference history: OnCommit(revision, events) with what the replicated store
// committed at every revision, in order (fed from the first replica to apply each revision, with
// MvccStore's commit listener events: puts with kv and prev_kv, deletes with kv.key,
// kv.mod_revision and prev_kv); OnCompact(C) for every compaction. Per watch: OnWatchStart,
// every response the client received (OnResponse, in arrival order), OnWatchEnd.
//
// Properties, per watcher (S = its start revision: request.start_revision, or
// current_revision + 1 for 0; "matching" = key in the range, as kv::KeyInRange, and not removed
// by no_put / no_delete; M(R) = the reference's matching events of revision R, in order). Every
// message starts with the property's tag in brackets, then names the watcher and revision.
//   [created]   The first response has created=true and no events; no later one has created;
//               every response carries the created response's watch_id; nothing follows a
//               canceled or compacted response; canceled/compacted responses carry no events.
//   [revision]  A response's revision >= the mod_revision of each of its events.
//   [ordered]   Events strictly increase by (mod_revision, position in M(mod_revision)): within
//               a response mod_revision never decreases; no event precedes S; no event goes back
//               to a revision the watcher had moved past (unless it is a duplicate, below).
//   [unique]    No event equal to one already delivered.
//   [reliable]  Events come gap-free: when an event at (R, i) arrives, every event of M from the
//               watcher's position up to (R, i) has been delivered; an event equal to none of
//               M(R) is reported as extra.
//   [content]   A delivered event equals its reference event in type, key, value,
//               create_revision, mod_revision, version and lease. Also on its own: a put has
//               version >= 1, create_revision <= mod_revision, and version == 1 exactly when
//               create_revision == mod_revision (a put that creates the key).
//   [filter]    Keys are in the watched range; no PUT with no_put, no DELETE with no_delete.
//   [prev_kv]   Not requested: absent. Requested: equal to the reference event's prev_kv; absent
//               if the reference has none (the key was created); absent although the reference
//               has one only if R <= the latest compaction (MvccStore::History fills prev_kv
//               only when revision R - 1 is still readable, i.e. R - 1 >= the compact revision;
//               this implies the previous version's mod_revision < the compact revision).
//   [atomic]    A revision is split across responses only with fragment=true on every piece but
//               the last, and the pieces are consecutive: a response with fragment=false ends
//               on a complete revision (all of M(R) delivered); one with fragment=true has
//               events and ends before the end of M(R); the next response continues R (a
//               cancel may cut it; a progress notification or compaction may not).
//   [progress]  A progress notification (no events, not created/canceled/compacted) at
//               revision P has P >= the last event's revision and >= the previous
//               notification's P, and every event of M up to P has been delivered.
//   [compacted] compacted comes with canceled and compact_revision C > 0 (and C is set only on
//               compacted responses); C > the next revision the watcher expected (that one was
//               compacted away, since reads below C fail) and C <= the latest OnCompact. The
//               watch is over after it; the events of [next, C) are legitimately lost.
// A watcher may stop at any time (OnWatchEnd, cancel): no gap check beyond what it received.
//
// The reference may lag the serving node. A response is checked once the reference has
// reached max(response revision, compact_revision); until then it waits, with the watcher's
// later responses behind it, in a buffer bounded by options (exceeding it is ResourceExhausted).
// Checks that need no reference (created, revision, ordered within a response, filter, prev_kv
// not requested, put shape) run at arrival. Violations found while OnCommit drains the buffer
// are kept: status() returns the first one, and OnResponse returns it for that watcher.
//
// REQUIRES of the caller: OnCompact(C) is called before any response reflecting that compaction
// reaches OnResponse (feed it from the first replica to apply the compaction).
//
// Errors: FailedPrecondition for a watch guarantee broken; Internal for a reference history
// that is not one (a revision skipped or repeated, an event not of its revision, a malformed
// put); ResourceExhausted for the buffer bound; InvalidArgument for responses of an unknown or
// ended watcher.
//
// Memory: the reference history (kept whole: a watch may start at any past revision the
// serving node has not compacted yet) plus, per live watcher, a constant and the buffered
// responses (bounded). A watcher's state is freed by OnWatchEnd (once its buffered responses are
// checked): call it for every watch, also after a canceled or compacted response.
// Deterministic: ordered containers only; messages depend only on inputs.

#ifndef E2D_SIM_WATCH_CHECKER_H_
#define E2D_SIM_WATCH_CHECKER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "kv/kvpb.pb.h"
#include "kv/watch.h"

namespace e2d::sim {

struct WatchCheckerOptions {
  // The store's revision when the checker starts; revisions up to it hold no events (a new
  // store is at revision 1, as etcd's). The first OnCommit must be initial_revision + 1.
  int64_t initial_revision = 1;
  // Bounds on responses (and their events), over all watchers, waiting for the reference.
  size_t buffered_responses_max = 4096;
  size_t buffered_events_max = 1 << 18;
};

struct WatchCheckerStats {
  uint64_t responses = 0;          // passed to OnResponse
  uint64_t responses_checked = 0;  // checked against the reference
  uint64_t events_checked = 0;
  uint64_t prev_kvs_checked = 0;    // prev_kv compared with the reference
  uint64_t prev_kvs_compacted = 0;  // prev_kv absent, allowed by a compaction
  uint64_t fragments = 0;           // responses with fragment=true
  uint64_t progress_notifications = 0;
  uint64_t compacted = 0;
  uint64_t canceled = 0;
  uint64_t responses_buffered = 0;  // had to wait for the reference
  size_t buffered_responses_peak = 0;
};

class WatchChecker {
 public:
  explicit WatchChecker(WatchCheckerOptions options = {});

  // The store committed `events` at `revision`. REQUIRES (else status() becomes Internal and
  // the reference stops growing): revision == the previous one + 1 (initial_revision + 1 for
  // the first); every event's kv.mod_revision == revision; puts well-formed (see [content]).
  // Checks buffered responses that were waiting for this revision.
  void OnCommit(int64_t revision, const std::vector<kvpb::Event>& events);
  // The store was compacted at `revision` (reads below it fail from now on).
  void OnCompact(int64_t revision);

  // A watch was made; `current_revision` is the serving node's store revision then (start
  // revision 0 means current_revision + 1). REQUIRES: `watcher` is not live (crashes otherwise).
  void OnWatchStart(int64_t watcher, const kv::WatchRequest& request, int64_t current_revision);
  // The watcher received `r`. Returns the reference's error (Internal) if OnCommit found one,
  // else the watcher's first violation (this response's, or one found earlier for it, e.g.
  // while OnCommit drained its buffer); OK if none so far (a response still waiting for the
  // reference is OK for now).
  absl::Status OnResponse(int64_t watcher, const kv::WatchResponse& r);
  // The watcher stopped (cancelled, stream broken); no more responses for it. Responses of it
  // still waiting for the reference are checked when it arrives. Unknown ids are ignored.
  void OnWatchEnd(int64_t watcher);

  // The first violation found so far, in any watcher or in the reference; OK if none.
  absl::Status status() const { return first_violation_; }
  // status() if not OK; else FailedPrecondition if responses still wait for the reference (at
  // the end of a run: they name a revision or compaction the store never reached); else OK.
  absl::Status CheckDrained() const;

  int64_t reference_revision() const { return ref_last_; }
  int64_t compact_revision() const { return compact_revision_; }
  size_t buffered_responses() const { return buffered_responses_; }
  size_t watchers() const { return watchers_.size(); }
  const WatchCheckerStats& stats() const { return stats_; }

 private:
  struct Watcher {
    kv::WatchRequest request;
    int64_t start = 0;  // the first revision it may see
    // Arrival state (every response).
    bool got_first = false;
    bool ended = false;  // a canceled or compacted response arrived
    bool ended_by_caller = false;
    int64_t watch_id = 0;
    // Checked state (responses checked against the reference, in order): everything of M
    // before (next_rev, next_pos) was delivered exactly once; next_pos events of M(next_rev) too.
    int64_t next_rev = 0;
    size_t next_pos = 0;
    bool in_fragment = false;  // the last checked response had fragment=true
    int64_t last_event_rev = 0;
    int64_t last_progress_rev = 0;
    std::deque<kv::WatchResponse> waiting;  // for the reference
    absl::Status violation;
  };
  // A reference event that should have been delivered, with where it is.
  struct Missing {
    int64_t revision = 0;
    size_t position = 0;
    size_t count = 0;  // |M(revision)|
    const kvpb::Event* event = nullptr;
  };

  absl::Status CheckArrival(int64_t id, Watcher& w, const kv::WatchResponse& r);
  absl::Status CheckArrivalEvent(int64_t id, const Watcher& w, const kv::WatchResponse& r,
                                 const kvpb::Event& e, int64_t prev_rev) const;
  bool Ready(const kv::WatchResponse& r) const;
  // Checks the ready responses at the head of w.waiting.
  void Drain(int64_t id, Watcher& w);
  absl::Status Check(int64_t id, Watcher& w, const kv::WatchResponse& r);
  absl::Status CheckEvents(int64_t id, Watcher& w, const kv::WatchResponse& r);
  absl::Status CheckEvent(int64_t id, Watcher& w, const kv::WatchResponse& r, size_t i);
  absl::Status CheckMisplaced(int64_t id, const Watcher& w, const kv::WatchResponse& r, size_t i,
                              const std::vector<const kvpb::Event*>& m, size_t expected,
                              int found) const;
  absl::Status CheckPrevKv(int64_t id, const Watcher& w, const kvpb::Event& got,
                           const kvpb::Event& ref);
  absl::Status CheckResponseEnd(int64_t id, Watcher& w, const kv::WatchResponse& r);
  absl::Status CheckProgress(int64_t id, Watcher& w, const kv::WatchResponse& r);
  absl::Status CheckCompacted(int64_t id, Watcher& w, const kv::WatchResponse& r);
  void Fail(int64_t id, Watcher& w, absl::Status violation);
  void EraseIfDone(int64_t id);

  // The reference's events of `revision` (empty up to initial_revision).
  const std::vector<kvpb::Event>& Reference(int64_t revision) const;
  std::vector<const kvpb::Event*> Matching(const kv::WatchRequest& request, int64_t revision) const;
  // The first matching reference event at or after (w.next_rev, w.next_pos) and before
  // revision `before`, if any.
  bool FirstMissing(const Watcher& w, int64_t before, Missing* out) const;

  const WatchCheckerOptions options_;
  std::vector<std::vector<kvpb::Event>> reference_;  // [i]: revision initial_revision + 1 + i
  const std::vector<kvpb::Event> empty_;
  int64_t ref_last_;
  int64_t compact_revision_ = 0;
  absl::btree_map<int64_t, Watcher> watchers_;
  absl::btree_set<int64_t> waiting_;  // watchers with responses waiting for the reference
  size_t buffered_responses_ = 0;
  size_t buffered_events_ = 0;
  absl::Status reference_error_;  // the reference is not a history: it stopped growing
  absl::Status first_violation_;
  WatchCheckerStats stats_;
};

}  // namespace e2d::sim

#endif  // E2D_SIM_WATCH_CHECKER_H_
