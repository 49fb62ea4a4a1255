// Copyright e2d authors.

#include "kv/key_index.h"

#include "env/check.h"

namespace e2d::kv {
namespace {
using ll = long long;
}

void KeyIndex::Check(Revision rev) const {
  for (auto it = gens_.rbegin(); it != gens_.rend(); ++it) {
    if (it->revs.empty()) continue;
    E2D_CHECK(it->revs.back() < rev, "key index: revision %lld.%lld after %lld.%lld", (ll)rev.main,
              (ll)rev.sub, (ll)it->revs.back().main, (ll)it->revs.back().sub);
    return;
  }
}

void KeyIndex::Put(Revision rev) {
  Check(rev);
  if (gens_.empty() || gens_.back().ended) {
    gens_.push_back(Generation{rev.main, 0, {}, false});
  }
  Generation& g = gens_.back();
  g.revs.push_back(rev);
  ++g.versions;
}

void KeyIndex::Tombstone(Revision rev) {
  Check(rev);
  E2D_CHECK(live(), "key index: delete of a key that does not exist at %lld", (ll)rev.main);
  gens_.back().revs.push_back(rev);
  gens_.back().ended = true;
}

void KeyIndex::LoneTombstone(Revision rev) {
  Check(rev);
  E2D_CHECK(!live(), "key index: a lone tombstone at %lld for a live key", (ll)rev.main);
  gens_.push_back(Generation{rev.main, 0, {rev}, true});
}

std::optional<Revision> KeyIndex::Get(int64_t at) const {
  for (auto g = gens_.rbegin(); g != gens_.rend(); ++g) {
    if (g->revs.empty() || g->revs.front().main > at) continue;  // the generation is later
    if (g->ended && g->revs.back().main <= at) return std::nullopt;  // deleted by then
    for (auto r = g->revs.rbegin(); r != g->revs.rend(); ++r) {
      if (r->main <= at) return *r;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

KeyIndex::Next KeyIndex::NextPut(int64_t main) const {
  if (!live()) return Next{main, 1};
  return Next{gens_.back().created, gens_.back().versions + 1};
}

bool KeyIndex::Compact(int64_t at, std::vector<Revision>* dropped) {
  std::vector<Generation> kept;
  for (Generation& g : gens_) {
    if (g.ended && g.revs.back().main < at) {  // gone for every read at or after `at`
      dropped->insert(dropped->end(), g.revs.begin(), g.revs.end());
      continue;
    }
    if (g.ended && g.revs.back().main == at) {
      // Deleted at `at` itself: revision `at` stays readable, and its history (a watch from
      // `at`) must still show the delete. Keep the tombstone alone (etcd-io/etcd#18089).
      dropped->insert(dropped->end(), g.revs.begin(), g.revs.end() - 1);
      g.revs.erase(g.revs.begin(), g.revs.end() - 1);
      kept.push_back(std::move(g));
      continue;
    }
    // Keep the newest revision at or below `at` (visible at `at`) and everything after it.
    size_t first_kept = 0;
    for (size_t i = 0; i < g.revs.size(); ++i) {
      if (g.revs[i].main <= at) first_kept = i;
    }
    dropped->insert(dropped->end(), g.revs.begin(), g.revs.begin() + first_kept);
    g.revs.erase(g.revs.begin(), g.revs.begin() + first_kept);
    kept.push_back(std::move(g));
  }
  gens_ = std::move(kept);
  return gens_.empty();
}

}  // namespace e2d::kv
