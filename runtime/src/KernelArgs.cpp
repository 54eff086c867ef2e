#include "KernelArgs.h"

#include <algorithm>
#include <tuple>

namespace llmir::runtime::kargs {

Status invalid(const std::string &message) {
  return Status::error(StatusCode::InvalidArgument, message);
}

int64_t product(const std::vector<int64_t> &shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i)
    n *= shape[i];
  return n;
}

std::pair<int64_t, int64_t> rowsCols(const BufferRef &b) {
  if (b.shape.empty())
    return {1, 1};
  int64_t cols = b.shape.back();
  return {cols == 0 ? 0 : b.numElements() / cols, cols};
}

Status requireSameElements(const BufferRef &a, const BufferRef &b) {
  if (a.numElements() != b.numElements())
    return invalid("buffers " + a.str() + " and " + b.str() + " differ in size");
  return Status::ok();
}

Status requireIds(const Instr &instr, const BufferRef &b) {
  if (b.dtype != ScalarType::I64 && b.dtype != ScalarType::I32)
    return invalid(instr.describe() + ": expected integer ids, found " + b.str());
  return Status::ok();
}

bool isSum(const Instr &instr) {
  return instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "sum";
}

StatusOr<std::pair<int, int>> axisPosition(const Instr &instr, const KernelContext &context,
                                           const std::string &attr) {
  StatusOr<std::string> axis = instr.stringAttr(attr);
  if (!axis.isOk())
    return axis.status();
  return context.axisPosition(*axis);
}

// ---- elementwise, row and copy kernels --------------------------------------
Status checkUnary(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  return requireSameElements(instr.ins[0], instr.outs[0]);
}

Status checkBinary(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
  return requireSameElements(instr.ins[1], instr.outs[0]);
}

StatusOr<RowsCols> decodeSoftmax(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(checkUnary(instr));
  auto [rows, cols] = rowsCols(instr.ins[0]);
  return RowsCols{rows, cols};
}

StatusOr<RowsCols> decodeBiasAdd(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  const BufferRef &x = instr.ins[0], &bias = instr.ins[1], &y = instr.outs[0];
  LLMIR_RETURN_IF_ERROR(requireSameElements(x, y));
  auto [rows, cols] = rowsCols(x);
  if (bias.numElements() != cols)
    return invalid("bias " + bias.str() + " does not match " + x.str());
  return RowsCols{rows, cols};
}

StatusOr<RowsCols> decodeReduceMax(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  auto [rows, cols] = rowsCols(instr.ins[0]);
  if (instr.outs[0].numElements() != rows || cols == 0)
    return invalid("reduce_max output " + instr.outs[0].str() + " does not match " +
                   instr.ins[0].str());
  return RowsCols{rows, cols};
}

StatusOr<RowsCols> decodeSumRows(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  auto [rows, cols] = rowsCols(instr.ins[0]);
  if (instr.outs[0].numElements() != cols)
    return invalid("sum_rows output " + instr.outs[0].str() + " does not match");
  return RowsCols{rows, cols};
}

StatusOr<double> decodeScale(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(checkUnary(instr));
  return instr.floatAttr("factor");
}

StatusOr<float> decodeFill(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(0, 1));
  StatusOr<double> value = instr.floatAttr("value");
  if (!value.isOk())
    return value.status();
  return static_cast<float>(*value);
}

StatusOr<PositionIdsArgs> decodePositionIds(const Instr &instr, const KernelContext &context,
                                            bool requireInteger) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(0, 1));
  const BufferRef &out = instr.outs[0];
  StatusOr<int64_t> offset = instr.intAttr("offset");
  if (!offset.isOk())
    return offset.status();
  if (requireInteger && out.dtype != ScalarType::I32 && out.dtype != ScalarType::I64)
    return invalid("position_ids output " + out.str() + " is not an integer buffer");
  PositionIdsArgs p;
  std::tie(p.rows, p.cols) = rowsCols(out);
  p.first = *offset;
  if (instr.hasAttr("shard_axis")) { // sequence parallel: this rank's block
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    p.first += axis->first * p.cols;
  }
  return p;
}

