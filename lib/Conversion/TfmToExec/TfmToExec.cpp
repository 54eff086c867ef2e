//===- TfmToExec.cpp - lower tfm functions to scheduled exec programs -----===//
//
// Three phases: (1) schedule the tfm ops in program order (layers flattened)
// and compute each logical buffer's live range, (2) plan the arena, (3) emit
// the exec program with every buffer at its planned offset.
//
//===----------------------------------------------------------------------===//

#include "llmir/Conversion/MemoryPlan.h"
#include "llmir/Conversion/Passes.h"
#include "llmir/Dialect/Exec/IR/ExecDialect.h"
#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <limits>

namespace llmir {
#define GEN_PASS_DEF_LOWERTOEXEC
#include "llmir/Conversion/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;
using exec::BufferType;

namespace {

constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

int64_t sizeInBytes(RankedTensorType t) {
  return t.getNumElements() *
         static_cast<int64_t>(t.getElementType().getIntOrFloatBitWidth() / 8);
}

/// One allocation in the arena; several tensors may view it (reshape,
/// layer results).
struct LogicalBuffer {
  enum class Kind { Param, State, Input, Temp };
  Kind kind = Kind::Temp;
  std::string name;        ///< HF name (Param) or input name (Input)
  unsigned argNumber = 0;  ///< function argument (Param, Input)
  RankedTensorType type;   ///< the type of the tensor that defines it
  int64_t firstUse = 0, lastUse = 0;
  int64_t offset = 0;
  Value buffer;            ///< the exec value, once emitted
};

class ProgramLowering {
public:
  explicit ProgramLowering(func::FuncOp func) : func(func) {}

  /// Lowers the function to program `stage`; a non-empty `entry` names one
  /// of several entry points of that stage (inference: prefill, decode).
  LogicalResult run(OpBuilder &moduleBuilder, int64_t stage, StringRef entry);

private:
  LogicalResult analyze();
  LogicalResult scheduleBlock(Block &block);
  void planArena();
  LogicalResult emitOp(OpBuilder &b, Operation *op);

  unsigned newBuffer(LogicalBuffer::Kind kind, Value tensor, StringRef name,
                     int64_t step) {
    LogicalBuffer lb;
    lb.kind = kind;
    lb.name = name.str();
    lb.type = cast<RankedTensorType>(tensor.getType());
    lb.firstUse = step;
    lb.lastUse = kind == LogicalBuffer::Kind::Temp ? step : kForever;
    buffers.push_back(lb);
    bufferOf[tensor] = buffers.size() - 1;
    return buffers.size() - 1;
  }

  /// The exec buffer holding `tensor`, viewed with the tensor's own shape.
  Value bufferFor(OpBuilder &b, Value tensor) {
    return view(b, buffers[bufferOf.lookup(tensor)].buffer,
                cast<RankedTensorType>(tensor.getType()).getShape());
  }

  /// `buffer` reinterpreted with `shape` (no-op if it already has it).
  Value view(OpBuilder &b, Value buffer, ArrayRef<int64_t> shape) {
    auto type = cast<BufferType>(buffer.getType());
    if (type.getShape() == shape)
      return buffer;
    auto viewType = BufferType::get(b.getContext(), shape, type.getElementType());
    return exec::ViewOp::create(b, buffer.getLoc(), viewType, buffer);
  }

  /// The plan's name of the single grid axis a collective runs over.
  FailureOr<StringRef> axisName(Operation *op) {
    auto axes = op->getAttrOfType<DenseI16ArrayAttr>("grid_axes");
    std::optional<StringRef> name;
    if (axes && axes.size() == 1)
      name = planAxisName(op->getParentOfType<ModuleOp>(), axes[0]);
    if (!name)
      return op->emitOpError() << "expected one grid axis named by the module's "
                                  "llmir.plan (run --llm-partition)",
             failure();
    return *name;
  }

  /// Size of the plan axis `axis` (ranks along it).
  FailureOr<int64_t> axisSize(Operation *op, StringRef axis) {
    if (std::optional<PlanAxis> a =
            lookupPlanAxis(op->getParentOfType<ModuleOp>(), axis))
      return a->size;
    return op->emitOpError() << "names grid axis '" << axis
                             << "', which the module's llmir.plan lacks",
           failure();
  }

  /// Emits `collective` on the communication stream, ordered after the
  /// compute that produced its input and before the compute that reads its
  /// output (events both ways).
  ///
  /// With `deferTo` (the tensor the collective produces) the compute stream
  /// only waits right before the first op that touches it, so the collective
  /// overlaps the compute in between (e.g. gradient all-reduces with the rest
  /// of the backward pass).
  template <typename BuildFn>
  void onCommStream(OpBuilder &b, Location loc, BuildFn collective,
                    Value deferTo = Value()) {
    int64_t ready = nextEvent++, done = nextEvent++;
    exec::EventRecordOp::create(b, loc, ready, /*stream=*/0);
    exec::EventWaitOp::create(b, loc, ready, /*stream=*/1);
    collective();
    exec::EventRecordOp::create(b, loc, done, /*stream=*/1);
    if (deferTo)
      pendingEvent[bufferOf.lookup(deferTo)] = done;
    else
      exec::EventWaitOp::create(b, loc, done, /*stream=*/0);
  }

