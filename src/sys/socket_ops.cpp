#include "sys/socket_ops.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hvsock::detail {

result<sockaddr_un> unix_address(std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return failure(errc::invalid_argument, "socket path \"" + std::string(path) +
                                               "\" is empty or longer than " +
                                               std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

result<unique_fd> connect_unix(const std::string& path, int type) {
  auto addr = unix_address(path);
  if (!addr) return addr.error();
  unique_fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) return make_system_error(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR)
      return failure(errc::daemon_unavailable, "hvsockd is not reachable at " + path + " (" +
                                                   std::strerror(err) + "; is hvsockd running?)");
    if (err == EACCES || err == EPERM)
      return failure(errc::permission_denied, "no permission to use " + path);
    if (err == EAGAIN)
      return failure(errc::limit_reached,
                     "hvsockd is not accepting connections at " + path + " (its queue is full)");
    return make_system_error(err, "connect " + path);
  }
  return fd;
}

result<unique_fd> listen_unix(const std::string& path, int type,
                              const socket_file_options& options) {
  auto addr = unix_address(path);
  if (!addr) return addr.error();
  unique_fd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return make_system_error(errno, "socket(AF_UNIX)");
  // Only a stale socket is replaced: another kind of file there is not ours.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    return failure(errc::address_in_use, path + " exists and is not a socket; not replacing it");
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    return make_system_error(errno, "remove stale " + path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
    return make_system_error(errno, "bind " + path);
  // Until listen() nobody can connect, so fixing mode and owner here leaves
  // no window with wider permissions.
  auto fail = [&](const char* what) {
    const int err = errno;
    ::unlink(path.c_str());
    return make_system_error(err, std::string(what) + " " + path);
  };
  if (::chmod(path.c_str(), options.mode) < 0) return fail("chmod");
  if ((options.owner_uid || options.owner_gid) &&
      ::chown(path.c_str(), options.owner_uid.value_or(static_cast<uid_t>(-1)),
              options.owner_gid.value_or(static_cast<gid_t>(-1))) < 0)
    return fail("chown");
  if (::listen(fd.get(), SOMAXCONN) < 0) return fail("listen");
  return fd;
}

namespace {

std::string_view file_name_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

unix_listener_state unix_listener_in_table(std::string_view table, const std::string& path) {
  constexpr unsigned long so_acceptcon = 0x00010000;  // __SO_ACCEPTCON: listen() was called
  constexpr unsigned long ss_unconnected = 1;
  bool ambiguous = false;
  std::size_t at = 0;
  while (at < table.size()) {
    auto end = table.find('\n', at);
    if (end == std::string_view::npos) end = table.size();
    const std::string line(table.substr(at, end - at));
    at = end + 1;
    // "Num: RefCount Protocol Flags Type St Inode Path", all hex but the
    // inode; a line without a path is an unbound socket, and the header's
    // fields do not parse as numbers.
    std::istringstream fields(line);
    std::string num, refcount, protocol, flags, type, state, inode;
    if (!(fields >> num >> refcount >> protocol >> flags >> type >> state >> inode)) continue;
    unsigned long flag_bits = 0, state_value = 0;
    try {
      flag_bits = std::stoul(flags, nullptr, 16);
      state_value = std::stoul(state, nullptr, 16);
    } catch (const std::exception&) {
      continue;
    }
    if (!(flag_bits & so_acceptcon) || state_value != ss_unconnected) continue;
    // The path is the rest of the line after one blank; it may hold blanks.
    const auto pos = fields.tellg();
    if (pos < 0 || static_cast<std::size_t>(pos) + 1 >= line.size()) continue;
    const std::string bound = line.substr(static_cast<std::size_t>(pos) + 1);
    if (bound.empty() || bound[0] == '@') continue;  // abstract: no file
    if (bound == path) return unix_listener_state::listening;
    if (file_name_of(bound) != file_name_of(path)) continue;
    if (bound[0] != '/') {
      ambiguous = true;
      continue;
    }
    if (same_file(bound, path)) return unix_listener_state::listening;
  }
  return ambiguous ? unix_listener_state::unknown : unix_listener_state::none_seen;
}

unix_listener_state unix_listener_at(const std::string& path) {
  std::ifstream in("/proc/net/unix");
  if (!in) return unix_listener_state::unknown;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return unix_listener_state::unknown;
  const std::string table = text.str();
  if (table.rfind("Num", 0) != 0) return unix_listener_state::unknown;  // not the table we know
  return unix_listener_in_table(table, path);
}

result<void> wait_ready(int fd, short events, std::optional<std::chrono::milliseconds> timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    int wait_ms = -1;
    if (timeout) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      wait_ms = left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, wait_ms);
    if (rc > 0) return {};
    if (rc == 0) return make_error(errc::timed_out, "");
    if (errno != EINTR) return make_system_error(errno, "poll");
  }
}

result<void> shutdown_socket(int fd, shutdown_how how, const std::string& what) {
  const int mode = how == shutdown_how::read    ? SHUT_RD
                   : how == shutdown_how::write ? SHUT_WR
                                                : SHUT_RDWR;
  if (::shutdown(fd, mode) < 0) return make_system_error(errno, "shutdown " + what);
  return {};
}

result<void> set_non_blocking(int fd, bool enabled) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return make_system_error(errno, "fcntl(F_GETFL)");
  const int wanted = enabled ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0)
    return make_system_error(errno, "fcntl(F_SETFL)");
  return {};
}

bool is_non_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_NONBLOCK) != 0;
}

}  // namespace hvsock::detail
