// The CUDA backend's kernels: one function per kernel family, each the twin of
// the CPU backend's function of the same name (src/cpu/CpuBackend.cpp): same
// decoding (KernelArgs), same checks, a device launch instead of the loop.
#include "CudaBackend.h"

namespace llmir::runtime {

using cuda::AttentionDims;

// ---- elementwise, row and copy kernels ------------------------------------------
Status CudaBackend::activation(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  const float *x = ptr<float>(instr.ins[0]);
  float *y = ptr<float>(instr.outs[0]);
  const int64_t n = instr.outs[0].numElements();
  if (instr.id == KernelId::GeluTanh)
    return cuda::geluTanhForward(x, y, n, stream_);
  cuda::launchUnary(instr.id == KernelId::GeluExact ? cuda::Unary::GeluExact
                                                    : cuda::Unary::Silu,
                    x, y, n, stream_);
  return Status::ok();
}

Status CudaBackend::activationGrad(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
  cuda::UnaryGrad op = instr.id == KernelId::GeluTanhGrad    ? cuda::UnaryGrad::GeluTanh
                       : instr.id == KernelId::GeluExactGrad ? cuda::UnaryGrad::GeluExact
                                                             : cuda::UnaryGrad::Silu;
  cuda::launchUnaryGrad(op, ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                        ptr<float>(instr.outs[0]), instr.outs[0].numElements(), stream_);
  return Status::ok();
}

Status CudaBackend::binary(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
  cuda::launchBinary(instr.id == KernelId::Add ? cuda::Binary::Add : cuda::Binary::Mul,
                     ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                     ptr<float>(instr.outs[0]), instr.outs[0].numElements(), stream_);
  return Status::ok();
}

Status CudaBackend::softmax(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSoftmax(instr));
  cuda::launchSoftmax(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rc.rows,
                      rc.cols, s);
  return Status::ok();
}

Status CudaBackend::embedding(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingArgs e,
                         kargs::decodeEmbedding(instr, *context_));
  StatusOr<std::pair<const void *, bool>> idp = ids(instr, *e.ids);
  if (!idp.isOk())
    return idp.status();
  LLMIR_RETURN_IF_ERROR(resetFlag());
  cuda::launchEmbedding(idp->first, idp->second, ptr<float>(*e.table),
                        ptr<float>(*e.out), e.numIds, e.rows, e.dim, e.first,
                        e.vocab, dFlag_, s);
  return checkIds(instr, *idp, "id", e.vocab);
}

Status CudaBackend::copy(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  const uint8_t *src = ptr<uint8_t>(instr.ins[0]);
  uint8_t *dst = ptr<uint8_t>(instr.outs[0]);
  const int64_t bytes = instr.outs[0].bytes();
  if (src == dst || bytes == 0)
    return Status::ok();
  if (src < dst + bytes && dst < src + bytes) { // overlap: memmove via scratch
    StatusOr<uint8_t *> tmp = scratch(bytes);
    if (!tmp.isOk())
      return tmp.status();
    LLMIR_CUDA_TRY(cudaMemcpyAsync(*tmp, src, bytes, cudaMemcpyDeviceToDevice, s), k);
    src = *tmp;
  }
  LLMIR_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), k);
  return Status::ok();
}

Status CudaBackend::biasAdd(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeBiasAdd(instr));
  cuda::launchBiasAdd(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                      ptr<float>(instr.outs[0]), rc.rows, rc.cols, s);
  return Status::ok();
}

Status CudaBackend::scale(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const double factor, kargs::decodeScale(instr));
  cuda::launchScale(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                    instr.outs[0].numElements(), factor, s);
  return Status::ok();
}

Status CudaBackend::reduceMax(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeReduceMax(instr));
  cuda::launchRowMax(instr.ins[0].dtype, ptr<uint8_t>(instr.ins[0]),
                     ptr<float>(instr.outs[0]), rc.rows, rc.cols, s);
  return Status::ok();
}

Status CudaBackend::crossEntropyPartial(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialArgs ce,
                         kargs::decodeCrossEntropyPartial(instr, *context_));
  StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  LLMIR_RETURN_IF_ERROR(resetFlag());
  cuda::launchCrossEntropyPartial(ce.logits->dtype, ptr<uint8_t>(*ce.logits), labels->first,
                                  labels->second,
                                  ptr<float>(*ce.max), ptr<float>(*ce.sumExp),
                                  ptr<float>(*ce.target), ce.rows, ce.cols, ce.first,
                                  ce.valid, ce.vocab, dFlag_, s);
  return checkIds(instr, *labels, "label", ce.vocab);
}

