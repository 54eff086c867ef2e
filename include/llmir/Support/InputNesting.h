//===- InputNesting.h - refuse textual IR nested too deep -------*- C++ -*-===//
//
// MLIR's parser recurses once per nested region, attribute or type, so input
// like `module {` repeated 4000 times overflows its stack. Every LLMIR tool
// that parses user MLIR (llm-opt, llm-translate --export-program) checks the
// text first.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_SUPPORT_INPUTNESTING_H
#define LLMIR_SUPPORT_INPUTNESTING_H

#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>

namespace llmir {

/// Deepest nesting of `{`, `(` and `[` (outside strings and `//` comments)
/// that the tools accept; real models nest a few tens deep.
constexpr int kMaxInputNesting = 256;

/// An error naming `bufferName` and the line and column where `text` first
/// nests deeper than kMaxInputNesting, or std::nullopt.
std::optional<std::string> checkInputNesting(llvm::StringRef text,
                                             llvm::StringRef bufferName);

} // namespace llmir

#endif // LLMIR_SUPPORT_INPUTNESTING_H
