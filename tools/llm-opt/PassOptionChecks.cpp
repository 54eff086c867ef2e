//===- PassOptionChecks.cpp - pass options checked before MLIR parses them ===//
//
// Why here and not in each pass: the option string reaches a pass through
// Pass::initializeOptions, which parses it into the pass's cl options; a
// repeated key is an ordinary second occurrence there and overwrites the
// first. Overriding initializeOptions in every pass would repeat this check
// per pass (and miss plugins and upstream passes); the driver sees every
// option string once, before MLIR parses it, so the check lives here. A
// ListOption given twice is refused too (write one comma-separated list).
// An unknown key is reported with the pass's options (which MLIR's parser
// names neither), for every registered pass, upstream or from a plugin.
//
//===----------------------------------------------------------------------===//

#include "PassOptionChecks.h"

#include "mlir/Pass/PassRegistry.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <unistd.h>

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

/// The option names of the registered pass `info`, sorted; std::nullopt if
/// they cannot be read. MLIR lists a pass's options only in its --help text,
/// which it prints to stdout (the textual pipeline of a default instance
/// leaves out list options), so that text is captured in a temporary file.
std::optional<SmallVector<std::string>>
passOptionNames(const mlir::PassInfo &info) {
  SmallString<128> path;
  int fd = -1;
  if (sys::fs::createTemporaryFile("llm-opt-help", "txt", fd, path))
    return std::nullopt;
  outs().flush();
  int saved = ::dup(STDOUT_FILENO);
  bool printed = saved >= 0 && ::dup2(fd, STDOUT_FILENO) >= 0;
  if (printed) {
    // The description column must lie past every name (the padding is
    // unsigned).
    info.printHelpStr(/*indent=*/0, info.getPassArgument().size() +
                                        info.getOptionWidth() + 8);
    outs().flush();
    ::dup2(saved, STDOUT_FILENO);
  }
  if (saved >= 0)
    ::close(saved);
  ::close(fd);
  ErrorOr<std::unique_ptr<MemoryBuffer>> help = MemoryBuffer::getFile(path);
  sys::fs::remove(path);
  if (!printed || !help)
    return std::nullopt;
  // "--pass  - summary", then one "  --option=<type>  - text" line per
  // option (enum options add "=value" lines; a long text continues in the
  // description column, past 8).
  SmallVector<std::string> names;
  SmallVector<StringRef> lines;
  (*help)->getBuffer().split(lines, '\n');
  for (StringRef line : llvm::drop_begin(lines)) {
    if (line.find_first_not_of(' ') >= 8)
      continue;
    line = line.trim();
    if (line.consume_front("--"))
      names.push_back(line.take_until([](char c) {
                            return c == '=' || isSpace(c);
                          }).str());
  }
  llvm::sort(names);
  return names;
}

/// The error for `pass`'s option string `options`, if a key repeats or is
/// not one of the pass's options.
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
  if (options.trim().empty())
    return std::nullopt;
  const mlir::PassInfo *info = mlir::PassInfo::lookup(pass);
  if (!info)
    return std::nullopt; // a pipeline or an unknown pass: MLIR reports those
  std::optional<SmallVector<std::string>> names = passOptionNames(*info);
  if (!names)
    return std::nullopt;
  for (StringRef item : splitOptions(options)) {
    StringRef key = item.split('=').first.trim();
    if (!llvm::is_contained(*names, key))
      return ("--" + pass + ": no such option '" + key + "' (" +
              (names->empty() ? std::string("the pass takes no options")
                              : "its options: " + join(*names, ", ")) +
              ")")
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
llmir::checkPassOptions(ArrayRef<char *> args) {
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
