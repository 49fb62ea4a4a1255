// Copyright e2d authors.
//
// Implementation notes (see wal.h for the contract).
//
// Record framing (little-endian; every record starts at a multiple of 8 bytes):
//   [0,4)   masked crc32c (leveldb's mask) of bytes [4, 20 + length)
//   [4,8)   payload length
//   [8]     type (1 entry, 2 hard state, 3 snapshot marker)
//   [9,12)  zero
//   [12,20) record sequence number
//   [20, 20 + length) payload, then zeros up to the next multiple of 8 (not covered by the crc,
//   but required to be zero). Marker payloads are 16 bytes: u64 index, u64 term.
//
// Segments: "%016x-%016x.wal" (segment sequence number, last index + 1 when it was created).
// The index in the name is informational: an overwrite may later write lower indexes into the
// segment, so recovery does not rely on it. Each new segment starts with the hard state and the
// snapshot marker current at that point of the record stream, so removing older segments never
// loses them.
//
// Snapshot markers: a marker (i, t) keeps the log if the log holds entry i with term t (or its
// base is (i, t)): the snapshot is of a prefix of this log. Otherwise the log restarts after
// the marker: entries are dropped and the next entry must be i + 1. Append and recovery apply
// the very same rules (LogShape), so what Open returns is what the appends described.
//
// Sync rounds (group commit): a round takes every buffered record, writes as many as fit into
// the current segment with one Append, DataSyncs the segment, SyncDirs what is owed (the WAL
// directory after a segment was created, its parent after Open), and if records remain creates
// the next segment and repeats. A new segment is created only after the previous one's data
// sync completed, so after a crash only the last segment can hold a torn tail. Sync() calls that
// arrive during a round wait for the next round, which starts as soon as this one ends. Callbacks
// always come from a file-system callback, never from inside Sync().
//
// Open is synchronous but file-system syncs are not. Open therefore makes only synchronous
// changes (creating the directory or the first segment, truncating a torn tail) and records that
// syncs are owed: the first sync round DataSyncs the last segment (which covers the truncation)
// and SyncDirs the WAL directory and its parent before it reports success. Until then the repair
// may be undone by a crash, which only means the next Open repairs the same tail again.
//
// Release: ReleaseTo removes a prefix of segments whose entries are all at or below the index,
// up to a segment whose name and first records (the hard state and marker current when it was
// created) are durable. The first remaining segment may then hold entries that continue or
// overwrite removed ones, so recovery of a WAL whose first segment is not number 1 is lenient
// about where the log starts (see Replay). Entries at or below the released index may not be
// appended again, nor markers below it.
//
// Destroying the Wal drops callbacks of syncs still in flight (as a crash would); if a callback
// destroys the Wal, the remaining callbacks of its round are dropped too.

#include "raft/wal.h"

#include <algorithm>
#include <climits>
#include <deque>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "env/check.h"
#include "env/crc32c.h"
#include "env/status_macros.h"
#include "env/strings.h"

