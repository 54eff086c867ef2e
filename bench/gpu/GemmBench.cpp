// GEMM throughput of the CUDA backend's cuBLASLt path (the exact Instr the
// executor runs) on given shapes; bench/train_gpu.py compares it with torch.matmul.
//
//   llmir-cuda-gemm-bench [--tf32] [--iters N] M,N,K,TA,TB [...]
//
// Prints one line per shape: "gemm M N K TA TB ms TFLOP/s" (ms per GEMM, mean over
// N iterations after 5 warm-ups). Exits 0 with a message when there is no GPU.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Cuda.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace llmir::runtime;

namespace {

class Context final : public KernelContext {
public:
  StatusOr<std::pair<int, int>> axisPosition(const std::string &) const override {
    return std::make_pair(0, 1);
  }
  float learningRate() const override { return 0; }
  float weightDecay() const override { return 0; }
  int64_t step() const override { return 0; }
};

BufferRef buffer(int64_t offset, std::vector<int64_t> shape) {
  BufferRef b;
  b.offset = offset;
  b.shape = std::move(shape);
  return b;
}

} // namespace

int main(int argc, char **argv) {
  bool tf32 = false;
  int iters = 50;
  std::vector<std::string> shapes;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--tf32"))
      tf32 = true;
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else
      shapes.push_back(argv[i]);
  }
  if (cudaDeviceCount() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  CudaBackendOptions options;
  options.allowTf32 = tf32;
  StatusOr<std::unique_ptr<Backend>> backend = createCudaBackend(0, options);
  if (!backend.isOk()) {
    std::fprintf(stderr, "error: %s\n", backend.status().message().c_str());
    return 1;
  }
  Context ctx;
  for (const std::string &spec : shapes) {
    long long m, n, k;
    int ta, tb;
    if (std::sscanf(spec.c_str(), "%lld,%lld,%lld,%d,%d", &m, &n, &k, &ta, &tb) != 5) {
      std::fprintf(stderr, "error: bad shape '%s' (want M,N,K,TA,TB)\n", spec.c_str());
      return 1;
    }
    const int64_t aBytes = m * k * 4, bBytes = k * n * 4, cBytes = m * n * 4;
    const int64_t aOff = 0, bOff = (aBytes + 255) / 256 * 256,
                  cOff = bOff + (bBytes + 255) / 256 * 256;
    StatusOr<uint8_t *> arena = (*backend)->allocateArena(cOff + cBytes);
    if (!arena.isOk()) {
      std::fprintf(stderr, "error: %s\n", arena.status().message().c_str());
      return 1;
    }
    Instr instr;
    instr.kind = OpKind::Gemm;
    instr.ins.push_back(buffer(aOff, ta ? std::vector<int64_t>{k, m} : std::vector<int64_t>{m, k}));
    instr.ins.push_back(buffer(bOff, tb ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n}));
    instr.outs.push_back(buffer(cOff, {m, n}));
    instr.attrs["trans_a"].kind = AttrValue::Kind::Bool;
    instr.attrs["trans_a"].i = ta;
    instr.attrs["trans_b"].kind = AttrValue::Kind::Bool;
    instr.attrs["trans_b"].i = tb;
    Status st = Status::ok();
    for (int i = 0; i < 5 && st.isOk(); ++i)
      st = (*backend)->execute(instr, *arena, ctx);
    if (st.isOk())
      st = (*backend)->synchronize();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters && st.isOk(); ++i)
      st = (*backend)->execute(instr, *arena, ctx);
    if (st.isOk())
      st = (*backend)->synchronize();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count() /
        iters;
    (*backend)->releaseArena(*arena);
    if (!st.isOk()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 1;
    }
    std::printf("gemm %lld %lld %lld %d %d %.4f %.2f\n", m, n, k, ta, tb, ms,
                2.0 * m * n * k / (ms * 1e-3) / 1e12);
  }
  return 0;
}
