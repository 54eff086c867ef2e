//===- LowerAttention.cpp - attention and rope, forward and backward ------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

AttentionOp savedForwardOf(AttentionGradOp grad) {
  for (Operation *user : grad.getQuery().getUsers()) {
    auto fwd = dyn_cast<AttentionOp>(user);
    if (!fwd || fwd.getKey() != grad.getKey() || fwd.getValue() != grad.getValue() ||
        fwd.getNumHeads() != grad.getNumHeads() ||
        fwd.getNumKvHeads() != grad.getNumKvHeads() ||
        fwd.getCausal() != grad.getCausal() ||
        fwd.getEffectiveScale() != grad.getScale().convertToDouble())
      continue;
    if (llvm::any_of(fwd.getResult().getUsers(),
                     [](Operation *u) { return isa<shard::AllReduceOp>(u); }))
      return nullptr;
    return fwd;
  }
  return nullptr;
}

RankedTensorType lseTypeOf(AttentionOp op) {
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  return RankedTensorType::get(
      {q.getDimSize(0), static_cast<int64_t>(op.getNumHeads()), q.getDimSize(1)},
                               Float32Type::get(op.getContext()));
}

static SmallVector<NamedAttribute> attentionAttrs(OpBuilder &b, IntegerAttr heads,
                                                  IntegerAttr kvHeads, double scale,
                                                  bool causal) {
  return {b.getNamedAttr("num_heads", heads), b.getNamedAttr("num_kv_heads", kvHeads),
          b.getNamedAttr("scale", b.getF64FloatAttr(scale)),
          b.getNamedAttr("causal", b.getBoolAttr(causal))};
}

/// `attrs` and the op's context-parallel axis, if it has one.
static SmallVector<NamedAttribute> withCpAxis(Operation *op,
                                              SmallVector<NamedAttribute> attrs) {
  if (Attribute cp = op->getAttr(TfmDialect::kCpAxisAttrName))
    attrs.push_back(NamedAttribute(TfmDialect::kCpAxisAttrName, cp));
  return attrs;
}

//===----------------------------------------------------------------------===//
// cp-comm=ring. Cp rank r holds its chunk pair's K and V; at step s (0 ..
// cp-1) it holds rank (r - s) mod cp's and runs attention_ring on it (the
// partial attention of its queries against that pair, merged into the output
// by log-sum-exp) while the comm stream sends the pair on to rank r+1 and
// receives rank r-1's into the other slot. Each exchange waits for the step
// before it (whose slot it overwrites) and is waited for right before the
// step that reads it. The backward runs the same ring for K and V; the dK/dV
// partial of a pair starts at the rank after its owner and travels one
// exchange behind the pair (each rank adds its part, then passes the sum on),
// arriving home after cp-1 exchanges, where the owner adds its own part:
// per rank and attention 2(cp-1) K/V messages forward, 4(cp-1) backward, the
// volume of an all-gather plus a reduce-scatter, each exchange overlapped
// with a step's compute. All of a ring's comm is waited for inside its op.
//===----------------------------------------------------------------------===//

/// Tag of the ring's messages (the peers of a cp ring are never a pipeline
/// message's peers; messages between two ranks stay in order).
constexpr int64_t kRingTag = 17232;

FailureOr<SmallVector<RankedTensorType>>
ringScratchTypes(LoweringContext &c, Operation *op, bool saveLse) {
  FailureOr<int64_t> cp = c.axisSize(op, "cp");
  if (failed(cp))
    return failure();
  auto kv = cast<RankedTensorType>(op->getOperand(1).getType());
  if (!kv.getElementType().isF32())
    return op->emitOpError() << "cp-comm=ring needs f32 keys and values, found "
                             << kv.getElementType();
  // K and V slots for the chunks received (two: one in use, one arriving).
  SmallVector<RankedTensorType> types(2 * std::min<int64_t>(2, *cp - 1), kv);
  if (auto fwd = dyn_cast<AttentionOp>(op)) {
    if (!saveLse)
      types.push_back(lseTypeOf(fwd));
    return types;
  }
  // The backward: as many dK/dV partial slots, this rank's part of a
  // partial, its part of its own pair.
  types.append(types.size() + 4, kv);
  return types;
}

