// The program file's format, shared by the writer (the compiler's
// ExportProgram) and the reader (Program::parse): its version and its
// checksum trailer. Plain C++: no MLIR, no runtime library, so the compiler
// includes it as it includes Kernels.def.
//
// A program file is the FlatBuffers image (runtime/schema/program.fbs)
// followed by a 16-byte trailer: kChecksumTag, then programChecksum() of every
// byte before the trailer as 8 little-endian bytes.
#ifndef LLMIR_RUNTIME_PROGRAMVERSION_H
#define LLMIR_RUNTIME_PROGRAMVERSION_H

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace llmir::runtime {

/// Incremented on every incompatible change of runtime/schema/program.fbs or
/// of the file layout. 2: the checksum trailer.
constexpr uint32_t kProgramVersion = 2;

constexpr char kChecksumTag[8] = {'L', 'L', 'M', 'R', 'S', 'U', 'M', '1'};
constexpr size_t kTrailerBytes = sizeof(kChecksumTag) + sizeof(uint64_t);

/// FNV-1a, 64 bits. Each step h -> (h ^ byte) * prime is a bijection of h for
/// a given byte, so two images of one length that differ in a single byte
/// always hash differently; other damage goes unseen with odds of about 2^-64.
inline uint64_t programChecksum(const uint8_t *data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i)
    h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

/// The trailer that ends a program file whose image is data[0, size).
inline void makeTrailer(const uint8_t *data, size_t size,
                        uint8_t (&trailer)[kTrailerBytes]) {
  std::memcpy(trailer, kChecksumTag, sizeof(kChecksumTag));
  uint64_t h = programChecksum(data, size);
  for (size_t i = 0; i < sizeof(uint64_t); ++i)
    trailer[sizeof(kChecksumTag) + i] = static_cast<uint8_t>(h >> (8 * i));
}

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_PROGRAMVERSION_H