namespace e2d::raft {
namespace {

constexpr uint64_t kHeaderBytes = 20;
constexpr uint64_t kAlignBytes = 8;
constexpr uint64_t kMarkerPayloadBytes = 16;
constexpr uint64_t kReadChunkBytes = 1 << 20;
// Payloads are parsed by protobuf, whose sizes are ints.
constexpr uint64_t kRecordBytesLimit = INT_MAX - kAlignBytes;
constexpr size_t kSegmentNameBytes = 16 + 1 + 16 + 4;

enum class RecordType : uint8_t { kEntry = 1, kHardState = 2, kSnapshotMarker = 3 };

uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

void PutFixed32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void PutFixed64(std::string* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint32_t GetFixed32(const char* p) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

uint64_t GetFixed64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

uint64_t PaddedBytes(uint64_t n) { return (n + kAlignBytes - 1) / kAlignBytes * kAlignBytes; }

// Bytes one record with a payload of `payload_bytes` takes on disk.
uint64_t FramedBytes(uint64_t payload_bytes) { return PaddedBytes(kHeaderBytes + payload_bytes); }

// Appends the framed record to `out`.
void FrameRecord(RecordType type, uint64_t seq, std::string_view payload, std::string* out) {
  const size_t start = out->size();
  PutFixed32(out, 0);  // the crc, filled in below
  PutFixed32(out, static_cast<uint32_t>(payload.size()));
  out->push_back(static_cast<char>(type));
  out->append(3, '\0');
  PutFixed64(out, seq);
  out->append(payload.data(), payload.size());
  const uint32_t crc =
      env::Crc32c(std::string_view(out->data() + start + 4, out->size() - start - 4));
  std::string masked;
  PutFixed32(&masked, MaskCrc(crc));
  out->replace(start, 4, masked);
  out->append(FramedBytes(payload.size()) - (out->size() - start), '\0');
}

std::string SnapshotMarkerPayload(const SnapshotMarker& marker) {
  std::string payload;
  PutFixed64(&payload, marker.index);
  PutFixed64(&payload, marker.term);
  return payload;
}

// One record read back and parsed.
struct ParsedRecord {
  RecordType type = RecordType::kEntry;
  uint64_t seq = 0;
  uint64_t framed_bytes = 0;
  std::string_view payload;
  raftpb::Entry entry;
  raftpb::HardState hard_state;
  SnapshotMarker marker;
};

bool IsZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

// Parses the payload of `record` by its type. On failure `why` says what is wrong.
bool ParsePayload(ParsedRecord* record, std::string* why) {
  const std::string_view p = record->payload;
  switch (record->type) {
    case RecordType::kEntry:
      if (!record->entry.ParseFromArray(p.data(), static_cast<int>(p.size()))) {
        *why = "unparsable entry payload";
        return false;
      }
      if (record->entry.index() == 0) {
        *why = "entry with index 0";
        return false;
      }
      return true;
    case RecordType::kHardState:
      if (!record->hard_state.ParseFromArray(p.data(), static_cast<int>(p.size()))) {
        *why = "unparsable hard state payload";
        return false;
      }
      return true;
    case RecordType::kSnapshotMarker:
      if (p.size() != kMarkerPayloadBytes) {
        *why = absl::StrCat("snapshot marker payload of ", p.size(), " bytes");
        return false;
      }
      record->marker.index = GetFixed64(p.data());
      record->marker.term = GetFixed64(p.data() + 8);
      return true;
  }
  *why = "unknown record type";
  return false;
}

// Decodes and parses the record framed at `offset` of `data`; does not check the sequence
// number. Cheap checks come first: the torn-tail scan calls this at every aligned offset.
bool DecodeRecord(std::string_view data, uint64_t offset, uint64_t record_bytes_max,
                  ParsedRecord* record, std::string* why) {
  const uint64_t left = data.size() - offset;
  if (left < kHeaderBytes) {
    *why = absl::StrCat("incomplete header (", left, " bytes left in the file)");
    return false;
  }
  const char* p = data.data() + offset;
  const uint64_t length = GetFixed32(p + 4);
  if (length > record_bytes_max) {
    *why = absl::StrCat("payload length ", length, " exceeds record_bytes_max ", record_bytes_max);
    return false;
  }
  if (FramedBytes(length) > left) {
    *why = absl::StrCat("payload length ", length, " runs past the end of the file");
    return false;
  }
  const uint8_t type = static_cast<uint8_t>(p[8]);
  if (type < 1 || type > 3) {
    *why = absl::StrCat("unknown record type ", type);
    return false;
  }
  if (!IsZero(std::string_view(p + 9, 3))) {
    *why = "non-zero header padding";
    return false;
  }
  const uint32_t stored = GetFixed32(p);
  if (MaskCrc(env::Crc32c(std::string_view(p + 4, kHeaderBytes - 4 + length))) != stored) {
    *why = "checksum mismatch";
    return false;
  }
  const uint64_t used = kHeaderBytes + length;
  if (!IsZero(std::string_view(p + used, FramedBytes(length) - used))) {
    *why = "non-zero payload padding";
    return false;
  }
  record->type = static_cast<RecordType>(type);
  record->seq = GetFixed64(p + 12);
  record->framed_bytes = FramedBytes(length);
  record->payload = std::string_view(p + kHeaderBytes, length);
  return ParsePayload(record, why);
}

std::string SegmentName(uint64_t seq, uint64_t first_index) {
  return absl::StrFormat("%016x-%016x.wal", seq, first_index);
}

bool ParseHex16(std::string_view digits, uint64_t* value) {
  *value = 0;
  for (char c : digits) {
    int nibble = 0;
    if (c >= '0' && c <= '9') {
      nibble = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      nibble = c - 'a' + 10;
    } else {
      return false;
    }
    *value = (*value << 4) | static_cast<uint64_t>(nibble);
  }
  return true;
}

// Parses a segment name made by SegmentName.
bool ParseSegmentName(std::string_view name, uint64_t* seq, uint64_t* first_index) {
  return name.size() == kSegmentNameBytes && name[16] == '-' && name.substr(33) == ".wal" &&
         ParseHex16(name.substr(0, 16), seq) && ParseHex16(name.substr(17, 16), first_index);
}

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  return absl::Status(status.code(),
                      absl::StrCat("wal: ", env::ToAbsl(context), ": ", status.message()));
}

std::string CorruptMessage(std::string_view path, uint64_t offset, std::string_view why) {
  return absl::StrCat("wal: corrupt record in ", env::ToAbsl(path), " at offset ", offset, ": ",
                      env::ToAbsl(why));
}

// The shape of the log a sequence of records defines: the indexes present and their terms,
// after overwrites and snapshot markers. Append and recovery apply the same rules.
class LogShape {
 public:
  uint64_t base_index() const { return base_index_; }
  uint64_t marker_index() const { return marker_index_; }
  // Entries at or below this index may no longer be appended.
  uint64_t floor_index() const { return std::max(base_index_, marker_index_); }
  uint64_t last_index() const { return base_index_ + terms_.size(); }