StatusOr<ConcatArgs> decodeConcat(const Instr &instr) {
  if (instr.ins.empty() || instr.outs.size() != 1)
    return invalid("concat expects inputs and one output");
  const BufferRef &dst = instr.outs[0];
  StatusOr<int64_t> axis = instr.intAttr("axis");
  if (!axis.isOk())
    return axis.status();
  size_t ax = static_cast<size_t>(*axis);
  if (*axis < 0 || ax >= dst.shape.size())
    return invalid("concat axis out of range for " + dst.str());
  ConcatArgs c;
  c.axis = ax;
  c.outer = product(dst.shape, 0, ax);
  c.inner = product(dst.shape, ax + 1, dst.shape.size());
  c.dstCols = dst.shape[ax] * c.inner;
  return c;
}

StatusOr<int64_t> concatInputCols(const Instr &instr, const ConcatArgs &c,
                                  const BufferRef &src, int64_t offset) {
  const BufferRef &dst = instr.outs[0];
  if (src.shape.size() != dst.shape.size())
    return invalid("concat input " + src.str() + " does not match " + dst.str());
  int64_t cols = src.shape[c.axis] * c.inner;
  if (offset + cols > c.dstCols)
    return invalid("concat inputs exceed " + dst.str());
  return cols;
}

StatusOr<TransposeArgs> decodeTranspose(const Instr &instr, size_t maxRank,
                                        const std::string &backend) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  const BufferRef &src = instr.ins[0], &dst = instr.outs[0];
  StatusOr<std::vector<int64_t>> perm = instr.intsAttr("permutation");
  if (!perm.isOk())
    return perm.status();
  size_t rank = src.shape.size();
  if (perm->size() != rank || dst.shape.size() != rank)
    return invalid("transpose permutation does not match " + src.str());
  if (maxRank > 0 && rank > maxRank)
    return Status::error(StatusCode::Unimplemented, "transpose of rank " +
                                                        std::to_string(rank) + " on the " +
                                                        backend + " backend");
  TransposeArgs t;
  t.srcStrides.assign(rank, 1);
  for (size_t d = rank; d-- > 1;)
    t.srcStrides[d - 1] = t.srcStrides[d] * src.shape[d];
  for (size_t d = 0; d < rank; ++d)
    if ((*perm)[d] < 0 || (*perm)[d] >= static_cast<int64_t>(rank) ||
        dst.shape[d] != src.shape[(*perm)[d]])
      return invalid("transpose output " + dst.str() + " does not match");
  t.perm = std::move(*perm);
  return t;
}

// ---- gemm -------------------------------------------------------------------
/// The GEMM of ins[0], ins[1] into outs[0] with the instruction's attributes.
static StatusOr<GemmArgs> decodeGemmOperands(const Instr &instr) {
  GemmArgs g;
  const BufferRef &a = instr.ins[0], &b = instr.ins[1], &c = instr.outs[0];
  g.a = &a;
  g.b = &b;
  g.c = &c;
  g.transA = instr.hasAttr("trans_a") && *instr.boolAttr("trans_a");
  g.transB = instr.hasAttr("trans_b") && *instr.boolAttr("trans_b");
  g.alpha = instr.hasAttr("alpha") ? *instr.floatAttr("alpha") : 1.0;
  g.beta = instr.hasAttr("beta") ? *instr.floatAttr("beta") : 0.0;
  size_t rank = a.shape.size();
  g.rank = rank;
  if (rank < 2 || b.shape.size() != rank || c.shape.size() != rank || rank > 3)
    return invalid("gemm operands must all be rank 2 or 3");
  g.aRows = a.shape[rank - 2];
  g.aCols = a.shape[rank - 1];
  g.bRows = b.shape[rank - 2];
  g.bCols = b.shape[rank - 1];
  g.m = g.transA ? g.aCols : g.aRows;
  g.k = g.transA ? g.aRows : g.aCols;
  g.n = g.transB ? g.bRows : g.bCols;
  if ((g.transB ? g.bCols : g.bRows) != g.k || c.shape[rank - 2] != g.m ||
      c.shape[rank - 1] != g.n)
    return invalid("gemm shapes disagree: " + a.str() + ", " + b.str() + ", " + c.str());
  if (rank == 3) {
    g.batch = a.shape[0];
    if (b.shape[0] != g.batch || c.shape[0] != g.batch)
      return invalid("gemm batch sizes disagree");
  }
  return g;
}

