// Copyright e2d authors.

#include "gossip/replay.h"

#include "env/check.h"

namespace e2d::gossip {

bool ReplayWindow::Seen(uint64_t seq) const {
  uint64_t bit = seq % kWindow;
  return (bits_[bit / 64] >> (bit % 64)) & 1;
}

void ReplayWindow::Mark(uint64_t seq) {
  uint64_t bit = seq % kWindow;
  bits_[bit / 64] |= uint64_t{1} << (bit % 64);
}

ReplayWindow::Verdict ReplayWindow::Check(uint64_t session, uint64_t seq) {
  if (!empty_ && session < session_) return Verdict::kStaleSession;
  if (empty_ || session > session_) {
    empty_ = false;
    session_ = session;
    newest_ = seq;
    bits_.fill(0);
    Mark(seq);
    return Verdict::kAccept;
  }
  if (seq > newest_) {
    // Slide: clear the bits of every seq that leaves the window as newest_ advances.
    uint64_t advance = seq - newest_;
    if (advance >= kWindow) {
      bits_.fill(0);
    } else {
      for (uint64_t s = newest_ + 1; s <= seq; ++s) {
        uint64_t bit = s % kWindow;
        bits_[bit / 64] &= ~(uint64_t{1} << (bit % 64));
      }
    }
    newest_ = seq;
    Mark(seq);
    return Verdict::kAccept;
  }
  if (newest_ - seq >= kWindow) return Verdict::kTooOld;
  if (Seen(seq)) return Verdict::kReplay;
  Mark(seq);
  E2D_CHECK(Seen(seq), "seq %llu", static_cast<unsigned long long>(seq));
  return Verdict::kAccept;
}

}  // namespace e2d::gossip
