// The run trace: spans gathered to rank 0 and written as Chrome JSON.
#include "llmir/runtime/Trace.h"

#include "llmir/runtime/Communicator.h"

#include <cstdio>
#include <cstring>

namespace llmir::runtime {
namespace {

constexpr size_t kFieldsPerSpan = 5;

/// The spans' int64 fields carried bit for bit in a float buffer (the
/// communicator moves floats; MPI copies the bytes unchanged).
std::vector<float> pack(const std::vector<TraceSpan> &spans) {
  std::vector<int64_t> fields;
  fields.reserve(spans.size() * kFieldsPerSpan);
  for (const TraceSpan &s : spans)
    fields.insert(fields.end(), {s.instr, s.lane, s.step, s.startNs, s.endNs});
  std::vector<float> out(fields.size() * 2);
  std::memcpy(out.data(), fields.data(), fields.size() * sizeof(int64_t));
  return out;
}

std::vector<TraceSpan> unpack(const std::vector<float> &data) {
  std::vector<int64_t> f(data.size() / 2);
  std::memcpy(f.data(), data.data(), f.size() * sizeof(int64_t));
  std::vector<TraceSpan> out;
  for (size_t i = 0; i + kFieldsPerSpan <= f.size(); i += kFieldsPerSpan)
    out.push_back({f[i], f[i + 1], f[i + 2], f[i + 3], f[i + 4]});
  return out;
}

std::string jsonEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (static_cast<unsigned char>(c) < 0x20)
      continue;
    out += c;
  }
  return out;
}

/// One rank's spans as Chrome "X" (complete) events plus its lane names.
void appendRank(std::string &json, const Program &program, const RankInfo &rank,
                const std::vector<TraceSpan> &spans) {
  const StageProgram &stage = program.stages[rank.stage];
  char buf[512];
  for (int lane : {kComputeLane, kCommLane}) {
    std::snprintf(buf, sizeof buf,
                  "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": %d, "
                  "\"args\": {\"name\": \"%s\"}},\n",
                  rank.rank, lane, lane == kCommLane ? "comm" : "compute");
    json += buf;
  }
  std::snprintf(buf, sizeof buf,
                "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %d, "
                "\"args\": {\"name\": \"rank %d (stage %lld)\"}},\n",
                rank.rank, rank.rank, static_cast<long long>(stage.index));
  json += buf;
  for (const TraceSpan &s : spans) {
    if (s.instr < 0 || s.instr >= static_cast<int64_t>(stage.instrs.size()))
      continue; // cannot happen: the rank traced this stage's program
    const Instr &instr = stage.instrs[static_cast<size_t>(s.instr)];
    const char *cat = instr.kind == OpKind::EventWait ? "wait"
                      : s.lane == kCommLane          ? "comm"
                                                     : "compute";
    int64_t bytes = 0;
    for (const BufferRef &b : instr.outs.empty() ? instr.ins : instr.outs)
      bytes += b.bytes();
    std::snprintf(buf, sizeof buf,
                  "{\"ph\": \"X\", \"name\": \"%s\", \"cat\": \"%s\", \"pid\": %d, "
                  "\"tid\": %lld, \"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld, "
                  "\"instr\": %lld, \"bytes\": %lld}},\n",
                  jsonEscape(traceName(instr)).c_str(), cat, rank.rank,
                  static_cast<long long>(s.lane), static_cast<double>(s.startNs) / 1e3,
                  static_cast<double>(s.endNs - s.startNs) / 1e3,
                  static_cast<long long>(s.step), static_cast<long long>(s.instr),
                  static_cast<long long>(bytes));
    json += buf;
  }
}

} // namespace

std::vector<TraceSpan> TraceRecorder::spans() const {
  std::vector<TraceSpan> all = lanes_[0];
  all.insert(all.end(), lanes_[1].begin(), lanes_[1].end());
  return all;
}

std::string traceName(const Instr &instr) {
  switch (instr.kind) {
  case OpKind::Kernel:
    return instr.kernel;
  case OpKind::EventWait:
  case OpKind::EventRecord: {
    StatusOr<int64_t> event = instr.intAttr("event");
    return std::string(opKindName(instr.kind)) +
           (event.isOk() ? " " + std::to_string(*event) : "");
  }
  default: {
    StatusOr<std::string> axis = instr.stringAttr("axis");
    return std::string(opKindName(instr.kind)) + (axis.isOk() ? " " + *axis : "");
  }
  }
}

StatusOr<std::string> gatherTrace(const Program &program, const TraceRecorder &trace,
                                  Communicator &comm, int tag) {
  std::vector<float> mine = pack(trace.spans());
  if (comm.rank() != 0) {
    int64_t count = static_cast<int64_t>(mine.size());
    float header[2];
    std::memcpy(header, &count, sizeof count);
    LLMIR_RETURN_IF_ERROR(comm.send(header, 2, 0, tag));
    LLMIR_RETURN_IF_ERROR(comm.send(mine.data(), count, 0, tag + 1));
    return std::string();
  }
  std::string json = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  for (const RankInfo &r : program.ranks) {
    std::vector<float> data;
    if (r.rank == 0) {
      data = std::move(mine);
    } else {
      float header[2];
      LLMIR_RETURN_IF_ERROR(comm.recv(header, 2, r.rank, tag));
      int64_t count = 0;
      std::memcpy(&count, header, sizeof count);
      if (count < 0 || count % (2 * kFieldsPerSpan) != 0)
        return Status::error(StatusCode::CommError,
                             "trace: rank " + std::to_string(r.rank) +
                                 " sent a malformed span count " + std::to_string(count));
      data.resize(static_cast<size_t>(count));
      LLMIR_RETURN_IF_ERROR(comm.recv(data.data(), count, r.rank, tag + 1));
    }
    appendRank(json, program, r, unpack(data));
  }
  // Chrome's parser accepts a trailing comma, Perfetto's and Python's do not.
  if (json.size() >= 2 && json.compare(json.size() - 2, 2, ",\n") == 0)
    json.erase(json.size() - 2, 1);
  return json + "]}\n";
}

} // namespace llmir::runtime