Status CudaBackend::crossEntropyFinalize(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs ce,
                         kargs::decodeCrossEntropyFinalize(instr));
  cuda::launchCrossEntropyFinalize(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                                   ptr<float>(instr.ins[2]), ptr<float>(instr.outs[0]),
                                   ce.rows, ce.sum, s);
  return Status::ok();
}

Status CudaBackend::positionIds(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::PositionIdsArgs p,
                         kargs::decodePositionIds(instr, *context_,
                                                  /*requireInteger=*/true));
  const BufferRef &out = instr.outs[0];
  cuda::launchPositionIds(ptr<uint8_t>(out), out.dtype == ScalarType::I64, p.rows, p.cols,
                          p.first, s);
  return Status::ok();
}

Status CudaBackend::norm(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_ASSIGN_OR_RETURN(const kargs::NormArgs n, kargs::decodeNorm(instr));
  const int64_t rows = n.rows, cols = n.cols;
  if (rows > 0 && cols == 0)
    return invalid(k + ": cols must be > 0 when rows > 0");
  if (!(n.eps >= 0.0))
    return invalid(k + ": eps must be >= 0");
  const float eps = static_cast<float>(n.eps);
  if (instr.id == KernelId::RmsNorm) {
    cuda::launchRmsNorm(ptr<float>(*n.x), ptr<float>(*n.gamma), ptr<float>(*n.y),
                        nullptr, rows, cols, eps, s);
    return Status::ok();
  }
  LLMIR_RETURN_IF_ERROR(kargs::checkNormBias(n));
  // null beta: no bias (the kernel adds 0)
  const float *beta = n.bias ? ptr<float>(*n.bias) : nullptr;
  cuda::launchLayerNorm(ptr<float>(*n.x), ptr<float>(*n.gamma), beta, ptr<float>(*n.y),
                        nullptr, nullptr, rows, cols, eps, s);
  return Status::ok();
}

Status CudaBackend::addNorm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::AddNormArgs n, kargs::decodeAddNorm(instr));
  const ScalarType t = n.a->dtype;
  bool alike = true;
  for (const std::vector<BufferRef> *list : {&instr.ins, &instr.outs})
    for (const BufferRef &b : *list)
      alike = alike && b.dtype == t;
  if (!alike) { // mixed types: the unfused pair, each staged as usual
    LLMIR_ASSIGN_OR_RETURN(auto parts, kargs::splitAddNorm(instr));
    const KernelContext &context = *context_;
    uint8_t *arena = arena_;
    LLMIR_RETURN_IF_ERROR(execute(parts.first, arena, context));
    return execute(parts.second, arena, context);
  }
  const cuda::Storage storage = t == ScalarType::F32    ? cuda::Storage::F32
                                : t == ScalarType::BF16 ? cuda::Storage::BF16
                                                        : cuda::Storage::F16;
  const kargs::NormArgs &m = n.norm;
  cuda::launchAddNorm(storage, instr.id == KernelId::AddRmsNorm, ptr<uint8_t>(*n.a),
                      ptr<uint8_t>(*n.b), ptr<uint8_t>(*m.gamma),
                      m.bias ? ptr<uint8_t>(*m.bias) : nullptr, ptr<uint8_t>(*m.x), ptr<uint8_t>(*m.y),
                      m.rows, m.cols, static_cast<float>(m.eps), stream_);
  return Status::ok();
}

Status CudaBackend::attention(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::AttentionArgs a, kargs::decodeAttention(instr, context_));
  LLMIR_RETURN_IF_ERROR(attentionLimits(instr, a.shape));
  const BufferRef &q = instr.ins[0], &key = instr.ins[1], &v = instr.ins[2];
  AttentionDims d{a.batch,         a.seq,         a.shape.heads, a.shape.kvHeads,
                  a.shape.headDim, a.shape.scale, a.shape.causal, a.cp};
  float *lse = a.lse ? ptr<float>(*a.lse) : nullptr;
  if (instr.id == KernelId::Attention) {
    cuda::launchAttentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v),
                                 ptr<float>(instr.outs[0]), lse, d, s);
    return Status::ok();
  }
  // The backward reads O and the row log-sum-exp: the forward's saved ones,
  // else recomputed here into scratch (a program without them).
  const int64_t statBytes = alignUp(d.batch * d.heads * d.seq * int64_t(sizeof(float)));
  const int64_t oBytes = a.out ? 0 : alignUp(q.bytes());
  StatusOr<uint8_t *> tmp = scratch(statBytes + oBytes + (a.out ? 0 : statBytes));
  if (!tmp.isOk())
    return tmp.status();
  float *delta = reinterpret_cast<float *>(*tmp);
  const float *o = a.out ? ptr<float>(*a.out) : nullptr;
  if (!a.out) {
    float *oTmp = reinterpret_cast<float *>(*tmp + statBytes);
    lse = reinterpret_cast<float *>(*tmp + statBytes + oBytes);
    cuda::launchAttentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v), oTmp, lse,
                                 d, s);
    o = oTmp;
  }
  cuda::launchAttentionBackward(ptr<float>(q), ptr<float>(key), ptr<float>(v), o, lse,
                                ptr<float>(instr.ins[3]), delta,
                                ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                                ptr<float>(instr.outs[2]), d, s);
  return Status::ok();
}