  /// Makes the compute stream wait for collectives still producing any
  /// buffer `op` touches (all of them when `op` is null: the step's end).
  void waitForPending(OpBuilder &b, Location loc, Operation *op) {
    SmallVector<unsigned> ready;
    for (auto &[buffer, event] : pendingEvent) {
      // Reads of the buffer, and writes to memory the plan reuses from it.
      const LogicalBuffer &pending = buffers[buffer];
      int64_t begin = pending.offset, end = begin + sizeInBytes(pending.type);
      bool touched =
          !op ||
          llvm::any_of(op->getOperands(),
                       [&](Value v) {
                         auto it = bufferOf.find(v);
                         return it != bufferOf.end() && it->second == buffer;
                       }) ||
          llvm::any_of(op->getResults(), [&](Value v) {
            auto it = bufferOf.find(v);
            if (it == bufferOf.end())
              return false;
            const LogicalBuffer &lb = buffers[it->second];
            return lb.offset < end && begin < lb.offset + sizeInBytes(lb.type);
          });
      if (touched) {
        exec::EventWaitOp::create(b, loc, event, /*stream=*/0);
        ready.push_back(buffer);
      }
    }
    for (unsigned buffer : ready)
      pendingEvent.erase(buffer);
  }

  /// Buffers written by a collective the compute stream has not waited for.
  llvm::MapVector<unsigned, int64_t> pendingEvent;

