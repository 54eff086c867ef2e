// NumPy .npy reader/writer: strict header dict parsing, exact size checks, atomic writes.
#include "llmir/runtime/Npy.h"

#include "FileUtil.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace llmir::runtime {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

Status corrupt(const std::string &path, const std::string &what) {
  return Status::error(StatusCode::DataLoss, "npy file '" + path + "': " + what);
}

int64_t itemSize(NpyDType t) {
  switch (t) {
  case NpyDType::F32:
  case NpyDType::I32:
    return 4;
  case NpyDType::I64:
    return 8;
  case NpyDType::U8:
    return 1;
  case NpyDType::U16:
    return 2;
  }
  return 0;
}

/// Parser for the header, a Python dict literal such as
/// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
public:
  explicit HeaderParser(const std::string &text) : s_(text) {}

  Status parse(std::string &descr, bool &fortran, std::vector<int64_t> &shape) {
    bool haveDescr = false, haveFortran = false, haveShape = false;
    skip();
    if (!eat('{'))
      return err("expected '{'");
    while (true) {
      skip();
      if (eat('}'))
        break;
      std::string key;
      LLMIR_RETURN_IF_ERROR(parseString(key));
      skip();
      if (!eat(':'))
        return err("expected ':'");
      skip();
      if (key == "descr" && !haveDescr) {
        LLMIR_RETURN_IF_ERROR(parseString(descr));
        haveDescr = true;
      } else if (key == "fortran_order" && !haveFortran) {
        if (s_.compare(pos_, 4, "True") == 0) {
          fortran = true;
          pos_ += 4;
        } else if (s_.compare(pos_, 5, "False") == 0) {
          fortran = false;
          pos_ += 5;
        } else {
          return err("fortran_order must be True or False");
        }
        haveFortran = true;
      } else if (key == "shape" && !haveShape) {
        LLMIR_RETURN_IF_ERROR(parseShape(shape));
        haveShape = true;
      } else {
        return err("unexpected or repeated key '" + key + "'");
      }
      skip();
      if (eat(','))
        continue;
      skip();
      if (eat('}'))
        break;
      return err("expected ',' or '}'");
    }
    skip();
    if (pos_ != s_.size())
      return err("trailing characters after the dict");
    if (!haveDescr || !haveFortran || !haveShape)
      return err("needs 'descr', 'fortran_order' and 'shape'");
    return Status::ok();
  }

private:
  Status err(const std::string &what) const {
    return Status::error(StatusCode::DataLoss,
                         "header: " + what + " at offset " + std::to_string(pos_));
  }
  void skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  Status parseString(std::string &out) {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"'))
      return err("expected a quoted string");
    const char q = s_[pos_++];
    const size_t end = s_.find(q, pos_);
    if (end == std::string::npos || end - pos_ > 64)
      return err("bad string");
    out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return Status::ok();
  }
  Status parseShape(std::vector<int64_t> &shape) {
    if (!eat('('))
      return err("shape must be a tuple");
    while (true) {
      skip();
      if (eat(')'))
        return Status::ok();
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
        return err("shape entries must be non-negative integers");
      int64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
          return err("shape entry too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (shape.size() >= 32)
        return err("more than 32 dims");
      shape.push_back(v);
      skip();
      if (eat(','))
        continue;
      skip();
      if (eat(')'))
        return Status::ok();
      return err("expected ',' or ')' in shape");
    }
  }

  const std::string &s_;
  size_t pos_ = 0;
};

Status writeArray(const std::string &path, const char *descr, const void *data,
                  int64_t itemBytes, const std::vector<int64_t> &shape) {
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return Status::error(StatusCode::InvalidArgument,
                           "writeNpy '" + path + "': negative dim");
    if (d != 0 && count > (uint64_t(1) << 59) / static_cast<uint64_t>(d))
      return Status::error(StatusCode::InvalidArgument, "writeNpy '" + path + "': too large");
    count *= static_cast<uint64_t>(d);
  }
  if (count > 0 && data == nullptr)
    return Status::error(StatusCode::InvalidArgument, "writeNpy '" + path + "': data is null");
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i)
    dict += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "") +
            (i + 1 < shape.size() ? " " : "");
  dict += "), }";
  // Version 1.0: magic(6) + version(2) + u16 length; pad to a multiple of 64 with '\n' last.
  const size_t prefix = kMagicLen + 2 + 2;
  size_t total = prefix + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  if (total - prefix > 65535)
    return Status::error(StatusCode::InvalidArgument, "writeNpy '" + path + "': header too long");
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::string head(kMagic, kMagicLen);
  head += '\x01';
  head += '\x00';
  const uint16_t hlen = static_cast<uint16_t>(dict.size());
  head += static_cast<char>(hlen & 0xFF);
  head += static_cast<char>(hlen >> 8);
  head += dict;
  std::vector<detail::ByteChunk> chunks = {{head.data(), head.size()}};
  if (count > 0)
    chunks.push_back({data, static_cast<size_t>(count * static_cast<uint64_t>(itemBytes))});
  return detail::atomicWriteFile(path, chunks);
}

} // namespace

int64_t NpyArray::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