Status CudaBackend::attentionRing(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RingAttentionArgs a,
                         kargs::decodeRingAttention(instr, *context_));
  LLMIR_RETURN_IF_ERROR(attentionLimits(instr, a.shape));
  const AttentionDims d{a.batch,         a.seq,         a.shape.heads, a.shape.kvHeads,
                        a.shape.headDim, a.shape.scale, a.shape.causal, a.cp};
  const Instr &i = instr;
  if (instr.id == KernelId::AttentionRing) {
    cuda::launchRingAttentionForward(ptr<float>(i.ins[0]), ptr<float>(i.ins[1]),
                                     ptr<float>(i.ins[2]), ptr<float>(i.outs[0]),
                                     ptr<float>(i.outs[1]), d, a.step, stream_);
    return Status::ok();
  }
  LLMIR_ASSIGN_OR_RETURN(uint8_t * delta,
                         scratch(alignUp(d.batch * d.heads * d.seq * int64_t(sizeof(float)))));
  cuda::launchRingAttentionBackward(
      ptr<float>(i.ins[0]), ptr<float>(i.ins[1]), ptr<float>(i.ins[2]), ptr<float>(i.ins[4]),
      ptr<float>(i.ins[5]), ptr<float>(i.ins[3]), reinterpret_cast<float *>(delta),
      ptr<float>(i.outs[0]), ptr<float>(i.outs[1]), ptr<float>(i.outs[2]), d, a.step, stream_);
  return Status::ok();
}

Status CudaBackend::rope(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RopeShape r, kargs::decodeRope(instr, ropeLimits));
  const BufferRef &x = instr.ins[0];
  LLMIR_ASSIGN_OR_RETURN(const CpChunks cp, kargs::decodeCp(instr, *context_, x.shape[1]));
  if (!cp.active()) {
    auto tables = ropeTables(x.shape[1], r.headDim, r.theta, r.offset);
    if (!tables.isOk())
      return tables.status();
    cuda::launchRope(ptr<float>(x), ptr<float>(instr.outs[0]), tables->first,
                     tables->second, x.shape[0], x.shape[1], r.heads, r.headDim,
                     instr.id == KernelId::RopeGrad, s);
    return Status::ok();
  }
  // Context parallelism: each sequence's two chunks at their global offsets.
  const int64_t chunkElems = cp.chunk * r.heads * r.headDim;
  for (int64_t b = 0; b < x.shape[0]; ++b)
    for (int h = 0; h < 2; ++h) {
      auto tables = ropeTables(cp.chunk, r.headDim, r.theta, r.offset + cp.chunkStart(h));
      if (!tables.isOk())
        return tables.status();
      const int64_t at = (2 * b + h) * chunkElems;
      cuda::launchRope(ptr<float>(x) + at, ptr<float>(instr.outs[0]) + at, tables->first,
                       tables->second, 1, cp.chunk, r.heads, r.headDim,
                       instr.id == KernelId::RopeGrad, s);
    }
  return Status::ok();
}

Status CudaBackend::crossEntropy(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyArgs ce,
                         kargs::decodeCrossEntropy(instr));
  const int64_t rows = ce.rows, vocab = ce.vocab;
  if (rows == 0 || vocab == 0)
    return invalid("cross_entropy_forward: rows and vocab must be > 0");
  StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  StatusOr<uint8_t *> tmp = scratch(rows * int64_t(sizeof(float)));
  if (!tmp.isOk())
    return tmp.status();
  LLMIR_RETURN_IF_ERROR(resetFlag());
  cuda::launchCrossEntropy(ce.logits->dtype, ptr<uint8_t>(*ce.logits), labels->first,
                           labels->second,
                           reinterpret_cast<float *>(*tmp), ptr<float>(*ce.loss), rows,
                           vocab, ce.sum, dFlag_, s);
  return checkIds(instr, *labels, "label", vocab);
}

