// Copyright e2d authors.

#include "scenarios/kv_harness.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "env/random.h"
#include "kv/mem_engine.h"
#include "kv/requestpb.pb.h"
#include "kv/server.h"
#include "sim/cluster.h"
#include "sim/lincheck.h"
#include "sim/watch_checker.h"

namespace e2d::scenarios {
namespace {

using sim::NodeId;
namespace lc = sim::lincheck;

// One replica. Destroying it is the machine's crash: the server goes, and the engine keeps its
// synced batches and a random prefix of the others (the engine contract's crash model).
struct KvProcess final : sim::Process {
  kv::MemEngine* engine = nullptr;
  env::Random* crash_random = nullptr;
  std::unique_ptr<kv::KvServer> server;
  ~KvProcess() override {
    server.reset();
    engine->Crash(crash_random->Uniform(engine->unsynced_batches() + 1));
  }
};

kv::KvServer* ServerOf(sim::Cluster& cluster, NodeId n) {
  auto* p = static_cast<KvProcess*>(cluster.process(n));
  return p == nullptr ? nullptr : p->server.get();
}

class KvOracle {
 public:
  KvOracle(sim::Cluster& cluster, int nodes, sim::WatchChecker& checker)
      : cluster_(cluster), checker_(checker), last_revision_(nodes + 1, 0) {}

  void Fail(std::string what) {
    if (failure_.empty()) {
      failure_ = absl::StrFormat("t=%.6fs %s", cluster_.sim().now_ns() / 1e9, what);
    }
  }
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }

  // A replica (re)opened or installed a snapshot: its next commit follows `revision`.
  void Reset(NodeId n, int64_t revision) { last_revision_[n] = revision; }

  // Replica agreement: the events of one revision are the same on every replica.
  void Committed(NodeId n, int64_t revision, const std::vector<kvpb::Event>& events) {
    if (revision != last_revision_[n] + 1) {
      Fail(absl::StrCat("n", n, " committed revision ", revision, " after ",
                        last_revision_[n]));
    }
    last_revision_[n] = revision;
    uint64_t h = 0;
    for (const kvpb::Event& e : events) {
      h = env::HashCombine(h, env::StableHash(e.SerializeAsString()));
    }
    auto [it, fresh] = hash_at_.try_emplace(revision, h);
    if (fresh) {
      checker_.OnCommit(revision, events);  // the watch reference: first to commit
    }
    if (!fresh && it->second != h) {
      Fail(absl::StrCat("replica agreement: n", n, " committed different events at revision ",
                        revision, " than a replica before it"));
    }
    revisions_ = std::max(revisions_, revision);
  }
  int64_t revisions() const { return revisions_; }
  // A replica applied entry `e`: the first to apply a lease revocation dates it.
  void Applied(const raftpb::Entry& e) {
    requestpb::Request r;
    if (e.type() != raftpb::ENTRY_NORMAL || e.data().empty() || !r.ParseFromString(e.data())) {
      return;
    }
    if (r.has_lease_revoke()) {
      revoked_at_.try_emplace(r.lease_revoke().id(), cluster_.sim().now_ns());
    }
  }
  // When the first replica applied the revocation of `lease` (its keys' deletion), if any did.
  std::optional<int64_t> revoked_at(int64_t lease) const {
    auto it = revoked_at_.find(lease);
    if (it == revoked_at_.end()) return std::nullopt;
    return it->second;
  }
  // Some replica applied a compaction at `revision`.
  void Compacted(int64_t revision) {
    if (revision <= compacted_) return;
    compacted_ = revision;
    checker_.OnCompact(revision);
  }
  void Installed() { ++installs_; }
  uint64_t installs() const { return installs_; }

 private:
  sim::Cluster& cluster_;
  sim::WatchChecker& checker_;
  int64_t compacted_ = 0;
  std::vector<int64_t> last_revision_;
  absl::btree_map<int64_t, uint64_t> hash_at_;
  absl::btree_map<int64_t, int64_t> revoked_at_;
  int64_t revisions_ = 0;
  uint64_t installs_ = 0;
  std::string failure_;
};

// Simulated clients running a register workload and recording the history.
class Clients {
 public:
  Clients(sim::Cluster& cluster, KvOracle& oracle, const KvScenarioConfig& config)
      : cluster_(cluster),
        oracle_(oracle),
        config_(config),
        random_(cluster.sim().ForkRandom("clients")),
        clients_(config.clients) {
    for (size_t i = 0; i < clients_.size(); ++i) {
      clients_[i].process = next_process_++;
      clients_[i].seen.assign(config.keys, std::nullopt);
    }
  }

