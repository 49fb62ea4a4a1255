// Copyright e2d authors.

#include "sim/demo/counter_node.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "env/check.h"
#include "env/crc32c.h"

namespace e2d::demo {
namespace {

constexpr uint32_t kRecordMagic = 0xc0ffee01;
constexpr char kPing = 'P';
constexpr char kAck = 'A';

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLe(std::string_view in, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}
std::string ValueMessage(char tag, uint64_t value) {
  std::string m(1, tag);
  PutU64(&m, value);
  return m;
}

}  // namespace

std::string EncodeCounterRecord(uint64_t value) {
  std::string body;
  PutU64(&body, value);
  std::string record;
  PutU32(&record, kRecordMagic);
  PutU32(&record, env::Crc32c(body));
  record += body;
  return record;
}

absl::Status DecodeCounterRecord(std::string_view record, uint64_t* value) {
  if (record.size() != kCounterRecordSizeBytes) {
    return absl::DataLossError(absl::StrCat("record of ", record.size(), " bytes"));
  }
  if (GetLe(record, 4) != kRecordMagic) return absl::DataLossError("bad record magic");
  if (GetLe(record.substr(4), 4) != env::Crc32c(record.substr(8))) {
    return absl::DataLossError("record checksum mismatch");
  }
  *value = GetLe(record.substr(8), 8);
  return absl::OkStatus();
}

CounterNode::CounterNode(env::Env& env, CounterConfig config, CounterHooks hooks)
    : env_(env), config_(std::move(config)), hooks_(std::move(hooks)) {
  env_.network().SetDatagramHandler(
      [this](const env::Address& from, std::string payload) { OnDatagram(from, std::move(payload)); });
  env_.network().SetAcceptHandler(
      [this](std::unique_ptr<env::Stream> stream) { OnAccept(std::move(stream)); });
  for (const env::Address& peer : config_.peers) {
    outbound_[peer].backoff = config_.backoff_min;
  }
  Recover();
  gossip_timer_ = env_.clock().After(config_.gossip, [this] { GossipRound(); });
}

CounterNode::~CounterNode() {
  *alive_ = false;
  env_.clock().Cancel(tick_timer_);
  env_.clock().Cancel(gossip_timer_);
  env_.network().SetDatagramHandler(nullptr);
  env_.network().SetAcceptHandler(nullptr);
}

uint64_t CounterNode::known(const env::Address& peer) const {
  auto it = known_.find(peer);
  return it == known_.end() ? 0 : it->second;
}

// Reads the longest valid prefix of the log and cuts off whatever follows (a torn tail).
void CounterNode::Recover() {
  absl::StatusOr<bool> exists = env_.fs().Exists(kCounterLogPath);
  if (!exists.ok()) return Break(exists.status());
  env::OpenOptions options;
  options.create = true;
  absl::StatusOr<std::unique_ptr<env::File>> file = env_.fs().Open(kCounterLogPath, options);
  if (!file.ok()) return Break(file.status());
  log_ = std::move(*file);
  absl::StatusOr<uint64_t> size = log_->Size();
  if (!size.ok()) return Break(size.status());
  absl::StatusOr<std::string> data = log_->ReadAt(0, *size);
  if (!data.ok()) return Break(data.status());
  uint64_t good_bytes = 0;
  while (good_bytes + kCounterRecordSizeBytes <= data->size()) {
    uint64_t v = 0;
    if (!DecodeCounterRecord(std::string_view(*data).substr(good_bytes, kCounterRecordSizeBytes),
                             &v)
             .ok()) {
      break;
    }
    value_ = v;
    good_bytes += kCounterRecordSizeBytes;
  }
  if (good_bytes != *size) {
    env_.Log(absl::StrCat("recovery: cutting ", *size - good_bytes, " bytes of torn tail at ",
                          good_bytes));
    if (absl::Status s = log_->Truncate(good_bytes); !s.ok()) return Break(s);
  }
  durable_ = value_;
  if (hooks_.on_recovered) hooks_.on_recovered(value_);
  if (*exists && good_bytes == *size) return StartTicking();
  // A new file's directory entry, or a truncation, must be durable before new records count.
  std::shared_ptr<bool> alive = alive_;
  log_->DataSync([this, alive](absl::Status s) {
    if (!*alive) return;
    if (!s.ok()) return Break(s);
    env_.fs().SyncDir("", [this, alive](absl::Status s2) {
      if (!*alive) return;
      if (!s2.ok()) return Break(s2);
      StartTicking();
    });
  });
}

void CounterNode::StartTicking() {
  ready_ = true;
  tick_timer_ = env_.clock().After(config_.tick, [this] { Tick(); });
}

void CounterNode::Tick() {
  tick_timer_ = env_.clock().After(config_.tick, [this] { Tick(); });
  if (broken_ || sync_in_flight_) return;
  const uint64_t next = value_ + 1;
  if (absl::Status s = log_->Append(EncodeCounterRecord(next)); !s.ok()) return Break(s);
  value_ = next;
  if (hooks_.on_appended) hooks_.on_appended(next);
  sync_in_flight_ = true;
  std::shared_ptr<bool> alive = alive_;
  log_->DataSync([this, alive, next](absl::Status s) {
    if (!*alive) return;
    sync_in_flight_ = false;
    if (!s.ok()) return Break(s);
    E2D_CHECK(next > durable_, "durable value went backwards");
    durable_ = next;
    if (hooks_.on_durable) hooks_.on_durable(next);
  });
}

void CounterNode::Break(const absl::Status& why) {
  if (broken_) return;
  broken_ = true;
  env_.Log(absl::StrCat("broken: ", why.ToString()));
  if (hooks_.on_broken) hooks_.on_broken(why);
}

void CounterNode::Heard(const env::Address& from, uint64_t value) {
  uint64_t& known = known_[from];
  if (value > known) known = value;
  if (hooks_.on_heard) hooks_.on_heard(from, value);
}

void CounterNode::OnDatagram(const env::Address& from, std::string payload) {
  if (payload.size() != 9 || (payload[0] != kPing && payload[0] != kAck)) {
    env_.Log(absl::StrCat("dropping malformed datagram from ", from));
    return;
  }
  Heard(from, GetLe(std::string_view(payload).substr(1), 8));
  if (payload[0] == kPing) {
    env_.network().SendDatagram(from, ValueMessage(kAck, durable_)).IgnoreError();
  }
}

void CounterNode::OnAccept(std::unique_ptr<env::Stream> stream) {
  if (inbound_.size() >= config_.accepted_streams_max) {
    inbound_.front().stream->Close();
    inbound_.erase(inbound_.begin());
  }
  const size_t index = inbound_.size();
  inbound_.push_back(Inbound{std::move(stream), false});
  env::Stream* raw = inbound_[index].stream.get();
  const env::Address peer = raw->peer();
  std::shared_ptr<bool> alive = alive_;
  raw->SetHandlers(
      [this, alive, peer](std::string message) {
        if (!*alive) return;
        if (message.size() != 9 || message[0] != kAck) {
          env_.Log(absl::StrCat("dropping malformed stream message from ", peer));
          return;
        }
        Heard(peer, GetLe(std::string_view(message).substr(1), 8));
      },
      [this, alive, raw](absl::Status) {
        if (!*alive) return;
        // Destroying the stream inside its own handler is not allowed; sweep it next round.
        for (Inbound& in : inbound_) {
          if (in.stream.get() == raw) in.closed = true;
        }
      });
}

void CounterNode::MaintainOutbound(const env::Address& peer, Outbound& out) {
  const env::Instant now = env_.clock().Now();
  if (out.stream != nullptr && out.closed) out.stream.reset();
  if (out.stream == nullptr) {
    if (now < out.retry_at) return;
    out.stream = env_.network().Connect(peer);
    out.closed = false;
    std::shared_ptr<bool> alive = alive_;
    out.stream->SetHandlers([](std::string) {},
                            [this, alive, peer](absl::Status why) {
                              if (!*alive) return;
                              // Looked up again: btree_map entries may move.
                              Outbound& o = outbound_.at(peer);
                              o.closed = true;
                              o.retry_at = env_.clock().Now() + o.backoff;
                              o.backoff = std::min(o.backoff * 2, config_.backoff_max);
                            });
  }
  absl::Status s = out.stream->Send(ValueMessage(kAck, durable_));
  if (s.ok()) out.backoff = config_.backoff_min;
}

void CounterNode::GossipRound() {
  gossip_timer_ = env_.clock().After(config_.gossip, [this] { GossipRound(); });
  for (auto& [peer, out] : outbound_) MaintainOutbound(peer, out);
  std::erase_if(inbound_, [](const Inbound& in) { return in.closed; });
  if (!config_.peers.empty()) {
    const env::Address& target = config_.peers[env_.random().Uniform(config_.peers.size())];
    env_.network().SendDatagram(target, ValueMessage(kPing, durable_)).IgnoreError();
  }
}

}  // namespace e2d::demo