Status CudaBackend::cpSlice(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CpSliceArgs c, kargs::decodeCpSlice(instr, *context_));
  const size_t chunkBytes = static_cast<size_t>(c.cp.chunk * c.rowBytes);
  if (c.outer == 0 || chunkBytes == 0)
    return Status::ok();
  for (int h = 0; h < 2; ++h) // each sequence's chunk h, all sequences at once
    LLMIR_CUDA_TRY(cudaMemcpy2DAsync(ptr<uint8_t>(instr.outs[0]) + h * chunkBytes,
                                     2 * chunkBytes,
                                     ptr<uint8_t>(instr.ins[0]) +
                                         c.cp.chunkStart(h) * c.rowBytes,
                                     static_cast<size_t>(c.seq * c.rowBytes), chunkBytes,
                                     static_cast<size_t>(c.outer), cudaMemcpyDeviceToDevice,
                                     stream_),
                   instr.kernel);
  return Status::ok();
}

Status CudaBackend::copySlice(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CopySliceArgs c, kargs::decodeCopySlice(instr));
  if (c.outer == 0 || c.dstCols == 0)
    return Status::ok();
  LLMIR_CUDA_TRY(cudaMemcpy2DAsync(ptr<float>(instr.outs[0]), c.dstCols * sizeof(float),
                                   ptr<float>(instr.ins[0]) + c.offset * c.inner,
                                   c.srcCols * sizeof(float), c.dstCols * sizeof(float),
                                   c.outer, cudaMemcpyDeviceToDevice, s),
                 k);
  return Status::ok();
}

Status CudaBackend::transpose(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::TransposeArgs t,
                         kargs::decodeTranspose(
                             instr, static_cast<size_t>(cuda::kMaxTransposeRank), "CUDA"));
  const BufferRef &dst = instr.outs[0];
  const size_t rank = t.perm.size();
  cuda::TransposeDims dims;
  dims.rank = static_cast<int>(rank);
  for (size_t d = 0; d < rank; ++d) {
    dims.outShape[d] = dst.shape[d];
    dims.srcStrideOfOutDim[d] = t.srcStrides[t.perm[d]];
  }
  cuda::launchTranspose(ptr<float>(instr.ins[0]), ptr<float>(dst), dst.numElements(), dims,
                        s);
  return Status::ok();
}

Status CudaBackend::fill(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const float value, kargs::decodeFill(instr));
  cuda::launchFill(ptr<float>(instr.outs[0]), instr.outs[0].numElements(), value, s);
  return Status::ok();
}

Status CudaBackend::sumRows(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSumRows(instr));
  const int64_t rows = rc.rows, cols = rc.cols;
  StatusOr<uint8_t *> tmp = scratch(cuda::kColSumChunks * cols * int64_t(sizeof(float)));
  if (!tmp.isOk())
    return tmp.status();
  cuda::launchColumnSum(0, ptr<float>(instr.ins[0]), nullptr, nullptr, nullptr,
                        ptr<float>(instr.outs[0]), reinterpret_cast<float *>(*tmp),
                        rows, cols, s);
  return Status::ok();
}

Status CudaBackend::embeddingGrad(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingGradArgs e,
                         kargs::decodeEmbeddingGrad(instr));
  StatusOr<std::pair<const void *, bool>> idp = ids(instr, *e.ids);
  if (!idp.isOk())
    return idp.status();
  const int64_t rows = e.rows, numIds = e.numIds;
  int64_t first = 0;
  if (e.sharded) {
    StatusOr<int64_t> shardFirst = kargs::shardFirstRow(instr, *context_, rows);
    if (!shardFirst.isOk())
      return shardFirst.status();
    first = *shardFirst;
  } else {
    // The CPU rejects out-of-range ids here (embeddingBackward).
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchCheckIds(idp->first, idp->second, numIds, rows, dFlag_, s);
    LLMIR_RETURN_IF_ERROR(checkIds(instr, *idp, "id", rows));
  }
  cuda::launchEmbeddingGrad(idp->first, idp->second, ptr<float>(*e.dout),
                            ptr<float>(*e.dtable), numIds, rows, e.dim, first, s);
  return Status::ok();
}

