#include "sys/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <hvsock/unique_fd.hpp>

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

result<void> replace_file(const std::string& path, std::string_view data, unsigned mode) {
  const std::string tmp = path + ".tmp";
  {
    unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, mode));
    if (!fd) return make_system_error(errno, "open " + tmp);
    if (auto ok = write_fully(fd.get(), data, tmp); !ok) return ok.error();
    if (::fsync(fd.get()) < 0) return make_system_error(errno, "fsync " + tmp);
    // close() can report a delayed write error on some file systems.
    if (::close(fd.release()) < 0) return make_system_error(errno, "close " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0)
    return make_system_error(errno, "rename " + tmp + " to " + path);
  // The rename is only durable once the directory entry is.
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  unique_fd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return make_system_error(errno, "open directory " + dir);
  if (::fsync(dirfd.get()) < 0) return make_system_error(errno, "fsync " + dir);
  return {};
}

}  // namespace hvsock::detail
