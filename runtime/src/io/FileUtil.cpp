// File helpers: full preads, safe outputs (temp file + rename, never over a
// device or FIFO), stale temp-file cleanup and input checks.
#include "FileUtil.h"

#include "llmir/runtime/Files.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <ctime>
#include <cctype>
#include <dirent.h>
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

Status atomicWriteFile(const std::string &path, const std::vector<ByteChunk> &chunks) {
  StatusOr<OutputFile> out = OutputFile::create(path);
  if (!out.isOk())
    return out.status();
  // Fault injection for the crash-safety tests: LLMIR_FAULT_INJECT=
  // "kill-during-atomic-write" ends the process (as SIGKILL would) after the
  // first chunk reached the temporary file, before the rename.
  const char *fault = std::getenv("LLMIR_FAULT_INJECT");
  bool killMidway = fault && std::string(fault) == "kill-during-atomic-write";
  for (const ByteChunk &c : chunks) {
    LLMIR_RETURN_IF_ERROR(out->write(c.data, c.size));
    if (killMidway)
      std::_Exit(137);
  }
  return out->commit();
}

} // namespace llmir::runtime::detail

namespace llmir::runtime {
namespace {

using detail::errnoMessage;

int64_t nanos(const struct timespec &t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

/// When this process started (static initialization, before main): temp
/// files older than this cannot belong to a write of this run.
const int64_t kProcessStartNs = [] {
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return nanos(now);
}();

std::string parentDir(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

const char *fileKind(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a regular file";
}

constexpr const char *kTempInfix = ".tmp.";
constexpr size_t kTempSuffixLen = 6; // mkstemp's XXXXXX

} // namespace

StatusOr<OutputFile> OutputFile::create(const std::string &path,
                                        const std::string &what, bool inPlace) {
  if (path.empty())
    return Status::error(StatusCode::InvalidArgument, what + ": empty path");
  OutputFile out;
  out.path_ = path;
  out.target_ = path;
  out.what_ = what;
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    // Replace the link's target, not the link.
    char *real = ::realpath(path.c_str(), nullptr);
    if (!real)
      return Status::error(StatusCode::InvalidArgument,
                           errnoMessage("cannot resolve the symlink " + what, path));
    out.target_ = real;
    std::free(real);
  }
  if (::stat(out.target_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
      return Status::error(StatusCode::InvalidArgument,
                           what + " '" + path + "' is " + fileKind(st.st_mode) +
                               "; refusing to replace it");
    // A device or FIFO is written in place: renaming a regular file over it
    // would destroy the node. O_NONBLOCK keeps open() from waiting for a
    // FIFO's reader (ENXIO instead); the writes themselves block.
    const int fd = ::open(out.target_.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
      return Status::error(StatusCode::Unavailable,
                           errno == ENXIO ? what + " '" + path + "' is a FIFO with no reader"
                                          : errnoMessage("cannot open " + what, path));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    out.fd_ = fd;
    return out;
  }
  if (inPlace) {
    out.fd_ = ::open(out.target_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out.fd_ < 0)
      return Status::error(StatusCode::Unavailable, errnoMessage("cannot open " + what, path));
    return out;
  }
  removeStaleTempFiles(out.target_);
  std::string tmpl = out.target_ + kTempInfix + std::string(kTempSuffixLen, 'X');
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  out.fd_ = ::mkstemp(name.data());
  if (out.fd_ < 0)
    return Status::error(StatusCode::Unavailable,
                         errnoMessage("cannot create a temporary file for " + what, path));
  ::fcntl(out.fd_, F_SETFD, FD_CLOEXEC);
  out.temp_ = name.data();
  return out;
}

OutputFile::OutputFile(OutputFile &&other) noexcept { *this = std::move(other); }

OutputFile &OutputFile::operator=(OutputFile &&other) noexcept {
  if (this != &other) {
    discard();
    path_ = std::move(other.path_);
    target_ = std::move(other.target_);
    temp_ = std::move(other.temp_);
    what_ = std::move(other.what_);
    fd_ = other.fd_;
    other.fd_ = -1;
    other.temp_.clear();
  }
  return *this;
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  if (!temp_.empty())
    ::unlink(temp_.c_str());
  temp_.clear();
}

Status OutputFile::write(const void *data, size_t size) {
  if (fd_ < 0)
    return Status::error(StatusCode::Internal,
                         what_ + " '" + path_ + "' is already closed");
  const char *p = static_cast<const char *>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, std::min<size_t>(size, 1u << 30));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return Status::error(StatusCode::Unavailable,
                           errnoMessage("cannot write " + what_, path_));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok();
}

Status OutputFile::commit() {
  if (fd_ < 0)
    return Status::ok();
  if (temp_.empty()) { // written in place
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
      return Status::error(StatusCode::Unavailable,
                           errnoMessage("cannot close " + what_, path_));
    return Status::ok();
  }
  if (::fchmod(fd_, 0644) != 0 || ::fsync(fd_) != 0) {
    Status st = Status::error(StatusCode::Unavailable, errnoMessage("cannot sync", temp_));
    discard();
    return st;
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    Status st = Status::error(StatusCode::Unavailable, errnoMessage("cannot close", temp_));
    discard();
    return st;
  }
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    Status st = Status::error(StatusCode::Unavailable,
                              errnoMessage("cannot rename '" + temp_ + "' to", target_));
    discard();
    return st;
  }
  temp_.clear();
  // Make the rename itself durable.
  const int dfd = ::open(parentDir(target_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

int removeStaleTempFiles(const std::string &path) {
  const std::string dir = parentDir(path);
  const size_t slash = path.find_last_of('/');
  const std::string prefix =
      (slash == std::string::npos ? path : path.substr(slash + 1)) + kTempInfix;
  DIR *d = ::opendir(dir.c_str());
  if (!d)
    return 0;
  int removed = 0;
  while (const struct dirent *e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() != prefix.size() + kTempSuffixLen ||
        name.compare(0, prefix.size(), prefix) != 0 ||
        !std::all_of(name.begin() + prefix.size(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)); }))
      continue;
    const std::string full = dir + "/" + name;
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        nanos(st.st_mtim) >= kProcessStartNs)
      continue;
    removed += ::unlink(full.c_str()) == 0;
  }
  ::closedir(d);
  return removed;
}

bool sameFile(const std::string &a, const std::string &b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 &&
         sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Status checkInputFile(const std::string &path, const std::string &what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::error(errno == ENOENT ? StatusCode::NotFound : StatusCode::Unavailable,
                         errnoMessage("cannot open " + what, path));
  if (!S_ISREG(st.st_mode))
    return Status::error(StatusCode::InvalidArgument,
                         what + " '" + path + "' is " + fileKind(st.st_mode) +
                             ", not a regular file");
  return Status::ok();
}

} // namespace llmir::runtime
