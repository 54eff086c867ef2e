// Safe file handling for tools: outputs that never clobber what they must not
// (temp file + rename, only over regular files) and inputs that cannot block.
#ifndef LLMIR_RUNTIME_FILES_H
#define LLMIR_RUNTIME_FILES_H

#include "llmir/runtime/Status.h"

#include <cstddef>
#include <string>

namespace llmir::runtime {

/// An output written safely. When `path` is missing or a regular file, the
/// bytes go to a temp file `<path>.tmp.XXXXXX` beside it, and commit() syncs it
/// and renames it over `path` (a reader never sees a half-written file; a
/// symlink is followed, so its target is replaced and the link stays). A
/// character device or a FIFO at `path` is written directly and never replaced
/// (a FIFO without a reader is an error, not a hang); anything else (a
/// directory, a socket) is refused. Destroying an uncommitted OutputFile
/// removes its temp file.
class OutputFile {
public:
  /// Opens the output; `what` names it in errors (e.g. "--log-json").
  /// `inPlace`: a regular file is truncated and written directly (no temp
  /// file), so every write() is visible at `path` at once and survives the
  /// process being killed (a log); commit() closes it.
  static StatusOr<OutputFile> create(const std::string &path,
                                     const std::string &what = "output file",
                                     bool inPlace = false);
  OutputFile(OutputFile &&other) noexcept;
  OutputFile &operator=(OutputFile &&other) noexcept;
  OutputFile(const OutputFile &) = delete;
  OutputFile &operator=(const OutputFile &) = delete;
  ~OutputFile();

  Status write(const void *data, size_t size);
  Status write(const std::string &text) { return write(text.data(), text.size()); }
  /// Makes the output visible at its path (rename) or, written directly,
  /// closes it. Idempotent; nothing can be written afterwards.
  Status commit();

  const std::string &path() const { return path_; }
  /// The temp file being written ("" when written directly or committed).
  const std::string &tempPath() const { return temp_; }

private:
  OutputFile() = default;
  void discard();

  std::string path_;   // as given
  std::string target_; // what gets replaced (the symlink's target, if any)
  std::string temp_;
  std::string what_;
  int fd_ = -1;
};

/// Removes leftover temp files of OutputFile for `path` (`<path>.tmp.XXXXXX`,
/// regular files) last modified before this process started: those of a run
/// that was killed mid-write. Others' files and files in use are kept.
/// Returns how many were removed.
int removeStaleTempFiles(const std::string &path);

/// True when `a` and `b` name the same existing file (hard links, symlinks and
/// other spellings of a path included).
bool sameFile(const std::string &a, const std::string &b);

/// An input must be an existing regular file: a FIFO or a device would block
/// or never end. `what` names it in the error ("--weights", "the program").
Status checkInputFile(const std::string &path, const std::string &what);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_FILES_H
