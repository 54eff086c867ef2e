//===- ExecDialect.cpp - exec types, kernel table and verifiers -----------===//

#include "llmir/Dialect/Exec/IR/ExecDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace llmir::exec;

//===----------------------------------------------------------------------===//
// Buffer type
//===----------------------------------------------------------------------===//

static ParseResult parseShape(AsmParser &parser, SmallVector<int64_t> &shape,
                              Type &elementType) {
  if (parser.parseDimensionList(shape, /*allowDynamic=*/false,
                                /*withTrailingX=*/true) ||
      parser.parseType(elementType))
    return failure();
  return success();
}

static void printShape(AsmPrinter &printer, ArrayRef<int64_t> shape,
                       Type elementType) {
  for (int64_t d : shape)
    printer << d << "x";
  printer << elementType;
}

#include "llmir/Dialect/Exec/IR/ExecDialect.cpp.inc"
#define GET_TYPEDEF_CLASSES
#include "llmir/Dialect/Exec/IR/ExecTypes.cpp.inc"

LogicalResult
BufferType::verify(function_ref<InFlightDiagnostic()> emitError,
                   ArrayRef<int64_t> shape, Type elementType) {
  for (int64_t d : shape)
    if (d < 0)
      return emitError() << "expected non-negative buffer dimensions, found "
                         << d;
  if (!elementType.isF32() && !elementType.isBF16() && !elementType.isF16() &&
      !elementType.isInteger(32) && !elementType.isInteger(64))
    return emitError() << "expected element type f32, bf16, f16, i32 or i64, "
                          "found "
                       << elementType;
  return success();
}

int64_t BufferType::getNumElements() const {
  int64_t n = 1;
  for (int64_t d : getShape())
    n *= d;
  return n;
}

int64_t BufferType::getSizeInBytes() const {
  return getNumElements() *
         static_cast<int64_t>(getElementType().getIntOrFloatBitWidth() / 8);
}

void ExecDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "llmir/Dialect/Exec/IR/ExecTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "llmir/Dialect/Exec/IR/ExecOps.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Kernel table
//===----------------------------------------------------------------------===//

namespace {
// The kernel list is runtime/include/llmir/runtime/Kernels.def, shared with the
// runtime's registry and backends; here it becomes the verifier's table.
#define LLMIR_KERNEL_ATTR_LIST(...) "", __VA_ARGS__
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)         \
  constexpr llvm::StringLiteral k##Id##Attrs[] = {LLMIR_KERNEL_ATTR_LIST attrs};
#include "llmir/runtime/Kernels.def"
#undef LLMIR_KERNEL_ATTR_LIST

// Each attribute list starts with a placeholder "" (so that it is never empty).
const KernelSignature kKernels[] = {
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)         \
  {name, minIns, maxIns, minOuts, maxOuts, llvm::ArrayRef(k##Id##Attrs).drop_front()},
#include "llmir/runtime/Kernels.def"
};
} // namespace

llvm::ArrayRef<KernelSignature> llmir::exec::getKernelSignatures() {
  return kKernels;
}