  func::FuncOp func;
  int64_t nextEvent = 0;
  SmallVector<LogicalBuffer> buffers;
  DenseMap<Value, unsigned> bufferOf;
  SmallVector<Operation *> schedule;
  SmallVector<std::pair<std::string, Value>> outputs;
  int64_t paramBytes = 0, stateBytes = 0, inputBytes = 0, tempPeak = 0,
          arenaBytes = 0;
  /// The two AdamW moment buffers of each tfm.adamw_update.
  DenseMap<Operation *, SmallVector<unsigned, 2>> adamState;
  /// The chunk staging buffer of each tfm.param_all_gather.
  DenseMap<Operation *, unsigned> stagingBuffer;
};

LogicalResult ProgramLowering::scheduleBlock(Block &block) {
  for (Operation &op : block) {
    if (isa<YieldOp, func::ReturnOp>(op))
      continue;
    if (auto layer = dyn_cast<LayerOp>(op)) {
      if (failed(scheduleBlock(layer.getBody().front())))
        return failure();
      // A layer's results are its yielded values: no copy.
      auto yield = cast<YieldOp>(layer.getBody().front().getTerminator());
      for (auto [result, yielded] :
           llvm::zip(layer.getResults(), yield.getValues()))
        bufferOf[result] = bufferOf.lookup(yielded);
      continue;
    }
    if (!isa<TfmDialect, shard::ShardDialect>(op.getDialect()) &&
        !isa<arith::ConstantOp>(op))
      return op.emitOpError() << "cannot be lowered to exec: only tfm and "
                                 "shard ops are supported in a model function";
    if (isa<shard::ShardDialect>(op.getDialect()) &&
        !isa<shard::AllReduceOp, shard::ReduceScatterOp, shard::AllGatherOp>(op))
      return op.emitOpError() << "has no exec lowering yet";
    // Gathers/scatters along an inner dim stage through a rank-major buffer
    // ([ranks, outer, block]) and a transpose.
    if (isa<shard::AllGatherOp, shard::ReduceScatterOp>(op)) {
      auto full = cast<RankedTensorType>(
          isa<shard::AllGatherOp>(op) ? op.getResult(0).getType()
                                      : op.getOperand(0).getType());
      int64_t axis = isa<shard::AllGatherOp>(op)
                         ? cast<shard::AllGatherOp>(op).getGatherAxis().getSExtValue()
                         : cast<shard::ReduceScatterOp>(op).getScatterAxis().getSExtValue();
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d)
        outer *= full.getShape()[d];
      if (outer > 1) {
        LogicalBuffer lb;
        lb.type = RankedTensorType::get({full.getNumElements()},
                                        full.getElementType());
        lb.firstUse = lb.lastUse = static_cast<int64_t>(schedule.size());
        buffers.push_back(lb);
        stagingBuffer[&op] = buffers.size() - 1;
      }
    }
    int64_t step = schedule.size();
    schedule.push_back(&op);
    for (Value operand : op.getOperands()) {
      auto it = bufferOf.find(operand);
      if (it == bufferOf.end())
        return op.emitOpError() << "operand is not produced by a lowered op";
      LogicalBuffer &lb = buffers[it->second];
      lb.lastUse = std::max(lb.lastUse, step);
    }
    if (auto gather = dyn_cast<ParamAllGatherOp>(op)) {
      // A chunk-sized staging buffer for this rank's part of the parameter.
      FailureOr<int64_t> size = axisSize(gather, gather.getAxis());
      if (failed(size))
        return failure();
      auto type = gather.getParam().getType();
      if (type.getNumElements() % *size != 0)
        return gather.emitOpError() << "cannot split " << type.getNumElements()
                                    << " elements over " << *size << " ranks";
      LogicalBuffer lb;
      lb.type = RankedTensorType::get({type.getNumElements() / *size},
                                      type.getElementType());
      lb.firstUse = lb.lastUse = step;
      buffers.push_back(lb);
      stagingBuffer[&op] = buffers.size() - 1;
      continue;
    }
    if (isa<ReshapeOp, TpCopyOp>(op)) { // views: no copy
      bufferOf[op.getResult(0)] = bufferOf.lookup(op.getOperand(0));
      continue;
    }
    if (auto write = dyn_cast<KvCacheWriteOp>(op)) {
      // In place: the result is the resident cache itself.
      unsigned cache = bufferOf.lookup(write.getCache());
      if (buffers[cache].kind != LogicalBuffer::Kind::State)
        return write.emitOpError()
               << "writes a cache that is not resident state (a function "
                  "argument with '"
               << TfmDialect::kStateAttrName << "')";
      bufferOf[write.getResult()] = cache;
      continue;
    }
    if (auto adam = dyn_cast<AdamWUpdateOp>(op)) {
      // The AdamW moments live as long as the parameter.
      auto param = dyn_cast<BlockArgument>(adam.getParam());
      if (!param || buffers[bufferOf.lookup(param)].kind !=
                        LogicalBuffer::Kind::Param)
        return adam.emitOpError() << "updates a value that is not a parameter";
      std::string name = buffers[bufferOf.lookup(param)].name;
      for (StringRef suffix : {".exp_avg", ".exp_avg_sq"}) {
        LogicalBuffer lb;
        lb.kind = LogicalBuffer::Kind::State;
        lb.name = name + suffix.str();
        // ZeRO-1: the moments cover only this rank's chunk (the gradient).
        lb.type = cast<RankedTensorType>(adam.getShardAxis() ? adam.getGrad().getType()
                                                             : param.getType());
        lb.lastUse = kForever;
        buffers.push_back(lb);
        adamState[&op].push_back(buffers.size() - 1);
      }
      continue;
    }
    // An all-reduce whose operand has no other use reduces in place.
    if (auto ar = dyn_cast<shard::AllReduceOp>(op);
        ar && ar.getInput().hasOneUse() &&
        buffers[bufferOf.lookup(ar.getInput())].kind ==
            LogicalBuffer::Kind::Temp) {
      bufferOf[ar.getResult()] = bufferOf.lookup(ar.getInput());
      continue;
    }
    for (Value result : op.getResults())
      newBuffer(LogicalBuffer::Kind::Temp, result, "", step);
  }
  return success();
}

LogicalResult ProgramLowering::analyze() {
  Block &entry = func.getBody().front();
  for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
    Value arg = entry.getArgument(i);
    if (!isa<RankedTensorType>(arg.getType()))
      return func.emitOpError() << "argument #" << i << " is not a tensor";
    if (auto name = func.getArgAttrOfType<StringAttr>(
            i, TfmDialect::kParamAttrName))
      buffers[newBuffer(LogicalBuffer::Kind::Param, arg, name.getValue(), 0)]
          .argNumber = i;
    else if (auto input = func.getArgAttrOfType<StringAttr>(
                 i, TfmDialect::kInputAttrName))
      buffers[newBuffer(LogicalBuffer::Kind::Input, arg, input.getValue(), 0)]
          .argNumber = i;
    else if (auto state = func.getArgAttrOfType<StringAttr>(
                 i, TfmDialect::kStateAttrName))
      buffers[newBuffer(LogicalBuffer::Kind::State, arg, state.getValue(), 0)]
          .argNumber = i;
    else
      return func.emitOpError()
             << "argument #" << i << " needs a '" << TfmDialect::kParamAttrName
             << "', '" << TfmDialect::kInputAttrName << "' or '"
             << TfmDialect::kStateAttrName
             << "' attribute to be bound by the runtime";
  }
  if (failed(scheduleBlock(entry)))
    return failure();
  auto ret = cast<func::ReturnOp>(entry.getTerminator());
  unsigned numLogits = 0;
  for (Value v : ret.getOperands()) {
    buffers[bufferOf.lookup(v)].lastUse = kForever;
    // A scalar result is the step's loss (cross-entropy, possibly reduced
    // over ranks); anything else is logits-like.
    std::string name = cast<RankedTensorType>(v.getType()).getRank() == 0
                           ? "loss"
                       : numLogits++ == 0 ? "logits"
                                          : "output" + std::to_string(numLogits);
    outputs.push_back({name, v});
  }
  return success();
}

void ProgramLowering::planArena() {
  // Resident buffers first (parameters, then inputs), then the temporaries'
  // planned region above them.
  int64_t offset = 0;
  for (LogicalBuffer::Kind kind :
       {LogicalBuffer::Kind::Param, LogicalBuffer::Kind::State,
        LogicalBuffer::Kind::Input}) {
    int64_t start = offset;
    for (LogicalBuffer &lb : buffers) {
      if (lb.kind != kind)
        continue;
      lb.offset = offset;
      offset += alignTo(std::max<int64_t>(sizeInBytes(lb.type), 1),
                        exec::kBufferAlignment);
    }
    (kind == LogicalBuffer::Kind::Param   ? paramBytes
     : kind == LogicalBuffer::Kind::State ? stateBytes
                                          : inputBytes) = offset - start;
  }
  SmallVector<BufferRequest> requests;
  SmallVector<unsigned> temps;
  for (auto [i, lb] : llvm::enumerate(buffers)) {
    if (lb.kind != LogicalBuffer::Kind::Temp)
      continue;
    temps.push_back(i);
    requests.push_back({sizeInBytes(lb.type), lb.firstUse, lb.lastUse});
  }
  MemoryPlan plan = planMemory(requests, exec::kBufferAlignment);
  for (auto [i, idx] : llvm::enumerate(temps))
    buffers[idx].offset = offset + plan.offsets[i];
  tempPeak = plan.peakBytes;
  arenaBytes = offset + tempPeak;
}

