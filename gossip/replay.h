// Copyright e2d authors.
//
// Replay detection for authenticated gossip messages. Each sender numbers its messages per
// channel with (session, seq): session grows across the sender's restarts, seq counts up within a
// session. A receiver accepts a message at most once, accepts messages reordered within the
// window, and refuses anything older (a replay, or a message too late to matter).

#ifndef E2D_GOSSIP_REPLAY_H_
#define E2D_GOSSIP_REPLAY_H_

#include <array>
#include <cstdint>

namespace e2d::gossip {

class ReplayWindow {
 public:
  // How far behind the newest accepted seq a message may arrive and still be accepted.
  static constexpr uint64_t kWindow = 256;

  enum class Verdict { kAccept, kReplay, kStaleSession, kTooOld };

  // Checks (session, seq) and, if accepted, records it. A newer session resets the window; an
  // older session is refused (stale: the sender has restarted since).
  Verdict Check(uint64_t session, uint64_t seq);

  uint64_t session() const { return session_; }
  uint64_t newest_seq() const { return newest_; }

 private:
  bool Seen(uint64_t seq) const;
  void Mark(uint64_t seq);

  bool empty_ = true;
  uint64_t session_ = 0;
  uint64_t newest_ = 0;
  // Bit (seq % kWindow) is set iff seq in (newest_ - kWindow, newest_] was accepted.
  std::array<uint64_t, kWindow / 64> bits_{};
};

}  // namespace e2d::gossip

#endif  // E2D_GOSSIP_REPLAY_H_
