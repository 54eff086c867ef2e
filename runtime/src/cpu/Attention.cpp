// CPU attention (grouped-query, optional causal mask): per (batch, head, query-row block) two GEMMs around a
// row softmax; the backward rebuilds P from the forward's saved log-sum-exp when it has one. Under context
// parallelism (cp) the keys are the whole sequence all-gathered over cp and the causal mask compares global
// positions (ContextParallel.h): each row sees every key, masked by position.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"
#include "VecMath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkProduct;
using detail::checkSize;
using detail::invalid;

namespace {

// Query rows per attention task (and per GEMM).
constexpr int64_t kRowBlock = 64;

Status checkAttention(const char *k, int64_t batch, int64_t seq, int64_t heads,
                      int64_t kvHeads, int64_t headDim, float scale) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "batch", batch));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "seq", seq));
  if (heads <= 0 || kvHeads <= 0 || headDim <= 0)
    return invalid(k, "heads, kvHeads and headDim must be > 0, got " +
                          std::to_string(heads) + ", " + std::to_string(kvHeads) +
                          ", " + std::to_string(headDim));
  if (heads % kvHeads != 0)
    return invalid(k, "heads (" + std::to_string(heads) +
                          ") is not a multiple of kvHeads (" +
                          std::to_string(kvHeads) + ")");
  if (!std::isfinite(scale))
    return invalid(k, "scale is not finite");
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, heads, headDim}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, heads, seq, seq}));
  return Status::ok();
}

/// Softmax of row[0, valid) in place; row[valid, width) (the causal mask) -> 0.
/// Returns the log-sum-exp of row[0, valid).
float maskedSoftmaxRow(float *row, int64_t valid, int64_t width) {
  const float lse = detail::softmaxRow(row, row, valid);
  std::fill(row + valid, row + width, 0.0f);
  return lse;
}

/// The forward's P from its saved log-sum-exp: row[j] = exp(row[j] - lse) for
/// j < valid, 0 (masked) up to width.
LLMIR_VECTOR_CLONES
void probsFromLse(float *row, int64_t valid, int64_t width, float lse) {
#pragma omp simd
  for (int64_t j = 0; j < valid; ++j)
    row[j] = detail::expFloat(row[j] - lse);
  std::fill(row + valid, row + width, 0.0f);
}

/// Context parallelism: softmax of the keys of `row` at global positions <=
/// qpos (ContextParallel.h), the others 0; with `lse` given (the forward's),
/// P = exp(row - lse) instead. Returns the log-sum-exp. The keys come as 2·cp
/// chunks of consecutive global positions, so each chunk's visible keys are a
/// prefix of it: vectorized loops over those prefixes (no per-key test).
LLMIR_VECTOR_CLONES
float zigzagSoftmaxRow(float *row, int64_t width, const CpChunks &cp, int64_t qpos,
                       const float *lse) {
  const int64_t chunk = cp.chunk; // width == 2 * cp.size * chunk (checkCp)
  auto visible = [&](int64_t start) {
    return std::clamp<int64_t>(qpos - cp.key(start) + 1, 0, chunk);
  };
  float max = -std::numeric_limits<float>::infinity();
  if (!lse)
    for (int64_t start = 0; start < width; start += chunk) {
      const float *r = row + start;
      const int64_t n = visible(start);
#pragma omp simd reduction(max : max)
      for (int64_t j = 0; j < n; ++j)
        max = std::max(max, r[j]);
    }
  const float shift = lse ? *lse : max;
  double sum = 0.0;
  for (int64_t start = 0; start < width; start += chunk) {
    float *r = row + start;
    const int64_t n = visible(start);
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) {
      r[j] = detail::expFloat(r[j] - shift);
      sum += r[j];
    }
    std::fill(r + n, r + chunk, 0.0f);
  }
  if (lse)
    return *lse;
  const float inv = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (int64_t j = 0; j < width; ++j)
    row[j] *= inv;
  return max + static_cast<float>(std::log(sum));
}

LLMIR_VECTOR_CLONES
float rowDot(const float *a, const float *b, int64_t n) {
  double dot = 0.0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j)
    dot += static_cast<double>(a[j]) * b[j];
  return static_cast<float>(dot);
}

/// dS = scale * P * (dP - delta) for one row, in place over dP.
LLMIR_VECTOR_CLONES
void softmaxBackwardRow(const float *pr, float *dr, int64_t n, float scale,
                        float delta) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j)
    dr[j] = scale * pr[j] * (dr[j] - delta);
}

