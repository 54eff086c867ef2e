// Safetensors reader (bounds-checked, slice reads for tensor-parallel shards,
// F32/BF16/F16 read as f32) and atomic writer (F32, BF16 or F16 from f32 values).
#ifndef LLMIR_RUNTIME_SAFETENSORS_H
#define LLMIR_RUNTIME_SAFETENSORS_H

#include "llmir/runtime/Float16.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace llmir::runtime {

/// Every fixed-width safetensors dtype: files holding any of them open; only
/// F32/F16/BF16 read as floats and I32/I64 as integers.
enum class DType {
  F32, F16, BF16, I32, I64,
  F64, I8, I16, U8, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2
};

/// The safetensors spelling: "F32", "F16", "BF16", "I32", "I64", ...
const char *dtypeName(DType dtype);
/// Bytes per element.
int64_t dtypeSize(DType dtype);

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  /// [dataBegin, dataEnd): byte range relative to the start of the data
  /// section (i.e. after the 8-byte length and the JSON header).
  uint64_t dataBegin = 0, dataEnd = 0;
  int64_t numElements() const;
};

/// Where the Executor reads named tensors from: one safetensors file, or a
/// Hugging Face model directory of shards (HfWeights.h).
class TensorSource {
public:
  virtual ~TensorSource() = default;
  /// What error messages name (a file or a directory).
  virtual const std::string &path() const = 0;
  /// NotFound for an unknown name.
  virtual StatusOr<TensorInfo> info(const std::string &name) const = 0;
  virtual StatusOr<std::vector<float>> readF32(const std::string &name) const = 0;
  virtual StatusOr<std::vector<float>> readSliceF32(
      const std::string &name,
      const std::vector<std::pair<int64_t, int64_t>> &ranges) const = 0;
};

/// An open safetensors file. The header is parsed and validated by open():
/// every tensor's dtype, shape and byte range (inside the file, size ==
/// elements * dtype size; the tensors tile the data section exactly — no
/// overlaps, no holes — as upstream safetensors requires). Tensor data is read on
/// demand with pread (no mmap, so a file truncated behind our back gives an
/// error, not SIGBUS). Reads are const and thread-safe. Move-only.
class SafeTensorsFile final : public TensorSource {
public:
  /// Largest accepted JSON header (bytes).
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;
  /// Deepest accepted JSON nesting.
  static constexpr int kMaxJsonDepth = 8;

  static StatusOr<SafeTensorsFile> open(const std::string &path);

  SafeTensorsFile(SafeTensorsFile &&other) noexcept;
  SafeTensorsFile &operator=(SafeTensorsFile &&other) noexcept;
  SafeTensorsFile(const SafeTensorsFile &) = delete;
  SafeTensorsFile &operator=(const SafeTensorsFile &) = delete;
  ~SafeTensorsFile() override;

  const std::string &path() const override { return path_; }
  /// Names in sorted order.
  std::vector<std::string> tensorNames() const;
  bool contains(const std::string &name) const { return tensors_.count(name) != 0; }
  /// NotFound for an unknown name.
  StatusOr<TensorInfo> info(const std::string &name) const override;
  /// The "__metadata__" string map (empty when absent).
  const std::map<std::string, std::string> &metadata() const { return metadata_; }

  /// The whole tensor as f32 (F16/BF16 converted exactly; any other dtype is
  /// InvalidArgument naming the file, the tensor and its dtype).
  StatusOr<std::vector<float>> readF32(const std::string &name) const override;
  /// A rectangular slice: ranges[d] = [begin, end) for every dim d (as many
  /// ranges as dims; a scalar takes none). Returns the slice row-major, shape
  /// (end - begin) per dim. Reads (and converts) only the bytes of the slice.
  StatusOr<std::vector<float>> readSliceF32(
      const std::string &name,
      const std::vector<std::pair<int64_t, int64_t>> &ranges) const override;
  /// An integer tensor (I32/I64) widened to int64.
  StatusOr<std::vector<int64_t>> readInt64(const std::string &name) const;

private:
  SafeTensorsFile() = default;
  Status readBytes(uint64_t dataOffset, void *dst, uint64_t size) const;

  std::string path_;
  int fd_ = -1;
  uint64_t dataStart_ = 0; // file offset of the data section
  uint64_t dataSize_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// One tensor for writeSafeTensors; `data` holds product(shape) floats, stored
/// as `dtype` (F32, or BF16/F16 rounded to nearest even).
struct SafeTensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float *data = nullptr;
  DType dtype = DType::F32;
};

/// Writes a safetensors file atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory. Tensors are
/// laid out in the given order; names must be unique and not "__metadata__";
/// dtypes other than F32, BF16 and F16 are InvalidArgument.
Status writeSafeTensors(const std::string &path,
                        const std::vector<SafeTensorToWrite> &tensors,
                        const std::map<std::string, std::string> &metadata = {});

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_SAFETENSORS_H