const KernelSignature *llmir::exec::getKernelSignature(StringRef name) {
  for (const KernelSignature &k : kKernels)
    if (k.name == name)
      return &k;
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Verifiers
//===----------------------------------------------------------------------===//

static std::string formatShape(BufferType t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  for (int64_t d : t.getShape())
    os << d << "x";
  os << t.getElementType();
  return s;
}

static bool isFloatBuffer(Value v) {
  return isa<FloatType>(cast<BufferType>(v.getType()).getElementType());
}

LogicalResult ProgramOp::verifyRegions() {
  int64_t arena = getArenaBytes();
  int64_t streams = getNumStreams();
  llvm::StringSet<> params, inputs, outputs;
  llvm::DenseMap<int64_t, int64_t> recordedOn; // event -> stream
  for (Operation &op : getBody().front()) {
    if (auto stream = op.getAttrOfType<IntegerAttr>("stream"))
      if (stream.getInt() >= streams)
        return op.emitOpError() << "expected a stream in [0, " << streams
                                << "), found " << stream.getInt();
    auto checkPlaced = [&](int64_t offset, int64_t end) -> LogicalResult {
      if (offset % kBufferAlignment != 0)
        return op.emitOpError() << "expected an offset aligned to "
                                << kBufferAlignment << " bytes, found "
                                << offset;
      if (end > arena)
        return op.emitOpError() << "buffer [" << offset << ", " << end
                                << ") exceeds the arena of " << arena
                                << " bytes";
      return success();
    };
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](AllocOp a) {
              return checkPlaced(a.getOffset(), a.getEndOffset());
            })
            .Case([&](ParamOp p) -> LogicalResult {
              if (!params.insert(p.getName()).second)
                return p.emitOpError()
                       << "parameter '" << p.getName() << "' bound twice";
              return checkPlaced(p.getOffset(), p.getEndOffset());
            })
            .Case([&](StateOp st) -> LogicalResult {
              if (!params.insert(st.getName()).second)
                return st.emitOpError()
                       << "state '" << st.getName() << "' bound twice";
              return checkPlaced(st.getOffset(), st.getEndOffset());
            })
            .Case([&](InputOp i) -> LogicalResult {
              if (!inputs.insert(i.getName()).second)
                return i.emitOpError()
                       << "input '" << i.getName() << "' bound twice";
              return checkPlaced(i.getOffset(), i.getEndOffset());
            })
            .Case([&](OutputOp o) -> LogicalResult {
              if (!outputs.insert(o.getName()).second)
                return o.emitOpError()
                       << "output '" << o.getName() << "' named twice";
              return success();
            })
            .Case([&](EventRecordOp r) {
              recordedOn[r.getEvent()] = r.getStream();
              return success();
            })
            .Case([&](EventWaitOp w) -> LogicalResult {
              auto it = recordedOn.find(w.getEvent());
              if (it == recordedOn.end())
                return w.emitOpError() << "waits for event " << w.getEvent()
                                       << ", which is not recorded before it";
              if (it->second == static_cast<int64_t>(w.getStream()))
                return w.emitOpError()
                       << "waits on stream " << w.getStream()
                       << " for event " << w.getEvent()
                       << " recorded on the same stream (already ordered)";
              return success();
            })
            .Default([](Operation *) { return success(); });
    if (failed(result))
      return failure();
  }
  return success();
}

RegionKind ProgramOp::getRegionKind(unsigned) { return RegionKind::SSACFG; }

LogicalResult AllocOp::verify() { return success(); }
LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError() << "expected a non-empty parameter name";
  return success();
}
LogicalResult StateOp::verify() {
  if (getName().empty())
    return emitOpError() << "expected a non-empty state name";
  return success();
}
LogicalResult InputOp::verify() {
  if (getName().empty())
    return emitOpError() << "expected a non-empty input name";
  return success();
}

LogicalResult ViewOp::verify() {
  BufferType from = getSource().getType(), to = getResult().getType();
  if (from.getSizeInBytes() != to.getSizeInBytes())
    return emitOpError() << "expected a view of the same " << from.getSizeInBytes()
                         << " bytes, found " << to.getSizeInBytes()
                         << " bytes (" << formatShape(from) << " -> "
                         << formatShape(to) << ")";
  return success();
}

LogicalResult GemmOp::verify() {
  BufferType a = getA().getType(), b = getB().getType(), c = getC().getType();
  int64_t rank = a.getRank();
  if ((rank != 2 && rank != 3) || b.getRank() != rank || c.getRank() != rank)
    return emitOpError() << "expected operands all of rank 2 or all of rank 3 "
                            "(batched), found "
                         << formatShape(a) << ", " << formatShape(b) << ", "
                         << formatShape(c);
  if (rank == 3 && (a.getShape()[0] != b.getShape()[0] ||
                    a.getShape()[0] != c.getShape()[0]))
    return emitOpError() << "expected equal batch sizes, found "
                         << a.getShape()[0] << ", " << b.getShape()[0]
                         << ", " << c.getShape()[0];
  auto dims = [&](BufferType t, bool trans) {
    int64_t r = t.getShape()[rank - 2], k = t.getShape()[rank - 1];
    return trans ? std::make_pair(k, r) : std::make_pair(r, k);
  };
  auto [m, kA] = dims(a, getTransA());
  auto [kB, n] = dims(b, getTransB());
  if (kA != kB)
    return emitOpError() << "expected contraction sizes to agree, found " << kA
                         << " and " << kB;
  if (c.getShape()[rank - 2] != m || c.getShape()[rank - 1] != n)
    return emitOpError() << "expected C of " << m << "x" << n
                         << " (last two dims), found " << formatShape(c);
  if (Value bias = getBias()) {
    auto bt = cast<BufferType>(bias.getType());
    if (bt.getRank() != 1 || bt.getShape()[0] != n)
      return emitOpError() << "expected bias of " << n << " elements, found "
                           << formatShape(bt);
  }
  if (a.getElementType() != b.getElementType() ||
      a.getElementType() != c.getElementType() || !isFloatBuffer(getA()))
    return emitOpError() << "expected A, B and C of one float element type, "
                            "found "
                         << a.getElementType() << ", " << b.getElementType()
                         << ", " << c.getElementType();
  return success();
}

