// Copyright e2d authors.

#include "gossip/gossip_node.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace e2d::gossip {

GossipNode::GossipNode(env::Env& env, Config config, Keyring keyring)
    : env_(env),
      ml_(std::move(config), std::move(keyring), env.random().Fork("gossip"), env.clock().Now()) {
  std::shared_ptr<bool> alive = alive_;
  env_.network().SetDatagramHandler([this, alive](const env::Address& from, std::string bytes) {
    if (!*alive) return;
    ml_.HandleDatagram(env_.clock().Now(), from, bytes);
    Pump();
  });
  env_.network().SetAcceptHandler([this, alive](std::unique_ptr<env::Stream> stream) {
    if (*alive) OnAccept(std::move(stream));
  });
  Pump();
}

GossipNode::~GossipNode() {
  *alive_ = false;
  if (timer_set_) env_.clock().Cancel(timer_);
  env_.network().SetDatagramHandler(nullptr);
  env_.network().SetAcceptHandler(nullptr);
  for (auto& [id, out] : outgoing_) out.stream->Close();
  for (auto& [id, in] : incoming_) in.stream->Close();
}

void GossipNode::Join(std::vector<env::Address> seeds) {
  ml_.Join(env_.clock().Now(), std::move(seeds));
  Pump();
}

void GossipNode::UpdateSeeds(std::vector<env::Address> seeds) {
  ml_.UpdateSeeds(env_.clock().Now(), std::move(seeds));
  Pump();
}

absl::Status GossipNode::SetMeta(std::string meta) {
  absl::Status s = ml_.SetMeta(env_.clock().Now(), std::move(meta));
  Pump();
  return s;
}

void GossipNode::Leave() {
  ml_.Leave(env_.clock().Now());
  Pump();
}

void GossipNode::OnTimer() {
  timer_set_ = false;
  Sweep();
  ml_.Tick(env_.clock().Now());
  Pump();
}

void GossipNode::Sweep() {
  env::Instant now = env_.clock().Now();
  for (auto& [id, out] : outgoing_) {
    if (!out.done && out.deadline <= now) {
      out.done = true;
      out.stream->Close();
      ml_.HandleStreamFailed(now, id);  // a no-op if the memberlist expired it already
    }
  }
  absl::erase_if(outgoing_, [](const auto& e) { return e.second.done; });
  absl::erase_if(incoming_, [](const auto& e) { return e.second.done; });
}

void GossipNode::OnAccept(std::unique_ptr<env::Stream> stream) {
  if (incoming_.size() >= kAcceptedStreamsMax) {
    Sweep();
    if (incoming_.size() >= kAcceptedStreamsMax) {
      // The oldest unanswered request gives way: a peer that opens streams and never sends
      // cannot lock others out.
      incoming_.begin()->second.stream->Close();
      incoming_.erase(incoming_.begin());
    }
  }
  uint64_t id = next_incoming_++;
  env::Stream* raw = stream.get();
  incoming_.emplace(id, Incoming{std::move(stream), false});
  std::shared_ptr<bool> alive = alive_;
  raw->SetHandlers(
      [this, alive, id](std::string bytes) {
        if (!*alive) return;
        auto it = incoming_.find(id);
        if (it == incoming_.end() || it->second.done) return;
        Incoming& in = it->second;
        std::optional<std::string> reply =
            ml_.HandleStreamRequest(env_.clock().Now(), in.stream->peer(), bytes);
        // One request per stream: the requester closes after the reply; we are done either way.
        if (reply) (void)in.stream->Send(std::move(*reply));
        if (!reply) in.stream->Close();
        in.done = true;
        Pump();
      },
      [this, alive, id](absl::Status) {
        if (!*alive) return;
        auto it = incoming_.find(id);
        if (it != incoming_.end()) it->second.done = true;
      });
}

void GossipNode::StartStream(StreamRequest request) {
  uint64_t id = request.id;
  std::unique_ptr<env::Stream> stream = env_.network().Connect(request.to);
  env::Stream* raw = stream.get();
  outgoing_[id] = Outgoing{std::move(stream), false, request.deadline};
  std::shared_ptr<bool> alive = alive_;
  raw->SetHandlers(
      [this, alive, id](std::string bytes) {
        if (!*alive) return;
        auto it = outgoing_.find(id);
        if (it == outgoing_.end() || it->second.done) return;
        it->second.done = true;
        it->second.stream->Close();
        ml_.HandleStreamReply(env_.clock().Now(), id, bytes);
        Pump();
      },
      [this, alive, id](absl::Status) {
        if (!*alive) return;
        auto it = outgoing_.find(id);
        if (it == outgoing_.end() || it->second.done) return;
        it->second.done = true;
        ml_.HandleStreamFailed(env_.clock().Now(), id);
        Pump();
      });
  absl::Status sent = raw->Send(std::move(request.bytes));
  if (!sent.ok()) {
    outgoing_[id].done = true;
    raw->Close();
    ml_.HandleStreamFailed(env_.clock().Now(), id);
  }
}

void GossipNode::Pump() {
  // Stream failures reported inside StartStream can produce more output: loop until quiet.
  for (int round = 0; round < 8; ++round) {
    std::vector<Datagram> datagrams = ml_.TakeDatagrams();
    std::vector<StreamRequest> streams = ml_.TakeStreamRequests();
    std::vector<Event> events = ml_.TakeEvents();
    if (datagrams.empty() && streams.empty() && events.empty()) break;
    for (Datagram& d : datagrams) {
      absl::Status s = env_.network().SendDatagram(d.to, std::move(d.bytes));
      if (!s.ok()) env_.Log(absl::StrCat("gossip: datagram to ", d.to, ": ", s.message()));
    }
    for (StreamRequest& r : streams) StartStream(std::move(r));
    for (const Event& e : events) {
      env_.Log(absl::StrCat("gossip: ", EventKindName(e.kind), " ", e.member.name, " at ",
                            e.member.addr, " incarnation ", e.member.incarnation));
      if (on_event_) on_event_(e);
    }
  }
  if (check_invariants_) ml_.CheckInvariants();
  env::Instant next = ml_.NextDeadline();
  if (timer_set_ && timer_at_ == next) return;
  if (timer_set_) env_.clock().Cancel(timer_);
  std::shared_ptr<bool> alive = alive_;
  timer_at_ = next;
  timer_set_ = true;
  timer_ = env_.clock().After(next - env_.clock().Now(), [this, alive] {
    if (*alive) OnTimer();
  });
}

}  // namespace e2d::gossip