StatusOr<GemmArgs> decodeGemm(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  LLMIR_ASSIGN_OR_RETURN(GemmArgs g, decodeGemmOperands(instr));
  g.bias = instr.ins.size() == 3 ? &instr.ins[2] : nullptr;
  return g;
}

StatusOr<GemmEpilogueArgs> decodeGemmEpilogue(const Instr &instr) {
  if (instr.ins.size() != 3 || instr.outs.empty() || instr.outs.size() > 2)
    return invalid(instr.describe() + ": expected 3 inputs and 1 or 2 outputs, found " +
                   std::to_string(instr.ins.size()) + " and " +
                   std::to_string(instr.outs.size()));
  GemmEpilogueArgs e;
  LLMIR_ASSIGN_OR_RETURN(e.gemm, decodeGemmOperands(instr));
  if (e.gemm.rank != 2)
    return invalid(instr.describe() + ": expected 2-D operands, found " +
                   instr.ins[0].str());
  const BufferRef &c = instr.outs[0];
  e.backward = instr.isKernel(KernelId::GemmDgeluBgrad);
  const BufferRef *extra = instr.outs.size() == 2 ? &instr.outs[1] : nullptr;
  e.pre = e.backward ? &instr.ins[2] : extra;
  if (e.backward)
    e.dbias = extra;
  else
    e.bias = &instr.ins[2];
  if (e.pre && e.pre->shape != c.shape)
    return invalid(instr.describe() + ": the pre-activation " + e.pre->str() +
                   " does not have the output's shape " + c.str());
  for (const BufferRef *v : {e.bias, e.dbias})
    if (v && (v->shape.size() != 1 || v->shape[0] != e.gemm.n))
      return invalid(instr.describe() + ": the bias " + v->str() + " does not have " +
                     std::to_string(e.gemm.n) + " elements");
  return e;
}

Status checkGemmBias(const GemmArgs &g) {
  if (g.bias && g.bias->numElements() != g.n)
    return invalid("gemm bias " + g.bias->str() + " does not have " + std::to_string(g.n) +
                   " elements");
  return Status::ok();
}

// ---- norms ------------------------------------------------------------------
StatusOr<NormArgs> decodeNorm(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  StatusOr<double> eps = instr.floatAttr("epsilon");
  if (!eps.isOk())
    return eps.status();
  NormArgs n{&instr.ins[0], &instr.ins[1], &instr.outs[0]};
  n.bias = instr.ins.size() == 3 ? &instr.ins[2] : nullptr;
  n.eps = *eps;
  std::tie(n.rows, n.cols) = rowsCols(*n.x);
  LLMIR_RETURN_IF_ERROR(requireSameElements(*n.x, *n.y));
  if (n.gamma->numElements() != n.cols)
    return invalid("norm weight " + n.gamma->str() + " does not match " + n.x->str());
  return n;
}

