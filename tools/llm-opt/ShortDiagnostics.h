//===- ShortDiagnostics.h - diagnostics that quote at most a line's head -*- C++ -*-===//
//
// MLIR's source-manager handler quotes the whole source line under each
// diagnostic; a model function's signature is one line of 2-15 KB, so one
// mistake in a pass option printed pages. This handler takes diagnostics
// located on such a line and prints the location, the message and the
// line's first characters around the column instead.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_TOOLS_LLM_OPT_SHORTDIAGNOSTICS_H
#define LLMIR_TOOLS_LLM_OPT_SHORTDIAGNOSTICS_H

#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringRef.h"

#include <memory>
#include <string>

namespace llmir {

/// Registers the handler on `context` for diagnostics in `source` (the
/// input's text, kept alive by the shared pointer); lines up to `maxLine`
/// characters are left to the default handler.
void installShortDiagnostics(mlir::MLIRContext &context,
                             std::shared_ptr<const std::string> source,
                             size_t maxLine = 200);

} // namespace llmir

#endif // LLMIR_TOOLS_LLM_OPT_SHORTDIAGNOSTICS_H
