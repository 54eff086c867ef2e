//===- TfmToExec.cpp - lower tfm functions to scheduled exec programs -----===//
//
// Three phases: (1) schedule the tfm ops in program order (layers flattened)
// and compute each logical buffer's live range, (2) plan the arena, (3) emit
// the exec program with every buffer at its planned offset, one op at a time
// through the per-family lowerings listed in LoweringContext.h.
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

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
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/TypeSwitch.h"

namespace llmir {
#define GEN_PASS_DEF_LOWERTOEXEC
#include "llmir/Conversion/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::lowering;
using namespace llmir::tfm;
using exec::BufferType;

namespace {

/// Whether `op` is (or holds) an operation of the comm stream.
bool isCommOp(Operation *op) {
  return op
      ->walk([](Operation *nested) {
        return isa<SendOp, RecvOp, ParamAllGatherOp, shard::AllReduceOp,
                   shard::ReduceScatterOp, shard::AllGatherOp>(nested)
                   ? WalkResult::interrupt()
                   : WalkResult::advance();
      })
      .wasInterrupted();
}

/// Moves each tfm.recv right after the comm op before it (or to the start),
/// so that it is posted before the compute that precedes its use, which
/// then overlaps it. Comm ops keep their order (the peers' matching order).
void postReceivesEarly(Block &block) {
  Operation *lastComm = nullptr;
  for (Operation &op : llvm::make_early_inc_range(block)) {
    if (!isCommOp(&op))
      continue;
    if (isa<RecvOp>(op)) {
      if (lastComm)
        op.moveAfter(lastComm);
      else
        op.moveBefore(&block.front());
    }
    lastComm = &op;
  }
}

class ProgramLowering : public LoweringContext {
public:
  ProgramLowering(func::FuncOp func, bool fuseEpilogues)
      : LoweringContext(func.getContext()), func(func), fuseEpilogues(fuseEpilogues) {}

  /// Lowers the function to program `stage`; a non-empty `entry` names one
  /// of several entry points of that stage (inference: prefill, decode).
  LogicalResult run(OpBuilder &moduleBuilder, int64_t stage, StringRef entry);

private:
  LogicalResult analyze();
  LogicalResult scheduleBlock(Block &block);
  /// Keeps the memory deferred comm ops read, so that the compute right
  /// after them need not wait for them before reusing it: ZeRO-1's staging
  /// chunk until the next comm op, a send's input until the compute stream
  /// next waits for the comm stream. Called at every op.
  void holdCommReads(Operation *op, int64_t step);
  /// Decides whether `linear` is emitted with its epilogue (fusableEpilogue)
  /// and plans the buffers its kernel then writes at `step`.
  void planGemmEpilogue(LinearOp linear, int64_t step);
  void placeViews();
  void planArena();
  LogicalResult emitOp(Operation *op);

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