LogicalResult ProgramLowering::emitOp(OpBuilder &b, Operation *op) {
  Location loc = op->getLoc();
  auto kernel = [&](StringRef name, ValueRange ins, ValueRange outs,
                    ArrayRef<NamedAttribute> attrs = {}) {
    auto k = exec::KernelOp::create(b, loc, name, ins, outs, /*stream=*/0);
    for (NamedAttribute attr : attrs)
      k->setAttr(attr.getName(), attr.getValue());
  };
  auto in = [&](Value v) { return bufferFor(b, v); };
  auto out = [&](Value v) { return bufferFor(b, v); };
  auto leading = [](ArrayRef<int64_t> shape, size_t keep) {
    int64_t n = 1;
    for (int64_t d : shape.drop_back(keep))
      n *= d;
    return n;
  };

  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](EmbeddingOp e) {
        SmallVector<NamedAttribute> attrs;
        if (e.getShardAxisAttr())
          attrs.push_back(b.getNamedAttr("shard_axis", e.getShardAxisAttr()));
        kernel("embedding", {in(e.getIds()), in(e.getTable())},
               {out(e.getResult())}, attrs);
        return success();
      })
      .Case([&](CastOp c) {
        kernel("cast", {in(c.getInput())}, {out(c.getResult())});
        return success();
      })
      .Case([&](BiasAddOp a) {
        kernel("bias_add", {in(a.getInput()), in(a.getBias())},
               {out(a.getResult())});
        return success();
      })
      .Case([&](ScaleOp sc) {
        kernel("scale", {in(sc.getInput())}, {out(sc.getResult())},
               {b.getNamedAttr("factor", sc.getFactorAttr())});
        return success();
      })
      .Case([&](ReduceMaxOp m) {
        kernel("reduce_max", {in(m.getInput())}, {out(m.getResult())});
        return success();
      })
      .Case([&](CrossEntropyPartialOp p) {
        SmallVector<NamedAttribute> attrs = {
            b.getNamedAttr("shard_axis", p.getShardAxisAttr())};
        if (Attribute vocab = p->getAttr("vocab_size"))
          attrs.push_back(b.getNamedAttr("vocab_size", vocab));
        kernel("cross_entropy_partial",
               {in(p.getLogits()), in(p.getLabels()), in(p.getMax())},
               {out(p.getSumExp()), out(p.getTarget())}, attrs);
        return success();
      })
      .Case([&](CrossEntropyFinalizeOp f) {
        kernel("cross_entropy_finalize",
               {in(f.getMax()), in(f.getSumExp()), in(f.getTarget())},
               {out(f.getLoss())},
               {b.getNamedAttr("reduction",
                               b.getStringAttr(stringifyReduction(
                                   f.getReduction())))});
        return success();
      })
      .Case([&](shard::AllReduceOp ar) -> LogicalResult {
        FailureOr<StringRef> axis = axisName(ar);
        if (failed(axis))
          return failure();
        Value result = out(ar.getResult());
        Value input = in(ar.getInput());
        if (input != result)
          kernel("copy", {input}, {result});
        StringRef reduction;
        switch (ar.getReduction()) {
        case shard::ReductionKind::Sum:
          reduction = "sum";
          break;
        case shard::ReductionKind::Max:
          reduction = "max";
          break;
        default:
          return ar.emitOpError() << "only sum and max all-reduces can be "
                                     "lowered to exec";
        }
        onCommStream(
            b, loc,
            [&] {
              exec::AllReduceOp::create(b, loc, result, *axis, reduction,
                                        /*stream=*/1);
            },
            ar.getResult());
        return success();
      })
      .Case([&](shard::ReduceScatterOp rs) -> LogicalResult {
        FailureOr<StringRef> axis = axisName(rs);
        if (failed(axis))
          return failure();
        Value input = in(rs.getInput()), result = out(rs.getResult());
        ArrayRef<int64_t> local = rs.getResult().getType().getShape();
        int64_t d = rs.getScatterAxis().getSExtValue();
        auto it = stagingBuffer.find(rs);
        if (it != stagingBuffer.end()) {
          // [outer, ranks, block] -> rank-major [ranks, outer, block].
          int64_t outer = 1, block = 1;
          for (int64_t i = 0; i < static_cast<int64_t>(local.size()); ++i)
            (i < d ? outer : block) *= local[i];
          int64_t ranks = rs.getInput().getType().getNumElements() / (outer * block);
          Value staged = buffers[it->second].buffer;
          kernel("transpose", {view(b, input, {outer, ranks, block})},
                 {view(b, staged, {ranks, outer, block})},
                 {b.getNamedAttr("permutation", b.getDenseI64ArrayAttr({1, 0, 2}))});
          input = staged;
        }
        Value flatIn = view(b, input, {cast<exec::BufferType>(input.getType())
                                           .getNumElements()});
        Value flatOut = view(b, result, {rs.getResult().getType().getNumElements()});
        onCommStream(
            b, loc,
            [&] {
              exec::ReduceScatterOp::create(b, loc, flatIn, flatOut, *axis,
                                            /*stream=*/1);
            },
            rs.getResult());
        return success();
      })
      .Case([&](shard::AllGatherOp ag) -> LogicalResult {
        FailureOr<StringRef> axis = axisName(ag);
        if (failed(axis))
          return failure();
        Value input = in(ag.getInput()), result = out(ag.getResult());
        ArrayRef<int64_t> local = ag.getInput().getType().getShape();
        int64_t d = ag.getGatherAxis().getSExtValue();
        auto it = stagingBuffer.find(ag);
        Value target = it != stagingBuffer.end() ? buffers[it->second].buffer : result;
        Value flatIn = view(b, input, {ag.getInput().getType().getNumElements()});
        Value flatOut = view(b, target, {ag.getResult().getType().getNumElements()});
        // With a staging buffer the transpose below reads it right away.
        onCommStream(
            b, loc,
            [&] {
              exec::AllGatherOp::create(b, loc, flatIn, flatOut, *axis,
                                        /*stream=*/1);
            },
            it == stagingBuffer.end() ? ag.getResult() : Value());
        if (it != stagingBuffer.end()) {
          // Rank-major [ranks, outer, block] -> [outer, ranks, block].
          int64_t outer = 1, block = 1;
          for (int64_t i = 0; i < static_cast<int64_t>(local.size()); ++i)
            (i < d ? outer : block) *= local[i];
          int64_t ranks = ag.getResult().getType().getNumElements() / (outer * block);
          kernel("transpose", {view(b, target, {ranks, outer, block})},
                 {view(b, result, {outer, ranks, block})},
                 {b.getNamedAttr("permutation", b.getDenseI64ArrayAttr({1, 0, 2}))});
        }
        return success();
      })
      .Case([&](SendOp s) {
        // Buffered: the runtime copies the tensor out before returning, so
        // the compute stream may reuse the buffer right after.
        Value input = in(s.getInput());
        onCommStream(b, loc, [&] {
          exec::SendOp::create(b, loc, input, s.getPeerStage(), s.getTag(),
                               /*stream=*/1);
        });
        return success();
      })
      .Case([&](RecvOp r) {
        Value result = out(r.getResult());
        onCommStream(
            b, loc,
            [&] {
              exec::RecvOp::create(b, loc, result, r.getPeerStage(), r.getTag(),
                                   /*stream=*/1);
            },
            r.getResult());
        return success();
      })
      .Case([&](ParamAllGatherOp g) {
        Value param = in(g.getParam());
        auto type = cast<exec::BufferType>(param.getType());
        Value flat = view(b, param, {type.getNumElements()});
        Value chunk = buffers[stagingBuffer.lookup(g)].buffer;
        kernel("copy_chunk", {flat}, {chunk},
               {b.getNamedAttr("shard_axis", g.getAxisAttr())});
        onCommStream(
            b, loc,
            [&] {
              exec::AllGatherOp::create(b, loc, chunk, flat, g.getAxis(),
                                        /*stream=*/1);
            },
            g.getParam());
        return success();
      })
      .Case([&](PositionIdsOp p) {
        SmallVector<NamedAttribute> attrs = {
            b.getNamedAttr("offset", p.getOffsetAttr())};
        if (Attribute axis = p->getAttr("shard_axis")) // sequence parallel
          attrs.push_back(b.getNamedAttr("shard_axis", axis));
        kernel("position_ids", {}, {out(p.getResult())}, attrs);
        return success();
      })
      .Case([&](LinearOp l) {
        ArrayRef<int64_t> shape = l.getInput().getType().getShape();
        int64_t rows = leading(shape, 1);
        Value x = view(b, in(l.getInput()), {rows, l.getInFeatures()});
        Value y = view(b, out(l.getResult()), {rows, l.getOutFeatures()});
        Value bias = l.getBias() ? in(l.getBias()) : Value();
        exec::GemmOp::create(b, loc, x, in(l.getWeight()), y, bias,
                             /*trans_a=*/false,
                             /*trans_b=*/l.getLayout() == WeightLayout::out_in,
                             /*alpha=*/APFloat(1.0), /*beta=*/APFloat(0.0));
        return success();
      })
      .Case([&](MatmulOp m) {
        auto as3d = [&](Value buffer, ArrayRef<int64_t> shape) {
          if (shape.size() == 2)
            return buffer;
          return view(b, buffer,
                      {leading(shape, 2), shape[shape.size() - 2],
                       shape.back()});
        };
        Value a = as3d(in(m.getLhs()), m.getLhs().getType().getShape());
        Value bb = as3d(in(m.getRhs()), m.getRhs().getType().getShape());
        Value c = as3d(out(m.getResult()), m.getResult().getType().getShape());
        exec::GemmOp::create(b, loc, a, bb, c, Value(), m.getTransposeA(),
                             m.getTransposeB(), APFloat(1.0), APFloat(0.0));
        return success();
      })
      .Case([&](LayerNormOp n) {
        SmallVector<Value> ins = {in(n.getInput()), in(n.getGamma())};
        if (n.getBeta())
          ins.push_back(in(n.getBeta()));
        kernel("layer_norm", ins, {out(n.getResult())},
               {b.getNamedAttr("epsilon", n.getEpsilonAttr())});
        return success();
      })
      .Case([&](RMSNormOp n) {
        kernel("rms_norm", {in(n.getInput()), in(n.getGamma())},
               {out(n.getResult())},
               {b.getNamedAttr("epsilon", n.getEpsilonAttr())});
        return success();
      })
      .Case([&](GeluOp g) {
        kernel(g.getApproximate() == GeluApproximation::tanh ? "gelu_tanh"
                                                             : "gelu_exact",
               {in(g.getInput())}, {out(g.getResult())});
        return success();
      })
      .Case([&](SiluOp s) {
        kernel("silu", {in(s.getInput())}, {out(s.getResult())});
        return success();
      })
      .Case([&](AddOp a) {
        kernel("add", {in(a.getLhs()), in(a.getRhs())}, {out(a.getResult())});
        return success();
      })
      .Case([&](MulOp m) {
        kernel("mul", {in(m.getLhs()), in(m.getRhs())}, {out(m.getResult())});
        return success();
      })
      .Case([&](SoftmaxOp s) -> LogicalResult {
        int64_t rank = s.getInput().getType().getRank();
        int64_t axis = static_cast<int64_t>(s.getAxis());
        if (axis != -1 && axis != rank - 1)
          return s.emitOpError()
                 << "softmax over axis " << axis
                 << " cannot be lowered to exec yet (only the last axis)";
        kernel("softmax", {in(s.getInput())}, {out(s.getResult())});
        return success();
      })
      .Case([&](AttentionOp a) {
        kernel("attention", {in(a.getQuery()), in(a.getKey()), in(a.getValue())},
               {out(a.getResult())},
               {b.getNamedAttr("num_heads", a.getNumHeadsAttr()),
                b.getNamedAttr("num_kv_heads", a.getNumKvHeadsAttr()),
                b.getNamedAttr("scale",
                               b.getF64FloatAttr(a.getEffectiveScale())),
                b.getNamedAttr("causal", b.getBoolAttr(a.getCausal()))});
        return success();
      })
      .Case([&](RopeOp r) {
        kernel("rope", {in(r.getInput())}, {out(r.getResult())},
               {b.getNamedAttr("num_heads", r.getNumHeadsAttr()),
                b.getNamedAttr("theta", r.getThetaAttr()),
                b.getNamedAttr("offset", r.getOffsetAttr())});
        return success();
      })
      .Case([&](KvCacheWriteOp w) {
        SmallVector<Value> ins = {in(w.getValue())};
        if (w.getPositions())
          ins.push_back(in(w.getPositions()));
        kernel("kv_cache_write", ins, {in(w.getCache())});
        return success();
      })
      .Case([&](CacheAttentionOp a) {
        kernel("cache_attention",
               {in(a.getQuery()), in(a.getKeyCache()), in(a.getValueCache()),
                in(a.getPositions())},
               {out(a.getResult())},
               {b.getNamedAttr("num_heads", a.getNumHeadsAttr()),
                b.getNamedAttr("num_kv_heads", a.getNumKvHeadsAttr()),
                b.getNamedAttr("scale",
                               b.getF64FloatAttr(a.getEffectiveScale()))});
        return success();
      })
      .Case([&](RopeAtOp r) {
        kernel("rope_at", {in(r.getInput()), in(r.getPositions())},
               {out(r.getResult())},
               {b.getNamedAttr("num_heads", r.getNumHeadsAttr()),
                b.getNamedAttr("theta", r.getThetaAttr())});
        return success();
      })
      .Case([&](LastTokenOp l) {
        kernel("last_token", {in(l.getInput()), in(l.getLengths())},
               {out(l.getResult())});
        return success();
      })
      .Case([&](CrossEntropyOp c) {
        kernel("cross_entropy", {in(c.getLogits()), in(c.getLabels())},
               {out(c.getLoss())},
               {b.getNamedAttr("reduction",
                               b.getStringAttr(stringifyReduction(
                                   c.getReduction())))});
        return success();
      })
      .Case([&](TransposeOp t) {
        kernel("transpose", {in(t.getInput())}, {out(t.getResult())},
               {b.getNamedAttr("permutation", t.getPermutationAttr())});
        return success();
      })
      .Case([&](SplitOp s) {
        int64_t offset = 0;
        int64_t axis = static_cast<int64_t>(s.getAxis());
        for (Value piece : s.getResults()) {
          kernel("copy_slice", {in(s.getInput())}, {out(piece)},
                 {b.getNamedAttr("axis", s.getAxisAttr()),
                  b.getNamedAttr("offset", b.getI64IntegerAttr(offset))});
          offset += cast<RankedTensorType>(piece.getType()).getShape()[axis];
        }
        return success();
      })
      .Case<ReshapeOp, TpCopyOp>([](Operation *) { return success(); }) // views
      .Case([&](arith::ConstantOp c) -> LogicalResult {
        auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
        if (!dense || !dense.isSplat() ||
            !isa<FloatType>(dense.getElementType()))
          return c.emitOpError() << "only float splat constants can be "
                                    "lowered to exec";
        kernel("fill", {}, {out(c.getResult())},
               {b.getNamedAttr("value",
                               b.getF64FloatAttr(dense.getSplatValue<APFloat>()
                                                     .convertToDouble()))});
        return success();
      })
      .Case([&](SumRowsOp r) {
        kernel("sum_rows", {in(r.getInput())}, {out(r.getResult())});
        return success();
      })
      .Case([&](EmbeddingGradOp e) {
        SmallVector<NamedAttribute> attrs;
        if (e.getShardAxisAttr())
          attrs.push_back(b.getNamedAttr("shard_axis", e.getShardAxisAttr()));
        kernel("embedding_grad", {in(e.getIds()), in(e.getDout())},
               {out(e.getResult())}, attrs);
        return success();
      })
      .Case([&](GeluGradOp g) {
        kernel(g.getApproximate() == GeluApproximation::tanh ? "gelu_tanh_grad"
                                                             : "gelu_exact_grad",
               {in(g.getInput()), in(g.getDout())}, {out(g.getResult())});
        return success();
      })
      .Case([&](SiluGradOp g) {
        kernel("silu_grad", {in(g.getInput()), in(g.getDout())},
               {out(g.getResult())});
        return success();
      })
      .Case([&](LayerNormGradOp g) {
        kernel("layer_norm_grad", {in(g.getInput()), in(g.getGamma()), in(g.getDout())},
               {out(g.getDinput()), out(g.getDgamma()), out(g.getDbeta())},
               {b.getNamedAttr("epsilon", g.getEpsilonAttr())});
        return success();
      })
      .Case([&](RMSNormGradOp g) {
        kernel("rms_norm_grad", {in(g.getInput()), in(g.getGamma()), in(g.getDout())},
               {out(g.getDinput()), out(g.getDgamma())},
               {b.getNamedAttr("epsilon", g.getEpsilonAttr())});
        return success();
      })
      .Case([&](AttentionGradOp g) {
        kernel("attention_grad",
               {in(g.getQuery()), in(g.getKey()), in(g.getValue()), in(g.getDout())},
               {out(g.getDquery()), out(g.getDkey()), out(g.getDvalue())},
               {b.getNamedAttr("num_heads", g.getNumHeadsAttr()),
                b.getNamedAttr("num_kv_heads", g.getNumKvHeadsAttr()),
                b.getNamedAttr("scale", g.getScaleAttr()),
                b.getNamedAttr("causal", b.getBoolAttr(g.getCausal()))});
        return success();
      })
      .Case([&](RopeGradOp r) {
        kernel("rope_grad", {in(r.getDout())}, {out(r.getResult())},
               {b.getNamedAttr("num_heads", r.getNumHeadsAttr()),
                b.getNamedAttr("theta", r.getThetaAttr()),
                b.getNamedAttr("offset", r.getOffsetAttr())});
        return success();
      })
      .Case([&](ConcatOp c) {
        SmallVector<Value> ins;
        for (Value v : c.getInputs())
          ins.push_back(in(v));
        kernel("concat", ins, {out(c.getResult())},
               {b.getNamedAttr("axis", c.getAxisAttr())});
        return success();
      })
      .Case([&](CrossEntropyGradOp g) {
        kernel("cross_entropy_grad",
               {in(g.getLogits()), in(g.getLabels()), in(g.getDloss())},
               {out(g.getResult())},
               {b.getNamedAttr("reduction", b.getStringAttr(stringifyReduction(
                                                g.getReduction())))});
        return success();
      })
      .Case([&](CrossEntropyPartialGradOp g) {
        SmallVector<NamedAttribute> attrs = {
            b.getNamedAttr("shard_axis", g.getShardAxisAttr())};
        if (Attribute vocab = g->getAttr("vocab_size"))
          attrs.push_back(b.getNamedAttr("vocab_size", vocab));
        kernel("cross_entropy_partial_grad",
               {in(g.getLogits()), in(g.getLabels()), in(g.getMax()),
                in(g.getDsumExp()), in(g.getDtarget())},
               {out(g.getResult())}, attrs);
        return success();
      })
      .Case([&](CrossEntropyFinalizeGradOp g) {
        kernel("cross_entropy_finalize_grad", {in(g.getSumExp()), in(g.getDloss())},
               {out(g.getDsumExp()), out(g.getDtarget())},
               {b.getNamedAttr("reduction", b.getStringAttr(stringifyReduction(
                                                g.getReduction())))});
        return success();
      })
      .Case([&](GradNormSqOp g) {
        kernel("grad_norm_sq", {in(g.getInput())}, {out(g.getResult())});
        return success();
      })
      .Case([&](AdamWUpdateOp a) {
        SmallVector<unsigned, 2> state = adamState.lookup(a);
        SmallVector<NamedAttribute> attrs = {
            b.getNamedAttr("beta1", a.getBeta1Attr()),
            b.getNamedAttr("beta2", a.getBeta2Attr()),
            b.getNamedAttr("eps", a.getEpsAttr()),
            b.getNamedAttr("decay", b.getBoolAttr(a.getDecay()))};
        if (a.getShardAxisAttr())
          attrs.push_back(b.getNamedAttr("shard_axis", a.getShardAxisAttr()));
        SmallVector<Value, 2> ins = {in(a.getGrad())};
        if (a.getGradNormSq())
          ins.push_back(in(a.getGradNormSq()));
        kernel("adamw", ins,
               {in(a.getParam()), buffers[state[0]].buffer,
                buffers[state[1]].buffer},
               attrs);
        return success();
      })
      .Default([](Operation *op) {
        return op->emitOpError() << "has no exec lowering";
      });
}

