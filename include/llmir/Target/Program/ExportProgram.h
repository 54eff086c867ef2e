//===- ExportProgram.h - write the .llmir program file ----------*- C++ -*-===//
//
// Serializes a module of exec.program ops (one per pipeline stage) plus the
// plan, rank map and parameter table into the FlatBuffers program file the
// runtime loads (schema: runtime/schema/program.fbs).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_TARGET_PROGRAM_EXPORTPROGRAM_H
#define LLMIR_TARGET_PROGRAM_EXPORTPROGRAM_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace llmir {

/// Writes the program file for `module`; emits a diagnostic and fails if the
/// module holds no exec.program or something cannot be encoded.
mlir::LogicalResult exportProgram(mlir::ModuleOp module, llvm::raw_ostream &os);

/// Registers `--export-program` with mlir-translate's registry.
void registerExportProgramTranslation();

} // namespace llmir

#endif // LLMIR_TARGET_PROGRAM_EXPORTPROGRAM_H
