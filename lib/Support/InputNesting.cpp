//===- InputNesting.cpp - refuse textual IR nested too deep ---------------===//

#include "llmir/Support/InputNesting.h"

#include "llvm/ADT/Twine.h"

#include <algorithm>

std::optional<std::string>
llmir::checkInputNesting(llvm::StringRef text, llvm::StringRef bufferName) {
  int depth = 0, line = 1;
  size_t lineStart = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      lineStart = i + 1;
    } else if (c == '"') { // a string literal, with backslash escapes
      size_t j = i + 1;
      while (j < text.size() && text[j] != '"' && text[j] != '\n')
        j += text[j] == '\\' && j + 1 < text.size() && text[j + 1] != '\n'
                 ? 2
                 : 1;
      i = j < text.size() && text[j] == '"' ? j : j - 1; // a '\n' counts
    } else if (c == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      i = std::min(text.find('\n', i), text.size()) - 1; // the '\n' counts
    } else if (c == '{' || c == '(' || c == '[') {
      if (++depth > kMaxInputNesting)
        return (bufferName + ":" + llvm::Twine(line) + ":" +
                llvm::Twine(i - lineStart + 1) +
                ": error: the input nests deeper than " +
                llvm::Twine(kMaxInputNesting) +
                " levels of {, ( and [; refusing to parse it")
            .str();
    } else if ((c == '}' || c == ')' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}
