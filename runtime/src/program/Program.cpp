// Program file decoding: FlatBuffers verification first, then the semantic
// checks the interpreter relies on (buffers inside the arena, consistent rank
// map, known parameters), so nothing later needs to trust the file.
#include "llmir/runtime/Program.h"

#include "llmir/runtime/schema/program_generated.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>

namespace llmir::runtime {
namespace {

constexpr int64_t kMaxDims = 8;
constexpr int64_t kMaxRanks = 1 << 20;

Status corrupt(const std::string &what) {
  return Status::error(StatusCode::DataLoss, "corrupt program file: " + what);
}

StatusOr<ScalarType> decodeScalarType(fb::DType d) {
  switch (d) {
  case fb::DType::F32: return ScalarType::F32;
  case fb::DType::BF16: return ScalarType::BF16;
  case fb::DType::F16: return ScalarType::F16;
  case fb::DType::I32: return ScalarType::I32;
  case fb::DType::I64: return ScalarType::I64;
  }
  return corrupt("unknown dtype " + std::to_string(static_cast<int>(d)));
}

/// Product of dims with overflow and sign checks.
StatusOr<int64_t> checkedElements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return corrupt("negative dimension " + std::to_string(d));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 16 / d)
      return corrupt("tensor size overflows");
    n *= d;
  }
  return n;
}

/// Copies a vector of 64-bit scalars. The FlatBuffers verifier checks the
/// alignment of a vector's length but not of 8-byte elements, so elements are
/// copied bytewise instead of loaded in place.
template <typename T>
std::vector<T> copyScalars(const flatbuffers::Vector<T> *v) {
  std::vector<T> out(v ? v->size() : 0);
  if (!out.empty())
    std::memcpy(out.data(), v->Data(), out.size() * sizeof(T));
  return out;
}

StatusOr<std::vector<int64_t>>
decodeShape(const flatbuffers::Vector<int64_t> *shape) {
  std::vector<int64_t> out;
  if (!shape)
    return out;
  if (shape->size() > kMaxDims)
    return corrupt("tensor of rank " + std::to_string(shape->size()));
  out = copyScalars(shape);
  StatusOr<int64_t> n = checkedElements(out);
  if (!n.isOk())
    return n.status();
  return out;
}

StatusOr<BufferRef> decodeBuffer(const fb::Buffer *b, int64_t arenaBytes,
                                 const std::string &where) {
  if (!b)
    return corrupt(where + ": missing buffer");
  BufferRef ref;
  ref.offset = b->offset();
  StatusOr<ScalarType> dtype = decodeScalarType(b->dtype());
  if (!dtype.isOk())
    return dtype.status();
  ref.dtype = *dtype;
  StatusOr<std::vector<int64_t>> shape = decodeShape(b->shape());
  if (!shape.isOk())
    return Status::error(StatusCode::DataLoss,
                         where + ": " + shape.status().message());
  ref.shape = std::move(*shape);
  if (ref.offset < 0 || ref.offset > arenaBytes ||
      ref.bytes() > arenaBytes - ref.offset)
    return corrupt(where + ": buffer " + ref.str() + " (" +
                   std::to_string(ref.bytes()) +
                   " bytes) lies outside the arena of " +
                   std::to_string(arenaBytes) + " bytes");
  if (ref.offset % 4 != 0)
    return corrupt(where + ": misaligned buffer offset " +
                   std::to_string(ref.offset));
  return ref;
}

StatusOr<std::vector<Binding>>
decodeBindings(const flatbuffers::Vector<flatbuffers::Offset<fb::Binding>> *v,
               int64_t arenaBytes, const std::string &what) {
  std::vector<Binding> out;
  if (!v)
    return out;
  std::set<std::string> seen;
  for (const fb::Binding *b : *v) {
    Binding binding;
    binding.name = b->name()->str();
    if (!seen.insert(binding.name).second)
      return corrupt(what + " '" + binding.name + "' bound twice");
    StatusOr<BufferRef> buffer =
        decodeBuffer(b->buffer(), arenaBytes, what + " '" + binding.name + "'");
    if (!buffer.isOk())
      return buffer.status();
    binding.buffer = std::move(*buffer);
    out.push_back(std::move(binding));
  }
  return out;
}