struct HeadView {
  int64_t qStride, kvStride; // row strides of q/out and k/v
  int64_t group;             // query heads per kv head
  int64_t seq, heads, kvHeads, headDim;
  int64_t kvSeq; // key rows: seq, or seq * cp (all-gathered over cp)
  int64_t qOffset(int64_t b, int64_t h) const {
    return b * seq * qStride + h * headDim;
  }
  int64_t kvOffset(int64_t b, int64_t h) const {
    return b * kvSeq * kvStride + (h / group) * headDim;
  }
  int64_t lseOffset(int64_t b, int64_t h) const { return (b * heads + h) * seq; }
};

/// Runs task(t, thread) for t in [0, numTasks) on the OpenMP threads, each
/// GEMM of a task on its own thread (one small GEMM per thread beats splitting
/// it across the OpenBLAS pool); the first failure is returned.
template <typename Task>
Status runTasks(int64_t numTasks, Task task) {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const bool parallel = threads > 1 && numTasks > 1;
  detail::SerialBlasScope serialBlas(parallel);
  Status failure = Status::ok();
  bool failed = false;
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t t = 0; t < numTasks; ++t) {
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    Status st = task(t, thread);
    if (!st.isOk()) {
#pragma omp critical(llmir_attention_failure)
      if (!failed) {
        failed = true;
        failure = std::move(st);
      }
    }
  }
  return failure;
}

/// Context parallelism: two chunks of the local sequence per rank.
Status checkCp(const char *k, int64_t seq, const CpChunks &cp) {
  if (cp.size < 1 || cp.rank < 0 || cp.rank >= cp.size ||
      (cp.active() && 2 * cp.chunk != seq))
    return invalid(k, "context-parallel rank " + std::to_string(cp.rank) + " of " +
                          std::to_string(cp.size) + " with chunks of " +
                          std::to_string(cp.chunk) + " does not fit " +
                          std::to_string(seq) + " local rows (two chunks)");
  return Status::ok();
}

int maxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

} // namespace

Status attentionForward(const float *q, const float *k, const float *v,
                        float *out, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kvHeads, int64_t headDim, float scale,
                        bool causal, float *lse, const CpChunks &cp) {
  const char *kn = "attention_forward";
  LLMIR_RETURN_IF_ERROR(
      checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "q", q, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "k", k, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "v", v, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "out", out, any));
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkCp(kn, seq, cp));
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim, seq * cp.size};
  const bool zigzag = causal && cp.active();
  // Tasks are (batch, head, block of query rows), largest blocks first. With
  // a causal mask, block r only needs keys [0, end of r): the scores and P V
  // GEMMs shrink to that width, which skips ~40% of the work at seq 256.
  const int64_t numBlocks = (seq + kRowBlock - 1) / kRowBlock;
  std::vector<float> scratch(static_cast<size_t>(maxThreads() * kRowBlock * hv.kvSeq));
  return runTasks(batch * heads * numBlocks, [&](int64_t t, int thread) {
    const int64_t blk = numBlocks - 1 - t % numBlocks;
    const int64_t bh = t / numBlocks;
    const int64_t b = bh / heads, h = bh % heads;
    const int64_t r0 = blk * kRowBlock;
    const int64_t rows = std::min(kRowBlock, seq - r0);
    const int64_t width = causal && !zigzag ? r0 + rows : hv.kvSeq;
    float *p = scratch.data() + thread * kRowBlock * hv.kvSeq;
    LLMIR_RETURN_IF_ERROR(gemm(false, true, rows, width, headDim, scale,
                               q + hv.qOffset(b, h) + r0 * hv.qStride, hv.qStride,
                               k + hv.kvOffset(b, h), hv.kvStride, 0.0f, p, width));
    for (int64_t i = 0; i < rows; ++i) {
      const float rowLse =
          zigzag ? zigzagSoftmaxRow(p + i * width, width, cp, cp.query(r0 + i), nullptr)
                 : maskedSoftmaxRow(p + i * width, causal ? r0 + i + 1 : width, width);
      if (lse)
        lse[hv.lseOffset(b, h) + r0 + i] = rowLse;
    }
    return gemm(false, false, rows, headDim, width, 1.0f, p, width,
                v + hv.kvOffset(b, h), hv.kvStride, 0.0f,
                out + hv.qOffset(b, h) + r0 * hv.qStride, hv.qStride);
  });
}

