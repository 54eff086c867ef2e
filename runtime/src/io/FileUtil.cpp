// File helpers shared by the readers/writers: full preads and atomic replace-by-rename.
#include "FileUtil.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace llmir::runtime::detail {

std::string errnoMessage(const std::string &what, const std::string &path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

Status preadFully(int fd, const std::string &path, uint64_t offset, void *dst,
                  uint64_t size) {
  auto *out = static_cast<char *>(dst);
  while (size > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, 1u << 30));
    const ssize_t got = ::pread(fd, out, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR)
        continue;
      return Status::error(StatusCode::DataLoss, errnoMessage("cannot read", path));
    }
    if (got == 0)
      return Status::error(StatusCode::DataLoss,
                           "unexpected end of file in '" + path + "' at byte " +
                               std::to_string(offset));
    out += got;
    offset += static_cast<uint64_t>(got);
    size -= static_cast<uint64_t>(got);
  }
  return Status::ok();
}

namespace {

Status writeAll(int fd, const std::string &path, const void *data, size_t size) {
  const char *p = static_cast<const char *>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, std::min<size_t>(size, 1u << 30));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return Status::error(StatusCode::Unavailable, errnoMessage("cannot write", path));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok();
}

} // namespace

Status atomicWriteFile(const std::string &path, const std::vector<ByteChunk> &chunks) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0)
    return Status::error(StatusCode::Unavailable,
                         errnoMessage("cannot create a temporary file for", path));
  const std::string tmp(name.data());
  auto fail = [&](Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };
  // Fault injection for the crash-safety tests: LLMIR_FAULT_INJECT=
  // "kill-during-atomic-write" ends the process (as SIGKILL would) after the
  // first chunk reached the temporary file, before the rename.
  const char *fault = std::getenv("LLMIR_FAULT_INJECT");
  bool killMidway = fault && std::string(fault) == "kill-during-atomic-write";
  for (const ByteChunk &c : chunks) {
    Status st = writeAll(fd, tmp, c.data, c.size);
    if (!st.isOk())
      return fail(st);
    if (killMidway)
      std::_Exit(137);
  }
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0)
    return fail(Status::error(StatusCode::Unavailable, errnoMessage("cannot sync", tmp)));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Status::error(StatusCode::Unavailable, errnoMessage("cannot close", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = Status::error(StatusCode::Unavailable,
                              errnoMessage("cannot rename '" + tmp + "' to", path));
    ::unlink(tmp.c_str());
    return st;
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

} // namespace llmir::runtime::detail
