// A small strict JSON parser for the subset safetensors headers use (internal):
// objects, arrays, strings and integers; no floats, true/false/null unless
// asked for (config.json), then kept as their text. And a writer.
#ifndef LLMIR_RUNTIME_SRC_IO_JSON_H
#define LLMIR_RUNTIME_SRC_IO_JSON_H

#include "llmir/runtime/Status.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmir::runtime::detail {

struct JsonValue {
  enum class Kind { Object, Array, String, Integer, Raw };
  Kind kind = Kind::Integer;
  std::string string; // a String's value; a Raw scalar's JSON text

  int64_t integer = 0;
  std::vector<JsonValue> array;
  // Object members in file order (keys are unique: duplicates are rejected).
  std::vector<std::string> keys;
  std::vector<JsonValue> values;
};

/// Parses exactly one value (surrounding whitespace allowed). Nesting deeper
/// than `maxDepth` (the top-level value is depth 1), duplicate object keys,
/// invalid escapes/UTF-16 surrogates, control characters in strings, leading
/// zeros, integer overflow and anything outside the subset are errors
/// (InvalidArgument, with the byte offset). More than `maxValues` values in
/// total is an error too: it bounds memory for hostile 100 MB headers.
/// `rawScalars` also accepts true, false, null and non-integer numbers (as
/// Kind::Raw holding their text, so writing them back is exact).
StatusOr<JsonValue> parseJsonSubset(std::string_view text, int maxDepth,
                                    int64_t maxValues = int64_t(1) << 21,
                                    bool rawScalars = false);

/// The member `key` of an object (null when absent or `v` is no object).
const JsonValue *jsonMember(const JsonValue &v, std::string_view key);

/// `v` as JSON text, objects and arrays indented by two spaces per level.
std::string writeJson(const JsonValue &v);

/// Appends `s` as a JSON string literal (quotes and escapes) to `out`.
void appendJsonString(std::string &out, std::string_view s);

} // namespace llmir::runtime::detail

#endif // LLMIR_RUNTIME_SRC_IO_JSON_H