static LogicalResult verifyGemmEpilogue(KernelOp op);

LogicalResult KernelOp::verify() {
  const KernelSignature *sig = getKernelSignature(getKernel());
  if (!sig)
    return emitOpError() << "unknown kernel '" << getKernel() << "'";
  unsigned numIns = getIns().size(), numOuts = getOuts().size();
  auto range = [](unsigned lo, unsigned hi) {
    return std::to_string(lo) + (lo == hi ? "" : " to " + std::to_string(hi));
  };
  if (numIns < sig->minIns || numIns > sig->maxIns)
    return emitOpError() << "kernel '" << getKernel() << "' expects "
                         << range(sig->minIns, sig->maxIns) << " inputs, found "
                         << numIns;
  if (numOuts < sig->minOuts || numOuts > sig->maxOuts)
    return emitOpError() << "kernel '" << getKernel() << "' expects "
                         << range(sig->minOuts, sig->maxOuts)
                         << " outputs, found " << numOuts;
  for (StringRef attr : sig->requiredAttrs)
    if (!(*this)->hasAttr(attr))
      return emitOpError() << "kernel '" << getKernel()
                           << "' requires attribute '" << attr << "'";
  // Element-wise kernels: every operand has the output's shape.
  if (llvm::is_contained({"add", "mul", "silu", "gelu_tanh", "gelu_exact",
                          "softmax", "rope", "copy", "scale"},
                         getKernel())) {
    Type outType = getOuts()[0].getType();
    for (Value in : getIns())
      if (in.getType() != outType)
        return emitOpError() << "kernel '" << getKernel()
                             << "' expects inputs of the output type "
                             << outType << ", found " << in.getType();
  }
  if (getKernel() == "attention" || getKernel() == "attention_grad")
    return verifySavedAttention();
  if (getKernel() == "gemm_bias_gelu" || getKernel() == "gemm_dgelu_bgrad")
    return verifyGemmEpilogue(*this);
  return success();
}

// gemm_bias_gelu / gemm_dgelu_bgrad (Kernels.def): a 2-D GEMM (trans_a /
// trans_b as exec.gemm's) and its epilogue operands: the bias or bias
// gradient [n], the pre-activation of the output's type.
static LogicalResult verifyGemmEpilogue(KernelOp op) {
  auto type = [](Value v) { return cast<BufferType>(v.getType()); };
  BufferType a = type(op.getIns()[0]), b = type(op.getIns()[1]), c = type(op.getOuts()[0]);
  StringRef name = op.getKernel();
  if (a.getRank() != 2 || b.getRank() != 2 || c.getRank() != 2)
    return op.emitOpError() << "kernel '" << name << "' expects 2-D A, B and output, found "
                            << formatShape(a) << ", " << formatShape(b) << ", " << formatShape(c);
  auto flag = [&](StringRef attr) {
    auto v = op->getAttrOfType<BoolAttr>(attr);
    return v && v.getValue();
  };
  int64_t m = a.getShape()[flag("trans_a") ? 1 : 0], kA = a.getShape()[flag("trans_a") ? 0 : 1];
  int64_t kB = b.getShape()[flag("trans_b") ? 1 : 0], n = b.getShape()[flag("trans_b") ? 0 : 1];
  if (kA != kB || c.getShape() != ArrayRef<int64_t>{m, n})
    return op.emitOpError() << "kernel '" << name << "' expects an output of " << m << "x" << n
                            << " and contraction sizes that agree, found " << formatShape(a)
                            << ", " << formatShape(b) << " -> " << formatShape(c);
  bool backward = name == "gemm_dgelu_bgrad";
  Value vector = backward ? (op.getOuts().size() == 2 ? op.getOuts()[1] : Value())
                          : op.getIns()[2];
  Value pre = backward ? op.getIns()[2] : (op.getOuts().size() == 2 ? op.getOuts()[1] : Value());
  if (vector && type(vector).getShape() != ArrayRef<int64_t>{n})
    return op.emitOpError() << "kernel '" << name << "' expects a bias" << (backward ? " gradient" : "")
                            << " of " << n << " elements, found " << formatShape(type(vector));
  if (pre && type(pre).getShape() != c.getShape())
    return op.emitOpError() << "kernel '" << name
                            << "' expects the pre-activation of the output's shape "
                            << formatShape(c) << ", found " << formatShape(type(pre));
  return success();
}