StatusOr<AddNormArgs> decodeAddNorm(const Instr &instr) {
  const bool layer = instr.id == KernelId::AddLayerNorm;
  const size_t ins = instr.ins.size();
  if (!(ins == 3 || (layer && ins == 4)) || instr.outs.size() != 2)
    return invalid(instr.describe() + ": expects " + (layer ? "3 or 4" : "3") +
                   " inputs (a, b, weight" + (layer ? "[, bias]" : "") +
                   ") and 2 outputs (a + b, its norm)");
  StatusOr<double> eps = instr.floatAttr("epsilon");
  if (!eps.isOk())
    return eps.status();
  AddNormArgs r{&instr.ins[0], &instr.ins[1], {&instr.outs[0], &instr.ins[2], &instr.outs[1]}};
  r.norm.bias = ins == 4 ? &instr.ins[3] : nullptr;
  r.norm.eps = *eps;
  std::tie(r.norm.rows, r.norm.cols) = rowsCols(*r.norm.x);
  if (r.a->shape != r.norm.x->shape || r.b->shape != r.norm.x->shape ||
      r.norm.y->shape != r.norm.x->shape)
    return invalid(instr.describe() + ": a, b, a + b and its norm must have one shape, found " +
                   r.a->str() + ", " + r.b->str() + ", " + r.norm.x->str() + ", " +
                   r.norm.y->str());
  if (r.norm.gamma->numElements() != r.norm.cols)
    return invalid(instr.describe() + ": norm weight " + r.norm.gamma->str() +
                   " does not match " + r.norm.x->str());
  LLMIR_RETURN_IF_ERROR(checkNormBias(r.norm));
  return r;
}

StatusOr<std::pair<Instr, Instr>> splitAddNorm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const AddNormArgs n, decodeAddNorm(instr));
  Instr add, norm;
  add.id = KernelId::Add;
  add.kernel = kernelName(add.id);
  add.ins = {*n.a, *n.b};
  add.outs = {*n.norm.x};
  norm.id = instr.id == KernelId::AddLayerNorm ? KernelId::LayerNorm : KernelId::RmsNorm;
  norm.kernel = kernelName(norm.id);
  norm.ins = {*n.norm.x, *n.norm.gamma};
  if (n.norm.bias)
    norm.ins.push_back(*n.norm.bias);
  norm.outs = {*n.norm.y};
  norm.attrs = instr.attrs;
  add.stream = norm.stream = instr.stream;
  return std::make_pair(std::move(add), std::move(norm));
}

Status checkNormBias(const NormArgs &n) {
  if (n.bias && n.bias->numElements() != n.cols)
    return invalid("norm bias " + n.bias->str() + " does not match");
  return Status::ok();
}

StatusOr<NormGradArgs> decodeNormGrad(const Instr &instr) {
  NormGradArgs n;
  n.layer = instr.id == KernelId::LayerNormGrad;
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, n.layer ? 3 : 2));
  n.x = &instr.ins[0];
  n.gamma = &instr.ins[1];
  n.dy = &instr.ins[2];
  std::tie(n.rows, n.cols) = rowsCols(*n.x);
  StatusOr<double> eps = instr.floatAttr("epsilon");
  if (!eps.isOk())
    return eps.status();
  n.eps = *eps;
  LLMIR_RETURN_IF_ERROR(requireSameElements(*n.x, *n.dy));
  LLMIR_RETURN_IF_ERROR(requireSameElements(*n.x, instr.outs[0]));
  if (n.gamma->numElements() != n.cols)
    return invalid("norm weight " + n.gamma->str() + " does not match " + n.x->str());
  return n;
}

// ---- embedding --------------------------------------------------------------
StatusOr<EmbeddingArgs> decodeEmbedding(const Instr &instr, const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  EmbeddingArgs e{&instr.ins[0], &instr.ins[1], &instr.outs[0]};
  if (e.table->shape.size() != 2)
    return invalid("embedding table must be 2-D, found " + e.table->str());
  LLMIR_RETURN_IF_ERROR(requireIds(instr, *e.ids));
  e.numIds = e.ids->numElements();
  e.rows = e.table->shape[0];
  e.dim = e.table->shape[1];
  if (e.out->numElements() != e.numIds * e.dim)
    return invalid("embedding output " + e.out->str() + " does not match");
  e.vocab = e.rows;
  e.sharded = instr.hasAttr("shard_axis");
  if (e.sharded) {
    // Vocab-parallel: this rank holds rows [first, first + rows); other ids
    // give zero rows (the all-reduce that follows adds the owner's row).
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    e.first = axis->first * e.rows;
    e.vocab = e.rows * axis->second;
  }
  return e;
}

