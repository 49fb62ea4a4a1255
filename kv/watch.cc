// Copyright e2d authors.

#include "kv/watch.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace e2d::kv {

absl::StatusOr<int64_t> WatchHub::Watch(const WatchRequest& request, Send send) {
  if (watchers_.size() >= watchers_max_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("watch: ", watchers_.size(), " watchers already (bound ", watchers_max_, ")"));
  }
  if (request.key.empty()) return absl::InvalidArgumentError("etcdserver: key is not provided");
  const int64_t id = next_id_++;
  Watcher w{request, std::move(send),
            request.start_revision > 0 ? request.start_revision : store_->revision() + 1};
  WatchResponse created;
  created.watch_id = id;
  created.created = true;
  created.revision = store_->revision();
  w.send(created);
  watchers_.emplace(id, std::move(w));
  return id;
}

void WatchHub::CancelAll() {
  std::vector<int64_t> ids;
  for (const auto& [id, w] : watchers_) ids.push_back(id);
  for (int64_t id : ids) Cancel(id);
}

void WatchHub::Cancel(int64_t watch_id) {
  auto it = watchers_.find(watch_id);
  if (it == watchers_.end()) return;
  WatchResponse r;
  r.watch_id = watch_id;
  r.canceled = true;
  r.revision = store_->revision();
  Send send = std::move(it->second.send);
  watchers_.erase(it);
  send(r);
}

bool WatchHub::Matches(const Watcher& w, const kvpb::Event& e) const {
  if (!KeyInRange(e.kv().key(), w.request.key, w.request.range_end)) return false;
  if (e.type() == kvpb::Event::PUT && w.request.no_put) return false;
  if (e.type() == kvpb::Event::DELETE && w.request.no_delete) return false;
  return true;
}

void WatchHub::Deliver(int64_t id, Watcher& w, const std::vector<kvpb::Event>& events,
                       int64_t upto) {
  WatchResponse r;
  r.watch_id = id;
  r.revision = upto;
  // The events this watcher gets; a revision "ends" at its last matching event (not at the
  // last event of the commit: the rest may not match, and a fragment flag with nothing after it
  // would leave the client holding the revision back).
  std::vector<const kvpb::Event*> matching;
  for (const kvpb::Event& e : events) {
    if (e.kv().mod_revision() >= w.next && Matches(w, e)) matching.push_back(&e);
  }
  for (size_t i = 0; i < matching.size(); ++i) {
    const kvpb::Event& e = *matching[i];
    const bool revision_ends = i + 1 == matching.size() ||
                               matching[i + 1]->kv().mod_revision() != e.kv().mod_revision();
    kvpb::Event& out = r.events.emplace_back(e);
    if (!w.request.prev_kv) out.clear_prev_kv();
    if (r.events.size() >= events_max_) {  // full: a huge revision is fragmented
      r.fragment = !revision_ends;
      w.send(r);
      r.events.clear();
      r.fragment = false;
    }
  }
  if (!r.events.empty()) w.send(r);
  w.next = upto + 1;
}

void WatchHub::OnCommit(int64_t revision, const std::vector<kvpb::Event>& events) {
  for (auto& [id, w] : watchers_) {
    if (w.next == revision) Deliver(id, w, events, revision);  // synced
  }
}

size_t WatchHub::CatchUp() {
  size_t behind = 0;
  std::vector<int64_t> compacted;
  for (auto& [id, w] : watchers_) {
    if (w.next > store_->revision()) continue;
    std::vector<kvpb::Event> events;
    absl::StatusOr<int64_t> next = store_->History(w.next, store_->revision(), events_max_, &events);
    if (!next.ok()) {
      compacted.push_back(id);
      continue;
    }
    Deliver(id, w, events, *next - 1);
    if (w.next <= store_->revision()) ++behind;
  }
  for (int64_t id : compacted) {
    auto it = watchers_.find(id);
    WatchResponse r;
    r.watch_id = id;
    r.canceled = true;
    r.compacted = true;
    r.compact_revision = store_->compact_revision();
    r.revision = store_->revision();
    Send send = std::move(it->second.send);
    watchers_.erase(it);
    send(r);
  }
  return behind;
}

void WatchHub::NotifyProgress() {
  for (auto& [id, w] : watchers_) {
    if (!w.request.progress_notify || w.next != store_->revision() + 1) continue;
    WatchResponse r;
    r.watch_id = id;
    r.revision = store_->revision();
    w.send(r);
  }
}

}  // namespace e2d::kv