LogicalResult ProgramLowering::run(OpBuilder &moduleBuilder, int64_t stage,
                                  StringRef entry) {
  if (failed(analyze()))
    return failure();
  planArena();

  MLIRContext *ctx = func.getContext();
  std::string name = "stage" + std::to_string(stage);
  if (!entry.empty())
    name += "_" + entry.str();
  auto program = exec::ProgramOp::create(
      moduleBuilder, func.getLoc(), name, arenaBytes, /*num_streams=*/2, stage);
  program->setAttr("model", moduleBuilder.getStringAttr(func.getSymName()));
  if (!entry.empty())
    program->setAttr("entry", moduleBuilder.getStringAttr(entry));
  program->setAttr("param_bytes", moduleBuilder.getI64IntegerAttr(paramBytes));
  program->setAttr("input_bytes", moduleBuilder.getI64IntegerAttr(inputBytes));
  if (stateBytes)
    program->setAttr("state_bytes", moduleBuilder.getI64IntegerAttr(stateBytes));
  program->setAttr("temp_peak_bytes", moduleBuilder.getI64IntegerAttr(tempPeak));
  Block *body = new Block();
  program.getBody().push_back(body);
  OpBuilder b = OpBuilder::atBlockBegin(body);

  for (LogicalBuffer &lb : buffers) {
    auto type = BufferType::get(ctx, lb.type.getShape(),
                                lb.type.getElementType());
    Location loc = func.getLoc();
    switch (lb.kind) {
    case LogicalBuffer::Kind::Param:
      lb.buffer = exec::ParamOp::create(b, loc, type, lb.name, lb.offset);
      // How the runtime slices this rank's shard out of the global tensor.
      for (StringRef attr : {"llmir.global_shape", "llmir.shard"})
        if (Attribute a = func.getArgAttr(lb.argNumber, attr))
          lb.buffer.getDefiningOp()->setAttr(attr.drop_front(6), a);
      break;
    case LogicalBuffer::Kind::State:
      lb.buffer = exec::StateOp::create(b, loc, type, lb.name, lb.offset);
      break;
    case LogicalBuffer::Kind::Input:
      lb.buffer = exec::InputOp::create(b, loc, type, lb.name, lb.offset);
      break;
    case LogicalBuffer::Kind::Temp:
      lb.buffer = exec::AllocOp::create(b, loc, type, lb.offset);
      break;
    }
  }
  for (Operation *op : schedule) {
    waitForPending(b, op->getLoc(), op);
    if (failed(emitOp(b, op)))
      return failure();
  }
  waitForPending(b, func.getLoc(), nullptr); // the step ends with its comm
  for (auto &[outName, value] : outputs)
    exec::OutputOp::create(b, func.getLoc(), outName, bufferFor(b, value));
  return success();
}

