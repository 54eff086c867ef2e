// The program file's format version, shared by the writer (the compiler's
// ExportProgram) and the reader (Program::parse). Plain C++: no MLIR, no runtime
// library, so the compiler includes it as it includes Kernels.def.
#ifndef LLMIR_RUNTIME_PROGRAMVERSION_H
#define LLMIR_RUNTIME_PROGRAMVERSION_H

#include <cstdint>

namespace llmir::runtime {

/// Incremented on every incompatible change of runtime/schema/program.fbs.
constexpr uint32_t kProgramVersion = 1;

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_PROGRAMVERSION_H