  func::FuncOp func;
  bool fuseEpilogues;
  /// Temporaries made by backward ops (llmir.backward), and those made
  /// before the backward that a backward op reads: the activations the
  /// forward keeps for it (savedActivationPeak).
  llvm::DenseSet<unsigned> backwardBuffers, savedForBackward;
  int64_t savedActivationPeak = 0;
  /// The attentions whose attention_grad reads their saved log-sum-exp.
  llvm::SmallPtrSet<Operation *, 16> savedAttention;
  SmallVector<Operation *> schedule;
  /// ZeRO-1 staging chunks read by the last comm op.
  SmallVector<unsigned> commReads;
  /// Send inputs kept until the compute stream waits for a later comm op
  /// (the comm stream runs in order, so that one implies the sends are done):
  /// until an op reads the buffer of a result of one of `laterCommOps`.
  SmallVector<unsigned> sentBuffers;
  SmallVector<Operation *> laterCommOps;
  SmallVector<std::pair<std::string, Value>> outputs;
  int64_t paramBytes = 0, stateBytes = 0, inputBytes = 0, tempPeak = 0,
          arenaBytes = 0;
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
    holdCommReads(&op, step);
    bool backward = op.hasAttr(TfmDialect::kBackwardAttrName);
    for (Value operand : op.getOperands()) {
      auto it = bufferOf.find(operand);
      if (it == bufferOf.end())
        return op.emitOpError() << "operand is not produced by a lowered op";
      LogicalBuffer &lb = buffers[it->second];
      lb.lastUse = std::max(lb.lastUse, step);
      if (backward && lb.kind == LogicalBuffer::Kind::Temp &&
          !backwardBuffers.contains(it->second))
        savedForBackward.insert(it->second);
    }
    size_t buffersBefore = buffers.size();
    auto recordBackward = llvm::make_scope_exit([&] {
      if (backward)
        for (size_t i = buffersBefore; i < buffers.size(); ++i)
          backwardBuffers.insert(i);
    });
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
      commReads.push_back(buffers.size() - 1);
      continue;
    }
    // The forward's output and log-sum-exp live until the backward reads them.
    if (auto grad = dyn_cast<AttentionGradOp>(op)) {
      AttentionOp fwd = savedForwardOf(grad);
      auto lse = fwd ? attentionLse.find(fwd) : attentionLse.end();
      if (lse != attentionLse.end())
        for (unsigned idx : {lse->second, bufferOf.lookup(fwd.getResult())})
          buffers[idx].lastUse = std::max(buffers[idx].lastUse, step);
    }
    if (auto attn = dyn_cast<AttentionOp>(op); attn && savedAttention.contains(attn)) {
      LogicalBuffer lb;
      lb.type = lseTypeOf(attn);
      lb.firstUse = lb.lastUse = step;
      buffers.push_back(lb);
      attentionLse[&op] = buffers.size() - 1;
    }
    if (isa<AttentionOp, AttentionGradOp>(op) && isCpRing(&op)) {
      // cp-comm=ring: slots for the chunks in flight (LowerAttention.cpp).
      auto types = ringScratchTypes(*this, &op, !isa<AttentionOp>(op) ||
                                                    savedAttention.contains(&op));
      if (failed(types))
        return failure();
      for (RankedTensorType type : *types) {
        LogicalBuffer lb;
        lb.type = type;
        lb.firstUse = lb.lastUse = step;
        buffers.push_back(lb);
        ringScratch[&op].push_back(buffers.size() - 1);
      }
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
    if (auto linear = dyn_cast<LinearOp>(op); linear && fuseEpilogues)
      planGemmEpilogue(linear, step);
    // A loss gradient writes its dlogits over logits read only before it.
    if (Value logits = overwrittenLogits(&op);
        logits && buffers[bufferOf.lookup(logits)].kind == LogicalBuffer::Kind::Temp) {
      bufferOf[op.getResult(0)] = bufferOf.lookup(logits);
      continue;
    }
    for (Value result : op.getResults())
      if (!bufferOf.count(result)) // a fused norm's was planned at its add
        newBuffer(LogicalBuffer::Kind::Temp, result, "", step);
    if (Operation *norm = fusedNormOf(&op)) // written by the add's kernel
      newBuffer(LogicalBuffer::Kind::Temp, norm->getResult(0), "", step);
  }
  return success();
}

void ProgramLowering::planGemmEpilogue(LinearOp linear, int64_t step) {
  GemmEpilogue fused =
      fusableEpilogue(linear, [&](Value v) { return bufferOf.count(v) != 0; });
  if (!fused.activation)
    return;
  gemmEpilogues[linear] = fused;
  using Kind = LogicalBuffer::Kind;
  epilogueOps.insert(fused.activation);
  unsigned out = newBuffer(Kind::Temp, fused.activation->getResult(0), "", step);
  // The GEMM's own result is never materialized when only the epilogue reads
  // it (gemm_dgelu_bgrad's incoming gradient; a pre-activation no backward
  // reads): it names the fused output.
  if (isa<GeluGradOp>(fused.activation) || linear.getResult().hasOneUse())
    bufferOf[linear.getResult()] = out;
  if (fused.biasGrad) {
    epilogueOps.insert(fused.biasGrad);
    newBuffer(Kind::Temp, fused.biasGrad->getResult(0), "", step);
  }
}

void ProgramLowering::holdCommReads(Operation *op, int64_t step) {
  auto holdUntilNow = [&](SmallVectorImpl<unsigned> &held) {
    for (unsigned idx : held)
      buffers[idx].lastUse = std::max(buffers[idx].lastUse, step);
    held.clear();
  };
  auto readsCommResult = [&](Value v) {
    auto it = bufferOf.find(v);
    return it != bufferOf.end() &&
           llvm::any_of(laterCommOps, [&](Operation *comm) {
             return llvm::any_of(comm->getResults(), [&](Value r) {
               auto result = bufferOf.find(r);
               return result != bufferOf.end() && result->second == it->second;
             });
           });
  };
  if (llvm::any_of(op->getOperands(), readsCommResult)) {
    holdUntilNow(sentBuffers);
    laterCommOps.clear();
  }
  if (!isCommOp(op))
    return;
  holdUntilNow(commReads);
  if (auto send = dyn_cast<SendOp>(op))
    sentBuffers.push_back(bufferOf.lookup(send.getInput()));
  else if (!sentBuffers.empty())
    laterCommOps.push_back(op);
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
  func.walk([&](AddOp add) {
    if (Operation *norm = fusableNorm(add);
        norm && fusedNorms.insert(norm).second)
      fusedNorm[add] = norm;
  });
  func.walk([&](AttentionGradOp grad) {
    if (AttentionOp fwd = savedForwardOf(grad))
      savedAttention.insert(fwd);
  });
  postReceivesEarly(entry);
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
  placeViews();
  return success();
}

/// Whether joining or cutting `type` along `axis` joins or cuts contiguous
/// memory (every dim before the axis is 1).
static bool isContiguousAlong(RankedTensorType type, int64_t axis) {
  return llvm::all_of(type.getShape().take_front(axis),
                      [](int64_t d) { return d == 1; });
}

void ProgramLowering::placeViews() {
  using Kind = LogicalBuffer::Kind;
  // Places the pieces in order inside `whole`, if each starts at an aligned
  // address as every exec buffer must (kernels rely on it).
  auto placeInside = [&](ArrayRef<unsigned> pieces, unsigned whole) {
    int64_t offset = 0;
    SmallVector<int64_t> offsets;
    for (unsigned piece : pieces) {
      if (offset % exec::kBufferAlignment != 0)
        return false;
      offsets.push_back(offset);
      offset += sizeInBytes(buffers[piece].type);
    }
    for (auto [piece, at] : llvm::zip(pieces, offsets)) {
      buffers[piece].parent = static_cast<int>(whole);
      buffers[piece].offsetInParent = at;
    }
    return true;
  };
  // Each piece's buffer must hold exactly that piece, and only it.
  auto ownBuffers = [&](ValueRange pieces, SmallVectorImpl<unsigned> &out) {
    for (Value v : pieces) {
      unsigned idx = bufferOf.lookup(v);
      const LogicalBuffer &lb = buffers[idx];
      if (lb.kind != Kind::Temp || lb.parent >= 0 ||
          sizeInBytes(lb.type) !=
              sizeInBytes(cast<RankedTensorType>(v.getType())) ||
          llvm::is_contained(out, idx))
        return false;
      out.push_back(idx);
    }
    return true;
  };
  for (auto [step, op] : llvm::enumerate(schedule)) {
    int64_t at = static_cast<int64_t>(step);
    SmallVector<unsigned> pieces;
    if (auto concat = dyn_cast<ConcatOp>(op)) {
      // The producers write the pieces into the result when nothing reads
      // a piece after the concat (an in-place all-reduce of the result,
      // e.g. a gradient bucket's, would change what it saw).
      unsigned whole = bufferOf.lookup(concat.getResult());
      if (!isContiguousAlong(concat.getType(), concat.getAxis()) ||
          !ownBuffers(concat.getInputs(), pieces) ||
          llvm::is_contained(pieces, whole) ||
          llvm::any_of(pieces, [&](unsigned p) {
            return buffers[p].lastUse != at;
          }) ||
          !placeInside(pieces, whole))
        continue;
      viewOps.insert(op);
    } else if (auto split = dyn_cast<SplitOp>(op)) {
      // The pieces are views of the input when nothing else reads it after
      // the split (an in-place all-reduce of a piece writes the input).
      unsigned whole = bufferOf.lookup(split.getInput());
      if (!isContiguousAlong(split.getInput().getType(), split.getAxis()) ||
          buffers[whole].kind != Kind::Temp || buffers[whole].lastUse != at ||
          !ownBuffers(split.getResults(), pieces) ||
          !placeInside(pieces, whole))
        continue;
      viewOps.insert(op);
    }
  }
}

/// The parts of a buffer that `covers` (the buffer itself at offset 0 and
/// its views) cut it into at aligned boundaries, each alive while any of
/// the covering ones is; neighbours alive alike are merged.
static SmallVector<BufferSegment>
liveSegments(ArrayRef<BufferSegment> covers) {
  SmallVector<int64_t> cuts;
  for (const BufferSegment &c : covers)
    for (int64_t at : {c.offset, c.offset + c.bytes})
      if (at % exec::kBufferAlignment == 0)
        cuts.push_back(at);
  int64_t end = 0;
  for (const BufferSegment &c : covers)
    end = std::max(end, c.offset + c.bytes);
  cuts.push_back(end);
  llvm::sort(cuts);
  cuts.erase(llvm::unique(cuts), cuts.end());
  SmallVector<BufferSegment> segments;
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    BufferSegment seg{cuts[k], cuts[k + 1] - cuts[k], kForever, 0};
    for (const BufferSegment &c : covers)
      if (c.offset < cuts[k + 1] && cuts[k] < c.offset + c.bytes) {
        seg.firstUse = std::min(seg.firstUse, c.firstUse);
        seg.lastUse = std::max(seg.lastUse, c.lastUse);
      }
    if (!segments.empty() && segments.back().firstUse == seg.firstUse &&
        segments.back().lastUse == seg.lastUse)
      segments.back().bytes += seg.bytes;
    else
      segments.push_back(seg);
  }
  return segments;
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
  // A view (placeViews) is planned as part of its outermost buffer, which
  // lives from the first piece's producer to the last piece's reader.
  auto rootOf = [&](unsigned idx) {
    int64_t within = 0;
    while (buffers[idx].parent >= 0) {
      within += buffers[idx].offsetInParent;
      idx = static_cast<unsigned>(buffers[idx].parent);
    }
    return std::make_pair(idx, within);
  };
  // Each byte of it is alive while a buffer covering it is (a bucket's slice
  // from the gradient's producer to the optimizer's read), so other
  // temporaries may use a slice's bytes before and after.
  DenseMap<unsigned, SmallVector<BufferSegment>> covers;
  for (auto [i, lb] : llvm::enumerate(buffers)) {
    if (lb.parent < 0)
      continue;
    auto [root, within] = rootOf(i);
    covers[root].push_back(
        {within, sizeInBytes(lb.type), lb.firstUse, lb.lastUse});
  }
  SmallVector<BufferRequest> requests;
  SmallVector<unsigned> temps;
  for (auto [i, lb] : llvm::enumerate(buffers)) {
    if (lb.kind != LogicalBuffer::Kind::Temp || lb.parent >= 0)
      continue;
    temps.push_back(i);
    requests.push_back({sizeInBytes(lb.type), lb.firstUse, lb.lastUse, {}});
    auto parts = covers.find(i);
    if (parts == covers.end())
      continue;
    parts->second.push_back({0, sizeInBytes(lb.type), lb.firstUse, lb.lastUse});
    requests.back().segments = liveSegments(parts->second);
    for (const BufferSegment &seg : requests.back().segments) {
      requests.back().firstUse = std::min(requests.back().firstUse, seg.firstUse);
      requests.back().lastUse = std::max(requests.back().lastUse, seg.lastUse);
    }
  }
  MemoryPlan plan = planMemory(requests, exec::kBufferAlignment);
  for (auto [i, idx] : llvm::enumerate(temps))
    buffers[idx].offset = offset + plan.offsets[i];
  for (auto [i, lb] : llvm::enumerate(buffers))
    if (lb.parent >= 0) {
      auto [root, within] = rootOf(i);
      lb.offset = buffers[root].offset + within;
    }
  tempPeak = plan.peakBytes;
  // Saved activations (a view counts as part of a saved buffer over it).
  SmallVector<BufferSegment> saved;
  for (unsigned idx : savedForBackward) {
    bool inSavedParent = false;
    for (int p = buffers[idx].parent; p >= 0 && !inSavedParent; p = buffers[p].parent)
      inSavedParent = savedForBackward.contains(p);
    if (!inSavedParent)
      saved.push_back({0, sizeInBytes(buffers[idx].type), buffers[idx].firstUse,
                       buffers[idx].lastUse});
  }
  savedActivationPeak = peakLiveBytes(saved);
  arenaBytes = offset + tempPeak;
}