StatusOr<std::vector<float>> NpyArray::toFloat32() const {
  if (dtype != NpyDType::F32)
    return Status::error(StatusCode::InvalidArgument, "npy array is not float32 ('<f4')");
  std::vector<float> out(bytes.size() / 4);
  if (!out.empty())
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

StatusOr<std::vector<int64_t>> NpyArray::toInt64() const {
  if (dtype == NpyDType::F32)
    return Status::error(StatusCode::InvalidArgument,
                         "npy array is float32, not an integer array");
  const int64_t size = itemSize(dtype);
  const size_t n = bytes.size() / static_cast<size_t>(size);
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t *p = bytes.data() + i * size;
    switch (dtype) {
    case NpyDType::I64:
      std::memcpy(&out[i], p, 8);
      break;
    case NpyDType::I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      out[i] = v;
      break;
    }
    case NpyDType::U16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      out[i] = v;
      break;
    }
    case NpyDType::U8:
      out[i] = *p;
      break;
    case NpyDType::F32:
      break;
    }
  }
  return out;
}

StatusOr<NpyHeader> readNpyHeader(int fd, const std::string &path) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return Status::error(StatusCode::Unavailable, detail::errnoMessage("cannot stat", path));
  if (!S_ISREG(st.st_mode))
    return corrupt(path, "not a regular file");
  const uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  uint8_t pre[12];
  if (fileSize < 10)
    return corrupt(path, "too short for the npy preamble");
  LLMIR_RETURN_IF_ERROR(detail::preadFully(fd, path, 0, pre, 10));
  if (std::memcmp(pre, kMagic, kMagicLen) != 0)
    return corrupt(path, "bad magic (not an npy file)");
  const int major = pre[6];
  uint64_t headerLen, headerStart;
  if (major == 1) {
    headerLen = pre[8] | static_cast<uint64_t>(pre[9]) << 8;
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (fileSize < 12)
      return corrupt(path, "too short for the npy preamble");
    LLMIR_RETURN_IF_ERROR(detail::preadFully(fd, path, 0, pre, 12));
    headerLen = pre[8] | static_cast<uint64_t>(pre[9]) << 8 |
                static_cast<uint64_t>(pre[10]) << 16 | static_cast<uint64_t>(pre[11]) << 24;
    headerStart = 12;
  } else {
    return corrupt(path, "unsupported format version " + std::to_string(major) + "." +
                             std::to_string(pre[7]));
  }
  if (headerLen > (1u << 20) || headerLen > fileSize - headerStart)
    return corrupt(path, "header length " + std::to_string(headerLen) +
                             " exceeds the file or the 1 MiB limit");
  std::string header(static_cast<size_t>(headerLen), '\0');
  LLMIR_RETURN_IF_ERROR(detail::preadFully(fd, path, headerStart, header.data(), headerLen));
  std::string descr;
  bool fortran = false;
  NpyHeader out;
  Status st2 = HeaderParser(header).parse(descr, fortran, out.shape);
  if (!st2.isOk())
    return corrupt(path, st2.message());
  if (fortran)
    return corrupt(path, "fortran_order True is not supported (save C-ordered arrays)");
  if (descr == "<f4")
    out.dtype = NpyDType::F32;
  else if (descr == "<i4")
    out.dtype = NpyDType::I32;
  else if (descr == "<i8")
    out.dtype = NpyDType::I64;
  else if (descr == "|u1" || descr == "<u1")
    out.dtype = NpyDType::U8;
  else if (descr == "<u2")
    out.dtype = NpyDType::U16;
  else
    return corrupt(path, "unsupported dtype '" + descr +
                             "' (supported: <f4, <i4, <i8, |u1, <u2)");
  out.dataOffset = headerStart + headerLen;
  const uint64_t dataBytes = fileSize - out.dataOffset;
  uint64_t expected = static_cast<uint64_t>(itemSize(out.dtype));
  for (int64_t d : out.shape)
    if (__builtin_mul_overflow(expected, static_cast<uint64_t>(d), &expected))
      return corrupt(path, "shape is too large");
  if (expected != dataBytes)
    return corrupt(path, "shape and dtype need " + std::to_string(expected) +
                             " data bytes but the file has " + std::to_string(dataBytes));
  out.dataBytes = dataBytes;
  return out;
}

int64_t npyItemSize(NpyDType dtype) { return itemSize(dtype); }

StatusOr<NpyArray> readNpy(const std::string &path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat in
  // readNpyHeader rejects it); reads of a regular file are unaffected.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return Status::error(errno == ENOENT ? StatusCode::NotFound : StatusCode::Unavailable,
                         detail::errnoMessage("cannot open npy file", path));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  StatusOr<NpyHeader> header = readNpyHeader(fd, path);
  if (!header.isOk())
    return header.status();
  NpyArray array;
  array.dtype = header->dtype;
  array.shape = header->shape;
  array.bytes.resize(static_cast<size_t>(header->dataBytes));
  LLMIR_RETURN_IF_ERROR(detail::preadFully(fd, path, header->dataOffset, array.bytes.data(),
                                           header->dataBytes));
  return array;
}

Status writeNpy(const std::string &path, const float *data, const std::vector<int64_t> &shape) {
  return writeArray(path, "<f4", data, 4, shape);
}
Status writeNpy(const std::string &path, const int64_t *data, const std::vector<int64_t> &shape) {
  return writeArray(path, "<i8", data, 8, shape);
}
Status writeNpy(const std::string &path, const int32_t *data, const std::vector<int64_t> &shape) {
  return writeArray(path, "<i4", data, 4, shape);
}

} // namespace llmir::runtime
