// Safetensors: header validation, bounds-checked (slice) reads with pread, and the atomic writer.
#include "llmir/runtime/SafeTensors.h"

#include "FileUtil.h"
#include "Json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace llmir::runtime {
using detail::JsonValue;

namespace {

struct DTypeEntry {
  DType dtype;
  const char *name;
  int64_t size;
};

/// The safetensors dtypes with whole-byte elements (upstream's spelling).
constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::I32, "I32", 4},
    {DType::I64, "I64", 8},         {DType::F64, "F64", 8},
    {DType::I8, "I8", 1},           {DType::I16, "I16", 2},
    {DType::U8, "U8", 1},           {DType::U16, "U16", 2},
    {DType::U32, "U32", 4},         {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1},       {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}};

} // namespace

const char *dtypeName(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return e.name;
  return "?";
}

int64_t dtypeSize(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return e.size;
  return 0;
}

int64_t TensorInfo::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

namespace {

Status corrupt(const std::string &path, const std::string &what) {
  return Status::error(StatusCode::DataLoss,
                       "safetensors file '" + path + "': " + what);
}

bool parseDType(const std::string &s, DType &out) {
  for (const DTypeEntry &e : kDTypes)
    if (s == e.name) {
      out = e.dtype;
      return true;
    }
  return false;
}

/// Validates one tensor entry {"dtype", "shape", "data_offsets"}.
Status parseTensorEntry(const std::string &path, const std::string &name,
                        const JsonValue &v, uint64_t dataSize, TensorInfo &info) {
  auto bad = [&](const std::string &what) {
    return corrupt(path, "tensor '" + name + "': " + what);
  };
  if (v.kind != JsonValue::Kind::Object)
    return bad("entry is not an object");
  const JsonValue *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
  for (size_t i = 0; i < v.keys.size(); ++i) {
    if (v.keys[i] == "dtype")
      dtype = &v.values[i];
    else if (v.keys[i] == "shape")
      shape = &v.values[i];
    else if (v.keys[i] == "data_offsets")
      offsets = &v.values[i];
    else
      return bad("unknown key \"" + v.keys[i] + "\"");
  }
  if (!dtype || !shape || !offsets)
    return bad("needs \"dtype\", \"shape\" and \"data_offsets\"");
  if (dtype->kind != JsonValue::Kind::String)
    return bad("dtype is not a string");
  if (!parseDType(dtype->string, info.dtype))
    return bad("unsupported dtype \"" + dtype->string + "\"");
  if (shape->kind != JsonValue::Kind::Array)
    return bad("shape is not an array");
  // Element count in bytes must stay below 2^63 (and so fit in off_t).
  uint64_t bytes = static_cast<uint64_t>(dtypeSize(info.dtype));
  for (const JsonValue &d : shape->array) {
    if (d.kind != JsonValue::Kind::Integer || d.integer < 0)
      return bad("shape entries must be non-negative integers");
    const uint64_t dim = static_cast<uint64_t>(d.integer);
    if (dim != 0 && bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim)
      return bad("shape is too large");
    bytes *= dim;
    info.shape.push_back(d.integer);
  }
  if (offsets->kind != JsonValue::Kind::Array || offsets->array.size() != 2 ||
      offsets->array[0].kind != JsonValue::Kind::Integer ||
      offsets->array[1].kind != JsonValue::Kind::Integer ||
      offsets->array[0].integer < 0 || offsets->array[1].integer < 0)
    return bad("data_offsets must be [begin, end] with non-negative integers");
  info.dataBegin = static_cast<uint64_t>(offsets->array[0].integer);
  info.dataEnd = static_cast<uint64_t>(offsets->array[1].integer);
  if (info.dataBegin > info.dataEnd)
    return bad("data_offsets begin > end");
  if (info.dataEnd > dataSize)
    return bad("data_offsets end " + std::to_string(info.dataEnd) +
               " is beyond the data section (" + std::to_string(dataSize) + " bytes)");
  if (info.dataEnd - info.dataBegin != bytes)
    return bad("data_offsets span " + std::to_string(info.dataEnd - info.dataBegin) +
               " bytes but shape and dtype need " + std::to_string(bytes));
  return Status::ok();
}

/// Converts `count` F16 or BF16 elements at `src` to float.
void convert16ToF32(DType dtype, const uint8_t *src, float *dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    dst[i] = dtype == DType::F16 ? halfToFloat(bits) : bfloat16ToFloat(bits);
  }
}

} // namespace

