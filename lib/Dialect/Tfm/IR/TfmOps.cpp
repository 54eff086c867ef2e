//===- TfmOps.cpp - tfm operation verifiers and helpers -------------------===//
//
// Every verifier states what it expected and what it found, naming the operand,
// because these messages are what a user sees for a malformed model.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "ShapeFormat.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallBitVector.h"

#include <cmath>
#include <string>

using namespace mlir;
using namespace llmir::tfm;

namespace {


RankedTensorType tensorType(Value v) {
  return cast<RankedTensorType>(v.getType());
}

/// Checks that `v` has the element type of `ref`; all float operands of an op
/// share one dtype (mixed precision is explicit, by casts, never implicit).
LogicalResult verifySameElementType(Operation *op, Value ref, StringRef refName,
                                    Value v, StringRef name) {
  Type expected = tensorType(ref).getElementType();
  Type found = tensorType(v).getElementType();
  if (expected == found)
    return success();
  return op->emitOpError() << "expected " << name << " element type " << expected
                           << " (the element type of " << refName
                           << "), found " << found;
}

/// Checks that `v` is a 1-D tensor of `size` elements (norm scales, biases).
LogicalResult verifyVector(Operation *op, Value v, StringRef name, int64_t size,
                           StringRef sizeMeaning) {
  ArrayRef<int64_t> shape = tensorType(v).getShape();
  if (shape.size() == 1 && shape[0] == size)
    return success();
  return op->emitOpError() << "expected " << name << " of shape " << size
                           << " (" << sizeMeaning << "), found "
                           << formatShape(shape);
}

LogicalResult verifyResultShape(Operation *op, ArrayRef<int64_t> expected,
                                StringRef how) {
  ArrayRef<int64_t> found = tensorType(op->getResult(0)).getShape();
  if (found == expected)
    return success();
  return op->emitOpError() << "expected result shape " << formatShape(expected)
                           << " (" << how << "), found " << formatShape(found);
}

/// Shared by layer_norm and rms_norm: normalization over the last dimension.
LogicalResult verifyNorm(Operation *op, Value input, Value gamma, Value beta,
                         double epsilon) {
  ArrayRef<int64_t> shape = tensorType(input).getShape();
  if (shape.empty())
    return op->emitOpError() << "expected input of rank >= 1, found a scalar";
  int64_t hidden = shape.back();
  if (failed(verifyVector(op, gamma, "gamma", hidden,
                          "the input's last dimension")) ||
      failed(verifySameElementType(op, input, "input", gamma, "gamma")))
    return failure();
  if (beta && (failed(verifyVector(op, beta, "beta", hidden,
                                   "the input's last dimension")) ||
               failed(verifySameElementType(op, input, "input", beta, "beta"))))
    return failure();
  if (!(epsilon > 0.0) || !std::isfinite(epsilon))
    return op->emitOpError() << "expected a positive finite epsilon, found "
                             << epsilon;
  if (op->getResult(0).getType() != input.getType())
    return op->emitOpError() << "expected result type " << input.getType()
                             << " (the input type), found "
                             << op->getResult(0).getType();
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// EmbeddingOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  if (std::optional<StringRef> axis = getShardAxis(); axis && axis->empty())
    return emitOpError() << "expected a grid axis name in shard_axis";
  ArrayRef<int64_t> table = getTable().getType().getShape();
  if (table.size() != 2)
    return emitOpError() << "expected table of rank 2 ([num_embeddings, dim]), "
                            "found shape "
                         << formatShape(table);
  SmallVector<int64_t> expected(getIds().getType().getShape());
  expected.push_back(table[1]);
  if (failed(verifyResultShape(*this, expected, "ids shape followed by the "
                                                "table's embedding dim")))
    return failure();
  return verifySameElementType(*this, getTable(), "table", getResult(),
                               "result");
}

//===----------------------------------------------------------------------===//
// PositionIdsOp
//===----------------------------------------------------------------------===//

LogicalResult PositionIdsOp::verify() {
  ArrayRef<int64_t> shape = getType().getShape();
  if (shape.size() != 2)
    return emitOpError() << "expected result of rank 2 ([batch, seq]), found "
                            "shape "
                         << formatShape(shape);
  if (static_cast<int64_t>(getOffset()) < 0)
    return emitOpError() << "expected a non-negative offset, found "
                         << static_cast<int64_t>(getOffset());
  return success();
}

LogicalResult CpSliceOp::verify() {
  ArrayRef<int64_t> in = getInput().getType().getShape();
  ArrayRef<int64_t> out = getType().getShape();
  if (getAxis().empty())
    return emitOpError() << "expected a grid axis name in axis";
  if (in.size() < 2 || in.size() != out.size() || in[0] != out[0] ||
      in.drop_front(2) != out.drop_front(2) || out[1] <= 0 || out[1] % 2 != 0 ||
      in[1] % out[1] != 0)
    return emitOpError() << "expected the result to keep two equal chunks of "
                            "dim 1 of the input, found "
                         << formatShape(in) << " -> " << formatShape(out);
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

static bool isInOut(LinearOp op) { return op.getLayout() == WeightLayout::in_out; }

int64_t LinearOp::getInFeatures() {
  return getWeight().getType().getShape()[isInOut(*this) ? 0 : 1];
}

int64_t LinearOp::getOutFeatures() {
  return getWeight().getType().getShape()[isInOut(*this) ? 1 : 0];
}

LogicalResult LinearOp::verify() {
  ArrayRef<int64_t> in = getInput().getType().getShape();
  ArrayRef<int64_t> w = getWeight().getType().getShape();
  if (in.empty())
    return emitOpError() << "expected input of rank >= 1, found a scalar";
  if (w.size() != 2)
    return emitOpError() << "expected weight of rank 2, found shape "
                         << formatShape(w);
  unsigned inDim = isInOut(*this) ? 0 : 1;
  if (w[inDim] != in.back())
    return emitOpError() << "expected weight dim " << inDim
                         << " (in features, layout "
                         << stringifyWeightLayout(getLayout()) << ") to be "
                         << in.back() << " (the input's last dimension), found "
                         << w[inDim] << " in weight shape " << formatShape(w);
  int64_t out = getOutFeatures();
  if (failed(verifySameElementType(*this, getInput(), "input", getWeight(),
                                   "weight")) ||
      failed(verifySameElementType(*this, getInput(), "input", getResult(),
                                   "result")))
    return failure();
  if (Value bias = getBias())
    if (failed(verifyVector(*this, bias, "bias", out, "the out features")) ||
        failed(verifySameElementType(*this, getInput(), "input", bias, "bias")))
      return failure();
  SmallVector<int64_t> expected(in.drop_back());
  expected.push_back(out);
  return verifyResultShape(*this, expected,
                           "input shape with the last dim replaced by the "
                           "out features");
}

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::verify() {
  ArrayRef<int64_t> a = getLhs().getType().getShape();
  ArrayRef<int64_t> b = getRhs().getType().getShape();
  if (a.size() < 2 || b.size() < 2)
    return emitOpError() << "expected operands of rank >= 2, found "
                         << formatShape(a) << " and " << formatShape(b);
  if (a.size() != b.size())
    return emitOpError() << "expected operands of equal rank, found rank "
                         << a.size() << " and rank " << b.size();
  size_t rank = a.size();
  if (a.drop_back(2) != b.drop_back(2))
    return emitOpError() << "expected equal batch dimensions, found "
                         << formatShape(a.drop_back(2)) << " and "
                         << formatShape(b.drop_back(2));
  int64_t m = getTransposeA() ? a[rank - 1] : a[rank - 2];
  int64_t kA = getTransposeA() ? a[rank - 2] : a[rank - 1];
  int64_t kB = getTransposeB() ? b[rank - 1] : b[rank - 2];
  int64_t n = getTransposeB() ? b[rank - 2] : b[rank - 1];
  if (kA != kB)
    return emitOpError() << "expected contraction dimensions to agree, found "
                         << kA << " (lhs) and " << kB << " (rhs)";
  if (failed(verifySameElementType(*this, getLhs(), "lhs", getRhs(), "rhs")) ||
      failed(verifySameElementType(*this, getLhs(), "lhs", getResult(),
                                   "result")))
    return failure();
  SmallVector<int64_t> expected(a.drop_back(2));
  expected.push_back(m);
  expected.push_back(n);
  return verifyResultShape(*this, expected, "batch dims followed by M x N");
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

LogicalResult LayerNormOp::verify() {
  return verifyNorm(*this, getInput(), getGamma(), getBeta(),
                    getEpsilon().convertToDouble());
}

LogicalResult RMSNormOp::verify() {
  return verifyNorm(*this, getInput(), getGamma(), Value(),
                    getEpsilon().convertToDouble());
}

//===----------------------------------------------------------------------===//
// SoftmaxOp
//===----------------------------------------------------------------------===//

LogicalResult SoftmaxOp::verify() {
  int64_t rank = getInput().getType().getRank();
  int64_t axis = getAxis();
  if (rank == 0)
    return emitOpError() << "expected input of rank >= 1, found a scalar";
  if (axis < -rank || axis >= rank)
    return emitOpError() << "expected axis in [" << -rank << ", " << rank
                         << ") for an input of rank " << rank << ", found "
                         << axis;
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

int64_t AttentionOp::getHeadDim() {
  return getQuery().getType().getShape().back() / getNumHeads();
}

double AttentionOp::getEffectiveScale() {
  if (std::optional<APFloat> scale = getScale())
    return scale->convertToDouble();
  return 1.0 / std::sqrt(static_cast<double>(getHeadDim()));
}

LogicalResult AttentionOp::verify() {
  ArrayRef<int64_t> q = getQuery().getType().getShape();
  ArrayRef<int64_t> k = getKey().getType().getShape();
  ArrayRef<int64_t> v = getValue().getType().getShape();
  if (q.size() != 3 || k.size() != 3 || v.size() != 3)
    return emitOpError()
           << "expected query, key and value of rank 3 ([batch, seq, heads * "
              "head_dim]), found "
           << formatShape(q) << ", " << formatShape(k) << " and "
           << formatShape(v);
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  if (q[2] % heads != 0)
    return emitOpError() << "expected num_heads to divide the query hidden "
                            "size, found hidden "
                         << q[2] << " and num_heads " << heads;
  if (heads % kvHeads != 0)
    return emitOpError() << "expected num_kv_heads to divide num_heads, found "
                            "num_heads "
                         << heads << " and num_kv_heads " << kvHeads;
  int64_t headDim = q[2] / heads;
  // Context parallelism: the keys are the sequence all-gathered over cp.
  int64_t kvSeq = (*this)->hasAttr(TfmDialect::kCpAxisAttrName) && q[1] > 0 && k[1] % q[1] == 0
                      ? k[1]
                      : q[1];
  SmallVector<int64_t> expectedKv = {q[0], kvSeq, kvHeads * headDim};
  if (ArrayRef<int64_t>(expectedKv) != k)
    return emitOpError() << "expected key of shape " << formatShape(expectedKv)
                         << " (batch, seq, num_kv_heads * head_dim), found "
                         << formatShape(k);
  if (k != v)
    return emitOpError() << "expected value of the key's shape "
                         << formatShape(k) << ", found " << formatShape(v);
  if (std::optional<APFloat> scale = getScale()) {
    double s = scale->convertToDouble();
    if (!(s > 0.0) || !std::isfinite(s))
      return emitOpError() << "expected a positive finite scale, found " << s;
  }
  if (failed(verifySameElementType(*this, getQuery(), "query", getKey(),
                                   "key")) ||
      failed(verifySameElementType(*this, getQuery(), "query", getValue(),
                                   "value")))
    return failure();
  if (getResult().getType() != getQuery().getType())
    return emitOpError() << "expected result type " << getQuery().getType()
                         << " (the query type), found " << getResult().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  ArrayRef<int64_t> shape = getInput().getType().getShape();
  if (shape.size() != 3)
    return emitOpError() << "expected input of rank 3 ([batch, seq, heads * "
                            "head_dim]), found shape "
                         << formatShape(shape);
  int64_t heads = getNumHeads();
  if (shape[2] % heads != 0)
    return emitOpError() << "expected num_heads to divide the hidden size, "
                            "found hidden "
                         << shape[2] << " and num_heads " << heads;
  int64_t headDim = shape[2] / heads;
  if (headDim % 2 != 0)
    return emitOpError() << "expected an even head_dim for rotate-half, found "
                         << headDim;
  double theta = getTheta().convertToDouble();
  if (!(theta > 0.0) || !std::isfinite(theta))
    return emitOpError() << "expected a positive finite theta, found " << theta;
  if (static_cast<int64_t>(getOffset()) < 0)
    return emitOpError() << "expected a non-negative offset, found "
                         << static_cast<int64_t>(getOffset());
  return success();
}

//===----------------------------------------------------------------------===//
// CrossEntropyOp
//===----------------------------------------------------------------------===//

LogicalResult CrossEntropyOp::verify() {
  ArrayRef<int64_t> logits = getLogits().getType().getShape();
  ArrayRef<int64_t> labels = getLabels().getType().getShape();
  if (logits.size() < 2)
    return emitOpError() << "expected logits of rank >= 2 ([..., vocab]), "
                            "found shape "
                         << formatShape(logits);
  if (labels != logits.drop_back())
    return emitOpError() << "expected labels of shape "
                         << formatShape(logits.drop_back())
                         << " (the logits shape without the vocab dim), found "
                         << formatShape(labels);
  if (getLoss().getType().getRank() != 0)
    return emitOpError() << "expected a 0-d loss tensor, found shape "
                         << formatShape(getLoss().getType().getShape());
  return success();
}

//===----------------------------------------------------------------------===//
// ReshapeOp / TransposeOp
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::verify() {
  RankedTensorType in = getInput().getType(), out = getResult().getType();
  if (in.getElementType() != out.getElementType())
    return emitOpError() << "expected result element type "
                         << in.getElementType() << " (the input's), found "
                         << out.getElementType();
  if (in.getNumElements() != out.getNumElements())
    return emitOpError() << "expected a result with " << in.getNumElements()
                         << " elements (input shape "
                         << formatShape(in.getShape()) << "), found "
                         << out.getNumElements() << " (shape "
                         << formatShape(out.getShape()) << ")";
  return success();
}

LogicalResult TransposeOp::verify() {
  RankedTensorType in = getInput().getType(), out = getResult().getType();
  ArrayRef<int64_t> perm = getPermutation();
  int64_t rank = in.getRank();
  if (static_cast<int64_t>(perm.size()) != rank)
    return emitOpError() << "expected a permutation of " << rank
                         << " dimensions, found " << perm.size() << " entries";
  llvm::SmallBitVector seen(rank);
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen.test(p))
      return emitOpError() << "expected a permutation of [0, " << rank
                           << "), found entry " << p;
    seen.set(p);
  }
  if (in.getElementType() != out.getElementType())
    return emitOpError() << "expected result element type "
                         << in.getElementType() << " (the input's), found "
                         << out.getElementType();
  SmallVector<int64_t> expected;
  for (int64_t p : perm)
    expected.push_back(in.getShape()[p]);
  return verifyResultShape(*this, expected, "the input shape permuted");
}

//===----------------------------------------------------------------------===//
// Partitioned forms
//===----------------------------------------------------------------------===//

LogicalResult CastOp::verify() {
  if (getInput().getType().getShape() != getResult().getType().getShape())
    return emitOpError() << "expected the result shape "
                         << formatShape(getInput().getType().getShape())
                         << " (the input's), found "
                         << formatShape(getResult().getType().getShape());
  return success();
}

LogicalResult BiasAddOp::verify() {
  ArrayRef<int64_t> shape = getInput().getType().getShape();
  if (shape.empty())
    return emitOpError() << "expected input of rank >= 1, found a scalar";
  if (failed(verifyVector(*this, getBias(), "bias", shape.back(),
                          "the input's last dimension")) ||
      failed(verifySameElementType(*this, getInput(), "input", getBias(),
                                   "bias")))
    return failure();
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "expected result type " << getInput().getType()
                         << " (the input type), found " << getResult().getType();
  return success();
}

/// Shape of `v` without its last dimension (per-row statistics).
static SmallVector<int64_t> rowShape(Value v) {
  return SmallVector<int64_t>(tensorType(v).getShape().drop_back());
}

LogicalResult ReduceMaxOp::verify() {
  if (getInput().getType().getRank() == 0)
    return emitOpError() << "expected input of rank >= 1, found a scalar";
  // An f32 result of narrower logits is exact (mixed precision keeps the
  // vocab-parallel softmax statistics in f32).
  if (!getResult().getType().getElementType().isF32() &&
      failed(verifySameElementType(*this, getInput(), "input", getResult(),
                                   "result")))
    return failure();
  return verifyResultShape(*this, rowShape(getInput()),
                           "the input shape without its last dim");
}

LogicalResult CrossEntropyPartialOp::verify() {
  if (getLogits().getType().getRank() < 2)
    return emitOpError() << "expected logits of rank >= 2 ([..., vocab]), "
                            "found shape "
                         << formatShape(getLogits().getType().getShape());
  SmallVector<int64_t> rows = rowShape(getLogits());
  for (auto [v, name] : {std::make_pair(Value(getLabels()), "labels"),
                         std::make_pair(Value(getMax()), "max"),
                         std::make_pair(Value(getSumExp()), "sum_exp"),
                         std::make_pair(Value(getTarget()), "target")})
    if (tensorType(v).getShape() != ArrayRef<int64_t>(rows))
      return emitOpError() << "expected " << name << " of shape "
                           << formatShape(rows)
                           << " (the logits shape without the vocab dim), "
                              "found "
                           << formatShape(tensorType(v).getShape());
  if (getShardAxis().empty())
    return emitOpError() << "expected a grid axis name in shard_axis";
  return success();
}

LogicalResult CrossEntropyFinalizeOp::verify() {
  ArrayRef<int64_t> rows = getMax().getType().getShape();
  if (getSumExp().getType().getShape() != rows ||
      getTarget().getType().getShape() != rows)
    return emitOpError() << "expected max, sum_exp and target of one shape, "
                            "found "
                         << formatShape(rows) << ", "
                         << formatShape(getSumExp().getType().getShape())
                         << " and "
                         << formatShape(getTarget().getType().getShape());
  if (getLoss().getType().getRank() != 0)
    return emitOpError() << "expected a 0-d loss tensor, found shape "
                         << formatShape(getLoss().getType().getShape());
  return success();
}

//===----------------------------------------------------------------------===//
// Backward ops and the optimizer
//===----------------------------------------------------------------------===//

/// `v` must have exactly the type of `ref`.
static LogicalResult verifySameType(Operation *op, Value ref, StringRef refName,
                                    Value v, StringRef name) {
  if (v.getType() == ref.getType())
    return success();
  return op->emitOpError() << "expected " << name << " of type " << ref.getType()
                           << " (the type of " << refName << "), found "
                           << v.getType();
}

LogicalResult SumRowsOp::verify() {
  ArrayRef<int64_t> shape = getInput().getType().getShape();
  if (shape.empty())
    return emitOpError() << "expected input of rank >= 1, found a scalar";
  return verifyResultShape(*this, {shape.back()}, "the input's last dimension");
}

LogicalResult EmbeddingGradOp::verify() {
  ArrayRef<int64_t> table = getResult().getType().getShape();
  if (table.size() != 2)
    return emitOpError() << "expected a 2-D table gradient, found shape "
                         << formatShape(table);
  SmallVector<int64_t> expected(getIds().getType().getShape());
  expected.push_back(table[1]);
  if (getDout().getType().getShape() != ArrayRef<int64_t>(expected))
    return emitOpError() << "expected dout of shape " << formatShape(expected)
                         << " (ids shape followed by the embedding dim), found "
                         << formatShape(getDout().getType().getShape());
  return success();
}

LogicalResult LayerNormGradOp::verify() {
  if (failed(verifySameType(*this, getInput(), "input", getDout(), "dout")) ||
      failed(verifySameType(*this, getInput(), "input", getDinput(), "dinput")) ||
      failed(verifySameType(*this, getGamma(), "gamma", getDgamma(), "dgamma")) ||
      failed(verifySameType(*this, getGamma(), "gamma", getDbeta(), "dbeta")))
    return failure();
  return verifyVector(*this, getGamma(), "gamma",
                      getInput().getType().getShape().back(),
                      "the input's last dimension");
}

LogicalResult RMSNormGradOp::verify() {
  if (failed(verifySameType(*this, getInput(), "input", getDout(), "dout")) ||
      failed(verifySameType(*this, getInput(), "input", getDinput(), "dinput")) ||
      failed(verifySameType(*this, getGamma(), "gamma", getDgamma(), "dgamma")))
    return failure();
  return verifyVector(*this, getGamma(), "gamma",
                      getInput().getType().getShape().back(),
                      "the input's last dimension");
}

LogicalResult AttentionGradOp::verify() {
  if (failed(verifySameType(*this, getQuery(), "query", getDout(), "dout")) ||
      failed(verifySameType(*this, getQuery(), "query", getDquery(), "dquery")) ||
      failed(verifySameType(*this, getKey(), "key", getDkey(), "dkey")) ||
      failed(verifySameType(*this, getValue(), "value", getDvalue(), "dvalue")))
    return failure();
  ArrayRef<int64_t> q = getQuery().getType().getShape();
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  if (q.size() != 3 || q[2] % heads != 0 || heads % kvHeads != 0 ||
      getKey().getType().getShape().back() != kvHeads * (q[2] / heads))
    return emitOpError() << "expected query/key shapes that fit " << heads
                         << " heads and " << kvHeads << " kv heads";
  return success();
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError() << "expected at least one input";
  RankedTensorType out = getResult().getType();
  int64_t axis = static_cast<int64_t>(getAxis());
  if (axis < 0 || axis >= out.getRank())
    return emitOpError() << "expected axis in [0, " << out.getRank()
                         << "), found " << axis;
  int64_t total = 0;
  for (Value in : getInputs()) {
    SmallVector<int64_t> expected(out.getShape());
    ArrayRef<int64_t> shape = tensorType(in).getShape();
    if (static_cast<int64_t>(shape.size()) != out.getRank())
      return emitOpError() << "expected inputs of rank " << out.getRank();
    expected[axis] = shape[axis];
    if (shape != ArrayRef<int64_t>(expected))
      return emitOpError() << "expected inputs matching the result "
                           << formatShape(out.getShape())
                           << " except along axis " << axis << ", found "
                           << formatShape(shape);
    total += shape[axis];
  }
  if (total != out.getShape()[axis])
    return emitOpError() << "expected the inputs to add up to "
                         << out.getShape()[axis] << " along axis " << axis
                         << ", found " << total;
  return success();
}

LogicalResult CrossEntropyGradOp::verify() {
  if (failed(verifySameType(*this, getLogits(), "logits", getResult(),
                            "result")))
    return failure();
  if (getLabels().getType().getShape() !=
      getLogits().getType().getShape().drop_back())
    return emitOpError() << "expected labels of shape "
                         << formatShape(getLogits().getType().getShape().drop_back());
  if (getDloss().getType().getRank() != 0)
    return emitOpError() << "expected a 0-d dloss";
  return success();
}

LogicalResult CrossEntropyPartialGradOp::verify() {
  if (failed(verifySameType(*this, getLogits(), "logits", getResult(),
                            "result")))
    return failure();
  SmallVector<int64_t> rows = rowShape(getLogits());
  for (Value v : {getLabels(), getMax(), getDsumExp(), getDtarget()})
    if (tensorType(v).getShape() != ArrayRef<int64_t>(rows))
      return emitOpError() << "expected per-row operands of shape "
                           << formatShape(rows) << ", found "
                           << formatShape(tensorType(v).getShape());
  return success();
}

LogicalResult CrossEntropyFinalizeGradOp::verify() {
  if (failed(verifySameType(*this, getSumExp(), "sum_exp", getDsumExp(),
                            "dsum_exp")) ||
      failed(verifySameType(*this, getSumExp(), "sum_exp", getDtarget(),
                            "dtarget")))
    return failure();
  if (getDloss().getType().getRank() != 0)
    return emitOpError() << "expected a 0-d dloss";
  return success();
}

/// A one-element f32 tensor: the global squared gradient norm.
static LogicalResult verifyNormSq(Operation *op, Type type, StringRef what) {
  auto tensor = cast<RankedTensorType>(type);
  if (tensor.getRank() != 1 || tensor.getNumElements() != 1)
    return op->emitOpError() << "expected " << what
                             << " of type tensor<1xf32>, found " << type;
  return success();
}

LogicalResult GradNormSqOp::verify() {
  return verifyNormSq(*this, getResult().getType(), "a result");
}

LogicalResult AdamWUpdateOp::verify() {
  if (Value normSq = getGradNormSq())
    if (failed(verifyNormSq(*this, normSq.getType(), "norm_sq")))
      return failure();
  if (getLossScaled() && !getGradNormSq())
    return emitOpError() << "is loss_scaled but has no norm_sq (the overflow "
                            "check reads the global gradient norm)";
  if (!getShardAxis())
    return verifySameType(*this, getParam(), "param", getGrad(), "grad");
  int64_t chunk = getGrad().getType().getNumElements();
  int64_t total = getParam().getType().getNumElements();
  if (getGrad().getType().getRank() != 1 || chunk == 0 || total % chunk != 0)
    return emitOpError() << "expected a 1-D gradient chunk whose size divides the "
                         << total << " parameter elements, found "
                         << getGrad().getType();
  return success();
}

/// Point-to-point messages carry float tensors (bf16/f16 ones travel as f32:
/// see legalizeCollectiveTypes) with tags below 16384 (the runtime keeps
/// higher MPI tags for its own control messages).
static LogicalResult verifyMessage(Operation *op, Type type, int64_t tag) {
  if (!isa<FloatType>(cast<RankedTensorType>(type).getElementType()))
    return op->emitOpError() << "sends only float tensors, found " << type;
  if (tag >= 16384)
    return op->emitOpError() << "tag must be below 16384, found " << tag;
  return success();
}

LogicalResult SendOp::verify() {
  return verifyMessage(*this, getInput().getType(), getTag());
}

LogicalResult RecvOp::verify() {
  return verifyMessage(*this, getResult().getType(), getTag());
}

//===----------------------------------------------------------------------===//
// SplitOp
//===----------------------------------------------------------------------===//

LogicalResult SplitOp::verify() {
  RankedTensorType in = getInput().getType();
  int64_t rank = in.getRank(), axis = getAxis();
  if (axis < 0 || axis >= rank)
    return emitOpError() << "expected axis in [0, " << rank
                         << ") for an input of rank " << rank << ", found "
                         << axis;
  if (getNumResults() == 0)
    return emitOpError() << "expected at least one result";
  int64_t total = 0;
  for (auto [i, type] : llvm::enumerate(getResultTypes())) {
    auto piece = cast<RankedTensorType>(type);
    if (piece.getElementType() != in.getElementType())
      return emitOpError() << "expected result #" << i << " element type "
                           << in.getElementType() << " (the input's), found "
                           << piece.getElementType();
    SmallVector<int64_t> expected(in.getShape());
    expected[axis] = piece.getRank() == rank ? piece.getShape()[axis] : 0;
    if (piece.getShape() != ArrayRef<int64_t>(expected))
      return emitOpError() << "expected result #" << i
                           << " to match the input shape "
                           << formatShape(in.getShape())
                           << " except along axis " << axis << ", found "
                           << formatShape(piece.getShape());
    total += piece.getShape()[axis];
  }
  if (total != in.getShape()[axis])
    return emitOpError() << "expected the results' sizes along axis " << axis
                         << " to add up to " << in.getShape()[axis]
                         << ", found " << total;
  return success();
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

void LayerOp::build(OpBuilder &builder, OperationState &state,
                    TypeRange resultTypes, int64_t index) {
  state.addTypes(resultTypes);
  state.addAttribute(getIndexAttrName(state.name),
                     builder.getI64IntegerAttr(index));
  Region *body = state.addRegion();
  body->push_back(new Block());
}

LogicalResult LayerOp::verify() {
  if ((*this)->getParentOfType<LayerOp>())
    return emitOpError() << "expected layers not to nest, found layer "
                         << getIndex() << " inside layer "
                         << (*this)->getParentOfType<LayerOp>().getIndex();
  Block &body = getBody().front();
  if (body.getNumArguments() != 0)
    return emitOpError() << "expected a body without block arguments, found "
                         << body.getNumArguments();
  auto yield = body.empty() ? YieldOp() : dyn_cast<YieldOp>(body.back());
  if (!yield)
    return emitOpError() << "expected the body to end in tfm.yield";
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError() << "expected tfm.yield to return the layer's result "
                            "types ("
                         << getResultTypes() << "), found ("
                         << yield.getValues().getTypes() << ")";
  return success();
}

#define GET_OP_CLASSES
#include "llmir/Dialect/Tfm/IR/TfmOps.cpp.inc"
