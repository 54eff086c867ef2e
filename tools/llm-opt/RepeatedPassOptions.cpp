//===- RepeatedPassOptions.cpp - refuse a pass option given twice ---------===//
//
// Why here and not in each pass: the option string reaches a pass through
// Pass::initializeOptions, which parses it into the pass's cl options; a
// repeated key is an ordinary second occurrence there and overwrites the
// first. Overriding initializeOptions in every pass would repeat this check
// per pass (and miss plugins and upstream passes); the driver sees every
// option string once, before MLIR parses it, so the check lives here. A
// ListOption given twice is refused too (write one comma-separated list).
//
//===----------------------------------------------------------------------===//

#include "RepeatedPassOptions.h"

#include "mlir/Pass/PassRegistry.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"

using namespace llvm;

namespace {

/// Splits a pass option string ("a=1 b='x y' c={d=2 e=3}") into its
/// top-level `key=value` items, keeping quotes and nested braces whole.
SmallVector<StringRef> splitOptions(StringRef text) {
  SmallVector<StringRef> items;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && isSpace(text[i]))
      ++i;
    size_t start = i;
    int depth = 0;
    char quote = 0;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (quote) {
        quote = c == quote ? 0 : quote;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '{' || c == '[' || c == '(') {
        ++depth;
      } else if (c == '}' || c == ']' || c == ')') {
        --depth;
      } else if (depth <= 0 && isSpace(c)) {
        break;
      }
    }
    if (i > start)
      items.push_back(text.slice(start, i));
  }
  return items;
}

/// The error for `pass`'s option string `options`, if a key repeats.
std::optional<std::string> checkOptions(StringRef pass, StringRef options) {
  StringMap<StringRef> seen;
  for (StringRef item : splitOptions(options)) {
    StringRef key = item.split('=').first.trim();
    auto [it, inserted] = seen.try_emplace(key, item);
    if (!inserted)
      return ("--" + pass + ": option '" + key + "' is given twice ('" +
              it->second + "', then '" + item + "')")
          .str();
  }
  return std::nullopt;
}

bool isPassNameChar(char c) {
  return isAlnum(c) || c == '-' || c == '_' || c == '.';
}

/// Every `name{options}` of a textual pipeline.
std::optional<std::string> checkPipeline(StringRef pipeline) {
  for (size_t open = pipeline.find('{'); open != StringRef::npos;
       open = pipeline.find('{', open + 1)) {
    size_t nameStart = open;
    while (nameStart > 0 && isPassNameChar(pipeline[nameStart - 1]))
      --nameStart;
    int depth = 0;
    size_t close = open;
    for (; close < pipeline.size(); ++close) {
      depth += pipeline[close] == '{' ? 1 : pipeline[close] == '}' ? -1 : 0;
      if (depth == 0)
        break;
    }
    if (auto error = checkOptions(pipeline.slice(nameStart, open),
                                  pipeline.slice(open + 1, close)))
      return error;
  }
  return std::nullopt;
}

} // namespace

std::optional<std::string>
llmir::findRepeatedPassOption(ArrayRef<char *> args) {
  for (size_t i = 1; i < args.size(); ++i) {
    StringRef arg = args[i];
    if (arg == "--")
      break;
    if ((arg == "-p" || arg == "--pass-pipeline" || arg == "-pass-pipeline") &&
        i + 1 < args.size()) {
      if (auto error = checkPipeline(args[++i]))
        return error;
      continue;
    }
    if (!arg.starts_with("-"))
      continue;
    auto [name, options] = arg.ltrim('-').split('=');
    if (name == "pass-pipeline" || name == "p") {
      if (auto error = checkPipeline(options))
        return error;
    } else if (mlir::PassInfo::lookup(name)) {
      if (auto error = checkOptions(name, options))
        return error;
    }
  }
  return std::nullopt;
}