  // Whether an entry with `index` may come next: above the base and the last snapshot marker
  // (a snapshot covers committed entries, which are never overwritten), at most one past the
  // end.
  bool Accepts(uint64_t index) const {
    return index > base_index_ && index > marker_index_ && index <= last_index() + 1;
  }

  // Adds an entry, dropping every entry at or after its index. REQUIRES: Accepts(index).
  void AddEntry(uint64_t index, uint64_t term) {
    E2D_CHECK(Accepts(index), "index %llu, base %llu, last %llu",
              static_cast<unsigned long long>(index), static_cast<unsigned long long>(base_index_),
              static_cast<unsigned long long>(last_index()));
    terms_.resize(index - base_index_ - 1);
    terms_.push_back(term);
  }

  // Applies a snapshot marker. Returns true if it dropped the entries (the log restarts after
  // the marker), false if the log holds the marker's (index, term), or is past it, and stays as
  // it is.
  bool ApplyMarker(const SnapshotMarker& marker) {
    marker_index_ = std::max(marker_index_, marker.index);
    if (Holds(marker)) {
      if (marker.index == base_index_) {
        base_term_ = marker.term;
        base_term_known_ = true;
      }
      return false;
    }
    base_index_ = marker.index;
    base_term_ = marker.term;
    base_term_known_ = true;
    terms_.clear();
    return true;
  }

  // Empties the log, to continue at `index` (its earlier segments were released). The term of
  // entry index - 1 is unknown: a marker there is taken to be of this log.
  void RestartAt(uint64_t index) {
    E2D_CHECK(index > marker_index_, "restart at %llu, at or below marker %llu",
              static_cast<unsigned long long>(index),
              static_cast<unsigned long long>(marker_index_));
    terms_.clear();
    base_index_ = index - 1;
    base_term_ = 0;
    base_term_known_ = false;
  }

 private:
  bool Holds(const SnapshotMarker& marker) const {
    // Below the base: the entries it covers are gone already (a marker restated at the start of
    // a segment, read after a restart).
    if (marker.index < base_index_) return true;
    if (marker.index == base_index_) return !base_term_known_ || marker.term == base_term_;
    return marker.index > base_index_ && marker.index <= last_index() &&
           terms_[marker.index - base_index_ - 1] == marker.term;
  }

  uint64_t base_index_ = 0;  // the log holds entries base_index_ + 1 ... last_index()
  uint64_t base_term_ = 0;
  bool base_term_known_ = true;
  uint64_t marker_index_ = 0;  // the highest snapshot marker applied
  std::vector<uint64_t> terms_;
};

// A record appended and not yet written to a segment.
struct PendingRecord {
  RecordType type = RecordType::kEntry;
  std::string payload = {};
  uint64_t entry_index = 0;       // kEntry
  SnapshotMarker marker = {};     // kSnapshotMarker
  uint64_t last_index_after = 0;  // the log's last index once this record applies
};

// One segment file.
struct Segment {
  uint64_t seq = 0;
  std::string path;
  uint64_t size_bytes = 0;        // bytes written (or recovered)
  uint64_t durable_bytes = 0;     // bytes covered by a completed DataSync of this Wal
  uint64_t header_end_bytes = 0;  // end of the records written at creation; 0 if recovered
  bool name_durable = false;      // a SyncDir of the directory completed since it was created
  bool synced = false;            // recovered and not the last, or a DataSync of it completed
  bool has_entry = false;
  uint64_t max_entry_index = 0;
};

// Updates `segment`'s summary for a record of `type`.
void NoteRecord(Segment& segment, RecordType type, uint64_t entry_index) {
  if (type == RecordType::kEntry) {
    segment.has_entry = true;
    segment.max_entry_index = std::max(segment.max_entry_index, entry_index);
  }
}

// What recovery accumulates while reading the segments in order.
struct Replay {
  // Earlier segments were released, so entries here may continue or overwrite entries that are
  // gone: an entry above the last marker that would start the log, or goes at or below its
  // base, restarts the log at its index (a gap after an entry is still DataLoss).
  bool lenient_start = false;
  std::optional<uint64_t> last_seq;
  LogShape shape;
  std::vector<raftpb::Entry> entries;
  std::optional<raftpb::HardState> hard_state;
  std::optional<std::string> hard_state_payload;
  std::optional<SnapshotMarker> marker;