  void Start(int64_t stop_ns) {
    stop_ns_ = stop_ns;
    for (size_t i = 0; i < clients_.size(); ++i) {
      Next(i, 100'000'000 + random_.Range(0, config_.think_ms_max * 1'000'000));
    }
  }

  const lc::History& history() const { return history_; }
  uint64_t compactions() const { return compactions_; }
  uint64_t count(lc::Outcome o) const {
    uint64_t n = 0;
    for (const lc::Operation& op : history_) n += op.outcome == o;
    return n;
  }

 private:
  struct Client {
    int64_t process = 0;     // lincheck's process: a new one after an unknown outcome
    uint64_t gen = 0;        // the operation in flight (answers to older ones are ignored)
    size_t op = 0;           // its index in history_
    bool busy = false;
    int64_t revision = 0;    // the latest store revision this client saw
    std::vector<lc::Value> seen;  // per key, the value it last read or wrote
  };

  void Next(size_t c, int64_t delay_ns) {
    const int64_t at = cluster_.sim().now_ns() + delay_ns;
    if (at >= stop_ns_) return;
    cluster_.sim().Schedule(at, sim::kNoNode, "client", c, [this, c] { Invoke(c); });
  }

  void Invoke(size_t c) {
    Client& cl = clients_[c];
    std::vector<NodeId> live;
    for (NodeId n : cluster_.nodes()) {
      if (ServerOf(cluster_, n) != nullptr) live.push_back(n);
    }
    if (live.empty()) return Next(c, 100'000'000);
    const NodeId n = live[random_.Uniform(live.size())];
    kv::KvServer* server = ServerOf(cluster_, n);
    const uint64_t action = random_.Uniform(100);
    if (action < static_cast<uint64_t>(config_.compact_percent)) {
      // Not part of the register history: compactions change no value.
      const int64_t rev = cl.revision - static_cast<int64_t>(random_.Uniform(40));
      if (rev > 1) {
        etcdserverpb::CompactionRequest r;
        r.set_revision(rev);
        server->Compact(r, [this](absl::StatusOr<etcdserverpb::CompactionResponse> x) {
          compactions_ += x.ok();
        });
      }
      return Next(c, random_.Range(0, config_.think_ms_max * 1'000'000));
    }
    const int k = static_cast<int>(random_.Uniform(config_.keys));
    const std::string key = absl::StrCat("k", k);
    lc::Operation op;
    op.id = static_cast<int64_t>(history_.size());
    op.client = cl.process;
    op.key = key;
    op.call_time = cluster_.sim().now_ns();
    op.outcome = lc::Outcome::kUnknown;
    op.return_time = lc::kNever;
    const uint64_t kind = random_.Uniform(100);
    cl.busy = true;
    const uint64_t gen = ++cl.gen;
    cl.op = history_.size();
    if (kind < 8) {
      // A range read over every register: one read per key, all at the same instant. Each
      // is checked as a single-key read (the other keys' reads go under clients of their own).
      op.kind = lc::OpKind::kRead;
      history_.push_back(op);
      etcdserverpb::RangeRequest r;
      r.set_key("k");
      r.set_range_end("l");
      const int64_t invoked = op.call_time;
      server->Range(r, [this, c, gen, k, invoked](absl::StatusOr<etcdserverpb::RangeResponse> x) {
        if (!x.ok()) return Done(c, gen, Outcome(x.status()), std::nullopt, 0, k);
        if (!clients_[c].busy || clients_[c].gen != gen) return;  // timed out already
        std::vector<lc::Value> values(config_.keys);
        for (const kvpb::KeyValue& kv : x->kvs()) {
          int key_index = -1;
          if (!absl::SimpleAtoi(kv.key().substr(1), &key_index) || kv.key()[0] != 'k' ||
              key_index < 0 || key_index >= config_.keys) {
            return oracle_.Fail(absl::StrCat("a range read over [k, l) returned key ", kv.key()));
          }
          if (!Parse(kv.value(), &values[key_index])) return;
        }
        for (int other = 0; other < config_.keys; ++other) {
          if (other == k) continue;
          lc::Operation o;
          o.id = static_cast<int64_t>(history_.size());
          o.client = next_range_process_++;
          o.key = absl::StrCat("k", other);
          o.kind = lc::OpKind::kRead;
          o.output = values[other];
          o.call_time = invoked;
          o.return_time = cluster_.sim().now_ns();
          o.outcome = lc::Outcome::kOk;
          history_.push_back(o);
        }
        Done(c, gen, lc::Outcome::kOk, values[k], x->header().revision(), k);
      });
    } else if (kind < 40) {
      op.kind = lc::OpKind::kRead;
      history_.push_back(op);
      etcdserverpb::RangeRequest r;
      r.set_key(key);
      server->Range(r, [this, c, gen, k](absl::StatusOr<etcdserverpb::RangeResponse> x) {
        if (!x.ok()) return Done(c, gen, Outcome(x.status()), std::nullopt, 0, k);
        lc::Value v;
        if (x->kvs_size() > 0 && !Parse(x->kvs(0).value(), &v)) return;
        Done(c, gen, lc::Outcome::kOk, v, x->header().revision(), k);
      });
    } else if (kind < 90) {
      const int64_t value = next_value_++;
      const bool cas = kind >= 75;
      const bool del = !cas && kind < 45;
      op.kind = cas ? lc::OpKind::kCas : lc::OpKind::kWrite;
      if (cas) {
        op.arg = cl.seen[k];
        op.cas_to = value;
      } else {
        op.arg = del ? lc::Value() : lc::Value(value);
      }
      history_.push_back(op);
      if (del) {
        etcdserverpb::DeleteRangeRequest r;
        r.set_key(key);
        server->DeleteRange(r, [this, c, gen, k](
                                   absl::StatusOr<etcdserverpb::DeleteRangeResponse> x) {
          if (!x.ok()) return Done(c, gen, Outcome(x.status()), std::nullopt, 0, k);
          Done(c, gen, lc::Outcome::kOk, std::nullopt, x->header().revision(), k);
        });
      } else if (!cas) {
        etcdserverpb::PutRequest r;
        r.set_key(key);
        r.set_value(absl::StrCat(value));
        server->Put(r, [this, c, gen, k, value](absl::StatusOr<etcdserverpb::PutResponse> x) {
          if (!x.ok()) return Done(c, gen, Outcome(x.status()), std::nullopt, 0, k);
          Done(c, gen, lc::Outcome::kOk, value, x->header().revision(), k);
        });
      } else {
        etcdserverpb::TxnRequest t;
        etcdserverpb::Compare* cmp = t.add_compare();
        cmp->set_key(key);
        cmp->set_result(etcdserverpb::Compare::EQUAL);
        if (op.arg.has_value()) {
          cmp->set_target(etcdserverpb::Compare::VALUE);
          cmp->set_value(absl::StrCat(*op.arg));
        } else {  // "absent": a missing key has create_revision 0
          cmp->set_target(etcdserverpb::Compare::CREATE);
          cmp->set_create_revision(0);
        }
        etcdserverpb::PutRequest* p = t.add_success()->mutable_request_put();
        p->set_key(key);
        p->set_value(absl::StrCat(value));
        server->Txn(t, [this, c, gen, k, value](absl::StatusOr<etcdserverpb::TxnResponse> x) {
          if (!x.ok()) return Done(c, gen, Outcome(x.status()), std::nullopt, 0, k);
          // A failed compare: the cas definitely did not happen.
          Done(c, gen, x->succeeded() ? lc::Outcome::kOk : lc::Outcome::kFail,
               x->succeeded() ? lc::Value(value) : lc::Value(), x->header().revision(), k);
        });
      }
    } else {
      // Reads a key the way the register does not: a serializable read must never show a
      // value no write produced (checked on the value's form only).
      cl.busy = false;
      --cl.gen;
      etcdserverpb::RangeRequest r;
      r.set_key(key);
      r.set_serializable(true);
      server->Range(r, [this](absl::StatusOr<etcdserverpb::RangeResponse> x) {
        lc::Value v;
        if (x.ok() && x->kvs_size() > 0) Parse(x->kvs(0).value(), &v);
      });
      return Next(c, random_.Range(0, config_.think_ms_max * 1'000'000));
    }
    // No answer by the client timeout (the replica crashed or is cut off): unknown.
    cluster_.sim().Schedule(cluster_.sim().now_ns() + config_.client_timeout_ms * 1'000'000,
                            sim::kNoNode, "client-timeout", c, [this, c, gen] {
                              Done(c, gen, lc::Outcome::kUnknown, std::nullopt, 0, -1);
                            });
  }