StatusOr<SafeTensorsFile> SafeTensorsFile::open(const std::string &path) {
  SafeTensorsFile file;
  file.path_ = path;
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat below
  // rejects it); reads of a regular file are unaffected.
  file.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (file.fd_ < 0)
    return Status::error(errno == ENOENT ? StatusCode::NotFound : StatusCode::Unavailable,
                         detail::errnoMessage("cannot open safetensors file", path));
  struct stat st;
  if (::fstat(file.fd_, &st) != 0)
    return Status::error(StatusCode::Unavailable, detail::errnoMessage("cannot stat", path));
  if (!S_ISREG(st.st_mode))
    return corrupt(path, "not a regular file");
  const uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8)
    return corrupt(path, "shorter than the 8-byte header length");
  uint8_t lenBytes[8];
  LLMIR_RETURN_IF_ERROR(detail::preadFully(file.fd_, path, 0, lenBytes, 8));
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = headerLen << 8 | lenBytes[i];
  if (headerLen == 0 || headerLen > kMaxHeaderBytes)
    return corrupt(path, "header length " + std::to_string(headerLen) +
                             " is outside (0, " + std::to_string(kMaxHeaderBytes) + "]");
  if (headerLen > fileSize - 8)
    return corrupt(path, "header length " + std::to_string(headerLen) +
                             " exceeds the file size " + std::to_string(fileSize));
  std::string header(static_cast<size_t>(headerLen), '\0');
  LLMIR_RETURN_IF_ERROR(detail::preadFully(file.fd_, path, 8, header.data(), headerLen));
  file.dataStart_ = 8 + headerLen;
  file.dataSize_ = fileSize - file.dataStart_;

  StatusOr<JsonValue> json = detail::parseJsonSubset(header, kMaxJsonDepth);
  if (!json.isOk())
    return corrupt(path, "bad header: " + json.status().message());
  const JsonValue &root = *json;
  if (root.kind != JsonValue::Kind::Object)
    return corrupt(path, "header is not a JSON object");
  for (size_t i = 0; i < root.keys.size(); ++i) {
    const std::string &key = root.keys[i];
    const JsonValue &value = root.values[i];
    if (key == "__metadata__") {
      if (value.kind != JsonValue::Kind::Object)
        return corrupt(path, "__metadata__ is not an object");
      for (size_t j = 0; j < value.keys.size(); ++j) {
        if (value.values[j].kind != JsonValue::Kind::String)
          return corrupt(path, "__metadata__ value of \"" + value.keys[j] +
                                   "\" is not a string");
        file.metadata_[value.keys[j]] = value.values[j].string;
      }
      continue;
    }
    TensorInfo info;
    LLMIR_RETURN_IF_ERROR(parseTensorEntry(path, key, value, file.dataSize_, info));
    file.tensors_.emplace(key, std::move(info));
  }
  // Like upstream safetensors: the tensors tile the data section exactly, with
  // no overlaps and no holes. This also catches a header length that lies
  // (e.g. one that drops the header's trailing padding).
  std::vector<std::pair<uint64_t, const std::string *>> starts;
  for (const auto &[name, info] : file.tensors_)
    if (info.dataEnd > info.dataBegin)
      starts.emplace_back(info.dataBegin, &name);
  std::sort(starts.begin(), starts.end());
  uint64_t covered = 0;
  for (const auto &[begin, name] : starts) {
    if (begin < covered)
      return corrupt(path, "tensor '" + *name + "' overlaps the tensor before it");
    if (begin > covered)
      return corrupt(path, "bytes [" + std::to_string(covered) + ", " +
                               std::to_string(begin) + ") before tensor '" + *name +
                               "' belong to no tensor");
    covered = file.tensors_.at(*name).dataEnd;
  }
  if (covered != file.dataSize_)
    return corrupt(path, "the data section has " + std::to_string(file.dataSize_) +
                             " bytes but the tensors cover " + std::to_string(covered));
  return StatusOr<SafeTensorsFile>(std::move(file));
}

SafeTensorsFile::SafeTensorsFile(SafeTensorsFile &&other) noexcept { *this = std::move(other); }

SafeTensorsFile &SafeTensorsFile::operator=(SafeTensorsFile &&other) noexcept {
  if (this != &other) {
    if (fd_ >= 0)
      ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
    dataStart_ = other.dataStart_;
    dataSize_ = other.dataSize_;
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafeTensorsFile::~SafeTensorsFile() {
  if (fd_ >= 0)
    ::close(fd_);
}

std::vector<std::string> SafeTensorsFile::tensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto &entry : tensors_)
    names.push_back(entry.first);
  return names;
}