  // Applies a valid record read at `offset` of `path`. DataLoss if its entry leaves a gap.
  absl::Status Apply(ParsedRecord& record, std::string_view path, uint64_t offset) {
    if (record.type == RecordType::kEntry) {
      const uint64_t index = record.entry.index();
      if (!shape.Accepts(index)) {
        const bool restart = lenient_start && index > shape.marker_index() &&
                             (entries.empty() || index <= shape.base_index());
        if (!restart) {
          return absl::DataLossError(
              absl::StrCat("wal: entry ", index, " in ", env::ToAbsl(path), " at offset ", offset,
                           " does not continue the log (may follow ", shape.floor_index(),
                           " up to ", shape.last_index() + 1, ")"));
        }
        entries.clear();
        shape.RestartAt(index);
      }
      entries.erase(entries.begin() + static_cast<ptrdiff_t>(index - shape.base_index() - 1),
                    entries.end());
      shape.AddEntry(index, record.entry.term());
      entries.push_back(std::move(record.entry));
    } else if (record.type == RecordType::kHardState) {
      hard_state = record.hard_state;
      hard_state_payload = std::string(record.payload);
    } else {
      if (shape.ApplyMarker(record.marker)) entries.clear();
      marker = record.marker;
    }
    last_seq = record.seq;
    return absl::OkStatus();
  }
};

struct SegmentId {
  uint64_t seq = 0;
  std::string name;
};

}  // namespace

class Wal::Impl {
 public:
  Impl(env::FileSystem& fs, const WalOptions& options)
      : fs_(fs), options_(options), alive_(std::make_shared<Impl*>(this)) {}
  ~Impl() { *alive_ = nullptr; }

  absl::Status Recover(WalContents* contents);
  absl::Status Append(const std::vector<raftpb::Entry>& entries,
                      const raftpb::HardState* hard_state);
  absl::Status AppendSnapshotMarker(const SnapshotMarker& marker);
  void Sync(env::SyncCallback done);
  absl::Status ReleaseTo(uint64_t index);
  uint64_t last_index() const { return shape_.last_index(); }
  bool failed() const { return !failure_.ok(); }

 private:
  // ---- Recovery ----
  absl::StatusOr<std::vector<SegmentId>> ListSegments();
  absl::StatusOr<std::string> ReadWhole(env::File& file, std::string_view path);
  // Reads one segment into `replay`; returns the bytes of valid records (less than the file
  // size only for a torn tail of the last segment).
  absl::StatusOr<uint64_t> ReplaySegment(std::string_view data, bool is_last, Segment& segment,
                                         Replay& replay);
  // OK if the bad record at `offset` starts a torn tail; DataLoss if it is corruption.
  absl::Status CheckTornTail(std::string_view data, uint64_t offset, std::string_view why,
                             bool is_last, std::string_view path, std::optional<uint64_t> last_seq);
  void Adopt(const Replay& replay);
  absl::Status CreateFirstSegment();

  // ---- Sync rounds ----
  void StartRound();
  void WriteStep();
  void WriteRecordsThatFit();
  void OnDataSynced(uint64_t seq, uint64_t synced_bytes, absl::Status status);
  void SyncDirsStep();
  void OnDirSynced(uint64_t max_seq, absl::Status status);
  void RollSegment();
  // Ends the round through a file-system callback (the WAL failed: nothing more to write).
  void EndRoundLater();
  void EndRound();

  // Whether recovery may start at segments_[first] once the segments before it are removed:
  // its name and its first records (the hard state and marker current when it was created) are
  // durable. Its entries may then continue or overwrite entries that are gone, which Replay's
  // lenient start accepts.
  bool CanStartAt(size_t first) const;
  // Whether an entry with `index` may be appended next.
  bool Accepts(uint64_t index) const { return index > released_index_ && shape_.Accepts(index); }
  uint64_t floor_index() const { return std::max(shape_.floor_index(), released_index_); }

  void Fail(absl::Status status);
  std::string PathOf(std::string_view name) const;
  std::string ParentDir() const;
  Segment* FindSegment(uint64_t seq);
  absl::Status CheckBuffer(uint64_t bytes) const;
  void Buffer(PendingRecord record);
  // Wraps `fn` so that it does not run once this Impl is gone.
  env::SyncCallback Guard(std::function<void(absl::Status)> fn);

  env::FileSystem& fs_;
  const WalOptions options_;
  const std::shared_ptr<Impl*> alive_;  // nulled by the destructor
  absl::Status failure_;                // the first error; sticky

  // The log as appended (buffered records included).
  LogShape shape_;
  // Entries at or below this index were removed by ReleaseTo: they may not be overwritten, and no
  // marker may go below them.
  uint64_t released_index_ = 0;
  std::deque<PendingRecord> pending_;
  uint64_t pending_bytes_ = 0;

  // The record stream as written to segments, for the first records of a new segment.
  std::optional<std::string> written_hard_state_;
  std::optional<SnapshotMarker> written_marker_;
  uint64_t written_last_index_ = 0;
  uint64_t next_seq_ = 1;

  std::vector<Segment> segments_;    // in order; the last is the one written to
  std::unique_ptr<env::File> file_;  // the last segment
  bool parent_sync_owed_ = false;    // SyncDir of the WAL directory's parent
  bool dir_sync_owed_ = false;       // SyncDir of the WAL directory

