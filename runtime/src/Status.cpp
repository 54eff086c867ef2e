// Status: code names, context prefixes and printing.
#include "llmir/runtime/Status.h"

namespace llmir::runtime {

const char *statusCodeName(StatusCode code) {
  switch (code) {
  case StatusCode::Ok:
    return "ok";
  case StatusCode::InvalidArgument:
    return "invalid_argument";
  case StatusCode::NotFound:
    return "not_found";
  case StatusCode::OutOfRange:
    return "out_of_range";
  case StatusCode::Unimplemented:
    return "unimplemented";
  case StatusCode::Unavailable:
    return "unavailable";
  case StatusCode::DataLoss:
    return "data_loss";
  case StatusCode::Internal:
    return "internal";
  case StatusCode::DeviceError:
    return "device_error";
  case StatusCode::CommError:
    return "comm_error";
  }
  return "unknown";
}

Status Status::error(StatusCode code, std::string message) {
  if (code == StatusCode::Ok)
    return Status(StatusCode::Internal,
                  "Status::error called with code ok: " + message);
  return Status(code, std::move(message));
}

static std::string contextPrefix(int rank, std::string_view op, int64_t step) {
  std::string prefix;
  auto append = [&prefix](const std::string &part) {
    if (!prefix.empty())
      prefix += ", ";
    prefix += part;
  };
  if (rank >= 0)
    append("rank " + std::to_string(rank));
  if (!op.empty())
    append("op '" + std::string(op) + "'");
  if (step >= 0)
    append("step " + std::to_string(step));
  if (!prefix.empty())
    prefix += ": ";
  return prefix;
}

Status Status::withContext(int rank, std::string_view op, int64_t step) const & {
  return Status(*this).withContext(rank, op, step);
}

Status Status::withContext(int rank, std::string_view op, int64_t step) && {
  if (isOk())
    return std::move(*this);
  message_ = contextPrefix(rank, op, step) + message_;
  return std::move(*this);
}

std::string Status::toString() const {
  if (isOk())
    return "ok";
  return std::string(statusCodeName(code_)) + ": " + message_;
}

} // namespace llmir::runtime
