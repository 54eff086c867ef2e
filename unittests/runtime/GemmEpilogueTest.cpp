// Host-side checks of the fused-epilogue GEMMs' logic that needs no device:
// when the CUDA backend hands an epilogue to cuBLASLt (GemmEpiloguePolicy.h,
// the layout rules of cublasLt.h) and what the shared decoding refuses
// (kargs::decodeGemmEpilogue, used by both backends). The numerics are the
// conformance suite's (KernelConformanceTest.cpp) and test_gemm_epilogue.py's.
#include "GemmEpiloguePolicy.h"

#include "../KernelArgs.h"

#include <gtest/gtest.h>

namespace rt = llmir::runtime;

namespace {

rt::EpilogueRequest forward(int64_t n, bool aux) {
  rt::EpilogueRequest r;
  r.aux = aux;
  r.n = n;
  r.k = 64;
  return r;
}

TEST(GemmEpiloguePolicy, AcceptsAlignedShapes) {
  EXPECT_EQ(rt::epilogueRefusal(forward(3072, true)), "");
  rt::EpilogueRequest back = forward(768, true);
  back.backward = back.biasGrad = true;
  EXPECT_EQ(rt::epilogueRefusal(back), "");
}

TEST(GemmEpiloguePolicy, RefusesWhatCublasLtCannotTake) {
  // The aux matrix's leading dimension must be a multiple of 8 elements, but a
  // forward without aux (GELU_BIAS) has no such rule.
  EXPECT_NE(rt::epilogueRefusal(forward(7, true)).find("multiple of 8"), std::string::npos);
  EXPECT_EQ(rt::epilogueRefusal(forward(7, false)), "");
  rt::EpilogueRequest back = forward(7, true);
  back.backward = true;
  EXPECT_NE(rt::epilogueRefusal(back), "");
  rt::EpilogueRequest misaligned = forward(16, true);
  misaligned.vectorAlign = 4;
  EXPECT_NE(rt::epilogueRefusal(misaligned).find("bias vector"), std::string::npos);
  misaligned = forward(16, true);
  misaligned.auxAlign = 8;
  EXPECT_NE(rt::epilogueRefusal(misaligned).find("aux matrix"), std::string::npos);
  // A backward without a bias gradient reads no vector.
  rt::EpilogueRequest noBias = forward(16, true);
  noBias.backward = true;
  noBias.vectorAlign = 4;
  EXPECT_EQ(rt::epilogueRefusal(noBias), "");
  EXPECT_EQ(rt::epilogueRefusal(forward(16, false)), "");
  rt::EpilogueRequest empty = forward(16, false);
  empty.k = 0;
  EXPECT_EQ(rt::epilogueRefusal(empty), "k is 0");
}

rt::BufferRef buf(std::vector<int64_t> shape) {
  rt::BufferRef b;
  b.shape = std::move(shape);
  return b;
}

rt::Instr epilogueInstr(rt::KernelId id, const char *name, std::vector<rt::BufferRef> ins,
                        std::vector<rt::BufferRef> outs) {
  rt::Instr i;
  i.kernel = name;
  i.id = id;
  i.ins = std::move(ins);
  i.outs = std::move(outs);
  return i;
}

TEST(GemmEpilogueArgs, DecodesBothKernels) {
  auto fwd = rt::kargs::decodeGemmEpilogue(
      epilogueInstr(rt::KernelId::GemmBiasGelu, "gemm_bias_gelu",
                    {buf({4, 8}), buf({8, 16}), buf({16})}, {buf({4, 16}), buf({4, 16})}));
  ASSERT_TRUE(fwd.isOk()) << fwd.status().message();
  EXPECT_FALSE(fwd->backward);
  EXPECT_TRUE(fwd->bias && fwd->pre && !fwd->dbias);
  EXPECT_EQ(fwd->gemm.m, 4);
  EXPECT_EQ(fwd->gemm.n, 16);
  auto back = rt::kargs::decodeGemmEpilogue(
      epilogueInstr(rt::KernelId::GemmDgeluBgrad, "gemm_dgelu_bgrad",
                    {buf({4, 8}), buf({8, 16}), buf({4, 16})}, {buf({4, 16}), buf({16})}));
  ASSERT_TRUE(back.isOk()) << back.status().message();
  EXPECT_TRUE(back->backward && back->pre && back->dbias && !back->bias);
}

TEST(GemmEpilogueArgs, RefusesBadOperandsNamingTheKernel) {
  auto expectError = [](const rt::Instr &i, const std::string &what) {
    auto r = rt::kargs::decodeGemmEpilogue(i);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find(i.kernel), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
  };
  using K = rt::KernelId;
  expectError(epilogueInstr(K::GemmBiasGelu, "gemm_bias_gelu", {buf({4, 8}), buf({8, 16}), buf({8})},
                            {buf({4, 16})}),
              "does not have 16 elements");
  expectError(epilogueInstr(K::GemmDgeluBgrad, "gemm_dgelu_bgrad",
                            {buf({4, 8}), buf({8, 16}), buf({4, 8})}, {buf({4, 16})}),
              "pre-activation");
  expectError(epilogueInstr(K::GemmBiasGelu, "gemm_bias_gelu",
                            {buf({2, 4, 8}), buf({2, 8, 16}), buf({16})}, {buf({2, 4, 16})}),
              "2-D");
  expectError(epilogueInstr(K::GemmBiasGelu, "gemm_bias_gelu", {buf({4, 8}), buf({8, 16})},
                            {buf({4, 16})}),
              "3 inputs");
}

} // namespace
