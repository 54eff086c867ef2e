// The exec kernels as data, generated from Kernels.def: KernelId, name <-> id
// and the signature table. Header-only plain C++17 so the compiler (no runtime
// library) and the runtime share it.
#ifndef LLMIR_RUNTIME_KERNELREGISTRY_H
#define LLMIR_RUNTIME_KERNELREGISTRY_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace llmir::runtime {

/// Float element types a kernel runs on (KernelInfo::dtypes).
enum DTypeBits : uint8_t { kF32 = 1, kBF16 = 2, kF16 = 4 };

/// In-memory only: program files store kernel names, resolved at load.
enum class KernelId : uint16_t {
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs) Id,
#include "llmir/runtime/Kernels.def"
};

constexpr size_t kNumKernels = 0
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs) +1
#include "llmir/runtime/Kernels.def"
    ;

constexpr size_t kernelIndex(KernelId id) { return static_cast<size_t>(id); }

struct KernelInfo {
  KernelId id;
  const char *name;
  unsigned minIns, maxIns, minOuts, maxOuts;
  uint8_t dtypes; ///< DTypeBits
  const char *const *attrs; ///< required attribute names
  unsigned numAttrs;
};

namespace detail {
// A leading "" keeps the array non-empty for kernels without attributes.
#define LLMIR_KERNEL_ATTR_LIST(...) "", __VA_ARGS__
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)                    \
  inline constexpr const char *k##Id##Attrs[] = {LLMIR_KERNEL_ATTR_LIST attrs};
#include "llmir/runtime/Kernels.def"
#undef LLMIR_KERNEL_ATTR_LIST

inline constexpr KernelInfo kKernelInfos[] = {
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)                    \
  {KernelId::Id, name, minIns, maxIns, minOuts, maxOuts, static_cast<uint8_t>(dtypes),          \
   k##Id##Attrs + 1, static_cast<unsigned>(std::size(k##Id##Attrs) - 1)},
#include "llmir/runtime/Kernels.def"
};
static_assert(std::size(kKernelInfos) == kNumKernels);
} // namespace detail

/// Every kernel, in KernelId order.
inline constexpr const KernelInfo *kernelInfos() { return detail::kKernelInfos; }

inline const KernelInfo &kernelInfo(KernelId id) {
  return detail::kKernelInfos[kernelIndex(id)];
}

inline const char *kernelName(KernelId id) { return kernelInfo(id).name; }

/// The id of the kernel called `name`, if there is one.
inline std::optional<KernelId> kernelIdFromName(std::string_view name) {
  for (const KernelInfo &k : detail::kKernelInfos)
    if (name == k.name)
      return k.id;
  return std::nullopt;
}

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_KERNELREGISTRY_H