  static lc::Outcome Outcome(const absl::Status& s) {
    // The request may have been ordered: only a timeout leaves that open.
    return s.code() == absl::StatusCode::kDeadlineExceeded ? lc::Outcome::kUnknown
                                                           : lc::Outcome::kFail;
  }

  bool Parse(const std::string& s, lc::Value* v) {
    int64_t x = 0;
    if (!absl::SimpleAtoi(s, &x) || x < 0 || x >= next_value_) {
      oracle_.Fail(absl::StrCat("a read returned '", s, "', which no client wrote"));
      return false;
    }
    *v = x;
    return true;
  }

  void Done(size_t c, uint64_t gen, lc::Outcome outcome, lc::Value value, int64_t revision,
            int k) {
    Client& cl = clients_[c];
    if (!cl.busy || cl.gen != gen) return;  // answered already (or timed out)
    cl.busy = false;
    lc::Operation& op = history_[cl.op];
    op.outcome = outcome;
    if (outcome != lc::Outcome::kUnknown) op.return_time = cluster_.sim().now_ns();
    if (outcome == lc::Outcome::kOk) {
      if (op.kind == lc::OpKind::kRead) op.output = value;
      cl.seen[k] = op.kind == lc::OpKind::kRead ? value : op.kind == lc::OpKind::kCas
                                                            ? op.cas_to
                                                            : op.arg;
      cl.revision = std::max(cl.revision, revision);
    }
    if (outcome == lc::Outcome::kUnknown) cl.process = next_process_++;  // as Jepsen does
    Next(c, random_.Range(0, config_.think_ms_max * 1'000'000));
  }

