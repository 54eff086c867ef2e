//===- ExportProgram.cpp - exec module -> .llmir program file -------------===//
//
// The plan comes from the module attribute `llmir.plan` (a #tfm.plan: its
// axes, sizes, microbatches and schedule, converted in ProgramWriter::readPlan
// only); without one the program runs on one rank. A
// parameter's global shape and slicing rule come from the `global_shape` and
// `shard = {axis, dim, parts[, padded_size]}` attributes of its exec.param
// (set by the partitioner), expanded here into per-rank segments; without
// them every rank holds the whole tensor.
//
//===----------------------------------------------------------------------===//

#include "llmir/Target/Program/ExportProgram.h"

#include "llmir/Dialect/Exec/IR/ExecDialect.h"
#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Support/InputNesting.h"

#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/SourceMgr.h"

#include "llmir/runtime/ProgramVersion.h"
#include "llmir/runtime/schema/program_generated.h"

using namespace mlir;
using namespace llmir;
namespace fbs = llmir::fb;

namespace {

FailureOr<fbs::DType> encodeDType(Type t, Location loc) {
  if (t.isF32())
    return fbs::DType::F32;
  if (t.isBF16())
    return fbs::DType::BF16;
  if (t.isF16())
    return fbs::DType::F16;
  if (t.isInteger(32))
    return fbs::DType::I32;
  if (t.isInteger(64))
    return fbs::DType::I64;
  return emitError(loc) << "cannot encode element type " << t, failure();
}

class ProgramWriter {
public:
  explicit ProgramWriter(ModuleOp module) : module(module) {}

  LogicalResult write(llvm::raw_ostream &os);

private:
  /// Arena offset of the op defining `buffer`, following views.
  FailureOr<int64_t> offsetOf(Value buffer) {
    Operation *def = buffer.getDefiningOp();
    if (auto view = dyn_cast_or_null<exec::ViewOp>(def))
      return offsetOf(view.getSource());
    if (auto a = dyn_cast_or_null<exec::AllocOp>(def))
      return static_cast<int64_t>(a.getOffset());
    if (auto p = dyn_cast_or_null<exec::ParamOp>(def))
      return static_cast<int64_t>(p.getOffset());
    if (auto i = dyn_cast_or_null<exec::InputOp>(def))
      return static_cast<int64_t>(i.getOffset());
    if (auto st = dyn_cast_or_null<exec::StateOp>(def))
      return static_cast<int64_t>(st.getOffset());
    return emitError(buffer.getLoc())
           << "buffer is not defined by exec.alloc/param/state/input/view",
           failure();
  }

  FailureOr<flatbuffers::Offset<fbs::Buffer>> buffer(Value v) {
    auto type = cast<exec::BufferType>(v.getType());
    FailureOr<int64_t> offset = offsetOf(v);
    FailureOr<fbs::DType> dtype = encodeDType(type.getElementType(), v.getLoc());
    if (failed(offset) || failed(dtype))
      return failure();
    auto shape = fbb.CreateVector(type.getShape().data(), type.getShape().size());
    return fbs::CreateBuffer(fbb, *offset, *dtype, shape);
  }

  FailureOr<flatbuffers::Offset<fbs::Attr>> attr(StringRef name, Attribute a,
                                                 Location loc) {
    auto n = fbb.CreateString(name.str());
    if (auto b = dyn_cast<BoolAttr>(a))
      return fbs::CreateAttr(fbb, n, fbs::AttrKind::Bool, b.getValue());
    if (auto i = dyn_cast<IntegerAttr>(a))
      return fbs::CreateAttr(fbb, n, fbs::AttrKind::Int, i.getInt());
    if (auto f = dyn_cast<FloatAttr>(a))
      return fbs::CreateAttr(fbb, n, fbs::AttrKind::Float, 0,
                             f.getValueAsDouble());
    if (auto s = dyn_cast<StringAttr>(a))
      return fbs::CreateAttr(fbb, n, fbs::AttrKind::String, 0, 0,
                             fbb.CreateString(s.str()));
    if (auto arr = dyn_cast<DenseI64ArrayAttr>(a)) {
      auto ints = fbb.CreateVector(arr.asArrayRef().data(), arr.size());
      return fbs::CreateAttr(fbb, n, fbs::AttrKind::Ints, 0, 0, 0, ints);
    }
    return emitError(loc) << "cannot encode attribute '" << name << "' = " << a,
           failure();
  }

