// Training token data: 1-D integer .npy arrays and llm.c token shards,
// memory-mapped (never read into memory as a whole), and the order in which
// a run reads their windows (sequential or a seeded shuffle per epoch).
#ifndef LLMIR_RUNTIME_TOKENDATA_H
#define LLMIR_RUNTIME_TOKENDATA_H

#include "llmir/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmir::runtime {

/// llm.c token shard headers: 256 little-endian int32 (magic, version, token
/// count, zeros), then the tokens.
constexpr int32_t kShardMagicU16 = 20240520; ///< version 1, uint16 tokens
constexpr int32_t kShardMagicU32 = 20240801; ///< version 7, uint32 tokens
constexpr int64_t kShardHeaderBytes = 256 * 4;

/// The files `spec` names: the file itself, or the sorted (byte order)
/// matches when it contains a glob character (`*`, `?`, `[`). `option` names
/// the flag in errors (no match is an error).
StatusOr<std::vector<std::string>> expandTokenFiles(const std::string &spec,
                                                    const std::string &option);

/// Token files viewed as one stream (in the given order), memory-mapped.
/// Every id read is checked: an id outside [0, vocab) (vocab <= 0: outside
/// int32) is an error naming the file and the element offset.
class TokenFiles {
public:
  static StatusOr<TokenFiles> open(const std::vector<std::string> &paths,
                                   const std::string &option, int64_t vocab);
  TokenFiles(TokenFiles &&) noexcept;
  TokenFiles &operator=(TokenFiles &&) noexcept;
  ~TokenFiles();

  int64_t numTokens() const { return total_; }
  size_t numFiles() const { return files_.size(); }
  int64_t fileTokens(size_t file) const;
  /// Token `index` of file `file`, checked.
  StatusOr<int64_t> at(size_t file, int64_t index) const;
  /// Token `index` of the stream (files concatenated), checked.
  StatusOr<int64_t> at(int64_t index) const;
  /// The option naming the files in errors ("--data").
  const std::string &option() const { return option_; }

  struct Mapped; ///< one mapped file

private:
  TokenFiles() = default;
  std::vector<std::unique_ptr<Mapped>> files_;
  std::vector<int64_t> starts_; ///< stream offset of each file
  int64_t total_ = 0, vocab_ = 0;
  std::string option_;
};

enum class DataOrder { Sequential, Shuffled };

/// Where a run stands in its data: the epoch and, within it, the stream
/// token offset (sequential) or the number of windows already read by all
/// ranks together (shuffled). Saved in checkpoints.
struct DataPosition {
  int64_t epoch = 0, index = 0;
};

/// Cuts the data into the rows of each step. `batch` rows of `seq`+1
/// tokens a step (inputs = the first seq, labels = the last seq).
///
/// sequential: the stream is read cyclically; the step at (epoch, index)
///   reads row r from stream offset index + r*seq (wrapping at the end, which
///   starts the next epoch), then advances by batch*seq tokens. Step s of a
///   fresh run starts at s*batch*seq (modulo the stream length).
/// shuffled: each file is cut into windows of seq+1 tokens starting at
///   multiples of seq (a window never crosses a file end); the W windows of
///   all files are numbered in file order, and epoch e visits them in the
///   order of a Fisher-Yates shuffle of 0..W-1 (for i = W-1 down to 1: swap i
///   with next() % (i+1)) driven by splitmix64 seeded with
///   seed ^ (e * 0x9E3779B97F4A7C15). A step reads the next `batch` windows
///   of that order; an epoch has floor(W/batch) steps (the W mod batch
///   windows left over are not read in that epoch), so no window is read
///   twice in an epoch.
/// A data-parallel rank reads rows [firstRow, firstRow+rows) of each step.
class TokenLoader {
public:
  static StatusOr<TokenLoader> create(TokenFiles files, DataOrder order, uint64_t seed,
                                      int64_t batch, int64_t seq);

  /// The position of step `step` of a run that started at step 0.
  DataPosition positionOfStep(int64_t step) const;
  /// The position after the step at `p`.
  DataPosition next(const DataPosition &p) const;
  /// Rows [firstRow, firstRow+rows) of the step at `p`: inputs and labels,
  /// rows*seq each.
  Status read(const DataPosition &p, int64_t firstRow, int64_t rows,
              std::vector<int64_t> &inputs, std::vector<int64_t> &labels);

private:
  explicit TokenLoader(TokenFiles files) : files_(std::move(files)) {}
  /// The windows (shuffled) or tokens (sequential) of one epoch.
  int64_t epochLength() const {
    return order_ == DataOrder::Shuffled ? numWindows_ : files_.numTokens();
  }
  /// Window `w` (file order): its file and first token.
  std::pair<size_t, int64_t> window(int64_t w) const;

  TokenFiles files_;
  DataOrder order_ = DataOrder::Sequential;
  uint64_t seed_ = 0;
  int64_t batch_ = 0, seq_ = 0, numWindows_ = 0;
  std::vector<int64_t> windowStarts_; ///< first window number of each file
  int64_t permEpoch_ = -1;            ///< the epoch perm_ belongs to
  std::vector<uint32_t> perm_;        ///< 4 bytes a window
};

/// The shuffled order's permutation of 0..n-1 (n <= 2^32) for `epoch` (see
/// TokenLoader).
std::vector<uint32_t> shuffledWindows(int64_t n, uint64_t seed, int64_t epoch);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_TOKENDATA_H