  bool round_in_flight_ = false;
  std::deque<PendingRecord> round_records_;  // taken by the round, not yet written
  std::vector<env::SyncCallback> round_callbacks_;
  std::vector<env::SyncCallback> next_callbacks_;
};

// ---- Helpers ----

std::string Wal::Impl::PathOf(std::string_view name) const {
  if (options_.dir.empty()) return std::string(name);
  return absl::StrCat(options_.dir, "/", env::ToAbsl(name));
}

std::string Wal::Impl::ParentDir() const {
  const size_t slash = options_.dir.rfind('/');
  return slash == std::string::npos ? std::string() : options_.dir.substr(0, slash);
}

Segment* Wal::Impl::FindSegment(uint64_t seq) {
  for (Segment& segment : segments_) {
    if (segment.seq == seq) return &segment;
  }
  return nullptr;
}

void Wal::Impl::Fail(absl::Status status) {
  E2D_CHECK(!status.ok(), "failing with OK");
  if (failure_.ok()) failure_ = std::move(status);
}

env::SyncCallback Wal::Impl::Guard(std::function<void(absl::Status)> fn) {
  return [alive = alive_, fn = std::move(fn)](absl::Status status) {
    if (*alive != nullptr) fn(std::move(status));
  };
}

// ---- Recovery ----

absl::StatusOr<std::vector<SegmentId>> Wal::Impl::ListSegments() {
  absl::StatusOr<std::vector<std::string>> names = fs_.List(options_.dir);
  if (!names.ok()) return Annotate(names.status(), "listing the WAL directory");
  std::vector<SegmentId> ids;
  for (const std::string& name : *names) {
    if (name.size() < 4 || name.substr(name.size() - 4) != ".wal") continue;
    SegmentId id;
    uint64_t first_index = 0;
    if (!ParseSegmentName(name, &id.seq, &first_index)) {
      return absl::DataLossError(
          absl::StrCat("wal: ", PathOf(name), " is not a segment name (want %016x-%016x.wal)"));
    }
    id.name = name;
    ids.push_back(std::move(id));
  }
  std::sort(ids.begin(), ids.end(),
            [](const SegmentId& a, const SegmentId& b) { return a.seq < b.seq; });
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i].seq != ids[i - 1].seq + 1) {
      return absl::DataLossError(absl::StrCat(
          "wal: segment ", PathOf(ids[i - 1].name), " is followed by ", PathOf(ids[i].name),
          ids[i].seq == ids[i - 1].seq ? " (duplicate sequence number)" : " (missing segment)"));
    }
  }
  return ids;
}

absl::StatusOr<std::string> Wal::Impl::ReadWhole(env::File& file, std::string_view path) {
  absl::StatusOr<uint64_t> size = file.Size();
  if (!size.ok()) return Annotate(size.status(), absl::StrCat("reading ", env::ToAbsl(path)));
  std::string data;
  while (data.size() < *size) {
    const uint64_t want = std::min<uint64_t>(*size - data.size(), kReadChunkBytes);
    absl::StatusOr<std::string> chunk = file.ReadAt(data.size(), want);
    if (!chunk.ok()) {
      return Annotate(chunk.status(), absl::StrCat("reading ", env::ToAbsl(path)));
    }
    if (chunk->empty()) break;  // the file shrank meanwhile
    data += *chunk;
  }
  return data;
}

absl::StatusOr<uint64_t> Wal::Impl::ReplaySegment(std::string_view data, bool is_last,
                                                  Segment& segment, Replay& replay) {
  uint64_t offset = 0;
  while (offset < data.size()) {
    ParsedRecord record;
    std::string why;
    bool ok = DecodeRecord(data, offset, options_.record_bytes_max, &record, &why);
    if (ok && replay.last_seq.has_value() && record.seq != *replay.last_seq + 1) {
      why = absl::StrCat("sequence number ", record.seq, " where ", *replay.last_seq + 1,
                         " was expected");
      ok = false;
    }
    if (!ok) {
      E2D_RETURN_IF_ERROR(CheckTornTail(data, offset, why, is_last, segment.path, replay.last_seq));
      return offset;
    }
    offset += record.framed_bytes;
    NoteRecord(segment, record.type, record.entry.index());
    E2D_RETURN_IF_ERROR(replay.Apply(record, segment.path, offset - record.framed_bytes));
  }
  return offset;
}

absl::Status Wal::Impl::CheckTornTail(std::string_view data, uint64_t offset, std::string_view why,
                                      bool is_last, std::string_view path,
                                      std::optional<uint64_t> last_seq) {
  if (!is_last) {
    return absl::DataLossError(
        absl::StrCat(CorruptMessage(path, offset, why), " (in a segment that is not the last)"));
  }
  // A torn write leaves nothing valid after it; a valid later record means that durable data
  // was damaged.
  for (uint64_t at = offset + kAlignBytes; at + kHeaderBytes <= data.size(); at += kAlignBytes) {
    ParsedRecord later;
    std::string ignored;
    if (DecodeRecord(data, at, options_.record_bytes_max, &later, &ignored) &&
        later.seq > last_seq.value_or(0)) {
      return absl::DataLossError(absl::StrCat(CorruptMessage(path, offset, why),
                                              "; a valid record (sequence number ", later.seq,
                                              ") follows at offset ", at));
    }
  }
  return absl::OkStatus();
}

void Wal::Impl::Adopt(const Replay& replay) {
  shape_ = replay.shape;
  written_hard_state_ = replay.hard_state_payload;
  written_marker_ = replay.marker;
  written_last_index_ = shape_.last_index();
  next_seq_ = replay.last_seq.has_value() ? *replay.last_seq + 1 : 1;
}

