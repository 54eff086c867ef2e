//===- PassOptionChecks.h - pass options checked before MLIR parses them -*- C++ -*-===//
//
// MLIR's pass-option parser keeps the last value of a repeated option, so
// `--llm-partition="tp=2 tp=4"` silently meant tp=4, and it reports an
// unknown key as "<Pass-Options-Parser>: no such option tpp", naming neither
// the pass nor the options it has. llm-opt checks its command line first.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_TOOLS_LLM_OPT_PASSOPTIONCHECKS_H
#define LLMIR_TOOLS_LLM_OPT_PASSOPTIONCHECKS_H

#include "llvm/ADT/ArrayRef.h"

#include <optional>
#include <string>

namespace llmir {

/// The first bad pass option in `args` (a registered pass's flag,
/// `--NAME="k=v ..."`, or `NAME{k=v ...}` inside `--pass-pipeline`/`-p`): a
/// key given twice, or a key the pass does not have; as an error message
/// naming the pass and the option (and, for an unknown key, the pass's
/// options). std::nullopt when none.
std::optional<std::string> checkPassOptions(llvm::ArrayRef<char *> args);

} // namespace llmir

#endif // LLMIR_TOOLS_LLM_OPT_PASSOPTIONCHECKS_H