  sim::Cluster& cluster_;
  KvOracle& oracle_;
  const KvScenarioConfig& config_;
  env::Random random_;
  std::vector<Client> clients_;
  lc::History history_;
  int64_t next_process_ = 0;
  int64_t next_range_process_ = int64_t{1} << 40;  // the per-key reads of range reads
  int64_t next_value_ = 0;
  int64_t stop_ns_ = 0;
  uint64_t compactions_ = 0;
};

// The lease client: grants a short lease (1-3 s) through a random replica, attaches a key with
// a unique value to it, keeps it alive through the leader for a while, then lets it expire,
// and meanwhile reads the key linearizably. The lease oracle: a read that began after the
// lease's revocation entry was applied on some replica (so after it committed) must not return
// the value attached to that lease.
class LeaseClient {
 public:
  LeaseClient(sim::Cluster& cluster, KvOracle& oracle)
      : cluster_(cluster), oracle_(oracle), random_(cluster.sim().ForkRandom("leases")) {}

  void Start(int64_t stop_ns) {
    stop_ns_ = stop_ns;
    Next(300'000'000);
  }
  uint64_t granted() const { return granted_; }
  uint64_t revoked() const { return revoked_; }
  uint64_t reads_checked() const { return reads_checked_; }

 private:
  kv::KvServer* RandomServer() {
    std::vector<NodeId> live;
    for (NodeId n : cluster_.nodes()) {
      if (ServerOf(cluster_, n) != nullptr) live.push_back(n);
    }
    return live.empty() ? nullptr : ServerOf(cluster_, live[random_.Uniform(live.size())]);
  }

  void Next(int64_t delay_ns) {
    const int64_t at = cluster_.sim().now_ns() + delay_ns;
    if (at >= stop_ns_) return;
    cluster_.sim().Schedule(at, sim::kNoNode, "lease-client", 0, [this] { Act(); });
  }

  void Act() {
    kv::KvServer* s = RandomServer();
    if (s == nullptr) return Next(200'000'000);
    const uint64_t gen = ++gen_;
    // Any answer after the next action is ignored (the client moved on).
    if (lease_ == 0) {
      s->LeaseGrant(0, random_.Range(1, 4), [this, gen](absl::StatusOr<requestpb::LeaseGrant> g) {
        if (gen != gen_ || !g.ok()) return;
        lease_ = g->id();
        ++granted_;
        keepalives_left_ = static_cast<int>(random_.Uniform(6));
        key_ = absl::StrCat("lease", granted_);
      });
      return Next(random_.Range(200'000'000, 600'000'000));
    }
    const uint64_t what = random_.Uniform(3);
    if (what == 0 && !attached_) {
      etcdserverpb::PutRequest r;
      r.set_key(key_);
      const int64_t value = next_value_++;
      value_lease_[value] = lease_;
      r.set_value(absl::StrCat(value));
      r.set_lease(lease_);
      s->Put(r, [this, gen](absl::StatusOr<etcdserverpb::PutResponse> x) {
        if (gen == gen_ && x.ok()) attached_ = true;
      });
    } else if (what == 1 && keepalives_left_ > 0) {
      --keepalives_left_;
      const NodeId l = cluster_.leader();
      if (kv::KvServer* leader = l == sim::kNoNode ? nullptr : ServerOf(cluster_, l)) {
        leader->LeaseKeepAlive(lease_).IgnoreError();
      }
    } else {
      // Read the key; once the lease is gone, move on to the next one.
      etcdserverpb::RangeRequest r;
      r.set_key(key_);
      const int64_t invoked = cluster_.sim().now_ns();
      s->Range(r, [this, invoked](absl::StatusOr<etcdserverpb::RangeResponse> x) {
        if (!x.ok() || x->kvs_size() == 0) return;
        int64_t value = 0;
        if (!absl::SimpleAtoi(x->kvs(0).value(), &value) || !value_lease_.contains(value)) {
          return oracle_.Fail(absl::StrCat("lease: read '", x->kvs(0).value(), "' from ",
                                           x->kvs(0).key(), ", which no lease client wrote"));
        }
        const int64_t lease = value_lease_[value];
        ++reads_checked_;
        if (std::optional<int64_t> at = oracle_.revoked_at(lease); at && *at < invoked) {
          oracle_.Fail(absl::StrFormat(
              "lease: a read begun at t=%.6fs returned %s=%d of lease %d, revoked by t=%.6fs",
              invoked / 1e9, x->kvs(0).key(), value, lease, *at / 1e9));
        }
      });
      if (oracle_.revoked_at(lease_).has_value()) {
        ++revoked_;
        lease_ = 0;
        attached_ = false;
      }
    }
    Next(random_.Range(200'000'000, 600'000'000));
  }

