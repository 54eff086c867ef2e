// Whether cuBLASLt may run a fused GEMM epilogue (GELU_AUX_BIAS, GELU_BIAS,
// DGELU_BGRAD, DGELU) on given operands, by the layout rules of cublasLt.h; the
// CUDA backend (GemmEpilogue.cu) runs a plain GEMM and its own kernels where
// not. Plain C++ (no CUDA headers) so that a host test checks the rules.
#ifndef LLMIR_RUNTIME_SRC_CUDA_GEMMEPILOGUEPOLICY_H
#define LLMIR_RUNTIME_SRC_CUDA_GEMMEPILOGUEPOLICY_H

#include <cstdint>
#include <string>

namespace llmir::runtime {

/// One fused GEMM, row-major C[m, n] (cuBLASLt sees column-major C^T: its
/// rows are our n columns).
struct EpilogueRequest {
  bool backward = false; ///< gemm_dgelu_bgrad (else gemm_bias_gelu)
  bool aux = false;      ///< the pre-activation is written (forward) / read (backward)
  bool biasGrad = false; ///< backward: the bias gradient is written
  int64_t n = 0, k = 0;
  uint32_t vectorAlign = 256; ///< byte alignment of the bias / bias-gradient vector
  uint32_t auxAlign = 256;    ///< byte alignment of the pre-activation
};

/// Empty when cuBLASLt's epilogue applies, else why not (for logs and tests).
inline std::string epilogueRefusal(const EpilogueRequest &r) {
  // A GEMM without a reduction dimension has nothing for cuBLASLt to fuse.
  if (r.k == 0)
    return "k is 0";
  // The aux matrix's leading dimension (= n) must be a multiple of 8 elements
  // (CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD).
  const bool usesAux = r.aux || r.backward;
  if (usesAux && r.n % 8 != 0)
    return "aux leading dimension " + std::to_string(r.n) + " is not a multiple of 8";
  // Vector and aux loads are 16-byte wide in the epilogue kernels.
  const bool usesVector = !r.backward || r.biasGrad;
  if (usesVector && r.vectorAlign < 16)
    return "bias vector is " + std::to_string(r.vectorAlign) + "-byte aligned, not 16";
  if (usesAux && r.auxAlign < 16)
    return "aux matrix is " + std::to_string(r.auxAlign) + "-byte aligned, not 16";
  return "";
}

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_SRC_CUDA_GEMMEPILOGUEPOLICY_H