  FailureOr<flatbuffers::Offset<fbs::Instr>>
  instr(Operation *op, fbs::OpKind kind, StringRef kernel, ValueRange ins,
        ValueRange outs, ArrayRef<StringRef> skipAttrs);

  FailureOr<flatbuffers::Offset<fbs::Stage>> stage(exec::ProgramOp program);
  FailureOr<flatbuffers::Offset<fbs::Param>> param(exec::ParamOp p);

  LogicalResult readPlan();
  /// Coordinates of `rank` along the plan axes (row-major, last axis fastest).
  SmallVector<int32_t> coordsOf(int64_t rank) const {
    SmallVector<int32_t> coords(sizes.size());
    for (size_t a = sizes.size(); a-- > 0;) {
      coords[a] = static_cast<int32_t>(rank % sizes[a]);
      rank /= sizes[a];
    }
    return coords;
  }

  ModuleOp module;
  flatbuffers::FlatBufferBuilder fbb{1 << 16};
  llvm::StringMap<exec::ParamOp> paramsByName;
  std::vector<std::string> axes;
  std::vector<int32_t> sizes;
  int32_t microbatches = 1;
  std::string schedule;
  int64_t world = 1;
};

FailureOr<flatbuffers::Offset<fbs::Instr>>
ProgramWriter::instr(Operation *op, fbs::OpKind kind, StringRef kernel,
                     ValueRange ins, ValueRange outs,
                     ArrayRef<StringRef> skipAttrs) {
  std::vector<flatbuffers::Offset<fbs::Buffer>> inBufs, outBufs;
  for (auto [values, bufs] : {std::make_pair(ins, &inBufs),
                              std::make_pair(outs, &outBufs)})
    for (Value v : values) {
      auto b = buffer(v);
      if (failed(b))
        return failure();
      bufs->push_back(*b);
    }
  std::vector<flatbuffers::Offset<fbs::Attr>> attrs;
  int stream = 0;
  for (NamedAttribute na : op->getAttrs()) {
    StringRef name = na.getName().strref();
    if (name == "stream") {
      stream = cast<IntegerAttr>(na.getValue()).getInt();
      continue;
    }
    if (llvm::is_contained(skipAttrs, name))
      continue;
    Attribute value = na.getValue();
    if (isa<UnitAttr>(value))
      value = BoolAttr::get(op->getContext(), true);
    auto a = attr(name, value, op->getLoc());
    if (failed(a))
      return failure();
    attrs.push_back(*a);
  }
  return fbs::CreateInstr(fbb, kind,
                          kernel.empty() ? 0 : fbb.CreateString(kernel.str()),
                          fbb.CreateVector(inBufs), fbb.CreateVector(outBufs),
                          fbb.CreateVector(attrs), stream);
}

FailureOr<flatbuffers::Offset<fbs::Stage>>
ProgramWriter::stage(exec::ProgramOp program) {
  std::vector<flatbuffers::Offset<fbs::Binding>> params, inputs, outputs,
      states;
  std::vector<flatbuffers::Offset<fbs::Instr>> instrs;
  auto bind = [&](std::vector<flatbuffers::Offset<fbs::Binding>> &list,
                  StringRef name, Value v) -> LogicalResult {
    auto b = buffer(v);
    if (failed(b))
      return failure();
    list.push_back(fbs::CreateBinding(fbb, fbb.CreateString(name.str()), *b));
    return success();
  };
  static constexpr StringRef kOperandSegments = "operandSegmentSizes";
  for (Operation &op : program.getBody().front()) {
    LogicalResult ok =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](exec::ParamOp p) {
              paramsByName[p.getName()] = p;
              return bind(params, p.getName(), p.getResult());
            })
            .Case([&](exec::InputOp i) {
              return bind(inputs, i.getName(), i.getResult());
            })
            .Case([&](exec::StateOp st) {
              return bind(states, st.getName(), st.getResult());
            })
            .Case([&](exec::OutputOp o) {
              return bind(outputs, o.getName(), o.getBuffer());
            })
            .Case<exec::AllocOp, exec::ViewOp>(
                [](Operation *) { return success(); })
            .Default([&](Operation *op) -> LogicalResult {
              fbs::OpKind kind;
              StringRef kernel;
              SmallVector<Value> ins, outs;
              if (auto k = dyn_cast<exec::KernelOp>(op)) {
                kind = fbs::OpKind::Kernel;
                kernel = k.getKernel();
                ins.assign(k.getIns().begin(), k.getIns().end());
                outs.assign(k.getOuts().begin(), k.getOuts().end());
              } else if (auto g = dyn_cast<exec::GemmOp>(op)) {
                kind = fbs::OpKind::Gemm;
                ins = {g.getA(), g.getB()};
                if (g.getBias())
                  ins.push_back(g.getBias());
                outs = {g.getC()};
              } else if (auto c = dyn_cast<exec::AllReduceOp>(op)) {
                kind = fbs::OpKind::AllReduce;
                ins = {c.getBuffer()};
                outs = {c.getBuffer()};
              } else if (auto c = dyn_cast<exec::AllGatherOp>(op)) {
                kind = fbs::OpKind::AllGather;
                ins = {c.getInput()};
                outs = {c.getOutput()};
              } else if (auto c = dyn_cast<exec::ReduceScatterOp>(op)) {
                kind = fbs::OpKind::ReduceScatter;
                ins = {c.getInput()};
                outs = {c.getOutput()};
              } else if (auto c = dyn_cast<exec::BroadcastOp>(op)) {
                kind = fbs::OpKind::Broadcast;
                ins = {c.getBuffer()};
                outs = {c.getBuffer()};
              } else if (auto c = dyn_cast<exec::SendOp>(op)) {
                kind = fbs::OpKind::Send;
                ins = {c.getBuffer()};
              } else if (auto c = dyn_cast<exec::RecvOp>(op)) {
                kind = fbs::OpKind::Recv;
                outs = {c.getBuffer()};
              } else if (isa<exec::EventRecordOp>(op)) {
                kind = fbs::OpKind::EventRecord;
              } else if (isa<exec::EventWaitOp>(op)) {
                kind = fbs::OpKind::EventWait;
              } else {
                return op->emitOpError() << "cannot be written to a program file";
              }
              auto in = instr(op, kind, kernel, ins, outs,
                              {"kernel", kOperandSegments});
              if (failed(in))
                return failure();
              instrs.push_back(*in);
              return success();
            });
    if (failed(ok))
      return failure();
  }
  flatbuffers::Offset<flatbuffers::String> entry;
  if (auto e = program->getAttrOfType<StringAttr>("entry"))
    entry = fbb.CreateString(e.str());
  return fbs::CreateStage(fbb, program.getStage(), program.getArenaBytes(),
                          program.getNumStreams(), fbb.CreateVector(params),
                          fbb.CreateVector(inputs), fbb.CreateVector(outputs),
                          fbb.CreateVector(instrs), fbb.CreateVector(states),
                          entry);
}