StatusOr<Instr> decodeInstr(const fb::Instr *in, int64_t arenaBytes,
                            int numStreams, size_t index) {
  Instr instr;
  int kind = static_cast<int>(in->kind());
  if (kind < 0 || kind > static_cast<int>(fb::OpKind::MAX))
    return corrupt("instruction " + std::to_string(index) + ": unknown kind " +
                   std::to_string(kind));
  instr.kind = static_cast<OpKind>(kind);
  if (in->kernel())
    instr.kernel = in->kernel()->str();
  // The file names kernels (stable across versions); KernelId is this build's
  // in-memory numbering, resolved here once.
  if (instr.kind == OpKind::Kernel) {
    std::optional<KernelId> id = kernelIdFromName(instr.kernel);
    if (!id)
      return Status::error(StatusCode::Unimplemented,
                           "instruction " + std::to_string(index) + ": unknown kernel '" +
                               instr.kernel + "' (not in this runtime's registry)");
    instr.id = *id;
  }
  instr.stream = in->stream();
  if (instr.stream < 0 || instr.stream >= numStreams)
    return corrupt("instruction " + std::to_string(index) + ": stream " +
                   std::to_string(instr.stream) + " of " +
                   std::to_string(numStreams));
  std::string where = "instruction " + std::to_string(index) + " (" +
                      instr.describe() + ")";
  for (auto [list, out] : {std::make_pair(in->ins(), &instr.ins),
                           std::make_pair(in->outs(), &instr.outs)}) {
    if (!list)
      continue;
    for (const fb::Buffer *b : *list) {
      StatusOr<BufferRef> ref = decodeBuffer(b, arenaBytes, where);
      if (!ref.isOk())
        return ref.status();
      out->push_back(std::move(*ref));
    }
  }
  if (in->attrs()) {
    for (const fb::Attr *a : *in->attrs()) {
      AttrValue v;
      int attrKind = static_cast<int>(a->kind());
      if (attrKind < 0 || attrKind > static_cast<int>(fb::AttrKind::MAX))
        return corrupt(where + ": attribute of unknown kind");
      v.kind = static_cast<AttrValue::Kind>(attrKind);
      v.i = a->i();
      v.f = a->f();
      if (a->s())
        v.s = a->s()->str();
      if (a->ints()) {
        // Shapes and permutations are short; adamw_multi's `decay` has one
        // entry per parameter (at most its 4096 gradients).
        if (a->ints()->size() > 4096)
          return corrupt(where + ": attribute list too long");
        v.ints = copyScalars(a->ints());
      }
      instr.attrs[a->name()->str()] = std::move(v);
    }
  }
  return instr;
}

StatusOr<StageProgram> decodeStage(const fb::Stage *s) {
  StageProgram stage;
  stage.index = s->index();
  stage.arenaBytes = s->arena_bytes();
  stage.numStreams = s->num_streams();
  std::string where = "stage " + std::to_string(stage.index);
  if (stage.arenaBytes < 0)
    return corrupt(where + ": negative arena size");
  if (stage.numStreams < 1 || stage.numStreams > 64)
    return corrupt(where + ": " + std::to_string(stage.numStreams) +
                   " streams");
  auto params = decodeBindings(s->params(), stage.arenaBytes, "parameter");
  auto inputs = decodeBindings(s->inputs(), stage.arenaBytes, "input");
  auto outputs = decodeBindings(s->outputs(), stage.arenaBytes, "output");
  auto states = decodeBindings(s->states(), stage.arenaBytes, "state");
  for (const Status *st : {&params.status(), &inputs.status(), &outputs.status(),
                           &states.status()})
    if (!st->isOk())
      return Status::error(st->code(), where + ": " + st->message());
  stage.params = std::move(*params);
  stage.inputs = std::move(*inputs);
  stage.outputs = std::move(*outputs);
  stage.states = std::move(*states);
  if (s->instrs()) {
    size_t index = 0;
    for (const fb::Instr *in : *s->instrs()) {
      StatusOr<Instr> instr =
          decodeInstr(in, stage.arenaBytes, stage.numStreams, index++);
      if (!instr.isOk())
        return Status::error(instr.status().code(),
                             where + ": " + instr.status().message());
      stage.instrs.push_back(std::move(*instr));
    }
  }
  return stage;
}