// The forward's saved softmax statistics: attention's outs[1], handed to
// attention_grad as ins[5] together with the forward's output (ins[4]).
LogicalResult KernelOp::verifySavedAttention() {
  bool grad = getKernel() == "attention_grad";
  if (grad && getIns().size() == 5)
    return emitOpError() << "kernel 'attention_grad' takes the saved forward "
                            "as a pair (output, log-sum-exp) or not at all, "
                            "found 5 inputs";
  Value lse = grad ? (getIns().size() == 6 ? getIns()[5] : Value())
                   : (getOuts().size() == 2 ? getOuts()[1] : Value());
  if (!lse)
    return success();
  auto q = cast<BufferType>(getIns()[0].getType());
  auto heads = (*this)->getAttrOfType<IntegerAttr>("num_heads");
  auto type = cast<BufferType>(lse.getType());
  SmallVector<int64_t> want;
  if (q.getRank() == 3 && heads)
    want = {q.getShape()[0], heads.getInt(), q.getShape()[1]};
  if (!type.getElementType().isF32() || type.getShape() != ArrayRef(want))
    return emitOpError() << "kernel '" << getKernel()
                         << "' expects the log-sum-exp as f32 [batch, heads, "
                            "seq] of query "
                         << q << ", found " << type;
  if (grad && getIns()[4].getType() != q)
    return emitOpError() << "kernel 'attention_grad' expects the saved output "
                            "of the query's type "
                         << q << ", found " << getIns()[4].getType();
  return success();
}

static LogicalResult verifyGroupSizes(Operation *op, BufferType big,
                                      BufferType small) {
  if (small.getNumElements() == 0 ||
      big.getNumElements() % small.getNumElements() != 0)
    return op->emitOpError()
           << "expected the larger buffer (" << big.getNumElements()
           << " elements) to be a whole multiple of the per-rank buffer ("
           << small.getNumElements() << " elements)";
  if (big.getElementType() != small.getElementType())
    return op->emitOpError() << "expected one element type, found "
                             << big.getElementType() << " and "
                             << small.getElementType();
  return success();
}

static LogicalResult verifyAxis(Operation *op, StringRef axis) {
  if (axis.empty())
    return op->emitOpError() << "expected a grid axis name";
  return success();
}

LogicalResult AllReduceOp::verify() {
  if (!isFloatBuffer(getBuffer()))
    return emitOpError() << "expected a float buffer to sum";
  if (getReduction() != "sum" && getReduction() != "max")
    return emitOpError() << "expected reduction \"sum\" or \"max\", found \""
                         << getReduction() << "\"";
  return verifyAxis(*this, getAxis());
}
LogicalResult AllGatherOp::verify() {
  if (failed(verifyAxis(*this, getAxis())))
    return failure();
  return verifyGroupSizes(*this, getOutput().getType(), getInput().getType());
}
LogicalResult ReduceScatterOp::verify() {
  if (failed(verifyAxis(*this, getAxis())))
    return failure();
  return verifyGroupSizes(*this, getInput().getType(), getOutput().getType());
}
LogicalResult BroadcastOp::verify() { return verifyAxis(*this, getAxis()); }
LogicalResult SendOp::verify() {
  if (getStream() == 0)
    return emitOpError() << "expected point-to-point transfers off the compute "
                            "stream 0";
  return success();
}
LogicalResult RecvOp::verify() {
  if (getStream() == 0)
    return emitOpError() << "expected point-to-point transfers off the compute "
                            "stream 0";
  return success();
}
LogicalResult EventRecordOp::verify() { return success(); }
LogicalResult EventWaitOp::verify() { return success(); }

#define GET_OP_CLASSES
#include "llmir/Dialect/Exec/IR/ExecOps.cpp.inc"