Status attentionBackward(const float *q, const float *k, const float *v,
                         AttentionSaved saved, const float *dout, float *dq,
                         float *dk, float *dv, int64_t batch, int64_t seq,
                         int64_t heads, int64_t kvHeads, int64_t headDim,
                         float scale, bool causal, const CpChunks &cp) {
  const char *kn = "attention_backward";
  LLMIR_RETURN_IF_ERROR(
      checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "q", q, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "k", k, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "v", v, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dout", dout, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dq", dq, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dk", dk, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dv", dv, any));
  if ((saved.out == nullptr) != (saved.lse == nullptr))
    return invalid(kn, "the forward's saved output and log-sum-exp go "
                       "together: give both or neither");
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkCp(kn, seq, cp));
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim, seq * cp.size};
  const bool zigzag = causal && cp.active();
  const size_t kvElems = static_cast<size_t>(batch * hv.kvSeq * kvHeads * headDim);
  std::memset(dk, 0, kvElems * sizeof(float));
  std::memset(dv, 0, kvElems * sizeof(float));
  // Tasks are (batch, kv head): a task alone writes its kv head's dK and dV
  // rows and its query heads' dQ rows, so no two tasks touch one output and
  // the sums run in a fixed order (deterministic for any thread count). Per
  // block of query rows, only the keys it sees (causal: [0, end of block)):
  //   P = exp(scale Q K^T - lse) (saved) or softmax(scale Q K^T), dP = dO V^T,
  //   dS = scale P (dP - delta), delta = rowsum(dO * O) (saved) or rowsum(P dP),
  //   dQ = dS K,  dK += dS^T Q,  dV += P^T dO.
  std::vector<float> scratch(static_cast<size_t>(maxThreads() * 2 * kRowBlock * hv.kvSeq));
  return runTasks(batch * kvHeads, [&](int64_t t, int thread) {
    const int64_t b = t / kvHeads, g = t % kvHeads;
    float *p = scratch.data() + thread * 2 * kRowBlock * hv.kvSeq;
    float *ds = p + kRowBlock * hv.kvSeq;
    for (int64_t h = g * hv.group; h < (g + 1) * hv.group; ++h) {
      const float *qbh = q + hv.qOffset(b, h);
      const float *dobh = dout + hv.qOffset(b, h);
      const float *kbh = k + hv.kvOffset(b, h), *vbh = v + hv.kvOffset(b, h);
      for (int64_t r0 = 0; r0 < seq; r0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, seq - r0);
        const int64_t w = causal && !zigzag ? r0 + rows : hv.kvSeq;
        const int64_t qo = r0 * hv.qStride;
        LLMIR_RETURN_IF_ERROR(gemm(false, true, rows, w, headDim, scale, qbh + qo,
                                   hv.qStride, kbh, hv.kvStride, 0.0f, p, w));
        LLMIR_RETURN_IF_ERROR(gemm(false, true, rows, w, headDim, 1.0f, dobh + qo,
                                   hv.qStride, vbh, hv.kvStride, 0.0f, ds, w));
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t valid = causal ? r0 + i + 1 : w;
          float *pr = p + i * w, *dr = ds + i * w;
          float delta;
          if (zigzag) {
            const float *rowLse = saved.lse ? saved.lse + hv.lseOffset(b, h) + r0 + i : nullptr;
            zigzagSoftmaxRow(pr, w, cp, cp.query(r0 + i), rowLse);
            delta = rowLse ? rowDot(dobh + qo + i * hv.qStride,
                                    saved.out + hv.qOffset(b, h) + qo + i * hv.qStride, headDim)
                           : rowDot(pr, dr, w);
          } else if (saved.lse) {
            probsFromLse(pr, valid, w, saved.lse[hv.lseOffset(b, h) + r0 + i]);
            delta = rowDot(dobh + qo + i * hv.qStride,
                           saved.out + hv.qOffset(b, h) + qo + i * hv.qStride, headDim);
          } else {
            maskedSoftmaxRow(pr, valid, w);
            delta = rowDot(pr, dr, w);
          }
          softmaxBackwardRow(pr, dr, w, scale, delta);
        }
        LLMIR_RETURN_IF_ERROR(gemm(false, false, rows, headDim, w, 1.0f, ds, w, kbh,
                                   hv.kvStride, 0.0f, dq + hv.qOffset(b, h) + qo,
                                   hv.qStride));
        LLMIR_RETURN_IF_ERROR(gemm(true, false, w, headDim, rows, 1.0f, ds, w, qbh + qo,
                                   hv.qStride, 1.0f, dk + hv.kvOffset(b, h), hv.kvStride));
        LLMIR_RETURN_IF_ERROR(gemm(true, false, w, headDim, rows, 1.0f, p, w, dobh + qo,
                                   hv.qStride, 1.0f, dv + hv.kvOffset(b, h), hv.kvStride));
      }
    }
    return Status::ok();
  });
}