StatusOr<EmbeddingGradArgs> decodeEmbeddingGrad(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  EmbeddingGradArgs e{&instr.ins[0], &instr.ins[1], &instr.outs[0]};
  if (e.dtable->shape.size() != 2)
    return invalid("embedding_grad table must be 2-D, found " + e.dtable->str());
  e.rows = e.dtable->shape[0];
  e.dim = e.dtable->shape[1];
  e.numIds = e.ids->numElements();
  if (e.dout->numElements() != e.numIds * e.dim)
    return invalid("embedding_grad dout " + e.dout->str() + " does not match");
  LLMIR_RETURN_IF_ERROR(requireIds(instr, *e.ids));
  e.sharded = instr.hasAttr("shard_axis");
  return e;
}

StatusOr<int64_t> shardFirstRow(const Instr &instr, const KernelContext &context,
                                int64_t rows) {
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
  if (!axis.isOk())
    return axis.status();
  return axis->first * rows;
}

// ---- cross entropy ----------------------------------------------------------
StatusOr<CrossEntropyArgs> decodeCrossEntropy(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  CrossEntropyArgs c{&instr.ins[0], &instr.ins[1], &instr.outs[0]};
  std::tie(c.rows, c.vocab) = rowsCols(*c.logits);
  if (c.labels->numElements() != c.rows || c.loss->numElements() != 1)
    return invalid("cross_entropy labels " + c.labels->str() + " do not match logits " +
                   c.logits->str());
  c.sum = isSum(instr);
  return c;
}

StatusOr<CrossEntropyPartialArgs> decodeCrossEntropyPartial(const Instr &instr,
                                                            const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 2));
  CrossEntropyPartialArgs c{&instr.ins[0], &instr.ins[1], &instr.ins[2], &instr.outs[0], &instr.outs[1]};
  std::tie(c.rows, c.cols) = rowsCols(*c.logits);
  if (c.labels->numElements() != c.rows || c.max->numElements() != c.rows ||
      c.sumExp->numElements() != c.rows || c.target->numElements() != c.rows)
    return invalid("cross_entropy_partial row counts do not match " + c.logits->str());
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
  Status labels = requireIds(instr, *c.labels);
  if (!axis.isOk() || !labels.isOk())
    return !axis.isOk() ? axis.status() : labels;
  c.first = axis->first * c.cols;
  c.vocab = c.cols * axis->second;
  // With a padded vocab, columns at or past the real vocab are padding.
  if (instr.hasAttr("vocab_size"))
    c.vocab = *instr.intAttr("vocab_size");
  c.valid = std::clamp<int64_t>(c.vocab - c.first, 0, c.cols);
  return c;
}

StatusOr<CrossEntropyFinalizeArgs> decodeCrossEntropyFinalize(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 1));
  int64_t rows = instr.ins[0].numElements();
  if (instr.ins[1].numElements() != rows || instr.ins[2].numElements() != rows ||
      instr.outs[0].numElements() != 1)
    return invalid("cross_entropy_finalize shapes do not match");
  return CrossEntropyFinalizeArgs{rows, isSum(instr)};
}

StatusOr<CrossEntropyGradArgs> decodeCrossEntropyGrad(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 1));
  CrossEntropyGradArgs c{&instr.ins[0], &instr.ins[1], &instr.ins[2], &instr.outs[0]};
  std::tie(c.rows, c.vocab) = rowsCols(*c.logits);
  if (c.labels->numElements() != c.rows || c.dloss->numElements() != 1)
    return invalid("cross_entropy_grad operands do not match " + c.logits->str());
  LLMIR_RETURN_IF_ERROR(requireSameElements(*c.logits, *c.dlogits));
  LLMIR_RETURN_IF_ERROR(requireIds(instr, *c.labels));
  c.sum = isSum(instr);
  return c;
}

