// One instruction over buffers laid out in an arena, run on any backend (the
// CUDA backend tests compare two backends on a Case), and the attention
// attributes those tests share.
#ifndef LLMIR_UNITTESTS_RUNTIME_BACKENDCASE_H
#define LLMIR_UNITTESTS_RUNTIME_BACKENDCASE_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Float16.h"
#include "llmir/runtime/KernelRegistry.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace llmir::runtime::testing {

/// Fixed rank position, learning rate, weight decay and step.
class TestContext : public KernelContext {
public:
  std::pair<int, int> position{0, 1};
  StatusOr<std::pair<int, int>> axisPosition(const std::string &) const override {
    return position;
  }
  float learningRate() const override { return 1e-2f; }
  float weightDecay() const override { return 0.1f; }
  int64_t step() const override { return 2; }
};

/// One instruction over buffers laid out in an arena, run on a backend.
class Case {
public:
  /// A buffer with given contents (bytes) and shape; returns its index.
  int add(std::vector<int64_t> shape, ScalarType dtype, std::vector<uint8_t> bytes) {
    BufferRef b;
    b.shape = std::move(shape);
    b.dtype = dtype;
    b.offset = size_;
    // 64-byte (not 256-byte) offsets, as the compiler's memory plan may produce.
    size_ += (std::max<int64_t>(b.bytes(), 1) + 63) / 64 * 64;
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), b.bytes());
    bufs_.push_back(b);
    init_.push_back(std::move(bytes));
    return static_cast<int>(bufs_.size() - 1);
  }
  int f32(std::vector<int64_t> shape, const std::vector<float> &values) {
    std::vector<uint8_t> bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return add(std::move(shape), ScalarType::F32, std::move(bytes));
  }
  int random(std::vector<int64_t> shape, uint32_t seed, float stddev = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return f32(std::move(shape), randomVector(static_cast<size_t>(n), seed, 0.0f, stddev));
  }
  /// Random values rounded to a 16-bit float type (bf16 or f16).
  int random16(ScalarType dtype, std::vector<int64_t> shape, uint32_t seed, float stddev = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    std::vector<float> v = randomVector(static_cast<size_t>(n), seed, 0.0f, stddev);
    std::vector<uint8_t> bytes(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = dtype == ScalarType::BF16 ? floatToBfloat16(v[i]) : floatToHalf(v[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return add(std::move(shape), dtype, std::move(bytes));
  }
  int ids(std::vector<int64_t> shape, const std::vector<int64_t> &values, bool i64) {
    std::vector<uint8_t> bytes;
    if (i64) {
      bytes.resize(values.size() * 8);
      std::memcpy(bytes.data(), values.data(), bytes.size());
    } else {
      std::vector<int32_t> narrow(values.begin(), values.end());
      bytes.resize(narrow.size() * 4);
      std::memcpy(bytes.data(), narrow.data(), bytes.size());
    }
    return add(std::move(shape), i64 ? ScalarType::I64 : ScalarType::I32, std::move(bytes));
  }
  const BufferRef &ref(int i) const { return bufs_[i]; }

  Instr kernel(const std::string &name, std::vector<int> ins, std::vector<int> outs) const {
    Instr instr;
    instr.kind = OpKind::Kernel;
    instr.kernel = name;
    instr.id = kernelIdFromName(name).value_or(kNoKernel);
    for (int i : ins)
      instr.ins.push_back(bufs_[i]);
    for (int o : outs)
      instr.outs.push_back(bufs_[o]);
    return instr;
  }

  /// Replaces buffer `i`'s initial contents with f32 `values`.
  void set(int i, const std::vector<float> &values) {
    EXPECT_EQ(static_cast<int64_t>(values.size() * 4), bufs_[i].bytes());
    init_[i].resize(values.size() * 4);
    std::memcpy(init_[i].data(), values.data(), init_[i].size());
  }

  /// Runs `instr` on `backend` from the initial contents; returns every buffer.
  StatusOr<std::vector<std::vector<uint8_t>>>
  run(Backend &backend, const Instr &instr, const KernelContext &ctx) const {
    return runAll(backend, {instr}, ctx);
  }
  /// Runs `instrs` in order on one arena from the initial contents.
  StatusOr<std::vector<std::vector<uint8_t>>>
  runAll(Backend &backend, const std::vector<Instr> &instrs, const KernelContext &ctx) const {
    StatusOr<uint8_t *> arena = backend.allocateArena(size_);
    if (!arena.isOk())
      return arena.status();
    std::vector<std::vector<uint8_t>> out(bufs_.size());
    Status st = Status::ok();
    for (size_t i = 0; i < bufs_.size() && st.isOk(); ++i)
      st = backend.upload(*arena, bufs_[i].offset, init_[i].data(), bufs_[i].bytes());
    if (st.isOk())
      for (size_t k = 0; k < instrs.size() && st.isOk(); ++k)
        st = backend.execute(instrs[k], *arena, ctx);
    if (st.isOk())
      st = backend.synchronize();
    for (size_t i = 0; i < bufs_.size() && st.isOk(); ++i) {
      out[i].resize(static_cast<size_t>(bufs_[i].bytes()));
      st = backend.download(*arena, bufs_[i].offset, out[i].data(), bufs_[i].bytes());
    }
    backend.releaseArena(*arena);
    if (!st.isOk())
      return st;
    return out;
  }

  /// Buffer `i`'s contents (as run() returns them) widened to f32.
  std::vector<float> widened(int i, const std::vector<uint8_t> &bytes) const {
    const ScalarType t = bufs_[i].dtype;
    if (t == ScalarType::F32)
      return floats(bytes);
    std::vector<float> v(bytes.size() / 2);
    for (size_t j = 0; j < v.size(); ++j) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * j, 2);
      v[j] = t == ScalarType::BF16 ? bfloat16ToFloat(h) : halfToFloat(h);
    }
    return v;
  }
  static std::vector<float> floats(const std::vector<uint8_t> &bytes) {
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
  }

private:
  std::vector<BufferRef> bufs_;
  std::vector<std::vector<uint8_t>> init_;
  int64_t size_ = 0;
};

struct AttentionCase {
  int64_t batch, seq, heads, kvHeads, headDim;
  bool causal;
};

inline void setAttention(Instr &instr, const AttentionCase &a) {
  instr.attrs["num_heads"].i = a.heads;
  instr.attrs["num_kv_heads"].i = a.kvHeads;
  instr.attrs["scale"].kind = AttrValue::Kind::Float;
  instr.attrs["scale"].f = 1.0 / std::sqrt(static_cast<double>(a.headDim));
  instr.attrs["causal"].kind = AttrValue::Kind::Bool;
  instr.attrs["causal"].i = a.causal;
}

} // namespace llmir::runtime::testing

#endif // LLMIR_UNITTESTS_RUNTIME_BACKENDCASE_H
