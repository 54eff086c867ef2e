// The data model's functions (Instr.h): names and sizes of element types,
// buffer and instruction descriptions, and typed attribute access with errors
// that name the instruction.
#include "llmir/runtime/Instr.h"

#include <sstream>

namespace llmir::runtime {

const char *scalarTypeName(ScalarType dtype) {
  switch (dtype) {
  case ScalarType::F32: return "f32";
  case ScalarType::BF16: return "bf16";
  case ScalarType::F16: return "f16";
  case ScalarType::I32: return "i32";
  case ScalarType::I64: return "i64";
  }
  return "?";
}

int64_t scalarTypeBytes(ScalarType dtype) {
  switch (dtype) {
  case ScalarType::F32: case ScalarType::I32: return 4;
  case ScalarType::BF16: case ScalarType::F16: return 2;
  case ScalarType::I64: return 8;
  }
  return 0;
}

int64_t BufferRef::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string BufferRef::str() const {
  std::ostringstream os;
  for (int64_t d : shape)
    os << d << "x";
  os << scalarTypeName(dtype) << "@" << offset;
  return os.str();
}

const char *opKindName(OpKind kind) {
  switch (kind) {
  case OpKind::Kernel: return "kernel";
  case OpKind::Gemm: return "gemm";
  case OpKind::AllReduce: return "all_reduce";
  case OpKind::AllGather: return "all_gather";
  case OpKind::ReduceScatter: return "reduce_scatter";
  case OpKind::Broadcast: return "broadcast";
  case OpKind::Send: return "send";
  case OpKind::Recv: return "recv";
  case OpKind::EventRecord: return "event_record";
  case OpKind::EventWait: return "event_wait";
  }
  return "?";
}

std::string Instr::describe() const {
  if (kind == OpKind::Kernel)
    return "kernel '" + kernel + "'";
  return opKindName(kind);
}

namespace {
template <typename T>
StatusOr<T> attrOf(const Instr &instr, const std::string &name,
                   AttrValue::Kind kind, T AttrValue::*field,
                   const char *kindName) {
  auto it = instr.attrs.find(name);
  if (it == instr.attrs.end())
    return Status::error(StatusCode::InvalidArgument,
                         instr.describe() + ": missing attribute '" + name + "'");
  if (it->second.kind != kind)
    return Status::error(StatusCode::InvalidArgument,
                         instr.describe() + ": attribute '" + name +
                             "' is not " + kindName);
  return it->second.*field;
}
} // namespace

StatusOr<int64_t> Instr::intAttr(const std::string &name) const {
  return attrOf(*this, name, AttrValue::Kind::Int, &AttrValue::i, "an integer");
}
StatusOr<double> Instr::floatAttr(const std::string &name) const {
  return attrOf(*this, name, AttrValue::Kind::Float, &AttrValue::f, "a float");
}
StatusOr<bool> Instr::boolAttr(const std::string &name) const {
  StatusOr<int64_t> v =
      attrOf(*this, name, AttrValue::Kind::Bool, &AttrValue::i, "a boolean");
  if (!v.isOk())
    return v.status();
  return *v != 0;
}
StatusOr<std::string> Instr::stringAttr(const std::string &name) const {
  return attrOf(*this, name, AttrValue::Kind::String, &AttrValue::s, "a string");
}
StatusOr<std::vector<int64_t>> Instr::intsAttr(const std::string &name) const {
  return attrOf(*this, name, AttrValue::Kind::Ints, &AttrValue::ints,
                "an integer list");
}

Status Instr::expectOperands(size_t numIns, size_t numOuts) const {
  if (ins.size() >= numIns && outs.size() == numOuts)
    return Status::ok();
  return Status::error(StatusCode::InvalidArgument,
                       "expects " + std::to_string(numIns) + " inputs and " +
                           std::to_string(numOuts) + " outputs, found " +
                           std::to_string(ins.size()) + " and " +
                           std::to_string(outs.size()));
}

} // namespace llmir::runtime
