// Decoding of the attention, context-parallel and rope kernels' arguments
// (KernelArgs.h); split from KernelArgs.cpp to keep each file readable.
#include "KernelArgs.h"

#include <algorithm>
#include <tuple>

namespace llmir::runtime::kargs {

Status attentionShapeError(const Instr &instr, const BufferRef &q, const BufferRef &k,
                           int64_t heads, int64_t kvHeads) {
  return invalid(instr.describe() + ": shapes " + q.str() + ", " + k.str() +
                 " do not fit " + std::to_string(heads) + " heads and " +
                 std::to_string(kvHeads) + " kv heads");
}

StatusOr<AttentionShape> attentionShape(const Instr &instr, const BufferRef &q,
                                        const BufferRef &k) {
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
  StatusOr<double> scale = instr.floatAttr("scale");
  StatusOr<bool> causal = instr.boolAttr("causal");
  for (const Status *st : {&heads.status(), &kvHeads.status(), &scale.status(),
                           &causal.status()})
    if (!st->isOk())
      return *st;
  if (q.shape.size() != 3 || k.shape.size() != 3 || *heads <= 0 || *kvHeads <= 0 ||
      q.shape[2] % *heads != 0 || k.shape[2] != *kvHeads * (q.shape[2] / *heads))
    return attentionShapeError(instr, q, k, *heads, *kvHeads);
  return AttentionShape{*heads, *kvHeads, q.shape[2] / *heads, static_cast<float>(*scale),
                        *causal};
}

StatusOr<CpChunks> decodeCp(const Instr &instr, const KernelContext &context,
                            int64_t localSeq) {
  if (!instr.hasAttr("cp_axis"))
    return CpChunks{};
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "cp_axis");
  if (!axis.isOk())
    return axis.status();
  if (localSeq % 2 != 0)
    return invalid(instr.describe() + ": a context-parallel rank holds two chunks, but its "
                   "sequence has " + std::to_string(localSeq) + " rows");
  return CpChunks{axis->first, axis->second, localSeq / 2};
}

StatusOr<CpSliceArgs> decodeCpSlice(const Instr &instr, const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  const BufferRef &in = instr.ins[0], &out = instr.outs[0];
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "cp_axis");
  if (!axis.isOk())
    return axis.status();
  const int64_t cp = axis->second;
  std::vector<int64_t> expected = in.shape;
  const bool fits = in.shape.size() >= 2 && in.dtype == out.dtype &&
                    in.shape[1] % (2 * cp) == 0;
  if (fits)
    expected[1] /= cp;
  if (!fits || out.shape != expected)
    return invalid(instr.describe() + ": " + in.str() + " -> " + out.str() +
                   " is not two of the " + std::to_string(2 * cp) +
                   " chunks of dim 1 (cp=" + std::to_string(cp) + ")");
  CpSliceArgs c;
  c.outer = in.shape[0];
  c.seq = in.shape[1];
  c.rowBytes = in.numElements() ? static_cast<int64_t>(in.bytes()) / (c.outer * c.seq) : 0;
  c.cp = CpChunks{axis->first, cp, c.seq / (2 * cp)};
  return c;
}

StatusOr<RingAttentionArgs> decodeRingAttention(const Instr &instr,
                                                const KernelContext &context) {
  const bool grad = instr.id == KernelId::AttentionRingGrad;
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(grad ? 6 : 3, grad ? 3 : 2));
  const BufferRef &q = instr.ins[0], &k = instr.ins[1], &v = instr.ins[2];
  LLMIR_ASSIGN_OR_RETURN(const AttentionShape a, attentionShape(instr, q, k));
  LLMIR_ASSIGN_OR_RETURN(const CpChunks cp, decodeCp(instr, context, q.shape[1]));
  LLMIR_ASSIGN_OR_RETURN(const int64_t step, instr.intAttr("ring_step"));
  if (step < 0 || step >= cp.size)
    return invalid(instr.describe() + ": ring_step " + std::to_string(step) +
                   " is not in [0, cp) (cp=" + std::to_string(cp.size) + ")");
  const int64_t n = q.numElements(), lse = q.shape[0] * a.heads * q.shape[1];
  const BufferRef &out = grad ? instr.ins[4] : instr.outs[0];
  const BufferRef &lseBuf = grad ? instr.ins[5] : instr.outs[1];
  bool ok = k.shape == v.shape && k.shape[0] == q.shape[0] && k.shape[1] == q.shape[1] &&
            out.shape == q.shape && lseBuf.numElements() == lse;
  if (grad)
    ok = ok && instr.ins[3].numElements() == n && instr.outs[0].numElements() == n &&
         instr.outs[1].shape == k.shape && instr.outs[2].shape == k.shape;
  if (!ok)
    return invalid(instr.describe() + ": expects k and v alike with q's batch and sequence, "
                   "the output like q and a log-sum-exp of batch * heads * seq = " +
                   std::to_string(lse) + " values" +
                   (grad ? ", dout and dq like q, dk and dv like k" : ""));
  return RingAttentionArgs{a, q.shape[0], q.shape[1], step, cp};
}