absl::Status Wal::Impl::CreateFirstSegment() {
  Segment segment;
  segment.seq = 1;
  segment.path = PathOf(SegmentName(segment.seq, shape_.last_index() + 1));
  absl::StatusOr<std::unique_ptr<env::File>> file =
      fs_.Open(segment.path, {.create = true, .exclusive = true});
  if (!file.ok()) return Annotate(file.status(), absl::StrCat("creating ", segment.path));
  file_ = std::move(*file);
  segments_.push_back(std::move(segment));
  return absl::OkStatus();
}

absl::Status Wal::Impl::Recover(WalContents* contents) {
  absl::Status status = fs_.CreateDir(options_.dir);
  if (!status.ok()) return Annotate(status, absl::StrCat("creating directory ", options_.dir));
  E2D_ASSIGN_OR_RETURN(const std::vector<SegmentId> ids, ListSegments());
  Replay replay;
  replay.lenient_start = !ids.empty() && ids.front().seq > 1;
  uint64_t torn_bytes = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool is_last = i + 1 == ids.size();
    Segment segment;
    segment.seq = ids[i].seq;
    segment.path = PathOf(ids[i].name);
    absl::StatusOr<std::unique_ptr<env::File>> file = fs_.Open(segment.path, {});
    if (!file.ok()) return Annotate(file.status(), absl::StrCat("opening ", segment.path));
    E2D_ASSIGN_OR_RETURN(const std::string data, ReadWhole(**file, segment.path));
    E2D_ASSIGN_OR_RETURN(const uint64_t valid_bytes, ReplaySegment(data, is_last, segment, replay));
    segment.size_bytes = valid_bytes;
    // The last segment may hold writes no sync covered yet: the first round syncs it.
    segment.synced = !is_last;
    segment.durable_bytes = is_last ? 0 : valid_bytes;
    if (is_last) {
      torn_bytes = data.size() - valid_bytes;
      file_ = std::move(*file);
    }
    segments_.push_back(std::move(segment));
  }
  // Everything checked: only now change the disk.
  Adopt(replay);
  if (segments_.empty()) {
    E2D_RETURN_IF_ERROR(CreateFirstSegment());
  } else if (torn_bytes > 0) {
    status = file_->Truncate(segments_.back().size_bytes);
    if (!status.ok()) {
      return Annotate(status, absl::StrCat("cutting the torn tail of ", segments_.back().path));
    }
  }
  parent_sync_owed_ = !options_.dir.empty();
  dir_sync_owed_ = true;
  contents->hard_state = replay.hard_state;
  contents->snapshot = replay.marker;
  contents->entries = std::move(replay.entries);
  contents->torn_bytes_cut = torn_bytes;
  return absl::OkStatus();
}

// ---- Appending ----

absl::Status Wal::Impl::CheckBuffer(uint64_t bytes) const {
  if (bytes > options_.buffer_bytes_max || pending_bytes_ > options_.buffer_bytes_max - bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "wal: append of ", bytes, " bytes would exceed buffer_bytes_max ",
        options_.buffer_bytes_max, " (", pending_bytes_, " bytes buffered): sync first"));
  }
  return absl::OkStatus();
}

void Wal::Impl::Buffer(PendingRecord record) {
  pending_bytes_ += FramedBytes(record.payload.size());
  pending_.push_back(std::move(record));
}

absl::Status Wal::Impl::Append(const std::vector<raftpb::Entry>& entries,
                               const raftpb::HardState* hard_state) {
  if (failed()) return failure_;
  if (!entries.empty() && !Accepts(entries.front().index())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "wal: entry ", entries.front().index(), " does not continue the log (must be above ",
        floor_index(), " and at most ", shape_.last_index() + 1, ")"));
  }
  std::vector<std::string> payloads;
  uint64_t bytes = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0 && entries[i].index() != entries[i - 1].index() + 1) {
      return absl::InvalidArgumentError(absl::StrCat("wal: entry ", entries[i].index(),
                                                     " follows entry ", entries[i - 1].index()));
    }
    payloads.push_back(entries[i].SerializeAsString());
  }
  if (hard_state != nullptr) payloads.push_back(hard_state->SerializeAsString());
  for (const std::string& payload : payloads) {
    if (payload.size() > options_.record_bytes_max) {
      return absl::InvalidArgumentError(absl::StrCat("wal: record of ", payload.size(),
                                                     " bytes exceeds record_bytes_max ",
                                                     options_.record_bytes_max));
    }
    bytes += FramedBytes(payload.size());
  }
  E2D_RETURN_IF_ERROR(CheckBuffer(bytes));
  for (size_t i = 0; i < entries.size(); ++i) {
    shape_.AddEntry(entries[i].index(), entries[i].term());
    Buffer({.type = RecordType::kEntry,
            .payload = std::move(payloads[i]),
            .entry_index = entries[i].index(),
            .last_index_after = shape_.last_index()});
  }
  if (hard_state != nullptr) {
    Buffer({.type = RecordType::kHardState,
            .payload = std::move(payloads.back()),
            .last_index_after = shape_.last_index()});
  }
  return absl::OkStatus();
}

