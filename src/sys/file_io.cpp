#include "sys/file_io.hpp"

#include <unistd.h>

#include <cerrno>

namespace hvsock::detail {

result<std::string> read_to_end(int fd, const std::string& path) {
  std::string text;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_system_error(errno, "read " + path);
    }
    if (n == 0) return text;
    text.append(chunk, static_cast<std::size_t>(n));
  }
}

result<void> write_fully(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_system_error(errno, "write " + path);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace hvsock::detail
