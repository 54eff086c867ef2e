// A small strict JSON parser for the subset safetensors headers use: objects, arrays, strings, integers
// (and, when asked, the other scalars as raw text); a writer for the same values.
#include "Json.h"

#include <cstring>
#include <limits>
#include <optional>
#include <set>

namespace llmir::runtime::detail {
namespace {

class Parser {
public:
  Parser(std::string_view text, int maxDepth, int64_t maxValues, bool rawScalars)
      : text_(text), maxDepth_(maxDepth), valuesLeft_(maxValues), rawScalars_(rawScalars) {}

  StatusOr<JsonValue> parseDocument() {
    JsonValue v;
    skipSpace();
    LLMIR_RETURN_IF_ERROR(parseValue(v, 1));
    skipSpace();
    if (pos_ != text_.size())
      return error("trailing characters after the JSON value");
    return v;
  }

private:
  Status error(const std::string &what) const {
    return Status::error(StatusCode::InvalidArgument,
                         "JSON: " + what + " at byte " + std::to_string(pos_));
  }

  void skipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Status parseValue(JsonValue &v, int depth) {
    if (depth > maxDepth_)
      return error("nesting deeper than " + std::to_string(maxDepth_));
    if (pos_ >= text_.size())
      return error("unexpected end of input");
    if (--valuesLeft_ < 0)
      return error("too many values");
    const char c = text_[pos_];
    if (c == '{')
      return parseObject(v, depth);
    if (c == '[')
      return parseArray(v, depth);
    if (c == '"') {
      v.kind = JsonValue::Kind::String;
      return parseString(v.string);
    }
    if (rawScalars_)
      if (std::optional<std::string> raw = rawScalar()) {
        v.kind = JsonValue::Kind::Raw;
        v.string = std::move(*raw);
        return Status::ok();
      }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::Integer;
      return parseInteger(v.integer);
    }
    return error(std::string("unsupported value starting with '") + c + "'");
  }

  Status parseObject(JsonValue &v, int depth) {
    v.kind = JsonValue::Kind::Object;
    ++pos_; // '{'
    skipSpace();
    if (consume('}'))
      return Status::ok();
    std::set<std::string> seen;
    while (true) {
      skipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"')
        return error("expected a string key");
      std::string key;
      LLMIR_RETURN_IF_ERROR(parseString(key));
      if (!seen.insert(key).second)
        return error("duplicate key \"" + key + "\"");
      skipSpace();
      if (!consume(':'))
        return error("expected ':'");
      skipSpace();
      JsonValue member;
      LLMIR_RETURN_IF_ERROR(parseValue(member, depth + 1));
      v.keys.push_back(std::move(key));
      v.values.push_back(std::move(member));
      skipSpace();
      if (consume(','))
        continue;
      if (consume('}'))
        return Status::ok();
      return error("expected ',' or '}'");
    }
  }

  Status parseArray(JsonValue &v, int depth) {
    v.kind = JsonValue::Kind::Array;
    ++pos_; // '['
    skipSpace();
    if (consume(']'))
      return Status::ok();
    while (true) {
      skipSpace();
      JsonValue element;
      LLMIR_RETURN_IF_ERROR(parseValue(element, depth + 1));
      v.array.push_back(std::move(element));
      skipSpace();
      if (consume(','))
        continue;
      if (consume(']'))
        return Status::ok();
      return error("expected ',' or ']'");
    }
  }

  size_t digitsFrom(size_t p) const {
    while (p < text_.size() && text_[p] >= '0' && text_[p] <= '9')
      ++p;
    return p;
  }

  /// true/false/null or a number with a fraction or exponent, consumed; the
  /// rest (integers, malformed text) is left to the strict parser.
  std::optional<std::string> rawScalar() {
    for (const char *lit : {"true", "false", "null"})
      if (text_.substr(pos_, std::strlen(lit)) == lit) {
        pos_ += std::strlen(lit);
        return std::string(lit);
      }
    size_t p = pos_ + (text_[pos_] == '-' ? 1 : 0);
    const size_t intEnd = digitsFrom(p);
    if (intEnd == p || (text_[p] == '0' && intEnd > p + 1))
      return std::nullopt;
    p = intEnd;
    bool fractional = false;
    if (p < text_.size() && text_[p] == '.') {
      const size_t end = digitsFrom(p + 1);
      if (end == p + 1)
        return std::nullopt;
      p = end;
      fractional = true;
    }
    if (p < text_.size() && (text_[p] == 'e' || text_[p] == 'E')) {
      size_t q = p + 1;
      if (q < text_.size() && (text_[q] == '+' || text_[q] == '-'))
        ++q;
      const size_t end = digitsFrom(q);
      if (end == q)
        return std::nullopt;
      p = end;
      fractional = true;
    }
    if (!fractional)
      return std::nullopt;
    std::string raw(text_.substr(pos_, p - pos_));
    pos_ = p;
    return raw;
  }