namespace {
/// Emits one ring exchange on the comm stream after the compute so far:
/// `sends` to the next cp rank, then `recvs` from the previous one. Returns
/// the event recorded after it on the comm stream.
int64_t ringExchange(LoweringContext &c, Operation *op, int64_t cp,
                     ArrayRef<Value> sends, ArrayRef<Value> recvs) {
  OpBuilder &b = c.builder();
  Location loc = op->getLoc();
  int64_t stage = cast<exec::ProgramOp>(b.getInsertionBlock()->getParentOp()).getStage();
  int64_t ready = c.newEvent(), done = c.newEvent();
  exec::EventRecordOp::create(b, loc, ready, /*stream=*/0);
  exec::EventWaitOp::create(b, loc, ready, /*stream=*/1);
  // The peer: this rank's coordinate along cp plus `shift` (mod cp).
  auto along = [&](Operation *msg, int64_t shift) {
    msg->setAttr("axis", b.getStringAttr("cp"));
    msg->setAttr("shift", b.getI64IntegerAttr(shift));
  };
  for (Value v : sends)
    along(exec::SendOp::create(b, loc, v, stage, kRingTag, /*stream=*/1), 1);
  for (Value v : recvs)
    along(exec::RecvOp::create(b, loc, v, stage, kRingTag, /*stream=*/1), cp - 1);
  exec::EventRecordOp::create(b, loc, done, /*stream=*/1);
  return done;
}

void waitOnCompute(LoweringContext &c, Operation *op, int64_t event) {
  exec::EventWaitOp::create(c.builder(), op->getLoc(), event, /*stream=*/0);
}

/// The K and V slots of a ring: step 0 holds the op's own K and V, step s
/// >= 1 slot (s - 1) mod 2 of the scratch.
struct RingSlots {
  Value k, v;
  ArrayRef<Value> scratch;
  std::pair<Value, Value> at(int64_t s) const {
    if (s == 0)
      return {k, v};
    size_t slot = 2 * ((s - 1) % 2);
    return {scratch[slot], scratch[slot + 1]};
  }
};
} // namespace

static LogicalResult lowerRingAttention(LoweringContext &c, AttentionOp op,
                                        SmallVector<NamedAttribute> attrs) {
  FailureOr<int64_t> cp = c.axisSize(op, "cp");
  if (failed(cp))
    return failure();
  SmallVector<Value> scratch = c.ringScratchOf(op);
  Value lse = c.savedLseOf(op);
  if (!lse)
    lse = scratch.back();
  RingSlots slots{c.in(op.getKey()), c.in(op.getValue()), scratch};
  Value q = c.in(op.getQuery()), out = c.out(op.getResult());
  attrs.push_back(c.builder().getNamedAttr("ring_step", c.builder().getI64IntegerAttr(0)));
  for (int64_t s = 0; s < *cp; ++s) {
    int64_t arrived = -1;
    auto [k, v] = slots.at(s);
    if (s + 1 < *cp) {
      auto [nk, nv] = slots.at(s + 1);
      arrived = ringExchange(c, op, *cp, {k, v}, {nk, nv});
    }
    attrs.back().setValue(c.builder().getI64IntegerAttr(s));
    c.kernel(op, "attention_ring", {q, k, v}, {out, lse}, attrs);
    if (arrived >= 0)
      waitOnCompute(c, op, arrived);
  }
  return success();
}