FailureOr<flatbuffers::Offset<fbs::Param>>
ProgramWriter::param(exec::ParamOp p) {
  auto type = p.getType();
  FailureOr<fbs::DType> dtype = encodeDType(type.getElementType(), p.getLoc());
  if (failed(dtype))
    return failure();
  ArrayRef<int64_t> global = type.getShape();
  if (auto g = p->getAttrOfType<DenseI64ArrayAttr>("global_shape"))
    global = g.asArrayRef();
  // `shard = {axis, dim, parts}`: dim `dim` of the global tensor is `parts`
  // equal blocks, each split evenly over the axis; a rank holds its chunk of
  // every block, concatenated along `dim`.
  std::vector<flatbuffers::Offset<fbs::ParamSlice>> slices;
  if (auto shard = p->getAttrOfType<DictionaryAttr>("shard")) {
    auto axisAttr = shard.getAs<StringAttr>("axis");
    auto dimAttr = shard.getAs<IntegerAttr>("dim");
    auto partsAttr = shard.getAs<IntegerAttr>("parts");
    auto axisIt = axisAttr ? llvm::find(axes, axisAttr.str()) : axes.end();
    if (!dimAttr || !partsAttr || axisIt == axes.end())
      return p.emitOpError() << "has a malformed 'shard' attribute " << shard
                             << " for the plan's axes",
             failure();
    size_t axis = axisIt - axes.begin();
    int64_t dim = dimAttr.getInt(), parts = partsAttr.getInt();
    int64_t n = sizes[axis];
    // A padded dim (vocab padding) is split at its padded size; the ranges
    // are clipped to the real tensor and the runtime zero-fills the rest.
    int64_t size = dim >= 0 && dim < static_cast<int64_t>(global.size())
                       ? global[dim]
                       : 0;
    if (auto padded = shard.getAs<IntegerAttr>("padded_size"))
      size = padded.getInt();
    if (dim < 0 || dim >= static_cast<int64_t>(global.size()) || parts < 1 ||
        size < global[dim] || (parts > 1 && size != global[dim]) ||
        size % (parts * n) != 0)
      return p.emitOpError() << "cannot slice dim " << dim << " of "
                             << global.size() << "-d parameter '" << p.getName()
                             << "' into " << parts << " part(s) over " << n
                             << " ranks",
             failure();
    int64_t block = size / parts, chunk = block / n;
    for (int64_t r = 0; r < world; ++r) {
      int64_t t = coordsOf(r)[axis];
      std::vector<flatbuffers::Offset<fbs::Segment>> segments;
      for (int64_t k = 0; k < parts; ++k) {
        std::vector<fbs::Range> ranges;
        for (size_t d = 0; d < global.size(); ++d) {
          if (static_cast<int64_t>(d) != dim) {
            ranges.emplace_back(0, global[d]);
            continue;
          }
          int64_t begin = std::min(k * block + t * chunk, global[d]);
          int64_t end = std::min(k * block + (t + 1) * chunk, global[d]);
          ranges.emplace_back(begin, end);
        }
        segments.push_back(
            fbs::CreateSegment(fbb, fbb.CreateVectorOfStructs(ranges)));
      }
      slices.push_back(fbs::CreateParamSlice(fbb, static_cast<int32_t>(r),
                                             static_cast<int32_t>(dim),
                                             fbb.CreateVector(segments)));
    }
  }
  return fbs::CreateParam(fbb, fbb.CreateString(p.getName().str()), *dtype,
                          fbb.CreateVector(global.data(), global.size()),
                          fbb.CreateVector(slices));
}