StatusOr<AttentionArgs> decodeAttention(const Instr &instr, const KernelContext *context) {
  const bool grad = instr.id == KernelId::AttentionGrad;
  const size_t ins = instr.ins.size(), outs = instr.outs.size();
  if (grad ? !((ins == 4 || ins == 6) && outs == 3) : !(ins == 3 && (outs == 1 || outs == 2)))
    return invalid(instr.describe() + ": expects " +
                   (grad ? "4 inputs (q, k, v, dout) or 6 (and the forward's output and "
                           "log-sum-exp) and 3 outputs"
                         : "3 inputs and 1 output (or 2: and the log-sum-exp)") +
                   ", found " + std::to_string(ins) + " and " + std::to_string(outs));
  const BufferRef &q = instr.ins[0], &k = instr.ins[1], &v = instr.ins[2];
  StatusOr<AttentionShape> a = attentionShape(instr, q, k);
  if (!a.isOk())
    return a.status();
  CpChunks cp;
  if (instr.hasAttr("cp_axis")) {
    if (!context)
      return invalid(instr.describe() + ": cp_axis needs the rank's position (no context)");
    StatusOr<CpChunks> c = decodeCp(instr, *context, q.shape[1]);
    if (!c.isOk())
      return c.status();
    cp = *c;
  }
  if (a->heads % a->kvHeads != 0 || k.shape[0] != q.shape[0] ||
      k.shape[1] != q.shape[1] * cp.size)
    return attentionShapeError(instr, q, k, a->heads, a->kvHeads);
  AttentionArgs r{*a, q.shape[0], q.shape[1], cp, nullptr, nullptr};
  const int64_t n = q.numElements();
  bool sizesOk = v.shape == k.shape;
  if (grad) {
    sizesOk = sizesOk && instr.ins[3].numElements() == n && instr.outs[0].numElements() == n &&
              instr.outs[1].numElements() == k.numElements() &&
              instr.outs[2].numElements() == k.numElements();
    if (ins == 6) {
      r.out = &instr.ins[4];
      r.lse = &instr.ins[5];
      sizesOk = sizesOk && r.out->numElements() == n;
    }
  } else {
    sizesOk = sizesOk && instr.outs[0].shape == q.shape;
    if (outs == 2)
      r.lse = &instr.outs[1];
  }
  if (!sizesOk) {
    std::string shapes;
    for (const std::vector<BufferRef> *list : {&instr.ins, &instr.outs})
      for (const BufferRef &b : *list)
        shapes += (shapes.empty() ? "" : ", ") + b.str();
    return invalid(instr.describe() + ": operand shapes disagree: " + shapes);
  }
  if (r.lse && (r.lse->dtype != ScalarType::F32 ||
                r.lse->numElements() != r.batch * a->heads * r.seq))
    return invalid(instr.describe() + ": the log-sum-exp " + r.lse->str() + " is not f32 [" +
                   std::to_string(r.batch) + ", " + std::to_string(a->heads) + ", " +
                   std::to_string(r.seq) + "] (batch, heads, seq)");
  return r;
}

StatusOr<RopeShape> ropeShape(const Instr &instr, const BufferRef &x) {
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<double> theta = instr.floatAttr("theta");
  StatusOr<int64_t> offset = instr.intAttr("offset");
  for (const Status *st : {&heads.status(), &theta.status(), &offset.status()})
    if (!st->isOk())
      return *st;
  if (x.shape.size() != 3 || *heads <= 0 || x.shape[2] % *heads != 0)
    return invalid(instr.describe() + ": input " + x.str() + " does not fit " +
                   std::to_string(*heads) + " heads");
  return RopeShape{*heads, x.shape[2] / *heads, *offset, *theta};
}

StatusOr<RopeShape> decodeRope(const Instr &instr, RopeLimits limits) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  StatusOr<RopeShape> r = ropeShape(instr, instr.ins[0]);
  if (!r.isOk())
    return r.status();
  if (limits)
    LLMIR_RETURN_IF_ERROR(limits(instr, *r));
  LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
  return r;
}

} // namespace llmir::runtime::kargs
