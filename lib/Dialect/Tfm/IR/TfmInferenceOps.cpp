//===- TfmInferenceOps.cpp - verifiers of the KV-cache inference ops ------===//
//
// kv_cache_write, cache_attention, rope_at and last_token: the ops the
// --inference import adds for prefill/decode functions over a resident cache.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "ShapeFormat.h"

#include "llvm/ADT/STLExtras.h"

#include <cmath>
#include <string>

using namespace mlir;
using namespace llmir::tfm;

namespace {


ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

/// `positions` (or `lengths`) must be [batch].
LogicalResult verifyPerSequence(Operation *op, Value v, StringRef name,
                                int64_t batch) {
  ArrayRef<int64_t> shape = shapeOf(v);
  if (shape.size() != 1 || shape[0] != batch)
    return op->emitOpError() << "expected " << name << " of shape " << batch
                             << " (one per sequence), found "
                             << formatShape(shape);
  return success();
}

LogicalResult verifyCache(Operation *op, Value cache, StringRef name) {
  if (shapeOf(cache).size() != 4)
    return op->emitOpError() << "expected " << name
                             << " of rank 4 ([batch, kv_heads, max_seq, "
                                "head_dim]), found "
                             << formatShape(shapeOf(cache));
  return success();
}

LogicalResult verifySameElement(Operation *op, Value ref, Value v,
                                StringRef name) {
  Type a = cast<RankedTensorType>(ref.getType()).getElementType();
  Type b = cast<RankedTensorType>(v.getType()).getElementType();
  if (a != b)
    return op->emitOpError() << "expected " << name << " of element type " << a
                             << ", found " << b;
  return success();
}

} // namespace

LogicalResult KvCacheWriteOp::verify() {
  if (failed(verifyCache(*this, getCache(), "cache")))
    return failure();
  ArrayRef<int64_t> c = shapeOf(getCache()), v = shapeOf(getValue());
  if (v.size() != 3 || v[0] != c[0] || v[2] != c[1] * c[3])
    return emitOpError() << "expected value of shape [" << c[0]
                         << ", seq, " << c[1] * c[3]
                         << "] (batch, seq, kv_heads * head_dim of the cache "
                         << formatShape(c) << "), found " << formatShape(v);
  if (v[1] > c[2])
    return emitOpError() << "writes " << v[1] << " positions into a cache of "
                         << c[2] << " positions";
  if (getPositions() &&
      failed(verifyPerSequence(*this, getPositions(), "positions", c[0])))
    return failure();
  if (failed(verifySameElement(*this, getCache(), getValue(), "value")))
    return failure();
  if (getResult().getType() != getCache().getType())
    return emitOpError() << "expected the result to have the cache's type "
                         << getCache().getType() << ", found "
                         << getResult().getType();
  return success();
}

double CacheAttentionOp::getEffectiveScale() {
  if (std::optional<APFloat> s = getScale())
    return s->convertToDouble();
  return 1.0 / std::sqrt(static_cast<double>(shapeOf(getKeyCache())[3]));
}

LogicalResult CacheAttentionOp::verify() {
  if (failed(verifyCache(*this, getKeyCache(), "key_cache")) ||
      failed(verifyCache(*this, getValueCache(), "value_cache")))
    return failure();
  ArrayRef<int64_t> q = shapeOf(getQuery()), c = shapeOf(getKeyCache());
  if (getKeyCache().getType() != getValueCache().getType())
    return emitOpError() << "expected value_cache of the key cache's type "
                         << getKeyCache().getType() << ", found "
                         << getValueCache().getType();
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  if (heads % kvHeads != 0)
    return emitOpError() << "expected num_kv_heads to divide num_heads, found "
                            "num_heads "
                         << heads << " and num_kv_heads " << kvHeads;
  if (c[1] != kvHeads)
    return emitOpError() << "expected a cache of " << kvHeads
                         << " kv heads (dim 1), found " << formatShape(c);
  if (q.size() != 3 || q[0] != c[0] || q[2] != heads * c[3])
    return emitOpError() << "expected query of shape [" << c[0] << ", seq, "
                         << heads * c[3]
                         << "] (batch, seq, num_heads * head_dim), found "
                         << formatShape(q);
  if (failed(verifyPerSequence(*this, getPositions(), "positions", q[0])) ||
      failed(verifySameElement(*this, getQuery(), getKeyCache(), "key_cache")))
    return failure();
  if (getResult().getType() != getQuery().getType())
    return emitOpError() << "expected the result to have the query's type "
                         << getQuery().getType() << ", found "
                         << getResult().getType();
  if (std::optional<APFloat> scale = getScale()) {
    double s = scale->convertToDouble();
    if (!(s > 0.0) || !std::isfinite(s))
      return emitOpError() << "expected a positive finite scale, found " << s;
  }
  return success();
}

LogicalResult RopeAtOp::verify() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  if (shape.size() != 3)
    return emitOpError() << "expected input of rank 3 ([batch, seq, heads * "
                            "head_dim]), found shape "
                         << formatShape(shape);
  int64_t heads = getNumHeads();
  if (shape[2] % heads != 0 || (shape[2] / heads) % 2 != 0)
    return emitOpError() << "expected num_heads to divide the hidden size into "
                            "an even head_dim, found hidden "
                         << shape[2] << " and num_heads " << heads;
  double theta = getTheta().convertToDouble();
  if (!(theta > 0.0) || !std::isfinite(theta))
    return emitOpError() << "expected a positive finite theta, found " << theta;
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "expected the result to have the input's type "
                         << getInput().getType() << ", found "
                         << getResult().getType();
  return verifyPerSequence(*this, getPositions(), "positions", shape[0]);
}

LogicalResult LastTokenOp::verify() {
  ArrayRef<int64_t> in = shapeOf(getInput()), out = shapeOf(getResult());
  if (in.size() != 3)
    return emitOpError() << "expected input of rank 3 ([batch, seq, dim]), "
                            "found "
                         << formatShape(in);
  if (out.size() != 2 || out[0] != in[0] || out[1] != in[2])
    return emitOpError() << "expected result of shape " << in[0] << "x"
                         << in[2] << ", found " << formatShape(out);
  if (failed(verifySameElement(*this, getInput(), getResult(), "result")))
    return failure();
  return verifyPerSequence(*this, getLengths(), "lengths", in[0]);
}
