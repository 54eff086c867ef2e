// NumPy .npy reader/writer (format 1.0/2.0/3.0, little-endian, C order) for token files and test data.
#ifndef LLMIR_RUNTIME_NPY_H
#define LLMIR_RUNTIME_NPY_H

#include "llmir/runtime/Status.h"

#include <cstdint>
#include <string>
#include <vector>

namespace llmir::runtime {

/// Supported element types: '<f4', '<i4', '<i8', '|u1', '<u2'.
enum class NpyDType { F32, I32, I64, U8, U16 };

struct NpyArray {
  NpyDType dtype = NpyDType::F32;
  std::vector<int64_t> shape;
  /// Raw little-endian element bytes, C order.
  std::vector<uint8_t> bytes;

  int64_t numElements() const;
  /// The data as float; only for F32 arrays (InvalidArgument otherwise).
  StatusOr<std::vector<float>> toFloat32() const;
  /// The data widened to int64; only for integer arrays.
  StatusOr<std::vector<int64_t>> toInt64() const;
};

/// The header of an .npy file: element type, shape and where the data lies.
struct NpyHeader {
  NpyDType dtype = NpyDType::F32;
  std::vector<int64_t> shape;
  uint64_t dataOffset = 0, dataBytes = 0;
};

/// Reads and checks the header of the open .npy file `fd` (`path` names it in
/// errors), including that the data size matches the shape exactly.
StatusOr<NpyHeader> readNpyHeader(int fd, const std::string &path);

/// Bytes of one element of `dtype`.
int64_t npyItemSize(NpyDType dtype);

/// Reads a .npy file; rejects big-endian or unsupported dtypes, fortran_order
/// True, malformed headers, and data sizes that do not match the shape.
StatusOr<NpyArray> readNpy(const std::string &path);

/// Writes a format-1.0 .npy ('<f4' / '<i8') atomically (temp file + fsync + rename).
Status writeNpy(const std::string &path, const float *data,
                const std::vector<int64_t> &shape);
Status writeNpy(const std::string &path, const int64_t *data,
                const std::vector<int64_t> &shape);
/// '<i4', for token files.
Status writeNpy(const std::string &path, const int32_t *data,
                const std::vector<int64_t> &shape);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_NPY_H