LogicalResult ProgramWriter::readPlan() {
  FailureOr<tfm::PlanAttr> plan = llmir::readPlan(module, "export-program");
  if (failed(plan))
    return failure();
  if (!*plan)
    return success(); // one rank
  for (auto [name, size] : llvm::zip(plan->getAxes(), plan->getSizes())) {
    if (size > (1 << 20) || world * size > (1 << 20))
      return module.emitError() << kPlanAttrName << " field 'sizes': "
                                << "more than 2^20 ranks";
    axes.push_back(name.str());
    sizes.push_back(static_cast<int32_t>(size));
    world *= size;
  }
  if (plan->getMicrobatches() > (1 << 20))
    return module.emitError() << kPlanAttrName << " field 'microbatches': "
                              << "more than 2^20";
  microbatches = static_cast<int32_t>(plan->getMicrobatches());
  schedule = plan->getSchedule().str();
  return success();
}

LogicalResult ProgramWriter::write(llvm::raw_ostream &os) {
  if (failed(readPlan()))
    return failure();
  SmallVector<exec::ProgramOp> programs(module.getOps<exec::ProgramOp>());
  if (programs.empty())
    return module.emitError() << "no exec.program to export; run "
                                 "--llm-lower-to-exec first";
  llvm::stable_sort(programs, [](exec::ProgramOp a, exec::ProgramOp b) {
    return a.getStage() < b.getStage();
  });
  std::vector<flatbuffers::Offset<fbs::Stage>> stages;
  int64_t numStages = 0;
  for (auto [i, program] : llvm::enumerate(programs)) {
    // Several programs of one stage are named entry points (inference).
    auto entry = program->getAttrOfType<StringAttr>("entry");
    if (i > 0 && program.getStage() == programs[i - 1].getStage()) {
      auto prev = programs[i - 1]->getAttrOfType<StringAttr>("entry");
      if (!entry || !prev || entry == prev)
        return program.emitOpError()
               << "is a second program of stage " << program.getStage()
               << "; several programs of one stage need distinct 'entry' names",
               failure();
    } else if (program.getStage() != numStages++) {
      return program.emitOpError() << "expected stage " << numStages - 1
                                   << ", found " << program.getStage(),
             failure();
    }
    auto s = stage(program);
    if (failed(s))
      return failure();
    stages.push_back(*s);
  }
  // Each entry point (the step; prefill, decode) must give the runtime
  // something to read: without an output a train step "ran" to loss nan.
  llvm::StringMap<bool> entryHasOutput; // by entry name, "" for the step
  for (exec::ProgramOp program : programs) {
    auto entry = program->getAttrOfType<StringAttr>("entry");
    entryHasOutput[entry ? entry.getValue() : ""] |=
        !program.getBody().front().getOps<exec::OutputOp>().empty();
  }
  for (exec::ProgramOp program : programs) {
    auto entry = program->getAttrOfType<StringAttr>("entry");
    if (entryHasOutput.lookup(entry ? entry.getValue() : ""))
      continue;
    auto function = program->getAttrOfType<StringAttr>("model");
    InFlightDiagnostic diag = program.emitOpError() << "of function '";
    diag << (function ? function.getValue() : program.getSymName()) << "'";
    if (entry)
      diag << " (entry '" << entry.getValue() << "')";
    return diag << " has no exec.output in any stage: the runtime would "
                   "read no loss or logits",
           failure();
  }

  // Parameters in first-binding order (stable, readable).
  std::vector<flatbuffers::Offset<fbs::Param>> params;
  llvm::StringSet<> done;
  for (exec::ProgramOp program : programs)
    for (auto p : program.getBody().front().getOps<exec::ParamOp>()) {
      if (!done.insert(p.getName()).second)
        continue;
      auto fp = param(p);
      if (failed(fp))
        return failure();
      params.push_back(*fp);
    }

  // Rank map: row-major over the plan axes; the `pp` coordinate (if any) is
  // the stage.
  std::vector<flatbuffers::Offset<fbs::RankInfo>> ranks;
  for (int64_t r = 0; r < world; ++r) {
    SmallVector<int32_t> coords = coordsOf(r);
    int32_t stageIndex = 0;
    for (size_t a = 0; a < axes.size(); ++a)
      if (axes[a] == "pp")
        stageIndex = coords[a];
    if (stageIndex >= numStages)
      return module.emitError() << "rank " << r << " maps to stage "
                                << stageIndex << " but only " << numStages
                                << " stage programs exist";
    ranks.push_back(fbs::CreateRankInfo(
        fbb, static_cast<int32_t>(r), stageIndex,
        fbb.CreateVector(coords.data(), coords.size())));
  }

  int64_t batch = 0, seq = 0, vocab = 0;
  std::string modelType;
  if (auto model = module->getAttrOfType<DictionaryAttr>(
          tfm::TfmDialect::kModelAttrName)) {
    if (auto a = model.getAs<IntegerAttr>("batch"))
      batch = a.getInt();
    if (auto a = model.getAs<IntegerAttr>("seq"))
      seq = a.getInt();
    if (auto a = model.getAs<IntegerAttr>("vocab_size"))
      vocab = a.getInt();
    if (auto a = model.getAs<StringAttr>("model_type"))
      modelType = a.str();
  }
  auto plan = fbs::CreatePlan(fbb, fbb.CreateVectorOfStrings(axes),
                              fbb.CreateVector(sizes), microbatches,
                              fbb.CreateString(schedule), batch, seq,
                              fbb.CreateString(modelType), vocab);
  auto root = fbs::CreateProgram(fbb, llmir::runtime::kProgramVersion,
                                 fbb.CreateString("llmir llm-translate"), plan,
                                 fbb.CreateVector(ranks),
                                 fbb.CreateVector(params),
                                 fbb.CreateVector(stages));
  fbs::FinishProgramBuffer(fbb, root);
  uint8_t trailer[llmir::runtime::kTrailerBytes];
  llmir::runtime::makeTrailer(fbb.GetBufferPointer(), fbb.GetSize(), trailer);
  os.write(reinterpret_cast<const char *>(fbb.GetBufferPointer()),
           fbb.GetSize());
  os.write(reinterpret_cast<const char *>(trailer), sizeof(trailer));
  return success();
}

} // namespace