LogicalResult ProgramLowering::emitOp(Operation *op) {
  auto lower = [&](auto concrete) { return lowerOp(*this, concrete); };
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      // LowerElementwise.cpp
      .Case<AddOp, MulOp, ScaleOp, BiasAddOp, GeluOp, GeluGradOp, SiluOp,
            SiluGradOp, SoftmaxOp, ReduceMaxOp, SumRowsOp>(lower)
      // LowerNorms.cpp
      .Case<LayerNormOp, LayerNormGradOp, RMSNormOp, RMSNormGradOp>(lower)
      // LowerGemm.cpp
      .Case<LinearOp, MatmulOp>(lower)
      // LowerAttention.cpp
      .Case<AttentionOp, AttentionGradOp, RopeOp, RopeGradOp>(lower)
      // LowerLoss.cpp
      .Case<CrossEntropyOp, CrossEntropyGradOp, CrossEntropyPartialOp,
            CrossEntropyPartialGradOp, CrossEntropyFinalizeOp,
            CrossEntropyFinalizeGradOp>(lower)
      // LowerEmbedding.cpp
      .Case<EmbeddingOp, EmbeddingGradOp, PositionIdsOp, CpSliceOp>(lower)
      // LowerDataMovement.cpp
      .Case<ReshapeOp, TpCopyOp, TransposeOp, SplitOp, ConcatOp, CastOp>(lower)
      // LowerCollectives.cpp
      .Case<shard::AllReduceOp, shard::ReduceScatterOp, shard::AllGatherOp,
            SendOp, RecvOp, ParamAllGatherOp>(lower)
      // LowerOptimizer.cpp
      .Case<AdamWUpdateOp, GradNormSqOp, LossScaleOp, arith::ConstantOp>(lower)
      // LowerInference.cpp
      .Case<KvCacheWriteOp, CacheAttentionOp, RopeAtOp, LastTokenOp>(lower)
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
  if (savedActivationPeak)
    program->setAttr("saved_activation_peak_bytes",
                     moduleBuilder.getI64IntegerAttr(savedActivationPeak));
  Block *body = new Block();
  program.getBody().push_back(body);
  b.setInsertionPointToStart(body);

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
  for (size_t i = 0; i < schedule.size();) {
    Operation *op = schedule[i];
    if (isa<AdamWUpdateOp>(op)) { // maybe several at once (LowerOptimizer.cpp)
      FailureOr<size_t> lowered = lowerAdamWUpdates(*this, ArrayRef(schedule).drop_front(i));
      if (failed(lowered))
        return failure();
      i += *lowered;
      continue;
    }
    waitForPending(op->getLoc(), op);
    if (failed(emitOp(op)))
      return failure();
    ++i;
  }
  waitForPending(func.getLoc(), nullptr); // the step ends with its comm
  for (auto &[outName, value] : outputs)
    exec::OutputOp::create(b, func.getLoc(), outName, bufferFor(value));
  return success();
}

struct LowerToExecPass : public llmir::impl::LowerToExecBase<LowerToExecPass> {
  using LowerToExecBase::LowerToExecBase;
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
      // Mixed precision: one compute-typed copy of each parameter per step
      // (micro-batches, recomputed layers and a tied head share it).
      tfm::shareParameterCasts(func);
      OpBuilder builder(func);
      ProgramLowering lowering(func, fuseEpilogues);
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
