//===- LoweringContext.cpp - helpers shared by the op lowerings -----------===//
//
// Buffer lookup and views, kernel emission, the plan's grid axes, and the
// event protocol between the compute stream (0) and the comm stream (1).
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"

#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::lowering;
using exec::BufferType;

int64_t llmir::lowering::sizeInBytes(RankedTensorType t) {
  return t.getNumElements() *
         static_cast<int64_t>(t.getElementType().getIntOrFloatBitWidth() / 8);
}

Value LoweringContext::bufferFor(Value tensor) {
  return view(buffers[bufferOf.lookup(tensor)].buffer,
              cast<RankedTensorType>(tensor.getType()).getShape());
}

Value LoweringContext::view(Value buffer, ArrayRef<int64_t> shape) {
  auto type = cast<BufferType>(buffer.getType());
  if (type.getShape() == shape)
    return buffer;
  auto viewType = BufferType::get(b.getContext(), shape, type.getElementType());
  return exec::ViewOp::create(b, buffer.getLoc(), viewType, buffer);
}

void LoweringContext::kernel(Operation *op, StringRef name, ValueRange ins,
                             ValueRange outs, ArrayRef<NamedAttribute> attrs) {
  auto k = exec::KernelOp::create(b, op->getLoc(), name, ins, outs,
                                  /*stream=*/0);
  for (NamedAttribute attr : attrs)
    k->setAttr(attr.getName(), attr.getValue());
}

FailureOr<StringRef> LoweringContext::axisName(Operation *op) {
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

FailureOr<int64_t> LoweringContext::axisSize(Operation *op, StringRef axis) {
  if (std::optional<PlanAxis> a =
          lookupPlanAxis(op->getParentOfType<ModuleOp>(), axis))
    return a->size;
  return op->emitOpError() << "names grid axis '" << axis
                           << "', which the module's llmir.plan lacks",
         failure();
}

void LoweringContext::onCommStream(Location loc,
                                   function_ref<void()> collective,
                                   Value deferTo, Value reads) {
  int64_t ready = nextEvent++, done = nextEvent++;
  exec::EventRecordOp::create(b, loc, ready, /*stream=*/0);
  exec::EventWaitOp::create(b, loc, ready, /*stream=*/1);
  collective();
  exec::EventRecordOp::create(b, loc, done, /*stream=*/1);
  if (!deferTo && !reads) {
    exec::EventWaitOp::create(b, loc, done, /*stream=*/0);
    forgetCompleted(done);
    return;
  }
  if (deferTo)
    pendingEvent[bufferOf.lookup(deferTo)] = done;
  if (!reads)
    return;
  while (auto view = reads.getDefiningOp<exec::ViewOp>())
    reads = view->getOperand(0);
  for (unsigned i = 0; i < buffers.size(); ++i)
    if (buffers[i].buffer == reads)
      pendingReads.push_back({i, done});
}

void LoweringContext::waitForPending(Location loc, Operation *op) {
  // A view touches no memory: the wait goes to the op that reads through it.
  if (op && (isView(op) || isFusedIntoGemm(op)))
    return;
  int64_t last = lastPendingEventFor(op);
  // A GEMM with a fused epilogue also reads and writes its epilogue ops' operands.
  if (op) {
    GemmEpilogue fused = epilogueOf(op);
    for (Operation *part : {fused.activation, fused.biasGrad})
      if (part)
        last = std::max(last, lastPendingEventFor(part));
  }
  if (last < 0)
    return;
  exec::EventWaitOp::create(b, loc, last, /*stream=*/0);
  forgetCompleted(last);
}

int64_t LoweringContext::lastPendingEventFor(Operation *op) const {
  auto overlap = [&](unsigned a, unsigned b) {
    const LogicalBuffer &x = buffers[a], &y = buffers[b];
    return x.offset < y.offset + sizeInBytes(y.type) &&
           y.offset < x.offset + sizeInBytes(x.type);
  };
  // Whether `op` writes memory overlapping `buffer` (a result, or the
  // staging buffer it fills first).
  auto writes = [&](unsigned buffer) {
    auto staging = stagingBuffer.find(op);
    return (staging != stagingBuffer.end() && overlap(staging->second, buffer)) ||
           llvm::any_of(op->getResults(), [&](Value v) {
             auto it = bufferOf.find(v);
             return it != bufferOf.end() && overlap(it->second, buffer);
           });
  };
  // By address, not by buffer: a gradient is a view of its bucket.
  auto reads = [&](unsigned buffer) {
    return llvm::any_of(op->getOperands(), [&](Value v) {
      auto it = bufferOf.find(v);
      return it != bufferOf.end() && overlap(it->second, buffer);
    });
  };
  // The comm stream runs in order: waiting for its latest collective that
  // `op` needs covers every earlier one.
  int64_t last = -1;
  for (auto &[buffer, event] : pendingEvent)
    if (!op || reads(buffer) || writes(buffer))
      last = std::max(last, event);
  for (auto &[buffer, event] : pendingReads)
    if (!op || writes(buffer))
      last = std::max(last, event);
  return last;
}

void LoweringContext::forgetCompleted(int64_t event) {
  pendingEvent.remove_if([&](auto &entry) { return entry.second <= event; });
  llvm::erase_if(pendingReads, [&](auto &entry) { return entry.second <= event; });
}

Value LoweringContext::stagingBufferOf(Operation *op) const {
  auto it = stagingBuffer.find(op);
  return it == stagingBuffer.end() ? Value() : buffers[it->second].buffer;
}

std::pair<Value, Value> LoweringContext::adamMomentsOf(Operation *op) const {
  SmallVector<unsigned, 2> state = adamState.lookup(op);
  return {buffers[state[0]].buffer, buffers[state[1]].buffer};
}

Value LoweringContext::savedLseOf(Operation *op) const {
  auto it = attentionLse.find(op);
  return it == attentionLse.end() ? Value() : buffers[it->second].buffer;
}

SmallVector<Value> LoweringContext::ringScratchOf(Operation *op) const {
  SmallVector<Value> values;
  for (unsigned idx : ringScratch.lookup(op))
    values.push_back(buffers[idx].buffer);
  return values;
}