// ---- context parallelism: one step of the ring (cp-comm=ring) ------------------------
namespace {

/// A ring of cp.size ranks (one rank: plain attention over its two chunks).
Status checkRing(const char *k, int64_t seq, const CpChunks &cp, int64_t step) {
  if (cp.size < 1 || cp.rank < 0 || cp.rank >= cp.size || 2 * cp.chunk != seq)
    return invalid(k, "context-parallel rank " + std::to_string(cp.rank) + " of " +
                          std::to_string(cp.size) + " with chunks of " +
                          std::to_string(cp.chunk) + " does not fit " +
                          std::to_string(seq) + " local rows (two chunks)");
  if (step < 0 || step >= cp.size)
    return invalid(k, "ring step " + std::to_string(step) + " needs 0 <= step < cp (" +
                          std::to_string(cp.size) + ")");
  return Status::ok();
}

/// Merges a partial attention (its output row `part` and log-sum-exp
/// `partLse`) into the running one (`out`, `lse`): weights exp(lse - new)
/// and exp(partLse - new), new = log(exp(lse) + exp(partLse)).
void mergeRow(float *out, float &lse, const float *part, float partLse, int64_t n) {
  const float hi = std::max(lse, partLse), lo = std::min(lse, partLse);
  const float merged = hi + std::log1p(std::exp(lo - hi));
  const float a = std::exp(lse - merged), b = std::exp(partLse - merged);
  for (int64_t j = 0; j < n; ++j)
    out[j] = a * out[j] + b * part[j];
  lse = merged;
}

/// Calls fn(qc, kc, diagonal) for the (query chunk, held chunk) pairs that
/// ring step `step` computes (the others are masked whole and skipped).
template <typename Fn>
Status forSeenPairs(const CpChunks &cp, int64_t step, bool causal, int qc, Fn fn) {
  for (int kc = 0; kc < 2; ++kc) {
    const CpChunks::Sees sees = cp.sees(step, qc, kc, causal);
    if (sees != CpChunks::Sees::None)
      LLMIR_RETURN_IF_ERROR(fn(kc, sees == CpChunks::Sees::Diagonal));
  }
  return Status::ok();
}

} // namespace

Status ringAttentionForward(const float *q, const float *k, const float *v, float *out,
                            float *lse, int64_t batch, int64_t seq, int64_t heads,
                            int64_t kvHeads, int64_t headDim, float scale, bool causal,
                            const CpChunks &cp, int64_t step) {
  const char *kn = "attention_ring";
  LLMIR_RETURN_IF_ERROR(checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  for (auto [name, p] : {std::pair<const char *, const void *>{"q", q}, {"k", k}, {"v", v},
                         {"out", out}, {"lse", lse}})
    LLMIR_RETURN_IF_ERROR(checkPointer(kn, name, p, any));
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkRing(kn, seq, cp, step));
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim, seq};
  if (step == 0) {
    std::fill_n(out, batch * seq * heads * headDim, 0.0f);
    std::fill_n(lse, batch * heads * seq, -std::numeric_limits<float>::infinity());
  }
  // Tasks are (batch, head, query chunk); per seen held chunk: the scores,
  // their softmax (with its log-sum-exp), P V, merged into the running rows.
  const int64_t c = cp.chunk;
  const int64_t perThread = c * c + c * headDim + c;
  std::vector<float> scratch(static_cast<size_t>(maxThreads() * perThread));
  return runTasks(batch * heads * 2, [&](int64_t t, int thread) {
    const int qc = static_cast<int>(t % 2);
    const int64_t b = t / 2 / heads, h = t / 2 % heads;
    float *p = scratch.data() + thread * perThread, *part = p + c * c, *partLse = part + c * headDim;
    const float *qb = q + hv.qOffset(b, h) + qc * c * hv.qStride;
    float *ob = out + hv.qOffset(b, h) + qc * c * hv.qStride;
    float *lb = lse + hv.lseOffset(b, h) + qc * c;
    return forSeenPairs(cp, step, causal, qc, [&](int kc, bool diagonal) -> Status {
      const int64_t kvo = hv.kvOffset(b, h) + kc * c * hv.kvStride;
      LLMIR_RETURN_IF_ERROR(gemm(false, true, c, c, headDim, scale, qb, hv.qStride, k + kvo,
                                 hv.kvStride, 0.0f, p, c));
      for (int64_t i = 0; i < c; ++i)
        partLse[i] = maskedSoftmaxRow(p + i * c, diagonal ? i + 1 : c, c);
      LLMIR_RETURN_IF_ERROR(gemm(false, false, c, headDim, c, 1.0f, p, c, v + kvo, hv.kvStride,
                                 0.0f, part, headDim));
      for (int64_t i = 0; i < c; ++i)
        mergeRow(ob + i * hv.qStride, lb[i], part + i * headDim, partLse[i], headDim);
      return Status::ok();
    });
  });
}