  sim::Cluster& cluster_;
  KvOracle& oracle_;
  env::Random random_;
  int64_t stop_ns_ = 0;
  uint64_t gen_ = 0;
  int64_t lease_ = 0;
  bool attached_ = false;
  int keepalives_left_ = 0;
  std::string key_;
  absl::btree_map<int64_t, int64_t> value_lease_;  // value written -> its lease
  int64_t next_value_ = 0;
  uint64_t granted_ = 0;
  uint64_t revoked_ = 0;
  uint64_t reads_checked_ = 0;
};

// Simulated watch clients: each holds one watch at a time on a random replica, over a random
// key, prefix or everything, with random filters and prev_kv, and every response goes to the
// watch checker. When the watch ends (canceled by a snapshot install, compacted, or its replica
// crashed or restarted) the client resumes on a random replica from the revision after the last
// one it saw, as an etcd client does: a gap across the resume is a violation too.
class Watchers {
 public:
  Watchers(sim::Cluster& cluster, KvOracle& oracle, sim::WatchChecker& checker, int count)
      : cluster_(cluster),
        oracle_(oracle),
        checker_(checker),
        random_(cluster.sim().ForkRandom("watchers")),
        clients_(count) {}

  void Start(int64_t stop_ns) {
    stop_ns_ = stop_ns;
    for (size_t i = 0; i < clients_.size(); ++i) Poll(i, random_.Range(50'000'000, 500'000'000));
  }
  uint64_t watches() const { return watches_; }
  uint64_t events() const { return events_; }
  uint64_t resumes_compacted() const { return compacted_; }

  // Ends every watch (the run is over).
  void EndAll() {
    for (Client& c : clients_) End(c);
  }

 private:
  struct Client {
    bool active = false;
    int64_t watcher = 0;    // the checker's id of the current watch
    NodeId node = sim::kNoNode;
    uint64_t starts = 0;    // the replica's incarnation the watch lives in
    int64_t watch_id = 0;   // the replica's id for it
    int64_t next = 0;       // the revision to resume from (0: none seen yet)
    bool over = false;      // canceled or compacted: resume
    kv::WatchRequest request;
  };

  void End(Client& c) {
    if (!c.active) return;
    c.active = false;
    checker_.OnWatchEnd(c.watcher);
  }