StatusOr<ParamInfo> decodeParam(const fb::Param *p, int worldSize) {
  ParamInfo info;
  info.name = p->name()->str();
  StatusOr<ScalarType> dtype = decodeScalarType(p->dtype());
  if (!dtype.isOk())
    return dtype.status();
  info.dtype = *dtype;
  StatusOr<std::vector<int64_t>> shape = decodeShape(p->global_shape());
  if (!shape.isOk())
    return shape.status();
  info.globalShape = std::move(*shape);
  if (!p->slices())
    return info;
  std::set<int> ranks;
  for (const fb::ParamSlice *s : *p->slices()) {
    ParamSlice slice;
    slice.rank = s->rank();
    slice.concatDim = s->concat_dim();
    std::string where = "parameter '" + info.name + "', rank " +
                        std::to_string(slice.rank);
    if (slice.rank < 0 || slice.rank >= worldSize || !ranks.insert(slice.rank).second)
      return corrupt(where + ": invalid or repeated rank");
    if (slice.concatDim < 0 ||
        slice.concatDim >= static_cast<int>(info.globalShape.size()))
      return corrupt(where + ": concat dim out of range");
    if (s->segments()->size() == 0 || s->segments()->size() > 1024)
      return corrupt(where + ": bad segment count");
    for (const fb::Segment *seg : *s->segments()) {
      if (seg->ranges()->size() != info.globalShape.size())
        return corrupt(where + ": segment rank differs from the tensor's");
      Segment segment;
      for (size_t d = 0; d < info.globalShape.size(); ++d) {
        int64_t bounds[2]; // fb::Range {begin, end}, possibly misaligned
        static_assert(sizeof(fb::Range) == sizeof(bounds));
        std::memcpy(bounds, seg->ranges()->Data() + d * sizeof(fb::Range),
                    sizeof(bounds));
        if (bounds[0] < 0 || bounds[0] > bounds[1] ||
            bounds[1] > info.globalShape[d])
          return corrupt(where + ": segment range [" +
                         std::to_string(bounds[0]) + ", " +
                         std::to_string(bounds[1]) + ") outside dimension " +
                         std::to_string(d));
        segment.push_back({bounds[0], bounds[1]});
      }
      slice.segments.push_back(std::move(segment));
    }
    info.slices.push_back(std::move(slice));
  }
  return info;
}

} // namespace

bool StageProgram::trains() const {
  for (const Instr &instr : instrs)
    if (instr.isAdamw())
      return true;
  return false;
}

const ParamSlice *ParamInfo::sliceFor(int rank) const {
  for (const ParamSlice &s : slices)
    if (s.rank == rank)
      return &s;
  return nullptr;
}

int Plan::axisSize(const std::string &axis) const {
  for (size_t i = 0; i < axes.size() && i < sizes.size(); ++i)
    if (axes[i] == axis)
      return sizes[i];
  return 1;
}

std::string Plan::zeroAxis() const {
  return axisSize("dp") == 1 && axisSize("cp") > 1 ? "cp" : "dp";
}

const ParamInfo *Program::findParam(const std::string &name) const {
  for (const ParamInfo &p : params)
    if (p.name == name)
      return &p;
  return nullptr;
}