Status CudaBackend::normGrad(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_ASSIGN_OR_RETURN(const kargs::NormGradArgs n, kargs::decodeNormGrad(instr));
  const bool layer = n.layer;
  const BufferRef &x = *n.x, &gamma = *n.gamma, &dy = *n.dy;
  const int64_t rows = n.rows, cols = n.cols;
  for (size_t i = 1; i < instr.outs.size(); ++i)
    if (instr.outs[i].numElements() != cols)
      return invalid("norm gradient " + instr.outs[i].str() + " does not match " +
                     x.str());
  if (rows > 0 && cols == 0)
    return invalid(k + ": cols must be > 0 when rows > 0");
  // mean, rstd [rows] then the column-sum partials.
  const int64_t statBytes = alignUp(rows * int64_t(sizeof(float)));
  StatusOr<uint8_t *> tmp =
      scratch(2 * statBytes + cuda::kColSumChunks * cols * int64_t(sizeof(float)));
  if (!tmp.isOk())
    return tmp.status();
  float *mean = reinterpret_cast<float *>(*tmp);
  float *rstd = reinterpret_cast<float *>(*tmp + statBytes);
  float *partial = reinterpret_cast<float *>(*tmp + 2 * statBytes);
  const float e = static_cast<float>(n.eps);
  if (!layer) {
    cuda::launchRmsNormGradX(ptr<float>(x), ptr<float>(gamma), ptr<float>(dy),
                             ptr<float>(instr.outs[0]), rstd, rows, cols, e, s);
    cuda::launchColumnSum(3, ptr<float>(dy), ptr<float>(x), nullptr, rstd,
                          ptr<float>(instr.outs[1]), partial, rows, cols, s);
    return Status::ok();
  }
  cuda::launchLayerNormGradX(ptr<float>(x), ptr<float>(gamma), ptr<float>(dy),
                             ptr<float>(instr.outs[0]), mean, rstd, rows, cols, e, s);
  cuda::launchColumnSum(2, ptr<float>(dy), ptr<float>(x), mean, rstd,
                        ptr<float>(instr.outs[1]), partial, rows, cols, s);
  cuda::launchColumnSum(0, ptr<float>(dy), nullptr, nullptr, nullptr,
                        ptr<float>(instr.outs[2]), partial, rows, cols, s);
  return Status::ok();
}

Status CudaBackend::concat(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_ASSIGN_OR_RETURN(const kargs::ConcatArgs c, kargs::decodeConcat(instr));
  const BufferRef &dst = instr.outs[0];
  const int64_t outer = c.outer, dstCols = c.dstCols;
  int64_t offset = 0;
  for (const BufferRef &src : instr.ins) {
    StatusOr<int64_t> colsOr = kargs::concatInputCols(instr, c, src, offset);
    if (!colsOr.isOk())
      return colsOr.status();
    const int64_t cols = *colsOr;
    if (outer > 0 && cols > 0)
      LLMIR_CUDA_TRY(cudaMemcpy2DAsync(ptr<float>(dst) + offset, dstCols * sizeof(float),
                                       ptr<float>(src), cols * sizeof(float),
                                       cols * sizeof(float), outer,
                                       cudaMemcpyDeviceToDevice, s),
                     k);
    offset += cols;
  }
  return Status::ok();
}

Status CudaBackend::crossEntropyGrad(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyGradArgs ce,
                         kargs::decodeCrossEntropyGrad(instr));
  StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  const int64_t rows = ce.rows, vocab = ce.vocab;
  if (rows > 0 && vocab == 0)
    return invalid("cross_entropy_backward: vocab must be > 0");
  // Label bounds, as crossEntropyBackward checks them.
  LLMIR_RETURN_IF_ERROR(resetFlag());
  cuda::launchCheckIds(labels->first, labels->second, rows, vocab, dFlag_, s);
  LLMIR_RETURN_IF_ERROR(checkIds(instr, *labels, "label", vocab));
  cuda::launchCrossEntropyGrad(ce.logits->dtype, ptr<uint8_t>(*ce.logits), labels->first,
                               labels->second, ptr<float>(*ce.dloss),
                               ptr<uint8_t>(*ce.dlogits), rows, vocab, ce.sum, s);
  return Status::ok();
}

Status CudaBackend::crossEntropyPartialGrad(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialGradArgs ce,
                         kargs::decodeCrossEntropyPartialGrad(instr, *context_));
  StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  cuda::launchCrossEntropyPartialGrad(ce.logits->dtype, ptr<uint8_t>(*ce.logits),
                                      labels->first, labels->second,
                                      ptr<float>(instr.ins[2]), ptr<float>(instr.ins[3]),
                                      ptr<float>(instr.ins[4]), ptr<uint8_t>(instr.outs[0]),
                                      ce.rows, ce.cols, ce.first, ce.valid, s);
  return Status::ok();
}

Status CudaBackend::crossEntropyFinalizeGrad(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs ce,
                         kargs::decodeCrossEntropyFinalizeGrad(instr));
  cuda::launchCrossEntropyFinalizeGrad(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                                       ptr<float>(instr.outs[0]),
                                       ptr<float>(instr.outs[1]), ce.rows, ce.sum, s);
  return Status::ok();
}

Status CudaBackend::copyChunk(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CopyChunkArgs c,
                         kargs::decodeCopyChunk(instr, *context_));
  if (c.n > 0)
    LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(instr.outs[0]),
                                   ptr<float>(instr.ins[0]) + c.srcOffset,
                                   c.n * sizeof(float), cudaMemcpyDeviceToDevice, s),
                   k);
  return Status::ok();
}