StatusOr<CrossEntropyPartialGradArgs>
decodeCrossEntropyPartialGrad(const Instr &instr, const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(5, 1));
  CrossEntropyPartialGradArgs c{&instr.ins[0], &instr.ins[1]};
  std::tie(c.rows, c.cols) = rowsCols(*c.logits);
  for (size_t i = 1; i < 5; ++i)
    if (instr.ins[i].numElements() != c.rows)
      return invalid("cross_entropy_partial_grad row counts do not match");
  LLMIR_RETURN_IF_ERROR(requireSameElements(*c.logits, instr.outs[0]));
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
  Status labels = requireIds(instr, *c.labels);
  if (!axis.isOk() || !labels.isOk())
    return !axis.isOk() ? axis.status() : labels;
  c.first = axis->first * c.cols;
  c.valid = std::clamp<int64_t>(
      (instr.hasAttr("vocab_size") ? *instr.intAttr("vocab_size") : c.cols * axis->second) -
          c.first,
      0, c.cols);
  return c;
}

StatusOr<CrossEntropyFinalizeArgs> decodeCrossEntropyFinalizeGrad(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 2));
  int64_t rows = instr.ins[0].numElements();
  if (instr.ins[1].numElements() != 1 || instr.outs[0].numElements() != rows ||
      instr.outs[1].numElements() != rows)
    return invalid("cross_entropy_finalize_grad shapes do not match");
  return CrossEntropyFinalizeArgs{rows, isSum(instr)};
}

// ---- data movement ----------------------------------------------------------
StatusOr<CopySliceArgs> decodeCopySlice(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  const BufferRef &src = instr.ins[0], &dst = instr.outs[0];
  StatusOr<int64_t> axis = instr.intAttr("axis");
  StatusOr<int64_t> offset = instr.intAttr("offset");
  if (!axis.isOk() || !offset.isOk())
    return !axis.isOk() ? axis.status() : offset.status();
  size_t ax = static_cast<size_t>(*axis);
  if (*axis < 0 || ax >= src.shape.size() || dst.shape.size() != src.shape.size())
    return invalid("copy_slice axis " + std::to_string(*axis) + " invalid for " +
                   src.str());
  CopySliceArgs c;
  c.outer = product(src.shape, 0, ax);
  c.inner = product(src.shape, ax + 1, src.shape.size());
  if (*offset < 0 || *offset + dst.shape[ax] > src.shape[ax])
    return invalid("copy_slice range exceeds " + src.str());
  c.offset = *offset;
  c.srcCols = src.shape[ax] * c.inner;
  c.dstCols = dst.shape[ax] * c.inner;
  return c;
}

StatusOr<CopyChunkArgs> decodeCopyChunk(const Instr &instr, const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
  if (!axis.isOk())
    return axis.status();
  int64_t n = instr.outs[0].numElements();
  if (n * axis->second != instr.ins[0].numElements())
    return invalid("copy_chunk: " + instr.ins[0].str() + " is not " +
                   std::to_string(axis->second) + " chunks of " + instr.outs[0].str());
  return CopyChunkArgs{n, axis->first * n};
}

// ---- optimizer --------------------------------------------------------------
namespace {
/// adamw's and adamw_multi's shared attributes: betas, eps, loss_scaled
/// (after a.normSq is known).
Status decodeAdamwScalars(const Instr &instr, AdamwArgs &a) {
  if (instr.hasAttr("loss_scaled")) {
    StatusOr<bool> scaled = instr.boolAttr("loss_scaled");
    if (!scaled.isOk())
      return scaled.status();
    a.lossScaled = *scaled;
    if (a.lossScaled && !a.normSq)
      return invalid(instr.kernel + ": loss_scaled needs the global gradient norm");
  }
  StatusOr<double> beta1 = instr.floatAttr("beta1");
  StatusOr<double> beta2 = instr.floatAttr("beta2");
  StatusOr<double> eps = instr.floatAttr("eps");
  for (const Status *st : {&beta1.status(), &beta2.status(), &eps.status()})
    if (!st->isOk())
      return *st;
  a.beta1 = *beta1;
  a.beta2 = *beta2;
  a.eps = *eps;
  return Status::ok();
}
} // namespace

