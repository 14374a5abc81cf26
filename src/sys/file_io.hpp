// Whole-buffer reads and writes on a file descriptor, retrying EINTR and
// short transfers. Errors name the path the caller gives.
#pragma once

#include <string>
#include <string_view>

#include <hvsock/result.hpp>

namespace hvsock::detail {

// Reads from `fd` until end of file.
result<std::string> read_to_end(int fd, const std::string& path);

// Writes all of `data` to `fd`.
result<void> write_fully(int fd, std::string_view data, const std::string& path);

// Replaces the file at `path` by one holding `data` (mode `mode` when new),
// so that a crash at any moment leaves the old file or the new one, never a
// mix: written to `path`.tmp, fsync'd, renamed over `path`, and the
// directory fsync'd.
result<void> replace_file(const std::string& path, std::string_view data, unsigned mode);

}  // namespace hvsock::detail