static LogicalResult lowerRingAttentionGrad(LoweringContext &c, AttentionGradOp op,
                                            SmallVector<NamedAttribute> attrs) {
  FailureOr<int64_t> cp = c.axisSize(op, "cp");
  AttentionOp fwd = savedForwardOf(op);
  Value lse = fwd ? c.savedLseOf(fwd) : Value();
  if (failed(cp))
    return failure();
  if (!lse)
    return op.emitOpError() << "cp-comm=ring needs the forward's saved output "
                               "and log-sum-exp (no tfm.attention over the same "
                               "q, k, v found)";
  SmallVector<Value> scratch = c.ringScratchOf(op);
  const size_t slots = (scratch.size() - 4) / 2;
  RingSlots kv{c.in(op.getKey()), c.in(op.getValue()),
               ArrayRef<Value>(scratch).take_front(slots)};
  // The dK/dV partial of the pair held at step s >= 1, on its way home.
  RingSlots partial{Value(), Value(), ArrayRef<Value>(scratch).slice(slots, slots)};
  Value partK = scratch[2 * slots], partV = scratch[2 * slots + 1];
  Value ownK = scratch[2 * slots + 2], ownV = scratch[2 * slots + 3];
  Value dk = c.out(op.getDkey()), dv = c.out(op.getDvalue());
  SmallVector<Value> ins = {c.in(op.getQuery()), Value(), Value(), c.in(op.getDout()),
                            c.in(fwd.getResult()), lse};
  Value dq = c.out(op.getDquery());
  attrs.push_back(c.builder().getNamedAttr("ring_step", c.builder().getI64IntegerAttr(0)));
  int64_t partialArrived = -1;
  for (int64_t s = 0; s < *cp; ++s) {
    auto [k, v] = kv.at(s);
    int64_t kvArrived = -1;
    if (s + 1 < *cp) {
      auto [nk, nv] = kv.at(s + 1);
      kvArrived = ringExchange(c, op, *cp, {k, v}, {nk, nv});
    }
    ins[1] = k;
    ins[2] = v;
    attrs.back().setValue(c.builder().getI64IntegerAttr(s));
    // Step 0: this rank's own pair, kept home. Step 1 starts the partial of
    // the pair it holds; later steps add their part to the partial received
    // from the previous rank (which held that pair one step earlier).
    auto [tk, tv] = partial.at(s);
    Value outK = s == 0 ? ownK : s == 1 ? tk : partK;
    Value outV = s == 0 ? ownV : s == 1 ? tv : partV;
    c.kernel(op, "attention_ring_grad", ins, {dq, outK, outV}, attrs);
    if (s >= 2) {
      waitOnCompute(c, op, partialArrived);
      c.kernel(op, "accumulate", {partK}, {tk});
      c.kernel(op, "accumulate", {partV}, {tv});
    }
    if (s >= 1) { // on to the next rank; the last step's arrives home
      auto [nk, nv] = s + 1 < *cp ? partial.at(s + 1) : std::pair<Value, Value>{dk, dv};
      partialArrived = ringExchange(c, op, *cp, {tk, tv}, {nk, nv});
    }
    if (kvArrived >= 0)
      waitOnCompute(c, op, kvArrived);
  }
  // Every other rank's part of this rank's pair is home: add its own.
  waitOnCompute(c, op, partialArrived);
  c.kernel(op, "accumulate", {ownK}, {dk});
  c.kernel(op, "accumulate", {ownV}, {dv});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, AttentionOp op) {
  SmallVector<NamedAttribute> attrs =
      withCpAxis(op, attentionAttrs(c.builder(), op.getNumHeadsAttr(),
                                    op.getNumKvHeadsAttr(), op.getEffectiveScale(),
                                    op.getCausal()));
  if (isCpRing(op))
    return lowerRingAttention(c, op, attrs);
  SmallVector<Value> outs = {c.out(op.getResult())};
  if (Value lse = c.savedLseOf(op)) // training: kept for attention_grad
    outs.push_back(lse);
  c.kernel(op, "attention",
           {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue())}, outs, attrs);
  return success();
}

LogicalResult lowerOp(LoweringContext &c, AttentionGradOp op) {
  SmallVector<NamedAttribute> attrs =
      withCpAxis(op, attentionAttrs(c.builder(), op.getNumHeadsAttr(),
                                    op.getNumKvHeadsAttr(),
                                    op.getScale().convertToDouble(), op.getCausal()));
  if (isCpRing(op))
    return lowerRingAttentionGrad(c, op, attrs);
  SmallVector<Value> ins = {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue()),
                            c.in(op.getDout())};
  // The forward's output and log-sum-exp instead of recomputing the forward.
  if (AttentionOp fwd = savedForwardOf(op))
    if (Value lse = c.savedLseOf(fwd))
      ins.append({c.in(fwd.getResult()), lse});
  c.kernel(op, "attention_grad", ins,
           {c.out(op.getDquery()), c.out(op.getDkey()), c.out(op.getDvalue())}, attrs);
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope", {c.in(op.getInput())}, {c.out(op.getResult())},
           withCpAxis(op, {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
                           b.getNamedAttr("theta", op.getThetaAttr()),
                           b.getNamedAttr("offset", op.getOffsetAttr())}));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeGradOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope_grad", {c.in(op.getDout())}, {c.out(op.getResult())},
           withCpAxis(op, {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
                           b.getNamedAttr("theta", op.getThetaAttr()),
                           b.getNamedAttr("offset", op.getOffsetAttr())}));
  return success();
}

} // namespace llmir::lowering
