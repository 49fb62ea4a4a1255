// Copyright e2d authors.
//
// WatchHub: etcd v3 watches over an MvccStore. A watch covers a key or a range (range_end as in
// Range), starts at a revision (0: the next one), may drop puts or deletes (filters) and may ask
// for each event's previous value.
//
// Guarantees (etcd's, and the ones the scenarios' watch checker holds it to): a watcher sees
// every event of its range from its start revision on, once, in revision order, the events of
// one revision together in one response (split into consecutive `fragment` responses only when
// a single revision has more than events_max events for it); the first response says `created`;
// a watcher whose next revision was compacted away gets one `compacted` response (with the
// compact revision) and is cancelled, so it can resume from there with a new watch.
//
// Delivery: a watcher whose next revision is the store's next one is "synced" and gets each
// commit's events as the commit happens (OnCommit, wired to MvccStore::set_on_commit). One that
// starts in the past is "unsynced" until CatchUp has replayed history for it from the store,
// at most events_max events per watcher per call, so a slow watcher costs bounded work per
// round. Watchers are bounded (watchers_max); Watch refuses more with ResourceExhausted.

#ifndef E2D_KV_WATCH_H_
#define E2D_KV_WATCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "kv/kvpb.pb.h"
#include "kv/mvcc.h"

namespace e2d::kv {

struct WatchRequest {
  std::string key;
  std::string range_end;
  int64_t start_revision = 0;  // 0: the store's next revision
  bool no_put = false;
  bool no_delete = false;
  bool prev_kv = false;
  bool progress_notify = false;
};

struct WatchResponse {
  int64_t watch_id = 0;
  int64_t revision = 0;  // the store revision this response is current to
  bool created = false;
  bool canceled = false;
  bool compacted = false;
  int64_t compact_revision = 0;
  bool fragment = false;  // more events of the same revision follow
  std::vector<kvpb::Event> events;
};

class WatchHub {
 public:
  using Send = std::function<void(const WatchResponse&)>;

  WatchHub(MvccStore* store, size_t events_max = 1000, size_t watchers_max = 10000)
      : store_(store), events_max_(events_max), watchers_max_(watchers_max) {}

  // Registers a watch; `send` gets the created response at once, then events.
  absl::StatusOr<int64_t> Watch(const WatchRequest& request, Send send);
  void Cancel(int64_t watch_id);
  // Cancels every watch (each gets its canceled response): the store under them was replaced.
  void CancelAll();

  // A commit at `revision` with `events` (MvccStore's listener).
  void OnCommit(int64_t revision, const std::vector<kvpb::Event>& events);
  // Replays history to unsynced watchers (bounded per watcher). Returns how many are still
  // behind.
  size_t CatchUp();
  // Sends an empty response carrying the current revision to every synced watcher that asked
  // for progress notifications.
  void NotifyProgress();

  size_t watchers() const { return watchers_.size(); }

 private:
  struct Watcher {
    WatchRequest request;
    Send send;
    int64_t next = 0;  // the next revision it must see
  };
  bool Matches(const Watcher& w, const kvpb::Event& e) const;
  // Sends the matching events of whole revisions, fragmenting a revision past events_max.
  void Deliver(int64_t id, Watcher& w, const std::vector<kvpb::Event>& events, int64_t upto);

  MvccStore* store_;
  const size_t events_max_;
  const size_t watchers_max_;
  int64_t next_id_ = 1;
  absl::btree_map<int64_t, Watcher> watchers_;
};

}  // namespace e2d::kv

#endif  // E2D_KV_WATCH_H_
