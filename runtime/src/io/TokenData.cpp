// Token files (.npy and llm.c shards) memory-mapped, and the window order of
// a training run (TokenData.h).
#include "llmir/runtime/TokenData.h"

#include "FileUtil.h"
#include "llmir/runtime/Npy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <glob.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

namespace llmir::runtime {

/// One mapped file: `count` tokens of `bytes` bytes each at `data`.
struct TokenFiles::Mapped {
  std::string path;
  void *map = nullptr;
  size_t mapBytes = 0;
  const uint8_t *data = nullptr;
  int64_t count = 0;
  int bytes = 0;
  bool isSigned = false;

  ~Mapped() {
    if (map)
      ::munmap(map, mapBytes);
  }
};

namespace {

Status bad(const std::string &option, const std::string &path, const std::string &what) {
  return Status::error(StatusCode::DataLoss, option + " '" + path + "': " + what);
}

int32_t readI32(const uint8_t *p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/// Opens and maps one token file: an .npy (1-D integer) or an llm.c shard.
StatusOr<std::unique_ptr<TokenFiles::Mapped>> mapFile(const std::string &path,
                                                      const std::string &option) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return Status::error(errno == ENOENT ? StatusCode::NotFound : StatusCode::Unavailable,
                         detail::errnoMessage(option + ": cannot open", path));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return Status::error(StatusCode::Unavailable,
                         detail::errnoMessage(option + ": cannot stat", path));
  if (!S_ISREG(st.st_mode))
    return bad(option, path, "not a regular file");
  const uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  auto m = std::make_unique<TokenFiles::Mapped>();
  m->path = path;
  uint64_t offset = 0;
  uint8_t head[12] = {};
  if (fileSize >= 6)
    LLMIR_RETURN_IF_ERROR(detail::preadFully(fd, path, 0, head, std::min<uint64_t>(fileSize, 12)));
  if (fileSize >= 6 && std::memcmp(head, "\x93NUMPY", 6) == 0) {
    StatusOr<NpyHeader> h = readNpyHeader(fd, path);
    if (!h.isOk())
      return Status::error(h.status().code(), option + ": " + h.status().message());
    if (h->shape.size() != 1)
      return bad(option, path, "an .npy token array must be 1-D (found " +
                                   std::to_string(h->shape.size()) + " dims)");
    if (h->dtype == NpyDType::F32)
      return bad(option, path, "token ids must be integers, found float32");
    m->bytes = static_cast<int>(npyItemSize(h->dtype));
    m->isSigned = h->dtype == NpyDType::I32 || h->dtype == NpyDType::I64;
    m->count = h->shape[0];
    offset = h->dataOffset;
  } else {
    if (fileSize < static_cast<uint64_t>(kShardHeaderBytes))
      return bad(option, path,
                 "neither an .npy file nor an llm.c token shard (" + std::to_string(fileSize) +
                     " bytes, shorter than the 1024-byte shard header)");
    const int32_t magic = readI32(head), version = readI32(head + 4);
    const int32_t count = readI32(head + 8);
    if (magic == kShardMagicU16 || magic == kShardMagicU32) {
      const int32_t want = magic == kShardMagicU16 ? 1 : 7;
      if (version != want)
        return bad(option, path, "llm.c shard magic " + std::to_string(magic) + " with version " +
                                     std::to_string(version) + " (expected " +
                                     std::to_string(want) + ")");
      m->bytes = magic == kShardMagicU16 ? 2 : 4;
    } else {
      return bad(option, path, "neither an .npy file nor an llm.c token shard (magic " +
                                   std::to_string(magic) + ", expected " +
                                   std::to_string(kShardMagicU16) + " or " +
                                   std::to_string(kShardMagicU32) + ")");
    }
    if (count < 0)
      return bad(option, path, "negative token count " + std::to_string(count) + " in the header");
    const uint64_t have = fileSize - kShardHeaderBytes;
    const uint64_t need = static_cast<uint64_t>(count) * static_cast<uint64_t>(m->bytes);
    if (have != need)
      return bad(option, path, "the header says " + std::to_string(count) + " tokens (" +
                                   std::to_string(need) + " bytes) but the file has " +
                                   std::to_string(have) + " bytes after the header" +
                                   (have < need ? " (truncated)" : ""));
    m->count = count;
    offset = kShardHeaderBytes;
  }
  if (m->count > 0) {
    m->mapBytes = static_cast<size_t>(fileSize);
    void *map = ::mmap(nullptr, m->mapBytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
      return Status::error(StatusCode::Unavailable,
                           detail::errnoMessage(option + ": cannot map", path));
    m->map = map;
    m->data = static_cast<const uint8_t *>(map) + offset;
  }
  return m;
}

/// splitmix64: the shuffled order's random numbers.
uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

} // namespace

StatusOr<std::vector<std::string>> expandTokenFiles(const std::string &spec,
                                                    const std::string &option) {
  if (spec.find_first_of("*?[") == std::string::npos)
    return std::vector<std::string>{spec};
  glob_t g;
  const int rc = ::glob(spec.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    out.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && out.empty()))
    return Status::error(StatusCode::NotFound, option + " '" + spec + "': no file matches");
  if (rc != 0)
    return Status::error(StatusCode::Unavailable,
                         option + " '" + spec + "': cannot expand the pattern");
  std::sort(out.begin(), out.end());
  return out;
}

TokenFiles::TokenFiles(TokenFiles &&) noexcept = default;
TokenFiles &TokenFiles::operator=(TokenFiles &&) noexcept = default;
TokenFiles::~TokenFiles() = default;

StatusOr<TokenFiles> TokenFiles::open(const std::vector<std::string> &paths,
                                      const std::string &option, int64_t vocab) {
  if (paths.empty())
    return Status::error(StatusCode::InvalidArgument, option + ": no token file");
  TokenFiles out;
  out.option_ = option;
  out.vocab_ = vocab;
  for (const std::string &path : paths) {
    StatusOr<std::unique_ptr<Mapped>> m = mapFile(path, option);
    if (!m.isOk())
      return m.status();
    out.starts_.push_back(out.total_);
    out.total_ += (*m)->count;
    out.files_.push_back(std::move(*m));
  }
  return out;
}

int64_t TokenFiles::fileTokens(size_t file) const { return files_[file]->count; }

StatusOr<int64_t> TokenFiles::at(size_t file, int64_t index) const {
  const Mapped &m = *files_[file];
  const uint8_t *p = m.data + static_cast<size_t>(index) * m.bytes;
  int64_t v = 0;
  switch (m.bytes) {
  case 1:
    v = *p;
    break;
  case 2: {
    uint16_t u;
    std::memcpy(&u, p, 2);
    v = u;
    break;
  }
  case 4:
    if (m.isSigned) {
      v = readI32(p);
    } else {
      uint32_t u;
      std::memcpy(&u, p, 4);
      v = u;
    }
    break;
  default:
    std::memcpy(&v, p, 8);
  }
  const int64_t limit = vocab_ > 0 ? vocab_ : int64_t(std::numeric_limits<int32_t>::max()) + 1;
  if (v < 0 || v >= limit)
    return Status::error(StatusCode::InvalidArgument,
                         option_ + " '" + m.path + "': token id " + std::to_string(v) +
                             " at element offset " + std::to_string(index) +
                             (vocab_ > 0 ? " is outside the vocabulary [0, " +
                                               std::to_string(vocab_) + ")"
                                         : " does not fit int32"));
  return v;
}

StatusOr<int64_t> TokenFiles::at(int64_t index) const {
  const size_t file =
      static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), index) -
                          starts_.begin()) - 1;
  return at(file, index - starts_[file]);
}

