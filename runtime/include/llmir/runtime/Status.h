// Status and StatusOr<T>: the error values every runtime call returns (no silent aborts).
#ifndef LLMIR_RUNTIME_STATUS_H
#define LLMIR_RUNTIME_STATUS_H

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace llmir::runtime {

enum class StatusCode {
  Ok = 0,
  InvalidArgument,
  NotFound,
  OutOfRange,
  Unimplemented,
  Unavailable,
  DataLoss,
  Internal,
  DeviceError,
  CommError,
};

/// Stable lower-case name of a code, e.g. "invalid_argument".
const char *statusCodeName(StatusCode code);

/// Either ok, or an error code with a human-readable message.
class [[nodiscard]] Status {
public:
  /// A default-constructed Status is ok.
  Status() = default;

  static Status ok() { return Status(); }
  /// An error; `code` must not be StatusCode::Ok (it is turned into Internal).
  static Status error(StatusCode code, std::string message);

  bool isOk() const { return code_ == StatusCode::Ok; }
  StatusCode code() const { return code_; }
  const std::string &message() const { return message_; }

  /// Prefixes the message with where the error happened: "rank R, op 'O', step S: ".
  /// Negative rank/step and an empty op are left out. An ok status stays ok.
  Status withContext(int rank, std::string_view op, int64_t step) const &;
  Status withContext(int rank, std::string_view op, int64_t step) &&;

  /// "ok" or "<code name>: <message>".
  std::string toString() const;

  friend bool operator==(const Status &a, const Status &b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }
  friend bool operator!=(const Status &a, const Status &b) { return !(a == b); }

private:
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  StatusCode code_ = StatusCode::Ok;
  std::string message_;
};

/// Thrown by StatusOr<T>::value() when it holds an error: reading a value that
/// is not there is a programming error, but it must still say why.
class BadStatusOrAccess : public std::logic_error {
public:
  explicit BadStatusOrAccess(const Status &status)
      : std::logic_error("StatusOr has no value: " + status.toString()) {}
};

/// A T, or the error Status explaining why there is none.
template <typename T> class [[nodiscard]] StatusOr {
public:
  StatusOr(const T &value) : value_(value) {}
  StatusOr(T &&value) : value_(std::move(value)) {}
  /// From an error status. An ok status carries no value, so it becomes Internal.
  StatusOr(Status status)
      : status_(status.isOk()
                    ? Status::error(StatusCode::Internal,
                                    "StatusOr constructed from an ok Status without a value")
                    : std::move(status)) {}

  bool isOk() const { return value_.has_value(); }
  /// Ok when a value is held, otherwise the error.
  const Status &status() const { return status_; }

  const T &value() const & {
    checkHasValue();
    return *value_;
  }
  T &value() & {
    checkHasValue();
    return *value_;
  }
  T &&value() && {
    checkHasValue();
    return std::move(*value_);
  }
  const T &operator*() const & { return value(); }
  T &operator*() & { return value(); }
  const T *operator->() const { return &value(); }
  T *operator->() { return &value(); }

private:
  void checkHasValue() const {
    if (!value_)
      throw BadStatusOrAccess(status_);
  }

  Status status_;
  std::optional<T> value_;
};

} // namespace llmir::runtime

/// Returns the Status of `expr` from the enclosing function if it is an error.
#define LLMIR_RETURN_IF_ERROR(expr)                                            \
  do {                                                                         \
    ::llmir::runtime::Status llmirStatusTmp_ = (expr);                         \
    if (!llmirStatusTmp_.isOk())                                               \
      return llmirStatusTmp_;                                                  \
  } while (false)

#endif // LLMIR_RUNTIME_STATUS_H