  Status parseInteger(int64_t &out) {
    const bool negative = consume('-');
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9')
      return error("expected a digit");
    if (text_[pos_] == '0' && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' &&
        text_[pos_ + 1] <= '9')
      return error("leading zero in a number");
    // Accumulate as a negative number: its range includes INT64_MIN.
    int64_t value = 0;
    const int64_t minValue = std::numeric_limits<int64_t>::min();
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const int digit = text_[pos_] - '0';
      if (value < (minValue + digit) / 10)
        return error("integer out of the int64 range");
      value = value * 10 - digit;
      ++pos_;
    }
    if (pos_ < text_.size() &&
        (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E'))
      return error("non-integer numbers are not supported");
    if (!negative) {
      if (value == minValue)
        return error("integer out of the int64 range");
      value = -value;
    }
    out = value;
    return Status::ok();
  }

  Status parseHex4(uint32_t &out) {
    if (text_.size() - pos_ < 4)
      return error("truncated \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      out <<= 4;
      if (c >= '0' && c <= '9')
        out |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        out |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        out |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return error("invalid hex digit in \\u escape");
    }
    return Status::ok();
  }

  static void appendUtf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  Status parseString(std::string &out) {
    ++pos_; // opening quote
    while (true) {
      if (pos_ >= text_.size())
        return error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"')
        return Status::ok();
      if (static_cast<unsigned char>(c) < 0x20)
        return error("control character in a string");
      if (c != '\\') {
        out += c; // UTF-8 bytes pass through unchanged
        continue;
      }
      if (pos_ >= text_.size())
        return error("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp;
        LLMIR_RETURN_IF_ERROR(parseHex4(cp));
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          return error("unpaired low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (!(consume('\\') && consume('u')))
            return error("unpaired high surrogate");
          uint32_t low;
          LLMIR_RETURN_IF_ERROR(parseHex4(low));
          if (low < 0xDC00 || low > 0xDFFF)
            return error("invalid low surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        return error(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view text_;
  int maxDepth_;
  int64_t valuesLeft_;
  bool rawScalars_;
  size_t pos_ = 0;
};

} // namespace

StatusOr<JsonValue> parseJsonSubset(std::string_view text, int maxDepth,
                                    int64_t maxValues, bool rawScalars) {
  return Parser(text, maxDepth, maxValues, rawScalars).parseDocument();
}

const JsonValue *jsonMember(const JsonValue &v, std::string_view key) {
  if (v.kind != JsonValue::Kind::Object)
    return nullptr;
  for (size_t i = 0; i < v.keys.size(); ++i)
    if (v.keys[i] == key)
      return &v.values[i];
  return nullptr;
}

namespace {
void appendJson(std::string &out, const JsonValue &v, int indent) {
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  switch (v.kind) {
  case JsonValue::Kind::String: appendJsonString(out, v.string); return;
  case JsonValue::Kind::Integer: out += std::to_string(v.integer); return;
  case JsonValue::Kind::Raw: out += v.string; return;
  case JsonValue::Kind::Array:
  case JsonValue::Kind::Object: {
    const bool object = v.kind == JsonValue::Kind::Object;
    const size_t n = object ? v.values.size() : v.array.size();
    out += object ? '{' : '[';
    for (size_t i = 0; i < n; ++i) {
      out += (i ? ",\n" : "\n") + pad;
      if (object) {
        appendJsonString(out, v.keys[i]);
        out += ": ";
      }
      appendJson(out, object ? v.values[i] : v.array[i], indent + 2);
    }
    if (n)
      out += "\n" + std::string(static_cast<size_t>(indent), ' ');
    out += object ? '}' : ']';
    return;
  }
  }
}
} // namespace

std::string writeJson(const JsonValue &v) {
  std::string out;
  appendJson(out, v, 0);
  out += '\n';
  return out;
}

void appendJsonString(std::string &out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    } else {
      out += c;
    }
  }
  out += '"';
}

} // namespace llmir::runtime::detail