std::vector<uint32_t> shuffledWindows(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<uint32_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    perm[i] = static_cast<uint32_t>(i);
  uint64_t state = seed ^ (static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ull);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

StatusOr<TokenLoader> TokenLoader::create(TokenFiles files, DataOrder order, uint64_t seed,
                                          int64_t batch, int64_t seq) {
  TokenLoader out(std::move(files));
  out.order_ = order;
  out.seed_ = seed;
  out.batch_ = batch;
  out.seq_ = seq;
  const TokenFiles &f = out.files_;
  if (order == DataOrder::Sequential) {
    if (f.numTokens() < 2)
      return Status::error(StatusCode::InvalidArgument,
                           f.option() + ": the token data needs at least 2 tokens, found " +
                               std::to_string(f.numTokens()));
    return out;
  }
  for (size_t i = 0; i < f.numFiles(); ++i) {
    out.windowStarts_.push_back(out.numWindows_);
    out.numWindows_ += f.fileTokens(i) > seq ? (f.fileTokens(i) - 1) / seq : 0;
  }
  if (out.numWindows_ > (int64_t(1) << 32))
    return Status::error(StatusCode::InvalidArgument,
                         f.option() + ": " + std::to_string(out.numWindows_) +
                             " windows; --data-order shuffled handles at most 2^32");
  if (out.numWindows_ < batch)
    return Status::error(StatusCode::InvalidArgument,
                         f.option() + ": " + std::to_string(out.numWindows_) + " windows of " +
                             std::to_string(seq + 1) + " tokens, fewer than the batch of " +
                             std::to_string(batch) +
                             " (--data-order shuffled reads whole windows within a file)");
  return out;
}

DataPosition TokenLoader::positionOfStep(int64_t step) const {
  if (order_ == DataOrder::Shuffled) {
    const int64_t perEpoch = numWindows_ / batch_;
    return {step / perEpoch, step % perEpoch * batch_};
  }
  const unsigned __int128 t = static_cast<unsigned __int128>(step) * batch_ * seq_;
  const int64_t n = files_.numTokens();
  return {static_cast<int64_t>(t / n), static_cast<int64_t>(t % n)};
}

DataPosition TokenLoader::next(const DataPosition &p) const {
  if (order_ == DataOrder::Shuffled) {
    if (p.index + 2 * batch_ > numWindows_)
      return {p.epoch + 1, 0};
    return {p.epoch, p.index + batch_};
  }
  const unsigned __int128 t = static_cast<unsigned __int128>(p.index) + batch_ * seq_;
  const int64_t n = files_.numTokens();
  return {p.epoch + static_cast<int64_t>(t / n), static_cast<int64_t>(t % n)};
}

std::pair<size_t, int64_t> TokenLoader::window(int64_t w) const {
  const size_t file = static_cast<size_t>(
      std::upper_bound(windowStarts_.begin(), windowStarts_.end(), w) - windowStarts_.begin() - 1);
  // A file too short for a window starts where the next one does: the last
  // file starting at or before w holds it.
  return {file, (w - windowStarts_[file]) * seq_};
}

Status TokenLoader::read(const DataPosition &p, int64_t firstRow, int64_t rows,
                         std::vector<int64_t> &inputs, std::vector<int64_t> &labels) {
  const int64_t length = epochLength();
  const int64_t span = order_ == DataOrder::Shuffled ? batch_ : 1;
  if (p.epoch < 0 || p.index < 0 || p.index + span > length)
    return Status::error(StatusCode::InvalidArgument,
                         files_.option() + ": data position (epoch " + std::to_string(p.epoch) +
                             ", index " + std::to_string(p.index) +
                             ") is outside the data (" + std::to_string(length) +
                             (order_ == DataOrder::Shuffled ? " windows)" : " tokens)"));
  inputs.resize(static_cast<size_t>(rows * seq_));
  labels.resize(static_cast<size_t>(rows * seq_));
  if (order_ == DataOrder::Shuffled && permEpoch_ != p.epoch) {
    perm_ = shuffledWindows(numWindows_, seed_, p.epoch);
    permEpoch_ = p.epoch;
  }
  const int64_t n = files_.numTokens();
  for (int64_t r = 0; r < rows; ++r) {
    size_t file = 0;
    int64_t start = 0;
    if (order_ == DataOrder::Shuffled)
      std::tie(file, start) = window(perm_[p.index + firstRow + r]);
    else
      start = (p.index + (firstRow + r) * seq_) % n;
    for (int64_t k = 0; k <= seq_; ++k) {
      StatusOr<int64_t> v = order_ == DataOrder::Shuffled ? files_.at(file, start + k)
                                                          : files_.at((start + k) % n);
      if (!v.isOk())
        return v.status();
      if (k < seq_)
        inputs[r * seq_ + k] = *v;
      if (k > 0)
        labels[r * seq_ + k - 1] = *v;
    }
  }
  return Status::ok();
}

} // namespace llmir::runtime