Status ringAttentionBackward(const float *q, const float *k, const float *v,
                             AttentionSaved saved, const float *dout, float *dq, float *dk,
                             float *dv, int64_t batch, int64_t seq, int64_t heads,
                             int64_t kvHeads, int64_t headDim, float scale, bool causal,
                             const CpChunks &cp, int64_t step) {
  const char *kn = "attention_ring_grad";
  LLMIR_RETURN_IF_ERROR(checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  for (auto [name, p] : {std::pair<const char *, const void *>{"q", q}, {"k", k}, {"v", v},
                         {"out", saved.out}, {"lse", saved.lse}, {"dout", dout}, {"dq", dq},
                         {"dk", dk}, {"dv", dv}})
    LLMIR_RETURN_IF_ERROR(checkPointer(kn, name, p, any));
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkRing(kn, seq, cp, step));
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim, seq};
  if (step == 0)
    std::fill_n(dq, batch * seq * heads * headDim, 0.0f);
  std::fill_n(dk, batch * seq * kvHeads * headDim, 0.0f);
  std::fill_n(dv, batch * seq * kvHeads * headDim, 0.0f);
  // Tasks are (batch, kv head), as in attentionBackward (one writer per
  // output row, sums in a fixed order); per query head, query chunk and seen
  // held chunk: P from the saved lse, dS = scale P (dO V^T - rowsum(dO O)),
  // dQ += dS K, dK += dS^T Q, dV += P^T dO.
  const int64_t c = cp.chunk;
  std::vector<float> scratch(static_cast<size_t>(maxThreads() * 2 * c * c));
  return runTasks(batch * kvHeads, [&](int64_t t, int thread) {
    const int64_t b = t / kvHeads, g = t % kvHeads;
    float *p = scratch.data() + thread * 2 * c * c, *ds = p + c * c;
    for (int64_t h = g * hv.group; h < (g + 1) * hv.group; ++h)
      for (int qc = 0; qc < 2; ++qc) {
        const int64_t qo = hv.qOffset(b, h) + qc * c * hv.qStride;
        const float *rowLse = saved.lse + hv.lseOffset(b, h) + qc * c;
        LLMIR_RETURN_IF_ERROR(forSeenPairs(cp, step, causal, qc, [&](int kc, bool diagonal) -> Status {
          const int64_t kvo = hv.kvOffset(b, h) + kc * c * hv.kvStride;
          LLMIR_RETURN_IF_ERROR(gemm(false, true, c, c, headDim, scale, q + qo, hv.qStride,
                                     k + kvo, hv.kvStride, 0.0f, p, c));
          LLMIR_RETURN_IF_ERROR(gemm(false, true, c, c, headDim, 1.0f, dout + qo, hv.qStride,
                                     v + kvo, hv.kvStride, 0.0f, ds, c));
          for (int64_t i = 0; i < c; ++i) {
            probsFromLse(p + i * c, diagonal ? i + 1 : c, c, rowLse[i]);
            const float delta = rowDot(dout + qo + i * hv.qStride,
                                       saved.out + qo + i * hv.qStride, headDim);
            softmaxBackwardRow(p + i * c, ds + i * c, c, scale, delta);
          }
          LLMIR_RETURN_IF_ERROR(gemm(false, false, c, headDim, c, 1.0f, ds, c, k + kvo,
                                     hv.kvStride, 1.0f, dq + qo, hv.qStride));
          LLMIR_RETURN_IF_ERROR(gemm(true, false, c, headDim, c, 1.0f, ds, c, q + qo,
                                     hv.qStride, 1.0f, dk + kvo, hv.kvStride));
          return gemm(true, false, c, headDim, c, 1.0f, p, c, dout + qo, hv.qStride, 1.0f,
                      dv + kvo, hv.kvStride);
        }));
      }
    return Status::ok();
  });
}

} // namespace llmir::runtime