StatusOr<AdamwArgs> decodeAdamw(const Instr &instr, const KernelContext &context) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 3));
  AdamwArgs a{&instr.ins[0], &instr.outs[0], &instr.outs[1], &instr.outs[2]};
  const BufferRef &grad = *a.grad;
  // ZeRO-1: the gradient and the moments are this rank's chunk of the
  // parameter; update only that chunk.
  if (instr.hasAttr("shard_axis")) {
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, context, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    if (grad.numElements() * axis->second != instr.outs[0].numElements())
      return invalid("adamw: gradient chunk " + grad.str() + " is not 1/" +
                     std::to_string(axis->second) + " of " + instr.outs[0].str());
    a.paramOffset = axis->first * grad.numElements();
  } else {
    LLMIR_RETURN_IF_ERROR(requireSameElements(grad, instr.outs[0]));
  }
  for (size_t i = 1; i < 3; ++i)
    LLMIR_RETURN_IF_ERROR(requireSameElements(grad, instr.outs[i]));
  if (instr.ins.size() > 1) {
    a.normSq = &instr.ins[1];
    if (a.normSq->dtype != ScalarType::F32 || a.normSq->numElements() != 1)
      return invalid("adamw: the gradient norm " + a.normSq->str() +
                     " is not one f32 element");
  }
  LLMIR_RETURN_IF_ERROR(decodeAdamwScalars(instr, a));
  StatusOr<bool> decay = instr.boolAttr("decay");
  if (!decay.isOk())
    return decay.status();
  a.decay = *decay;
  return a;
}

StatusOr<std::vector<AdamwArgs>> decodeAdamwMulti(const Instr &instr) {
  const size_t n = instr.outs.size() / 3;
  if (n == 0 || instr.outs.size() % 3 != 0 ||
      (instr.ins.size() != n && instr.ins.size() != n + 1))
    return invalid("adamw_multi: expected n gradients (and the squared norm) and 3n outputs "
                   "(param, m, v each), found " + std::to_string(instr.ins.size()) +
                   " inputs and " + std::to_string(instr.outs.size()) + " outputs");
  StatusOr<std::vector<int64_t>> decay = instr.intsAttr("decay");
  if (!decay.isOk())
    return decay.status();
  if (decay->size() != n)
    return invalid("adamw_multi: 'decay' has " + std::to_string(decay->size()) +
                   " entries for " + std::to_string(n) + " parameters");
  AdamwArgs common;
  if (instr.ins.size() == n + 1) {
    common.normSq = &instr.ins[n];
    if (common.normSq->dtype != ScalarType::F32 || common.normSq->numElements() != 1)
      return invalid("adamw_multi: the gradient norm " + common.normSq->str() +
                     " is not one f32 element");
  }
  LLMIR_RETURN_IF_ERROR(decodeAdamwScalars(instr, common));
  std::vector<AdamwArgs> updates(n, common);
  for (size_t i = 0; i < n; ++i) {
    AdamwArgs &a = updates[i];
    a.grad = &instr.ins[i];
    a.param = &instr.outs[3 * i];
    a.m = &instr.outs[3 * i + 1];
    a.v = &instr.outs[3 * i + 2];
    a.decay = (*decay)[i] != 0;
    for (const BufferRef *b : {a.grad, a.param, a.m, a.v}) {
      if (b->dtype != ScalarType::F32)
        return invalid("adamw_multi: update " + std::to_string(i) + " operand " + b->str() +
                       " is not f32");
      LLMIR_RETURN_IF_ERROR(requireSameElements(*a.grad, *b));
    }
  }
  return updates;
}

Status nonFiniteGradient(const AdamwArgs &a, int64_t index, const KernelContext &context) {
  std::string name = context.parameterAt(a.param->offset);
  return Status::error(StatusCode::DataLoss,
                       "non-finite gradient of parameter '" +
                           (name.empty() ? a.param->str() : name) + "' (element " +
                           std::to_string(index) + ")");
}

namespace {
/// `instr` has `numIns` inputs and one f32 scalar output.
Status checkScalarResult(const Instr &instr, size_t numIns, const char *kernel) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(numIns, 1));
  if (instr.outs[0].dtype != ScalarType::F32 || instr.outs[0].numElements() != 1)
    return invalid(std::string(kernel) + ": the result " + instr.outs[0].str() +
                   " is not one f32 element");
  return Status::ok();
}
} // namespace

