//===- ShortDiagnostics.cpp - diagnostics that quote at most a line's head ===//

#include "ShortDiagnostics.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Location.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <optional>

using namespace mlir;

namespace {

/// The file location a diagnostic points at, looking through names, call
/// sites and fusions like the source-manager handler does.
std::optional<FileLineColLoc> fileLocation(Location loc) {
  if (auto file = dyn_cast<FileLineColLoc>(loc))
    return file;
  if (auto name = dyn_cast<NameLoc>(loc))
    return fileLocation(name.getChildLoc());
  if (auto call = dyn_cast<CallSiteLoc>(loc))
    return fileLocation(call.getCallee());
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (std::optional<FileLineColLoc> file = fileLocation(inner))
        return file;
  return std::nullopt;
}

/// Line `line` (1-based) of `text`, or empty.
llvm::StringRef lineOf(llvm::StringRef text, unsigned line) {
  for (unsigned i = 1; i < line && !text.empty(); ++i)
    text = text.split('\n').second;
  return text.split('\n').first;
}

const char *severityName(DiagnosticSeverity severity) {
  switch (severity) {
  case DiagnosticSeverity::Error:
    return "error";
  case DiagnosticSeverity::Warning:
    return "warning";
  case DiagnosticSeverity::Note:
    return "note";
  case DiagnosticSeverity::Remark:
    return "remark";
  }
  return "error";
}

void print(llvm::raw_ostream &os, const Diagnostic &diag, FileLineColLoc file,
           llvm::StringRef line) {
  os << file.getFilename().getValue() << ":" << file.getLine() << ":"
     << file.getColumn() << ": " << severityName(diag.getSeverity()) << ": "
     << diag.str() << "\n";
  // 100 characters from the column (the op's name and first operands).
  size_t column = file.getColumn() ? file.getColumn() - 1 : 0;
  column = std::min(column, line.size());
  llvm::StringRef head = line.substr(column, 100);
  os << "  " << head << (column + head.size() < line.size() ? " ..." : "")
     << "\n  ^\n";
}

} // namespace

void llmir::installShortDiagnostics(MLIRContext &context,
                                    std::shared_ptr<const std::string> source,
                                    size_t maxLine) {
  context.getDiagEngine().registerHandler(
      [source, maxLine](Diagnostic &diag) -> LogicalResult {
        std::optional<FileLineColLoc> file = fileLocation(diag.getLocation());
        if (!file)
          return failure();
        llvm::StringRef line = lineOf(*source, file->getLine());
        if (line.size() <= maxLine)
          return failure(); // the default handler quotes it whole
        llvm::raw_ostream &os = llvm::errs();
        print(os, diag, *file, line);
        for (const Diagnostic &note : diag.getNotes()) {
          std::optional<FileLineColLoc> at = fileLocation(note.getLocation());
          if (at)
            print(os, note, *at, lineOf(*source, at->getLine()));
          else
            os << severityName(note.getSeverity()) << ": " << note.str() << "\n";
        }
        os.flush();
        return success();
      });
}