struct LowerToExecPass : public llmir::impl::LowerToExecBase<LowerToExecPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (failed(readPlan(module, "llm-lower-to-exec")) ||
        failed(tfm::applyMixedPrecision(module)))
      return signalPassFailure();
    tfm::legalizeCollectiveTypes(module);
    SmallVector<func::FuncOp> models = modelFunctions(module);
    // Functions over resident state (KV caches) are entry points of one
    // program: their parameters and state lower to the same arena offsets
    // (same arguments, same order), so one loaded arena serves all of them.
    auto hasState = [](func::FuncOp f) {
      for (unsigned i = 0, e = f.getNumArguments(); i < e; ++i)
        if (f.getArgAttr(i, TfmDialect::kStateAttrName))
          return true;
      return false;
    };
    bool entries = llvm::any_of(models, hasState);
    if (entries && !llvm::all_of(models, hasState)) {
      module.emitError() << "mixes functions over resident state (tfm.state, "
                            "inference entry points) with other functions";
      return signalPassFailure();
    }
    bool pipelined = isPipelined(module);
    int64_t stage = 0;
    for (func::FuncOp func : models) {
      if (func.getSymName() == "train_microbatch") {
        func.emitOpError() << "is one micro-batch of a pipelined train step; "
                              "run --llm-pipeline-split before "
                              "--llm-lower-to-exec";
        return signalPassFailure();
      }
      if (pipelined && !func->hasAttr("llmir.pp_rank")) {
        func.emitOpError() << "is partitioned for a pipeline (pp or "
                              "micro-batches) but not split; run "
                              "--llm-pipeline-split before --llm-lower-to-exec";
        return signalPassFailure();
      }
      OpBuilder builder(func);
      ProgramLowering lowering(func);
      // Entry points of a pipeline (--llm-pipeline-split) belong to their
      // rank's stage and keep the entry's own name.
      int64_t index = stage;
      StringRef entry;
      if (entries) {
        auto rank = func->getAttrOfType<IntegerAttr>("llmir.pp_rank");
        auto name = func->getAttrOfType<StringAttr>("llmir.entry");
        index = rank ? rank.getInt() : 0;
        entry = name ? name.getValue() : func.getSymName();
      } else {
        ++stage;
      }
      if (failed(lowering.run(builder, index, entry)))
        return signalPassFailure();
      func.erase();
    }
  }
};

} // namespace