LogicalResult llmir::exportProgram(ModuleOp module, llvm::raw_ostream &os) {
  return ProgramWriter(module).write(os);
}

void llmir::registerExportProgramTranslation() {
  // A TranslateFromMLIRRegistration parses before any code of ours runs; this
  // one checks the input's nesting first (InputNesting.h), then parses it as
  // that would (top-level ops without a module get an implicit one).
  static TranslateRegistration registration(
      "export-program", "Write exec programs as an .llmir program file",
      [](const std::shared_ptr<llvm::SourceMgr> &sourceMgr,
         llvm::raw_ostream &os, MLIRContext *context) -> LogicalResult {
        const llvm::MemoryBuffer *input =
            sourceMgr->getMemoryBuffer(sourceMgr->getMainFileID());
        if (std::optional<std::string> deep = checkInputNesting(
                input->getBuffer(), input->getBufferIdentifier())) {
          llvm::errs() << *deep << "\n";
          return failure();
        }
        DialectRegistry registry;
        registry.insert<exec::ExecDialect, tfm::TfmDialect,
                        shard::ShardDialect>();
        context->appendDialectRegistry(registry);
        OwningOpRef<ModuleOp> module =
            parseSourceFile<ModuleOp>(sourceMgr, ParserConfig(context));
        if (!module) // the parser verifies too
          return failure();
        return exportProgram(*module, os);
      });
}
