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
                                   Value deferTo) {
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

void LoweringContext::waitForPending(Location loc, Operation *op) {
  SmallVector<unsigned> ready;
  for (auto &[buffer, event] : pendingEvent) {
    // Reads of the buffer, and writes to memory the plan reuses from it.
    const LogicalBuffer &pending = buffers[buffer];
    int64_t begin = pending.offset, end = begin + sizeInBytes(pending.type);
    bool touched = !op || llvm::any_of(op->getOperands(), [&](Value v) {
      auto it = bufferOf.find(v);
      return it != bufferOf.end() && it->second == buffer;
    }) || llvm::any_of(op->getResults(), [&](Value v) {
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