absl::Status Wal::Impl::AppendSnapshotMarker(const SnapshotMarker& marker) {
  if (failed()) return failure_;
  if (marker.index < floor_index()) {
    return absl::InvalidArgumentError(absl::StrCat("wal: snapshot marker ", marker.index,
                                                   " is below the last marker or log start ",
                                                   floor_index()));
  }
  std::string payload = SnapshotMarkerPayload(marker);
  E2D_RETURN_IF_ERROR(CheckBuffer(FramedBytes(payload.size())));
  shape_.ApplyMarker(marker);
  Buffer({.type = RecordType::kSnapshotMarker,
          .payload = std::move(payload),
          .marker = marker,
          .last_index_after = shape_.last_index()});
  return absl::OkStatus();
}

// ---- Sync rounds ----

void Wal::Impl::Sync(env::SyncCallback done) {
  E2D_CHECK(done != nullptr, "Sync needs a callback");
  if (round_in_flight_) {
    next_callbacks_.push_back(std::move(done));
    return;
  }
  round_callbacks_.push_back(std::move(done));
  StartRound();
}

void Wal::Impl::StartRound() {
  E2D_CHECK(!round_in_flight_ && round_records_.empty(), "a round is already in flight");
  round_in_flight_ = true;
  round_records_.swap(pending_);
  pending_bytes_ = 0;
  WriteStep();
}

void Wal::Impl::WriteStep() {
  if (!failed()) WriteRecordsThatFit();
  if (failed()) {
    EndRoundLater();
    return;
  }
  // Even with nothing written, the sync gives the round its callback (never inline) and
  // covers repairs Open made.
  const Segment& segment = segments_.back();
  const uint64_t seq = segment.seq;
  const uint64_t size = segment.size_bytes;
  file_->DataSync(Guard(
      [this, seq, size](absl::Status status) { OnDataSynced(seq, size, std::move(status)); }));
}

void Wal::Impl::WriteRecordsThatFit() {
  Segment& segment = segments_.back();
  std::string batch;
  while (!round_records_.empty()) {
    const PendingRecord& record = round_records_.front();
    const uint64_t at = segment.size_bytes + batch.size();
    const uint64_t end = at + FramedBytes(record.payload.size());
    // A segment takes at least one record beyond its first ones, however large.
    if (end > options_.segment_size_bytes_max && at > segment.header_end_bytes) break;
    FrameRecord(record.type, next_seq_++, record.payload, &batch);
    NoteRecord(segment, record.type, record.entry_index);
    if (record.type == RecordType::kHardState) written_hard_state_ = record.payload;
    if (record.type == RecordType::kSnapshotMarker) written_marker_ = record.marker;
    written_last_index_ = record.last_index_after;
    round_records_.pop_front();
  }
  if (batch.empty()) return;
  const absl::Status status = file_->Append(batch);
  if (!status.ok()) {
    Fail(Annotate(status, absl::StrCat("writing ", segment.path)));
    return;
  }
  segment.size_bytes += batch.size();
}

void Wal::Impl::OnDataSynced(uint64_t seq, uint64_t synced_bytes, absl::Status status) {
  Segment* segment = FindSegment(seq);
  E2D_CHECK(segment != nullptr, "the segment being written was removed");
  if (!status.ok()) Fail(Annotate(status, absl::StrCat("syncing ", segment->path)));
  if (failed()) {
    EndRound();
    return;
  }
  segment->synced = true;
  segment->durable_bytes = std::max(segment->durable_bytes, synced_bytes);
  SyncDirsStep();
}

void Wal::Impl::SyncDirsStep() {
  if (parent_sync_owed_) {
    parent_sync_owed_ = false;
    fs_.SyncDir(ParentDir(),
                Guard([this](absl::Status status) { OnDirSynced(0, std::move(status)); }));
    return;
  }
  if (dir_sync_owed_) {
    dir_sync_owed_ = false;
    const uint64_t max_seq = segments_.back().seq;
    fs_.SyncDir(options_.dir, Guard([this, max_seq](absl::Status status) {
                  OnDirSynced(max_seq, std::move(status));
                }));
    return;
  }
  if (round_records_.empty()) {
    EndRound();
    return;
  }
  RollSegment();
  WriteStep();
}

void Wal::Impl::OnDirSynced(uint64_t max_seq, absl::Status status) {
  if (!status.ok()) Fail(Annotate(status, "syncing the WAL directory"));
  if (failed()) {
    EndRound();
    return;
  }
  for (Segment& segment : segments_) {
    if (segment.seq <= max_seq) segment.name_durable = true;
  }
  SyncDirsStep();
}

