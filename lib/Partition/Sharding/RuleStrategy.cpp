//===- RuleStrategy.cpp - partitioning rules given as data -----------------===//
//
// A PartitionStrategy read from a rules file (see Strategy.h): the way to
// choose per-weight sharding without writing C++, used by
// `--llm-partition="rules=FILE"` and by llmir.Plan(rules=...) in Python.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Strategy.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace llmir;

StringRef llmir::paramName(Value v) {
  auto arg = dyn_cast<BlockArgument>(v);
  auto func = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                  : func::FuncOp();
  if (!func)
    return {};
  auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                tfm::TfmDialect::kParamAttrName);
  return name ? name.getValue() : StringRef();
}

llvm::Expected<std::unique_ptr<RuleStrategy>>
RuleStrategy::parse(StringRef text, StringRef source) {
  auto strategy = std::make_unique<RuleStrategy>();
  auto fail = [&](unsigned line, const llvm::Twine &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   source + ":" + llvm::Twine(line) + ": " + msg);
  };
  bool sawVocab = false;
  unsigned lineNo = 0;
  SmallVector<StringRef> lines;
  text.split(lines, '\n');
  for (StringRef raw : lines) {
    ++lineNo;
    StringRef line = raw.split('#').first.trim();
    if (line.empty())
      continue;
    SmallVector<StringRef, 3> words;
    line.split(words, ' ', /*MaxSplit=*/-1, /*KeepEmpty=*/false);
    if (words.size() != 2)
      return fail(lineNo, "expected '<weight-glob> column|row|replicate|default' "
                          "or 'vocab-parallel-embedding true|false', found '" +
                              line + "'");
    if (words[0] == "vocab-parallel-embedding") {
      if (words[1] != "true" && words[1] != "false")
        return fail(lineNo, "vocab-parallel-embedding must be true or false, found '" +
                                words[1] + "'");
      if (sawVocab)
        return fail(lineNo, "vocab-parallel-embedding given twice");
      sawVocab = true;
      strategy->vocabParallel = words[1] == "true";
      continue;
    }
    std::optional<LinearRule> rule =
        llvm::StringSwitch<std::optional<LinearRule>>(words[1])
            .Case("column", LinearRule::ColumnParallel)
            .Case("row", LinearRule::RowParallel)
            .Case("replicate", LinearRule::Replicate)
            .Case("default", LinearRule::Default)
            .Default(std::nullopt);
    if (!rule)
      return fail(lineNo, "unknown rule '" + words[1] +
                              "' (expected column, row, replicate or default)");
    llvm::Expected<llvm::GlobPattern> glob = llvm::GlobPattern::create(words[0]);
    if (!glob)
      return fail(lineNo, "bad glob '" + words[0] +
                              "': " + llvm::toString(glob.takeError()));
    strategy->rules.push_back({std::move(*glob), words[0].str(), lineNo, *rule});
  }
  return strategy;
}

FailureOr<LinearRule> RuleStrategy::linearRule(tfm::LinearOp op, bool) {
  StringRef weight = paramName(op.getWeight());
  for (Rule &r : rules) {
    if (!weight.empty() && r.glob.match(weight)) {
      r.used = true;
      return r.rule;
    }
  }
  return LinearRule::Default;
}

std::vector<std::string> RuleStrategy::unusedRules() const {
  std::vector<std::string> out;
  for (const Rule &r : rules)
    if (!r.used)
      out.push_back("line " + std::to_string(r.line) + ": '" + r.text + "'");
  return out;
}