StatusOr<TensorInfo> SafeTensorsFile::info(const std::string &name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    return Status::error(StatusCode::NotFound,
                         "tensor '" + name + "' not found in '" + path_ + "'");
  return it->second;
}

Status SafeTensorsFile::readBytes(uint64_t dataOffset, void *dst, uint64_t size) const {
  if (fd_ < 0)
    return Status::error(StatusCode::Internal, "safetensors file is not open");
  return detail::preadFully(fd_, path_, dataStart_ + dataOffset, dst, size);
}

StatusOr<std::vector<float>> SafeTensorsFile::readF32(const std::string &name) const {
  StatusOr<TensorInfo> inf = info(name);
  if (!inf.isOk())
    return inf.status();
  std::vector<std::pair<int64_t, int64_t>> all;
  for (int64_t d : inf->shape)
    all.emplace_back(0, d);
  return readSliceF32(name, all);
}

StatusOr<std::vector<float>> SafeTensorsFile::readSliceF32(
    const std::string &name,
    const std::vector<std::pair<int64_t, int64_t>> &ranges) const {
  StatusOr<TensorInfo> infOr = info(name);
  if (!infOr.isOk())
    return infOr.status();
  const TensorInfo &inf = *infOr;
  if (inf.dtype != DType::F32 && inf.dtype != DType::F16 && inf.dtype != DType::BF16)
    return Status::error(StatusCode::InvalidArgument,
                         "'" + path_ + "': tensor '" + name + "' has dtype " +
                             dtypeName(inf.dtype) +
                             "; only F32, BF16 and F16 load as floating point");
  const size_t rank = inf.shape.size();
  if (ranges.size() != rank)
    return Status::error(StatusCode::InvalidArgument,
                         "slice of tensor '" + name + "' has " +
                             std::to_string(ranges.size()) + " ranges for " +
                             std::to_string(rank) + " dims");
  int64_t outCount = 1;
  for (size_t d = 0; d < rank; ++d) {
    const auto [b, e] = ranges[d];
    if (b < 0 || b > e || e > inf.shape[d])
      return Status::error(StatusCode::InvalidArgument,
                           "slice [" + std::to_string(b) + ", " + std::to_string(e) +
                               ") of dim " + std::to_string(d) + " of tensor '" +
                               name + "' is outside [0, " +
                               std::to_string(inf.shape[d]) + ")");
    outCount *= e - b; // <= numElements, which the header check bounded
  }
  std::vector<float> out(static_cast<size_t>(outCount));
  if (outCount == 0)
    return out;
  const int64_t esize = dtypeSize(inf.dtype);
  // Merge trailing dims taken whole into one contiguous run.
  std::vector<int64_t> stride(rank, 1);
  for (size_t d = rank; d-- > 1;)
    stride[d - 1] = stride[d] * inf.shape[d];
  size_t runDim = rank; // dims [runDim, rank) form the contiguous run
  int64_t runElems = 1;
  while (runDim > 0) {
    const size_t d = runDim - 1;
    runElems *= ranges[d].second - ranges[d].first;
    runDim = d;
    if (ranges[d].first != 0 || ranges[d].second != inf.shape[d])
      break;
  }
  // F32 runs are read straight into the output; F16/BF16 go through a buffer.
  std::vector<uint8_t> buffer(
      inf.dtype == DType::F32 ? 0 : static_cast<size_t>(runElems * esize));
  std::vector<int64_t> index(runDim); // over the outer dims [0, runDim)
  for (size_t d = 0; d < runDim; ++d)
    index[d] = ranges[d].first;
  const int64_t runStart = rank == 0 ? 0 : ranges[runDim].first * stride[runDim];
  const uint64_t runBytes = static_cast<uint64_t>(runElems * esize);
  float *dst = out.data();
  while (true) {
    int64_t elem = runStart;
    for (size_t d = 0; d < runDim; ++d)
      elem += index[d] * stride[d];
    const uint64_t offset = inf.dataBegin + static_cast<uint64_t>(elem * esize);
    if (inf.dtype == DType::F32) {
      LLMIR_RETURN_IF_ERROR(readBytes(offset, dst, runBytes));
    } else {
      LLMIR_RETURN_IF_ERROR(readBytes(offset, buffer.data(), runBytes));
      convert16ToF32(inf.dtype, buffer.data(), dst, runElems);
    }
    dst += runElems;
    // Advance the outer index like an odometer; done when it wraps.
    bool done = true;
    for (size_t d = runDim; d > 0; --d) {
      if (++index[d - 1] < ranges[d - 1].second) {
        done = false;
        break;
      }
      index[d - 1] = ranges[d - 1].first;
    }
    if (done)
      break;
  }
  return out;
}