void Wal::Impl::RollSegment() {
  Segment segment;
  segment.seq = segments_.back().seq + 1;
  segment.path = PathOf(SegmentName(segment.seq, written_last_index_ + 1));
  absl::StatusOr<std::unique_ptr<env::File>> file =
      fs_.Open(segment.path, {.create = true, .exclusive = true});
  if (!file.ok()) {
    Fail(Annotate(file.status(), absl::StrCat("creating ", segment.path)));
    return;
  }
  std::string header;
  if (written_hard_state_.has_value()) {
    FrameRecord(RecordType::kHardState, next_seq_++, *written_hard_state_, &header);
  }
  if (written_marker_.has_value()) {
    FrameRecord(RecordType::kSnapshotMarker, next_seq_++, SnapshotMarkerPayload(*written_marker_),
                &header);
  }
  if (!header.empty()) {
    const absl::Status status = (*file)->Append(header);
    if (!status.ok()) {
      Fail(Annotate(status, absl::StrCat("writing ", segment.path)));
      return;
    }
  }
  segment.size_bytes = header.size();
  segment.header_end_bytes = header.size();
  file_ = std::move(*file);
  segments_.push_back(std::move(segment));
  dir_sync_owed_ = true;
}

void Wal::Impl::EndRoundLater() {
  fs_.SyncDir(options_.dir, Guard([this](absl::Status) { EndRound(); }));
}

void Wal::Impl::EndRound() {
  E2D_CHECK(round_in_flight_, "no round in flight");
  round_in_flight_ = false;
  round_records_.clear();  // only non-empty if the WAL failed
  std::vector<env::SyncCallback> done;
  done.swap(round_callbacks_);
  const absl::Status status = failure_;
  if (!next_callbacks_.empty()) {
    round_callbacks_.swap(next_callbacks_);
    StartRound();
  }
  const std::shared_ptr<Impl*> alive = alive_;
  for (env::SyncCallback& callback : done) {
    if (*alive == nullptr) return;  // a callback destroyed the Wal
    callback(status);
  }
}

// ---- Releasing ----

bool Wal::Impl::CanStartAt(size_t first) const {
  const Segment& segment = segments_[first];
  return segment.name_durable && segment.synced &&
         segment.durable_bytes >= segment.header_end_bytes;
}

absl::Status Wal::Impl::ReleaseTo(uint64_t index) {
  if (failed()) return failure_;
  // Segments [0, count) go if they hold no entry above `index` and the WAL can start at segment
  // `count`. The last segment always stays.
  size_t count = 0;
  for (size_t next = 1; next < segments_.size(); ++next) {
    const Segment& prev = segments_[next - 1];
    if (prev.has_entry && prev.max_entry_index > index) break;
    if (CanStartAt(next)) count = next;
  }
  if (count == 0) return absl::OkStatus();
  uint64_t max_removed_index = 0;
  for (size_t i = 0; i < count; ++i) {
    max_removed_index = std::max(max_removed_index, segments_[i].max_entry_index);
  }
  released_index_ = std::max(released_index_, max_removed_index);
  for (size_t i = 0; i < count; ++i) {  // oldest first: a partial removal stays a valid WAL
    const absl::Status status = fs_.Remove(segments_[i].path);
    if (!status.ok()) {
      Fail(Annotate(status, absl::StrCat("removing ", segments_[i].path)));
      segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(i));
      return failure_;
    }
  }
  segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(count));
  fs_.SyncDir(options_.dir, Guard([this](absl::Status status) {
                if (!status.ok()) Fail(Annotate(status, "syncing the WAL directory"));
              }));
  return absl::OkStatus();
}

// ---- Wal ----

namespace {

absl::Status ValidateOptions(const WalOptions& options) {
  if (options.segment_size_bytes_max == 0 || options.buffer_bytes_max == 0 ||
      options.record_bytes_max == 0 || options.record_bytes_max > kRecordBytesLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("wal: bad options: segment_size_bytes_max ", options.segment_size_bytes_max,
                     ", buffer_bytes_max ", options.buffer_bytes_max, ", record_bytes_max ",
                     options.record_bytes_max, " (each must be positive, record_bytes_max at most ",
                     kRecordBytesLimit, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(env::FileSystem& fs, const WalOptions& options,
                                               WalContents* contents) {
  E2D_CHECK(contents != nullptr, "Open needs somewhere to put the contents");
  E2D_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(fs, options);
  WalContents recovered;
  E2D_RETURN_IF_ERROR(impl->Recover(&recovered));
  *contents = std::move(recovered);
  return std::unique_ptr<Wal>(new Wal(std::move(impl)));
}

Wal::Wal(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Wal::~Wal() = default;

absl::Status Wal::Append(const std::vector<raftpb::Entry>& entries,
                         const raftpb::HardState* hard_state) {
  return impl_->Append(entries, hard_state);
}

absl::Status Wal::AppendSnapshotMarker(const SnapshotMarker& marker) {
  return impl_->AppendSnapshotMarker(marker);
}

void Wal::Sync(std::function<void(absl::Status)> done) { impl_->Sync(std::move(done)); }

absl::Status Wal::ReleaseTo(uint64_t index) { return impl_->ReleaseTo(index); }

uint64_t Wal::last_index() const { return impl_->last_index(); }

bool Wal::failed() const { return impl_->failed(); }

}  // namespace e2d::raft