StatusOr<Program> Program::parse(const uint8_t *data, size_t size) {
  if (size < 8 || !fb::ProgramBufferHasIdentifier(data))
    return Status::error(StatusCode::InvalidArgument,
                         "not an LLMIR program file (missing the 'LLMR' magic)");
  // The trailer (ProgramVersion.h) covers every byte before it. A file
  // without one is either from before format version 2 (said below, once its
  // version is read) or damaged at its end.
  bool hasTrailer =
      size >= 8 + kTrailerBytes &&
      std::memcmp(data + size - kTrailerBytes, kChecksumTag,
                  sizeof(kChecksumTag)) == 0;
  if (hasTrailer) {
    size -= kTrailerBytes;
    uint8_t expected[kTrailerBytes];
    makeTrailer(data, size, expected);
    if (std::memcmp(expected, data + size, kTrailerBytes) != 0)
      return corrupt("checksum mismatch (the file changed after llm-translate "
                     "wrote it; rebuild it)");
  }
  flatbuffers::Verifier verifier(data, size, /*max_depth=*/32,
                                 /*max_tables=*/10000000);
  if (!fb::VerifyProgramBuffer(verifier))
    return corrupt("FlatBuffers verification failed (truncated or damaged)");
  const fb::Program *p = fb::GetProgram(data);
  Program program;
  program.version = p->version();
  if (program.version != kProgramVersion)
    return Status::error(StatusCode::InvalidArgument,
                         "program file version " +
                             std::to_string(program.version) +
                             " is not supported by this runtime (expects " +
                             std::to_string(kProgramVersion) +
                             "); rebuild it with this llm-translate");
  if (!hasTrailer)
    return corrupt("no checksum trailer (truncated or damaged at its end)");
  if (p->producer())
    program.producer = p->producer()->str();

  const fb::Plan *plan = p->plan();
  if (plan->axes())
    for (const flatbuffers::String *a : *plan->axes())
      program.plan.axes.push_back(a->str());
  if (plan->sizes())
    program.plan.sizes = copyScalars(plan->sizes());
  if (program.plan.axes.size() != program.plan.sizes.size())
    return corrupt("plan has " + std::to_string(program.plan.axes.size()) +
                   " axes but " + std::to_string(program.plan.sizes.size()) +
                   " sizes");
  int64_t world = 1;
  for (int s : program.plan.sizes) {
    if (s < 1 || s > kMaxRanks || world * s > kMaxRanks)
      return corrupt("plan axis size " + std::to_string(s));
    world *= s;
  }
  program.plan.microbatches = plan->microbatches();
  if (plan->schedule())
    program.plan.schedule = plan->schedule()->str();
  program.plan.globalBatch = plan->global_batch();
  program.plan.seq = plan->seq();
  if (plan->model_type())
    program.plan.modelType = plan->model_type()->str();
  program.plan.vocabSize = plan->vocab_size();
  if (program.plan.microbatches < 1 || program.plan.globalBatch < 0 ||
      program.plan.seq < 0 || program.plan.vocabSize < 0)
    return corrupt("plan has negative sizes");

  for (const fb::Stage *s : *p->stages()) {
    StatusOr<StageProgram> stage = decodeStage(s);
    if (!stage.isOk())
      return stage.status();
    if (s->entry())
      stage->entry = s->entry()->str();
    // A further entry point of the previous stage: it must bind the same
    // resident buffers (parameters, states) at the same offsets.
    if (!program.stages.empty() && !stage->entry.empty() &&
        stage->index == program.stages.back().index) {
      const StageProgram &first = program.stages.back();
      if (program.findEntry(stage->index, stage->entry))
        return corrupt("stage " + std::to_string(stage->index) +
                       " has two entries named '" + stage->entry + "'");
      auto same = [](const std::vector<Binding> &a, const std::vector<Binding> &b) {
        if (a.size() != b.size())
          return false;
        for (size_t i = 0; i < a.size(); ++i)
          if (a[i].name != b[i].name || a[i].buffer.offset != b[i].buffer.offset ||
              a[i].buffer.shape != b[i].buffer.shape ||
              a[i].buffer.dtype != b[i].buffer.dtype)
            return false;
        return true;
      };
      if (first.entry.empty() || !same(first.params, stage->params) ||
          !same(first.states, stage->states))
        return corrupt("entry '" + stage->entry + "' of stage " +
                       std::to_string(stage->index) +
                       " does not share the resident layout (parameters and "
                       "states at the same offsets) of entry '" + first.entry +
                       "'");
      program.entries.push_back(std::move(*stage));
      continue;
    }
    if (stage->index != static_cast<int>(program.stages.size()))
      return corrupt("stage " + std::to_string(stage->index) +
                     " listed at position " +
                     std::to_string(program.stages.size()));
    program.stages.push_back(std::move(*stage));
  }
  if (program.stages.empty())
    return corrupt("no stages");

  if (static_cast<int64_t>(p->ranks()->size()) != world)
    return corrupt("rank map has " + std::to_string(p->ranks()->size()) +
                   " ranks but the plan needs " + std::to_string(world));
  std::vector<bool> seen(world, false);
  for (const fb::RankInfo *r : *p->ranks()) {
    RankInfo info;
    info.rank = r->rank();
    info.stage = r->stage();
    if (r->coords())
      info.coords = copyScalars(r->coords());
    if (info.rank < 0 || info.rank >= world || seen[info.rank])
      return corrupt("rank " + std::to_string(info.rank) +
                     " is out of range or listed twice");
    seen[info.rank] = true;
    if (info.stage < 0 || info.stage >= static_cast<int>(program.stages.size()))
      return corrupt("rank " + std::to_string(info.rank) +
                     " runs unknown stage " + std::to_string(info.stage));
    if (info.coords.size() != program.plan.axes.size())
      return corrupt("rank " + std::to_string(info.rank) + " has " +
                     std::to_string(info.coords.size()) +
                     " coordinates for " +
                     std::to_string(program.plan.axes.size()) + " axes");
    for (size_t a = 0; a < info.coords.size(); ++a)
      if (info.coords[a] < 0 || info.coords[a] >= program.plan.sizes[a])
        return corrupt("rank " + std::to_string(info.rank) +
                       " has coordinate " + std::to_string(info.coords[a]) +
                       " on axis '" + program.plan.axes[a] + "'");
    program.ranks.push_back(std::move(info));
  }

  std::set<std::string> names;
  for (const fb::Param *fp : *p->params()) {
    StatusOr<ParamInfo> param = decodeParam(fp, static_cast<int>(world));
    if (!param.isOk())
      return param.status();
    if (!names.insert(param->name).second)
      return corrupt("parameter '" + param->name + "' listed twice");
    program.params.push_back(std::move(*param));
  }
  for (const StageProgram &stage : program.stages)
    for (const Binding &b : stage.params)
      if (!program.findParam(b.name))
        return corrupt("stage " + std::to_string(stage.index) +
                       " binds parameter '" + b.name +
                       "' missing from the parameter table");
  return program;
}

const StageProgram *Program::findEntry(int stage,
                                      const std::string &entry) const {
  if (stage < 0 || stage >= static_cast<int>(stages.size()))
    return nullptr;
  if (stages[stage].entry == entry)
    return &stages[stage];
  for (const StageProgram &e : entries)
    if (e.index == stage && e.entry == entry)
      return &e;
  return nullptr;
}

StatusOr<Program> Program::load(const std::string &path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file)
    return Status::error(StatusCode::NotFound,
                         "cannot open program file '" + path + "'");
  std::streamsize size = file.tellg();
  if (size < 0 || size > (int64_t(1) << 32))
    return Status::error(StatusCode::InvalidArgument,
                         "program file '" + path + "' has an invalid size");
  std::vector<uint8_t> data(static_cast<size_t>(size));
  file.seekg(0);
  if (!file.read(reinterpret_cast<char *>(data.data()), size))
    return Status::error(StatusCode::DataLoss,
                         "cannot read program file '" + path + "'");
  StatusOr<Program> program = parse(data.data(), data.size());
  if (!program.isOk())
    return Status::error(program.status().code(),
                         path + ": " + program.status().message());
  return program;
}

} // namespace llmir::runtime
