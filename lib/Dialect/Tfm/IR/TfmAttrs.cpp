//===- TfmAttrs.cpp - #tfm.plan: verifier and accessors -------------------===//

#include "llmir/Partition/Pipeline/ScheduleKinds.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h" // the generated attribute printer

using namespace mlir;
using namespace llmir::tfm;

namespace {
/// `[e, e, ...]`, each element read by `parseElement`; `what` says what the
/// field holds when it does not parse.
ParseResult parsePlanList(AsmParser &p, StringRef field, StringRef what,
                          function_ref<OptionalParseResult()> parseElement) {
  auto error = [&] {
    return p.emitError(p.getCurrentLocation())
           << "#tfm.plan field '" << field << "': expected " << what;
  };
  if (p.parseOptionalLSquare())
    return error();
  if (succeeded(p.parseOptionalRSquare()))
    return success();
  do {
    OptionalParseResult element = parseElement();
    if (!element.has_value())
      return error();
    if (failed(*element))
      return failure();
  } while (succeeded(p.parseOptionalComma()));
  if (p.parseOptionalRSquare())
    return error();
  return success();
}
} // namespace

FailureOr<SmallVector<StringAttr>>
llmir::tfm::parsePlanAxisNames(AsmParser &p) {
  SmallVector<StringAttr> names;
  if (parsePlanList(p, "axes", "a list of axis names, e.g. [\"dp\", \"tp\"]",
                    [&]() -> OptionalParseResult {
                      std::string name;
                      if (failed(p.parseOptionalString(&name)))
                        return std::nullopt;
                      names.push_back(StringAttr::get(p.getContext(), name));
                      return success();
                    }))
    return failure();
  return names;
}

FailureOr<SmallVector<int64_t>> llmir::tfm::parsePlanAxisSizes(AsmParser &p) {
  SmallVector<int64_t> sizes;
  if (parsePlanList(p, "sizes", "a list of integers, e.g. [2, 4]",
                    [&]() -> OptionalParseResult {
                      int64_t size = 0;
                      OptionalParseResult r = p.parseOptionalInteger(size);
                      if (r.has_value() && succeeded(*r))
                        sizes.push_back(size);
                      return r;
                    }))
    return failure();
  return sizes;
}

FailureOr<bool> llmir::tfm::parsePlanFlag(AsmParser &p, StringRef field) {
  if (succeeded(p.parseOptionalKeyword("true")))
    return true;
  if (succeeded(p.parseOptionalKeyword("false")))
    return false;
  return p.emitError(p.getCurrentLocation())
         << "#tfm.plan field '" << field << "': expected true or false";
}

#define GET_ATTRDEF_CLASSES
#include "llmir/Dialect/Tfm/IR/TfmAttrs.cpp.inc"

void TfmDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "llmir/Dialect/Tfm/IR/TfmAttrs.cpp.inc"
      >();
}

namespace {
constexpr llvm::StringLiteral kRecomputes[] = {"none", "full", "selective"};
} // namespace

LogicalResult PlanAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               ArrayRef<StringAttr> axes,
                               ArrayRef<int64_t> sizes, bool sp, int64_t zero,
                               int64_t microbatches, StringRef schedule,
                               StringRef recompute, int64_t vpp,
                               StringRef layout, StringRef strategy,
                               bool reshardAfterForward, StringRef zero3Gather) {
  auto fieldError = [&](StringRef field) -> InFlightDiagnostic {
    return emitError() << "#tfm.plan field '" << field << "': ";
  };
  if (axes.size() != sizes.size())
    return fieldError("sizes") << "expected one size per axis (" << axes.size()
                               << "), found " << sizes.size();
  llvm::StringSet<> seen;
  for (auto [name, size] : llvm::zip(axes, sizes)) {
    if (!name || name.getValue().empty())
      return fieldError("axes") << "expected non-empty axis names";
    if (!seen.insert(name.getValue()).second)
      return fieldError("axes")
             << "axis '" << name.getValue() << "' appears twice";
    if (size < 1)
      return fieldError("sizes") << "axis '" << name.getValue()
                                 << "' expected >= 1 ranks, found " << size;
  }
  if (zero < 0 || zero > 3)
    return fieldError("zero") << "expected 0, 1, 2 or 3, found " << zero;
  if (!reshardAfterForward && zero != 3)
    return fieldError("reshard_after_forward")
           << "false needs zero = 3, found zero = " << zero;
  if (zero3Gather != "microbatch" && zero3Gather != "step")
    return fieldError("zero3_gather")
           << "expected \"microbatch\" or \"step\", found \"" << zero3Gather << "\"";
  if (zero3Gather == "step" && zero != 3)
    return fieldError("zero3_gather") << "\"step\" needs zero = 3, found zero = " << zero;
  if (microbatches < 1)
    return fieldError("microbatches")
           << "expected >= 1, found " << microbatches;
  if (vpp < 1)
    return fieldError("vpp") << "expected >= 1, found " << vpp;
  const pipeline::ScheduleKind *kind = pipeline::findScheduleKind(schedule);
  if (!kind)
    return fieldError("schedule")
           << "unknown schedule '" << schedule << "' (expected "
           << pipeline::scheduleKindList() << ")";
  if (vpp > 1 && vpp > kind->maxChunks)
    return fieldError("vpp") << "vpp = " << vpp << " is more model chunks per rank than schedule '"
                             << schedule << "' runs (" << kind->maxChunks << ")";
  if (!llvm::is_contained(kRecomputes, recompute))
    return fieldError("recompute") << "unknown recompute '" << recompute
                                   << "' (expected none, full or selective)";
  if (sp && !llvm::any_of(llvm::zip(axes, sizes), [](auto axis) {
        return std::get<0>(axis).getValue() == "tp" && std::get<1>(axis) > 1;
      }))
    return fieldError("sp")
           << "sequence parallelism needs a tp axis of size > 1";
  (void)layout;
  (void)strategy;
  return success();
}

std::optional<int16_t> PlanAttr::axisIndex(StringRef name) const {
  for (auto [i, axis] : llvm::enumerate(getAxes()))
    if (axis.getValue() == name)
      return static_cast<int16_t>(i);
  return std::nullopt;
}

int64_t PlanAttr::axisSize(StringRef name) const {
  std::optional<int16_t> index = axisIndex(name);
  return index ? getSizes()[*index] : 1;
}

std::optional<StringRef> PlanAttr::axisName(int64_t index) const {
  if (index < 0 || index >= static_cast<int64_t>(getAxes().size()))
    return std::nullopt;
  return getAxes()[index].getValue();
}

int64_t PlanAttr::numRanks() const {
  int64_t ranks = 1;
  for (int64_t size : getSizes())
    ranks *= size;
  return ranks;
}

bool PlanAttr::isPipelined() const {
  return getMicrobatches() > 1 || axisIndex("pp").has_value();
}
