// File helpers shared by the readers/writers (internal): full preads and atomic
// replace-by-rename (the public side, OutputFile, is in llmir/runtime/Files.h).
#ifndef LLMIR_RUNTIME_SRC_IO_FILEUTIL_H
#define LLMIR_RUNTIME_SRC_IO_FILEUTIL_H

#include "llmir/runtime/Status.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace llmir::runtime::detail {

/// Reads exactly `size` bytes at `offset`; a short read (file shrank) is DataLoss.
Status preadFully(int fd, const std::string &path, uint64_t offset, void *dst,
                  uint64_t size);

struct ByteChunk {
  const void *data;
  size_t size;
};

/// Writes the chunks through an OutputFile (Files.h): a temp file next to
/// `path`, synced and renamed over it (a device or FIFO is written in place).
/// On failure the temp file is removed and `path` is untouched.
Status atomicWriteFile(const std::string &path, const std::vector<ByteChunk> &chunks);

/// "<path>: <strerror(errno)>".
std::string errnoMessage(const std::string &what, const std::string &path);

} // namespace llmir::runtime::detail

#endif // LLMIR_RUNTIME_SRC_IO_FILEUTIL_H