  void Poll(size_t i, int64_t delay_ns) {
    const int64_t at = cluster_.sim().now_ns() + delay_ns;
    if (at >= stop_ns_) return;
    cluster_.sim().Schedule(at, sim::kNoNode, "watcher", i, [this, i] {
      Check(i);
      Poll(i, random_.Range(200'000'000, 1'000'000'000));
    });
  }

  void Check(size_t i) {
    Client& c = clients_[i];
    if (c.active) {
      kv::KvServer* s = ServerOf(cluster_, c.node);
      const bool gone = s == nullptr || cluster_.starts(c.node) != c.starts;
      if (!gone && !c.over) {
        // Now and then a client moves its watch elsewhere on purpose.
        if (!random_.Chance(0.05)) return;
        s->CancelWatch(c.watch_id);
      }
      End(c);
    }
    std::vector<NodeId> live;
    for (NodeId n : cluster_.nodes()) {
      if (ServerOf(cluster_, n) != nullptr && !cluster_.paused(n)) live.push_back(n);
    }
    if (live.empty()) return;
    c.node = live[random_.Uniform(live.size())];
    kv::KvServer* s = ServerOf(cluster_, c.node);
    if (c.next == 0) {  // a new client: choose what to watch
      const uint64_t kind = random_.Uniform(3);
      c.request = kv::WatchRequest();
      if (kind == 0) {
        c.request.key = absl::StrCat("k", random_.Uniform(4));
      } else if (kind == 1) {
        c.request.key = "k";
        c.request.range_end = "l";
      } else {
        c.request.key = std::string(1, '\0');
        c.request.range_end = std::string(1, '\0');
      }
      c.request.no_put = random_.Chance(0.1);
      c.request.no_delete = !c.request.no_put && random_.Chance(0.2);
      c.request.prev_kv = random_.Chance(0.5);
      c.request.progress_notify = random_.Chance(0.5);
      // From the past now and then, to exercise catch-up and compaction.
      const int64_t rev = s->store().revision();
      c.next = random_.Chance(0.5) ? 0 : std::max<int64_t>(1, rev - random_.Range(0, 50));
    }
    c.request.start_revision = c.next;
    c.watcher = next_watcher_++;
    c.over = false;
    c.active = true;
    c.starts = cluster_.starts(c.node);
    ++watches_;
    checker_.OnWatchStart(c.watcher, c.request, s->store().revision());
    const int64_t watcher = c.watcher;
    absl::StatusOr<int64_t> id =
        s->Watch(c.request, [this, i, watcher](const kv::WatchResponse& r) {
          OnResponse(i, watcher, r);
        });
    if (!id.ok()) {
      oracle_.Fail(absl::StrCat("watch refused: ", id.status().ToString()));
      return;
    }
    if (c.active && c.watcher == watcher) c.watch_id = *id;
  }

  void OnResponse(size_t i, int64_t watcher, const kv::WatchResponse& r) {
    Client& c = clients_[i];
    if (!c.active || c.watcher != watcher) return;  // an ended watch (its cancel echo)
    if (absl::Status s = checker_.OnResponse(watcher, r); !s.ok()) {
      return oracle_.Fail(absl::StrCat("watch: ", s.message()));
    }
    events_ += r.events.size();
    if (!r.events.empty() && !r.fragment) c.next = r.events.back().kv().mod_revision() + 1;
    if (r.events.empty() && !r.created && !r.canceled && r.revision > 0) {
      c.next = std::max(c.next, r.revision + 1);  // a progress notification
    }
    if (r.compacted) {
      ++compacted_;
      c.next = r.compact_revision;  // resume from the oldest revision still there
    }
    if (r.canceled || r.compacted) c.over = true;
  }

  sim::Cluster& cluster_;
  KvOracle& oracle_;
  sim::WatchChecker& checker_;
  env::Random random_;
  std::vector<Client> clients_;
  int64_t next_watcher_ = 1;
  int64_t stop_ns_ = 0;
  uint64_t watches_ = 0;
  uint64_t events_ = 0;
  uint64_t compacted_ = 0;
};

}  // namespace

sim::ScenarioResult RunKv(const sim::FaultSchedule& schedule, const sim::RunOptions& options,
                          const KvScenarioConfig& config) {
  sim::Simulator sim(schedule.seed);
  sim.set_trace(options.trace);
  std::vector<env::Address> addresses;
  for (int i = 1; i <= schedule.nodes; ++i) {
    addresses.push_back(absl::StrCat("10.0.0.", i, ":2380"));
  }
  // Each machine's engine outlives its processes, as its disk does; a lost disk loses it too.
  std::vector<std::unique_ptr<kv::MemEngine>> engines(schedule.nodes + 1);
  std::vector<uint64_t> engine_losses(schedule.nodes + 1, 0);
  env::Random crash_random = sim.ForkRandom("engine-crash");
  KvOracle* oracle_ptr = nullptr;
  sim::Cluster* cluster_ptr = nullptr;
  sim::Cluster cluster(sim, [&](env::Env& env, NodeId n) -> std::unique_ptr<sim::Process> {
    if (engines[n] == nullptr || engine_losses[n] != cluster_ptr->losses(n)) {
      engines[n] = std::make_unique<kv::MemEngine>();
      engine_losses[n] = cluster_ptr->losses(n);
    }
    raft::RaftNodeConfig c;
    c.raft.id = n;
    for (int i = 1; i <= schedule.nodes; ++i) {
      c.raft.voters.push_back(i);
      if (i != static_cast<int>(n)) c.peers[i] = addresses[i - 1];
    }
    c.snapshot_entries = config.snapshot_entries;
    c.snapshot_chunk_bytes = 4096;
    c.snapshot_chunks_in_flight = 2;
    kv::KvServerOptions o;
    o.lease.min_ttl_seconds = 1;
    o.mutation_local_reads = config.mutation_local_reads;
    o.mutation_revoke_keeps_keys = config.mutation_revoke_keeps_keys;
    o.progress_notify_interval = absl::Seconds(1);
    kv::KvServerHooks h;
    h.on_commit = [n, &oracle_ptr](int64_t revision, const std::vector<kvpb::Event>& events) {
      oracle_ptr->Committed(n, revision, events);
    };
    h.on_install = [n, &oracle_ptr](uint64_t, int64_t revision) {
      oracle_ptr->Reset(n, revision);
      oracle_ptr->Installed();
    };
    auto p = std::make_unique<KvProcess>();
    KvProcess* raw = p.get();
    h.raft.on_apply = [&oracle_ptr, raw](const raftpb::Entry& e, const raft::Raft&) {
      oracle_ptr->Applied(e);
      if (raw != nullptr && raw->server != nullptr) {
        oracle_ptr->Compacted(raw->server->store().compact_revision());
      }
    };
    h.raft.on_fatal = [&env](const absl::Status& s) {
      env.Log(absl::StrCat("fail-stop: ", s.ToString()));
    };
    p->engine = engines[n].get();
    p->crash_random = &crash_random;
    // The store's revision before replay: replayed commits follow it.
    {
      absl::StatusOr<std::unique_ptr<kv::MvccStore>> before = kv::MvccStore::Open(p->engine);
      oracle_ptr->Reset(n, before.ok() ? (*before)->revision() : 0);
    }
    absl::StatusOr<std::unique_ptr<kv::KvServer>> server =
        kv::KvServer::Open(env, p->engine, std::move(c), o, std::move(h));
    if (server.ok()) {
      p->server = std::move(*server);
    } else if (server.status().code() == absl::StatusCode::kInternal ||
               server.status().code() == absl::StatusCode::kResourceExhausted) {
      env.Log(absl::StrCat("recovery failed on an I/O error: ", server.status().ToString()));
    } else {
      oracle_ptr->Fail(absl::StrCat("n", n, " could not recover: ", server.status().ToString()));
    }
    return p;
  });
  cluster_ptr = &cluster;
  cluster.set_echo_log(options.echo_log);
  cluster.set_leader_finder([&cluster]() {
    NodeId leader = sim::kNoNode;
    uint64_t term = 0;
    for (NodeId n : cluster.nodes()) {
      kv::KvServer* s = ServerOf(cluster, n);
      if (s == nullptr || cluster.paused(n)) continue;
      const raft::Raft& r = s->raft_node().raft();
      if (r.role() == raft::Role::kLeader && r.term() > term) {
        leader = n;
        term = r.term();
      }
    }
    return leader;
  });
  sim::WatchChecker checker;
  KvOracle oracle(cluster, schedule.nodes, checker);
  oracle_ptr = &oracle;
  for (const env::Address& a : addresses) cluster.AddNode(a);
  sim::ScheduleFaults(schedule, cluster, [&oracle](const std::string& why) { oracle.Fail(why); });
  const int64_t heal_ns = schedule.duration_ms * 1'000'000;
  Clients clients(cluster, oracle, config);
  clients.Start(heal_ns);
  Watchers watchers(cluster, oracle, checker, config.watchers);
  watchers.Start(heal_ns);
  LeaseClient leases(cluster, oracle);
  leases.Start(heal_ns);
  sim.RunUntilTrue([&] { return oracle.failed(); }, heal_ns);

  // Liveness: after the heal a write is acknowledged and every replica reaches its revision.
  int64_t converged_ns = -1;
  const int64_t deadline = heal_ns + config.converge_ms_max * 1'000'000;
  if (!oracle.failed()) {
    cluster.Log(sim::kNoNode, "healing every fault");
    sim::HealEverything(cluster, [&cluster](NodeId n) {
      kv::KvServer* s = ServerOf(cluster, n);
      return s == nullptr || s->raft_node().failed();
    });
    bool done = false;
    for (int attempt = 0; !done && !oracle.failed() && sim.now_ns() < deadline; ++attempt) {
      const std::vector<NodeId> nodes = cluster.nodes();
      kv::KvServer* s = ServerOf(cluster, nodes[attempt % nodes.size()]);
      if (s == nullptr) {
        sim.RunUntil(std::min(deadline, sim.now_ns() + 500'000'000));
        continue;
      }
      std::optional<absl::StatusOr<etcdserverpb::PutResponse>> ack;
      etcdserverpb::PutRequest r;
      r.set_key("final");
      r.set_value(absl::StrCat(attempt));
      s->Put(r, [&ack](absl::StatusOr<etcdserverpb::PutResponse> x) { ack = std::move(x); });
      sim.RunUntilTrue([&] { return ack.has_value() || oracle.failed(); },
                       std::min(deadline, sim.now_ns() + 6'000'000'000));
      if (!ack.has_value() || !ack->ok()) {
        sim.RunUntil(std::min(deadline, sim.now_ns() + 200'000'000));
        continue;
      }
      const int64_t revision = (*ack)->header().revision();
      done = sim.RunUntilTrue(
          [&] {
            if (oracle.failed()) return true;
            for (NodeId n : cluster.nodes()) {
              kv::KvServer* x = ServerOf(cluster, n);
              if (x == nullptr || x->store().revision() < revision) return false;
            }
            return true;
          },
          deadline);
    }
    if (done && !oracle.failed()) converged_ns = sim.now_ns() - heal_ns;
    if (!done && !oracle.failed()) {
      std::vector<std::string> states;
      for (NodeId n : cluster.nodes()) {
        kv::KvServer* x = ServerOf(cluster, n);
        states.push_back(x ? absl::StrCat(x->raft_node().raft().ToString(), " rev ",
                                          x->store().revision())
                           : absl::StrCat("n", n, " down"));
      }
      oracle.Fail(absl::StrCat("liveness: no acknowledged write with every replica caught up ",
                               config.converge_ms_max, " ms after the heal: ",
                               absl::StrJoin(states, "; ")));
    }
  }

  // Every watch response was checked as it came; nothing may still wait for the reference.
  watchers.EndAll();
  if (!oracle.failed()) {
    if (absl::Status w = checker.status(); !w.ok()) {
      oracle.Fail(absl::StrCat("watch: ", w.message()));
    }
  }
  if (!oracle.failed()) {
    if (absl::Status w = checker.CheckDrained(); !w.ok()) {
      oracle.Fail(absl::StrCat("watch: ", w.message()));
    }
  }

  // Linearizability of everything the clients saw.
  lc::CheckResult check;
  if (!oracle.failed()) {
    if (absl::Status v = lc::ValidateHistory(clients.history()); !v.ok()) {
      oracle.Fail(absl::StrCat("harness bug: malformed history: ", v.ToString()));
    } else {
      lc::CheckOptions lo;
      lo.memo_bytes_max = uint64_t{256} << 20;
      lo.steps_max = 50'000'000;
      check = lc::Check(clients.history(), lo);
      if (check.verdict == lc::Verdict::kNotLinearizable) {
        oracle.Fail(absl::StrCat("linearizability: ", check.explanation));
      } else if (check.verdict == lc::Verdict::kUnknown) {
        oracle.Fail(absl::StrCat("linearizability checker gave up on key ",
                                 check.key_that_failed, ": ", check.explanation));
      }
    }
  }

  sim::ScenarioResult result;
  result.pass = !oracle.failed();
  result.failure = oracle.failure();
  result.digest = sim.digest();
  result.events = sim.events_run();
  result.end_ns = sim.now_ns();
  result.summary = absl::StrFormat(
      "events=%d ops=%d ok=%d fail=%d unknown=%d revisions=%d compactions=%d installs=%d "
      "lincheck_states=%d watches=%d watch_events=%d watch_compacted=%d leases=%d/%d "
      "lease_reads=%d converged_ms=%.1f",
      result.events, clients.history().size(), clients.count(lc::Outcome::kOk),
      clients.count(lc::Outcome::kFail), clients.count(lc::Outcome::kUnknown),
      oracle.revisions(), clients.compactions(), oracle.installs(), check.states,
      watchers.watches(), watchers.events(), watchers.resumes_compacted(), leases.revoked(),
      leases.granted(), leases.reads_checked(), converged_ns / 1e6);
  if (!result.pass) result.log_tail = absl::StrJoin(cluster.log_tail(), "\n");
  return result;
}

sim::Scenario MakeKvScenario(std::string name, std::string description, KvScenarioConfig config) {
  sim::Scenario s;
  s.name = name;
  s.description = std::move(description);
  s.generate = [name, config](uint64_t seed) {
    return sim::GenerateSwarm(name, seed, config.swarm);
  };
  s.run = [config](const sim::FaultSchedule& schedule, const sim::RunOptions& options) {
    return RunKv(schedule, options, config);
  };
  return s;
}

}  // namespace e2d::scenarios