Status checkGradNormSq(const Instr &instr) {
  return checkScalarResult(instr, 1, "grad_norm_sq");
}

Status checkLossScale(const Instr &instr) {
  return checkScalarResult(instr, 0, "loss_scale");
}

// ---- text generation (KV cache) ---------------------------------------------
namespace {
bool hasRank(const BufferRef &b, size_t rank) { return b.shape.size() == rank; }
} // namespace

StatusOr<KvCacheWriteArgs> decodeKvCacheWrite(const Instr &instr) {
  if (instr.ins.empty() || instr.ins.size() > 2 || instr.outs.size() != 1)
    return invalid("kv_cache_write expects 1 or 2 inputs and 1 output");
  const BufferRef &x = instr.ins[0], &cache = instr.outs[0];
  if (!hasRank(cache, 4) || !hasRank(x, 3) || x.shape[0] != cache.shape[0] ||
      x.shape[2] != cache.shape[1] * cache.shape[3])
    return invalid("kv_cache_write: " + x.str() + " does not fit the cache " + cache.str());
  KvCacheWriteArgs w;
  w.x = &x;
  w.cache = &cache;
  w.batch = x.shape[0];
  w.seq = x.shape[1];
  w.kvHeads = cache.shape[1];
  w.maxSeq = cache.shape[2];
  w.headDim = cache.shape[3];
  if (instr.ins.size() == 2) {
    w.positions = &instr.ins[1];
    if (w.positions->numElements() != w.batch)
      return invalid("kv_cache_write: positions " + w.positions->str() +
                     " do not match " + x.str());
    LLMIR_RETURN_IF_ERROR(requireIds(instr, *w.positions));
  }
  return w;
}

StatusOr<CacheAttentionArgs> decodeCacheAttention(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(4, 1));
  const BufferRef &q = instr.ins[0], &kc = instr.ins[1], &vc = instr.ins[2],
                  &pos = instr.ins[3], &o = instr.outs[0];
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
  StatusOr<double> scale = instr.floatAttr("scale");
  for (const Status *st : {&heads.status(), &kvHeads.status(), &scale.status()})
    if (!st->isOk())
      return *st;
  if (!hasRank(q, 3) || !hasRank(kc, 4) || kc.shape != vc.shape || o.shape != q.shape ||
      kc.shape[0] != q.shape[0] || kc.shape[1] != *kvHeads ||
      q.shape[2] != *heads * kc.shape[3] || pos.numElements() != q.shape[0])
    return invalid("cache_attention shapes disagree: " + q.str() + ", " + kc.str() + ", " +
                   vc.str() + ", " + pos.str() + " -> " + o.str() + " for " +
                   std::to_string(*heads) + " heads and " + std::to_string(*kvHeads) +
                   " kv heads");
  return CacheAttentionArgs{*heads, *kvHeads, *scale};
}

StatusOr<RopeAtArgs> decodeRopeAt(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<double> theta = instr.floatAttr("theta");
  if (!heads.isOk() || !theta.isOk())
    return !heads.isOk() ? heads.status() : theta.status();
  if (!hasRank(x, 3) || y.shape != x.shape || *heads <= 0 || x.shape[2] % *heads != 0 ||
      instr.ins[1].numElements() != x.shape[0])
    return invalid("rope_at: " + x.str() + " -> " + y.str() + " with " +
                   instr.ins[1].str() + " does not fit " + std::to_string(*heads) +
                   " heads");
  return RopeAtArgs{*heads, x.shape[2] / *heads, *theta};
}

Status decodeLastToken(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  if (!hasRank(x, 3) || !hasRank(y, 2) || y.shape[0] != x.shape[0] ||
      y.shape[1] != x.shape[2] || instr.ins[1].numElements() != x.shape[0])
    return invalid("last_token: " + x.str() + " with " + instr.ins[1].str() +
                   " does not give " + y.str());
  return Status::ok();
}

} // namespace llmir::runtime::kargs