StatusOr<cuda::AdamwScalars> CudaBackend::adamwScalars(const kargs::AdamwArgs &a) {
  // The scalars exactly as adamwUpdate (src/cpu/Elementwise.cpp) computes them.
  const float lr = context_->learningRate();
  const int64_t step = context_->adamStep();
  const float b1f = static_cast<float>(a.beta1), b2f = static_cast<float>(a.beta2);
  const float epsF = static_cast<float>(a.eps);
  if (!(b1f >= 0.0f && b1f < 1.0f) || !(b2f >= 0.0f && b2f < 1.0f))
    return invalid("adamw_update: betas must be in [0, 1)");
  if (!(lr >= 0.0f) || !(epsF >= 0.0f) || !(context_->weightDecay() >= 0.0f))
    return invalid("adamw_update: lr, eps and weight decay must be >= 0");
  const double lrD = lr, b1 = b1f, b2 = b2f;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  return cuda::AdamwScalars{b1f,
                            b2f,
                            static_cast<float>(1.0 - b1),
                            static_cast<float>(1.0 - b2),
                            static_cast<float>(std::sqrt(bc2)),
                            static_cast<float>(lrD / bc1),
                            epsF};
}

float CudaBackend::adamwDecay(const kargs::AdamwArgs &a) const {
  const double lrD = context_->learningRate();
  return static_cast<float>(1.0 - lrD * (a.decay ? context_->weightDecay() : 0.0f));
}

Status CudaBackend::adamw(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::AdamwArgs a, kargs::decodeAdamw(instr, *context_));
  LLMIR_ASSIGN_OR_RETURN(const cuda::AdamwScalars c, adamwScalars(a));
  LLMIR_ASSIGN_OR_RETURN(const cuda::AdamwLive *live, adamwLive(instr));
  if (capture_ && !a.lossScaled) { // the executor's gradient check, read back after the replay
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchFindNonFinite(ptr<float>(*a.grad), a.grad->numElements(), dFlag_, stream_);
    LLMIR_RETURN_IF_ERROR(onFlag(instr, [this, instr](unsigned long long bad) -> Status {
      if (bad == kNoBad)
        return Status::ok();
      StatusOr<kargs::AdamwArgs> args = kargs::decodeAdamw(instr, *context_);
      return args.isOk() ? kargs::nonFiniteGradient(*args, static_cast<int64_t>(bad), *context_)
                         : args.status();
    }));
  }
  cuda::launchAdamw(ptr<float>(*a.param) + a.paramOffset, ptr<float>(*a.grad),
                    ptr<float>(*a.m), ptr<float>(*a.v), a.grad->numElements(),
                    live ? (a.decay ? 1.0f : 0.0f) : adamwDecay(a), c.beta1, c.beta2,
                    c.oneMinusB1, c.oneMinusB2, c.bc2Sqrt, c.stepSize, c.eps,
                    a.normSq ? ptr<float>(*a.normSq) : nullptr, context_->clipGradNorm(),
                    a.lossScaled ? 1.0f / context_->lossScale() : 0.0f, stream_, live);
  return Status::ok();
}

Status CudaBackend::adamwMulti(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const std::vector<kargs::AdamwArgs> updates,
                         kargs::decodeAdamwMulti(instr));
  const kargs::AdamwArgs &u = updates.front();
  LLMIR_ASSIGN_OR_RETURN(const cuda::AdamwScalars c, adamwScalars(u));
  LLMIR_ASSIGN_OR_RETURN(const cuda::AdamwLive *live, adamwLive(instr));
  // Without loss scaling a non-finite gradient is an error (the executor's
  // check of adamw, fused into the update): the kernels flag the first one.
  const bool check = !u.lossScaled;
  if (check)
    LLMIR_RETURN_IF_ERROR(resetFlag());
  cuda::AdamwTensors t;
  auto flush = [&](int first) {
    cuda::launchAdamwMulti(t, first, c, u.normSq ? ptr<float>(*u.normSq) : nullptr,
                           context_->clipGradNorm(),
                           u.lossScaled ? 1.0f / context_->lossScale() : 0.0f,
                           check ? dFlag_ : nullptr, stream_, live);
    t.count = 0;
  };
  for (size_t i = 0; i < updates.size(); ++i) {
    const kargs::AdamwArgs &a = updates[i];
    t.param[t.count] = ptr<float>(*a.param);
    t.grad[t.count] = ptr<float>(*a.grad);
    t.m[t.count] = ptr<float>(*a.m);
    t.v[t.count] = ptr<float>(*a.v);
    t.n[t.count] = a.grad->numElements();
    t.decay[t.count] = live ? (a.decay ? 1.0f : 0.0f) : adamwDecay(a);
    if (++t.count == cuda::kAdamwMultiMax || i + 1 == updates.size())
      flush(static_cast<int>(i + 1) - t.count);
  }
  if (!check)
    return Status::ok();
  return onFlag(instr, [this, instr](unsigned long long bad) -> Status {
    if (bad == kNoBad)
      return Status::ok();
    StatusOr<std::vector<kargs::AdamwArgs>> all = kargs::decodeAdamwMulti(instr);
    if (!all.isOk())
      return all.status();
    const size_t k = static_cast<size_t>(bad >> 40);
    return kargs::nonFiniteGradient((*all)[k], static_cast<int64_t>(bad & ((1ull << 40) - 1)),
                                    *context_);
  });
}