StatusOr<std::vector<int64_t>> SafeTensorsFile::readInt64(const std::string &name) const {
  StatusOr<TensorInfo> infOr = info(name);
  if (!infOr.isOk())
    return infOr.status();
  const TensorInfo &inf = *infOr;
  if (inf.dtype != DType::I32 && inf.dtype != DType::I64)
    return Status::error(StatusCode::InvalidArgument,
                         "'" + path_ + "': tensor '" + name + "' has dtype " +
                             dtypeName(inf.dtype) + ", not I32/I64");
  const int64_t n = inf.numElements();
  std::vector<uint8_t> raw(static_cast<size_t>(inf.dataEnd - inf.dataBegin));
  LLMIR_RETURN_IF_ERROR(readBytes(inf.dataBegin, raw.data(), raw.size()));
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (inf.dtype == DType::I64) {
      std::memcpy(&out[i], raw.data() + 8 * i, 8);
    } else {
      int32_t v;
      std::memcpy(&v, raw.data() + 4 * i, 4);
      out[i] = v;
    }
  }
  return out;
}

Status writeSafeTensors(const std::string &path,
                        const std::vector<SafeTensorToWrite> &tensors,
                        const std::map<std::string, std::string> &metadata) {
  auto bad = [&](const std::string &what) {
    return Status::error(StatusCode::InvalidArgument,
                         "writeSafeTensors '" + path + "': " + what);
  };
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin())
        header += ',';
      detail::appendJsonString(header, it->first);
      header += ':';
      detail::appendJsonString(header, it->second);
    }
    header += '}';
    first = false;
  }
  std::map<std::string, int> seen;
  std::vector<detail::ByteChunk> chunks;
  // BF16/F16 tensors are rounded into these buffers (alive until the write).
  std::vector<std::vector<uint16_t>> rounded;
  uint64_t offset = 0;
  for (const SafeTensorToWrite &t : tensors) {
    if (t.name == "__metadata__" || t.name.empty())
      return bad("invalid tensor name '" + t.name + "'");
    if (seen[t.name]++)
      return bad("duplicate tensor name '" + t.name + "'");
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        return bad("negative dim in tensor '" + t.name + "'");
      if (d != 0 && count > (uint64_t(1) << 60) / static_cast<uint64_t>(d))
        return bad("tensor '" + t.name + "' is too large");
      count *= static_cast<uint64_t>(d);
    }
    if (count > 0 && t.data == nullptr)
      return bad("tensor '" + t.name + "' has no data");
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
      return bad("tensor '" + t.name + "': cannot write dtype " +
                 dtypeName(t.dtype) + " (F32, BF16 or F16)");
    const uint64_t bytes = count * static_cast<uint64_t>(dtypeSize(t.dtype));
    const void *payload = t.data;
    if (t.dtype != DType::F32 && count > 0) {
      std::vector<uint16_t> &bits = rounded.emplace_back(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i)
        bits[i] = t.dtype == DType::BF16 ? floatToBfloat16(t.data[i]) : floatToHalf(t.data[i]);
      payload = bits.data();
    }
    if (!first)
      header += ',';
    first = false;
    detail::appendJsonString(header, t.name);
    header += std::string(":{\"dtype\":\"") + dtypeName(t.dtype) + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d)
      header += (d ? "," : "") + std::to_string(t.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
    if (bytes > 0)
      chunks.push_back({payload, static_cast<size_t>(bytes)});
  }
  header += '}';
  // Pad with spaces so the data section starts 8-byte aligned (as upstream does).
  while (header.size() % 8 != 0)
    header += ' ';
  uint8_t lenBytes[8];
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i)
    lenBytes[i] = static_cast<uint8_t>(len >> (8 * i));
  chunks.insert(chunks.begin(), {{lenBytes, 8}, {header.data(), header.size()}});
  return detail::atomicWriteFile(path, chunks);
}

} // namespace llmir::runtime
