// Step graphs on the CUDA backend: the Executor's step recorded by stream
// capture (stream 0 forks to stream 1 through the program's events; NCCL
// collectives are recorded with them), instantiated once and replayed. The
// kernels' host reads are deferred meanwhile (CudaBackend.h: onFlag,
// hostCheck, stepInput); replay() does them around cudaGraphLaunch.
#include "CudaBackend.h"

namespace llmir::runtime {

Status CudaBackend::beginCapture(const void *key) {
  if (capture_)
    return invalid("a step graph is already being recorded");
  auto g = std::make_unique<StepGraph>();
  LLMIR_CUDA_TRY(cudaMalloc(&g->dInputs, StepGraph::kMaxInputFloats * sizeof(float)),
                 "cudaMalloc(step inputs)");
  LLMIR_CUDA_TRY(cudaMallocHost(&g->hInputs, StepGraph::kMaxInputFloats * sizeof(float)),
                 "cudaMallocHost(step inputs)");
  LLMIR_CUDA_TRY(cudaMalloc(&g->dFlags, StepGraph::kMaxFlags * sizeof(unsigned long long)),
                 "cudaMalloc(step flags)");
  LLMIR_CUDA_TRY(cudaMallocHost(&g->hFlags, StepGraph::kMaxFlags * sizeof(unsigned long long)),
                 "cudaMallocHost(step flags)");
  LLMIR_CUDA_TRY(cudaEventCreateWithFlags(&g->join, cudaEventDisableTiming),
                 "cudaEventCreate(join)");
  LLMIR_RETURN_IF_ERROR(synchronize());
  // Relaxed: the comm thread (and NCCL) call the runtime while stream 0 records.
  LLMIR_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed),
                 "cudaStreamBeginCapture");
  eagerFlag_ = dFlag_;
  capture_ = g.get();
  graphs_[key] = std::move(g);
  return Status::ok();
}

Status CudaBackend::endCapture(const void *key, bool ok) {
  StepGraph *g = capture_;
  if (!g || graphs_[key].get() != g)
    return invalid("endCapture without a matching beginCapture");
  capture_ = nullptr;
  dFlag_ = eagerFlag_;
  // The program never waits for its last sends: join stream 1 back so that
  // the capture ends with every forked stream merged into stream 0.
  cudaStreamCaptureStatus commStatus = cudaStreamCaptureStatusNone;
  cudaError_t err = cudaStreamIsCapturing(commStream_, &commStatus);
  if (err == cudaSuccess && commStatus == cudaStreamCaptureStatusActive) {
    err = cudaEventRecord(g->join, commStream_);
    if (err == cudaSuccess)
      err = cudaStreamWaitEvent(stream_, g->join, 0);
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t endErr = cudaStreamEndCapture(stream_, &graph);
  if (err == cudaSuccess)
    err = endErr;
  if (err == cudaSuccess && ok)
    err = cudaGraphInstantiate(&g->exec, graph, 0);
  if (graph)
    cudaGraphDestroy(graph);
  if (err != cudaSuccess || !ok) {
    (void)cudaGetLastError(); // a failed capture's error must not stick to the next kernel
    graphs_.erase(key);
    return err != cudaSuccess ? cudaFailure("stream capture of the step", err) : Status::ok();
  }
  return Status::ok();
}

Status CudaBackend::replay(const void *key, const KernelContext &context) {
  auto it = graphs_.find(key);
  if (it == graphs_.end() || !it->second->exec)
    return invalid("no step graph was captured for this program");
  StepGraph &g = *it->second;
  context_ = &context;
  for (const auto &check : g.before)
    LLMIR_RETURN_IF_ERROR(check());
  for (const auto &[offset, write] : g.inputs)
    LLMIR_RETURN_IF_ERROR(write(g.hInputs + offset));
  if (g.inputFloats > 0)
    LLMIR_CUDA_TRY(cudaMemcpyAsync(g.dInputs, g.hInputs, g.inputFloats * sizeof(float),
                                   cudaMemcpyHostToDevice, stream_),
                   "step inputs");
  LLMIR_CUDA_TRY(cudaGraphLaunch(g.exec, stream_), "cudaGraphLaunch");
  if (g.flags > 0)
    LLMIR_CUDA_TRY(cudaMemcpyAsync(g.hFlags, g.dFlags, g.flags * sizeof(unsigned long long),
                                   cudaMemcpyDeviceToHost, stream_),
                   "step flags");
  LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "step graph");
  for (const StepGraph::After &a : g.after)
    if (Status st = a.check(g.hFlags[a.slot]); !st.isOk())
      return Status::error(st.code(), a.what + ": " + st.message());
  return Status::ok();
}

StatusOr<const cuda::AdamwLive *> CudaBackend::adamwLive(const Instr &instr) {
  static_assert(sizeof(cuda::AdamwLive) % sizeof(float) == 0, "AdamwLive is floats");
  constexpr int kFloats = static_cast<int>(sizeof(cuda::AdamwLive) / sizeof(float));
  // The values as the eager launch computes them, from the replay's context;
  // one update's (adamw_multi shares its first update's scalars).
  StatusOr<const float *> p = stepInput(kFloats, [this, instr](float *dst) -> Status {
    StatusOr<kargs::AdamwArgs> a = kargs::AdamwArgs{};
    if (instr.isKernel(KernelId::AdamwMulti)) {
      StatusOr<std::vector<kargs::AdamwArgs>> all = kargs::decodeAdamwMulti(instr);
      a = all.isOk() ? StatusOr<kargs::AdamwArgs>(all->front())
                     : StatusOr<kargs::AdamwArgs>(all.status());
    } else {
      a = kargs::decodeAdamw(instr, *context_);
    }
    if (!a.isOk())
      return a.status();
    StatusOr<cuda::AdamwScalars> c = adamwScalars(*a);
    if (!c.isOk())
      return c.status();
    kargs::AdamwArgs decayed = *a;
    decayed.decay = true;
    const cuda::AdamwLive live{*c, adamwDecay(decayed), context_->clipGradNorm(),
                               a->lossScaled ? 1.0f / context_->lossScale() : 0.0f};
    std::memcpy(dst, &live, sizeof live);
    return Status::ok();
  });
  if (!p.isOk())
    return p.status();
  return reinterpret_cast<const cuda::AdamwLive *>(*p);
}

} // namespace llmir::runtime