Status CudaBackend::lossScale(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkLossScale(instr));
  StatusOr<const float *> live = stepInput(1, [this](float *dst) {
    *dst = context_->lossScale();
    return Status::ok();
  });
  if (!live.isOk())
    return live.status();
  if (*live) // a recorded step: this step's scale, copied from the step inputs
    LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(instr.outs[0]), *live, sizeof(float),
                                   cudaMemcpyDeviceToDevice, stream_),
                   "loss_scale");
  else
    cuda::launchFill(ptr<float>(instr.outs[0]), 1, context_->lossScale(), stream_);
  return Status::ok();
}

Status CudaBackend::gradNormSq(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkGradNormSq(instr));
  cuda::launchGradNormSq(ptr<float>(instr.ins[0]), instr.ins[0].numElements(),
                         ptr<float>(instr.outs[0]), stream_);
  return Status::ok();
}

Status CudaBackend::accumulate(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  float *acc = ptr<float>(instr.outs[0]);
  cuda::launchBinary(cuda::Binary::Add, acc, ptr<float>(instr.ins[0]), acc,
                     instr.outs[0].numElements(), stream_);
  return Status::ok();
}

// ---- text generation (KV cache) ----------------------------------------------------
Status CudaBackend::checkPositions(const Instr &instr, const std::vector<int64_t> *start,
                                   int64_t batch, int64_t seq, int64_t maxSeq) {
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first = start ? (*start)[b] : 0;
    if (first < 0 || first + seq > maxSeq)
      return invalid(instr.kernel + ": sequence " + std::to_string(b) + ": positions " +
                     std::to_string(first) + " .. " + std::to_string(first + seq - 1) +
                     " do not fit a cache of " + std::to_string(maxSeq) +
                     " positions (--max-seq)");
  }
  return Status::ok();
}

Status CudaBackend::kvCacheWrite(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::KvCacheWriteArgs w,
                         kargs::decodeKvCacheWrite(instr));
  const BufferRef &x = *w.x, &cache = *w.cache;
  const int64_t batch = w.batch, seq = w.seq, kvHeads = w.kvHeads, maxSeq = w.maxSeq,
                headDim = w.headDim;
  std::pair<const void *, bool> startDev{nullptr, true};
  if (w.positions)
    startDev = {ptr<uint8_t>(*w.positions), w.positions->dtype == ScalarType::I64};
  if (batch > 0 && seq > 0 && kvHeads > 0 && headDim > 0)
    LLMIR_RETURN_IF_ERROR(hostCheck([this, instr, batch, seq, maxSeq]() -> Status {
      const BufferRef *positions = instr.ins.size() > 1 ? &instr.ins[1] : nullptr;
      if (!positions)
        return checkPositions(instr, nullptr, batch, seq, maxSeq);
      StatusOr<std::vector<int64_t>> start = hostIds(instr, *positions);
      return start.isOk() ? checkPositions(instr, &*start, batch, seq, maxSeq) : start.status();
    }));
  cuda::launchKvCacheWrite(ptr<float>(x), startDev.first, startDev.second,
                           ptr<float>(cache), batch, seq, kvHeads, maxSeq, headDim, s);
  return Status::ok();
}

