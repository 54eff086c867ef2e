//===- RepeatedPassOptions.h - refuse a pass option given twice -*- C++ -*-===//
//
// MLIR's pass-option parser keeps the last value of a repeated option, so
// `--llm-partition="tp=2 tp=4"` silently meant tp=4. llm-opt checks its
// command line for repeated options before MLIR parses it.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_TOOLS_LLM_OPT_REPEATEDPASSOPTIONS_H
#define LLMIR_TOOLS_LLM_OPT_REPEATEDPASSOPTIONS_H

#include "llvm/ADT/ArrayRef.h"

#include <optional>
#include <string>

namespace llmir {

/// The first pass option given twice in `args` (a registered pass's flag,
/// `--NAME="k=v ..."`, or `NAME{k=v ...}` inside `--pass-pipeline`/`-p`), as
/// an error message naming the pass and the option; std::nullopt when none.
std::optional<std::string> findRepeatedPassOption(llvm::ArrayRef<char *> args);

} // namespace llmir

#endif // LLMIR_TOOLS_LLM_OPT_REPEATEDPASSOPTIONS_H
