// The runtime's data model: element types, arena buffers and the scheduled
// instructions a backend executes. Below both the backends and the program
// file decoding (llmir_runtime_core), so neither depends on the other.
#ifndef LLMIR_RUNTIME_INSTR_H
#define LLMIR_RUNTIME_INSTR_H

#include "llmir/runtime/KernelRegistry.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llmir::runtime {

enum class ScalarType { F32, BF16, F16, I32, I64 };
const char *scalarTypeName(ScalarType dtype);
int64_t scalarTypeBytes(ScalarType dtype);

/// A dense row-major tensor at `offset` bytes into the stage arena.
struct BufferRef {
  int64_t offset = 0;
  ScalarType dtype = ScalarType::F32;
  std::vector<int64_t> shape;
  int64_t numElements() const;
  int64_t bytes() const { return numElements() * scalarTypeBytes(dtype); }
  std::string str() const; ///< "2x16x64xf32@4096"
};

struct AttrValue {
  enum class Kind { Int, Float, String, Ints, Bool } kind = Kind::Int;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
};

enum class OpKind {
  Kernel, Gemm, AllReduce, AllGather, ReduceScatter, Broadcast, Send, Recv,
  EventRecord, EventWait
};
const char *opKindName(OpKind kind);

/// Instr::id of an instruction that is not (yet) a resolved kernel.
constexpr KernelId kNoKernel = static_cast<KernelId>(kNumKernels);

struct Instr {
  OpKind kind = OpKind::Kernel;
  std::string kernel;
  /// `kernel` resolved once at load (Program::parse); backends dispatch on it.
  KernelId id = kNoKernel;
  std::vector<BufferRef> ins, outs;
  std::map<std::string, AttrValue> attrs;
  int stream = 0;

  /// "kernel 'layer_norm'" or "all_reduce": how errors name this op.
  std::string describe() const;
  StatusOr<int64_t> intAttr(const std::string &name) const;
  StatusOr<double> floatAttr(const std::string &name) const;
  StatusOr<bool> boolAttr(const std::string &name) const;
  StatusOr<std::string> stringAttr(const std::string &name) const;
  StatusOr<std::vector<int64_t>> intsAttr(const std::string &name) const;
  bool hasAttr(const std::string &name) const { return attrs.count(name) != 0; }
  bool isKernel(KernelId k) const { return kind == OpKind::Kernel && id == k; }
  /// An AdamW parameter update: adamw or adamw_multi.
  bool isAdamw() const { return isKernel(KernelId::Adamw) || isKernel(KernelId::AdamwMulti); }
  /// The global squared gradient norm an AdamW update reads, or null.
  const BufferRef *adamwNormSq() const {
    if (isKernel(KernelId::Adamw))
      return ins.size() > 1 ? &ins[1] : nullptr;
    if (isKernel(KernelId::AdamwMulti))
      return ins.size() > outs.size() / 3 ? &ins.back() : nullptr;
    return nullptr;
  }
  /// InvalidArgument unless there are at least `ins` inputs and exactly
  /// `outs` outputs.
  Status expectOperands(size_t ins, size_t outs) const;
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_INSTR_H