Status CudaBackend::cacheAttention(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::CacheAttentionArgs c,
                         kargs::decodeCacheAttention(instr));
  const BufferRef &q = instr.ins[0], &kc = instr.ins[1], &vc = instr.ins[2],
                  &pos = instr.ins[3], &o = instr.outs[0];
  // q, caches and out of one float type run directly; a mix runs f32 staged.
  const ScalarType type = q.dtype;
  const bool uniform = kc.dtype == type && vc.dtype == type && o.dtype == type;
  if (!uniform)
    return runStaged(instr, &CudaBackend::cacheAttention);
  const int64_t heads = c.heads, kvHeads = c.kvHeads;
  if (heads <= 0 || kvHeads <= 0 || kc.shape[3] <= 0 || heads % kvHeads != 0)
    return invalid("cache_attention: heads (" + std::to_string(heads) +
                   ") must be a positive multiple of kvHeads (" +
                   std::to_string(kvHeads) + ") and headDim > 0");
  const int64_t batch = q.shape[0], seq = q.shape[1], maxSeq = kc.shape[2];
  const int64_t headDim = kc.shape[3];
  if (batch > 0 && seq > 0)
    LLMIR_RETURN_IF_ERROR(hostCheck([this, instr, pos, batch, seq, maxSeq]() -> Status {
      StatusOr<std::vector<int64_t>> start = hostIds(instr, pos);
      return start.isOk() ? checkPositions(instr, &*start, batch, seq, maxSeq) : start.status();
    }));
  const bool i64 = pos.dtype == ScalarType::I64;
  if (type != ScalarType::F32 || cuda::useSplitCacheAttention(batch, seq, heads, maxSeq)) {
    if (headDim > cuda::kMaxAttentionHeadDim)
      return Status::error(StatusCode::Unimplemented,
                           instr.describe() + ": head dimension " + std::to_string(headDim) +
                               " exceeds the CUDA kernel's " +
                               std::to_string(cuda::kMaxAttentionHeadDim));
    StatusOr<uint8_t *> tmp = scratch(
        std::max<int64_t>(1, cuda::splitCachePartialFloats(batch, seq, heads, maxSeq, headDim)) *
        int64_t(sizeof(float)));
    if (!tmp.isOk())
      return tmp.status();
    const cuda::CacheType ct = type == ScalarType::F32    ? cuda::CacheType::F32
                               : type == ScalarType::BF16 ? cuda::CacheType::Bf16
                                                          : cuda::CacheType::F16;
    cuda::launchCacheAttentionSplit(ct, arena_ + q.offset, arena_ + kc.offset, arena_ + vc.offset,
                                    arena_ + pos.offset, i64, arena_ + o.offset,
                                    reinterpret_cast<float *>(*tmp), batch, seq, heads, kvHeads,
                                    maxSeq, headDim, static_cast<float>(c.scale), s);
    return Status::ok();
  }
  StatusOr<uint8_t *> tmp =
      scratch(std::max<int64_t>(1, batch * heads * seq * maxSeq) * int64_t(sizeof(float)));
  if (!tmp.isOk())
    return tmp.status();
  cuda::launchCacheAttention(ptr<float>(q), ptr<float>(kc), ptr<float>(vc), ptr<uint8_t>(pos),
                             i64, ptr<float>(o), reinterpret_cast<float *>(*tmp), batch, seq,
                             heads, kvHeads, maxSeq, headDim, static_cast<float>(c.scale), s);
  return Status::ok();
}

Status CudaBackend::ropeAt(const Instr &instr) {
  cudaStream_t s = stream_;
  LLMIR_ASSIGN_OR_RETURN(const kargs::RopeAtArgs r, kargs::decodeRopeAt(instr));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  const int64_t heads = r.heads, batch = x.shape[0], seq = x.shape[1],
                headDim = r.headDim;
  const double theta = r.theta;
  if (headDim % 2 != 0 || !(theta > 0.0) || !std::isfinite(theta))
    return invalid("rope_at: rope needs an even head dimension and theta > 0");
  StatusOr<std::vector<int64_t>> start = hostIds(instr, instr.ins[1]);
  if (!start.isOk())
    return start.status();
  const int64_t stride = seq * x.shape[2];
  for (int64_t b = 0; b < batch; ++b) {
    if ((*start)[b] < 0)
      return invalid("rope_at: sequence " + std::to_string(b) +
                     " has a negative position " + std::to_string((*start)[b]));
    auto tables = ropeTables(seq, headDim, theta, (*start)[b]);
    if (!tables.isOk())
      return tables.status();
    cuda::launchRope(ptr<float>(x) + b * stride, ptr<float>(y) + b * stride,
                     tables->first, tables->second, 1, seq, heads, headDim, false, s);
  }
  return Status::ok();
}

Status CudaBackend::lastToken(const Instr &instr) {
  cudaStream_t s = stream_;
  const std::string &k = instr.kernel;
  LLMIR_RETURN_IF_ERROR(kargs::decodeLastToken(instr));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  StatusOr<std::vector<int64_t>> lengths = hostIds(instr, instr.ins[1]);
  if (!lengths.isOk())
    return lengths.status();
  const int64_t batch = x.shape[0], seq = x.shape[1], dim = x.shape[2];
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = (*lengths)[b];
    if (len < 1 || len > seq)
      return invalid("last_token: sequence " + std::to_string(b) + " has length " +
                     std::to_string(len) + ", expected 1 .. " + std::to_string(seq) +
                     " (the prompt width)");
    if (dim > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(y) + b * dim,
                                     ptr<float>(x) + (b * seq + len - 1) * dim,
                                     dim * sizeof(float), cudaMemcpyDeviceToDevice, s),
                     k);
  }
  return Status::ok();
}

} // namespace llmir::runtime
