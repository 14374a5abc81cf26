#include <hvsock/unique_fd.hpp>

#include <unistd.h>

namespace hvsock {

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) {
    // close() is not retried on EINTR: on Linux the fd is released anyway.
    ::close(fd_);
  }
  fd_ = fd;
}

}  // namespace hvsock
