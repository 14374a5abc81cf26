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

}  // namespace hvsock::detail
