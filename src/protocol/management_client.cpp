#include "protocol/management_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "protocol/runtime_paths.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::detail {

result<management_client> management_client::open(const std::string& runtime_dir,
                                                  std::chrono::milliseconds timeout) {
  auto fd = connect_unix(management_socket_path(runtime_dir), SOCK_STREAM);
  if (!fd) {
    // Management is the host's: an isolated partition has no way to it.
    if (auto inside = isolated_partition(); inside)
      return failure(errc::permission_denied,
                     "the management socket is not reachable from "
                     "partition \"" +
                         inside->name + "\" (manage hvsockd from the host)");
    return fd.error();
  }
  return management_client(std::move(*fd), timeout);
}

result<nlohmann::json> management_client::call(const std::string& op, nlohmann::json args) {
  const std::string what = "hvsockd " + op;
  args["op"] = op;
  const std::string line = args.dump() + "\n";
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failure(errc::daemon_unavailable,
                     what + ": hvsockd went away (" +
                         std::error_code(errno, std::system_category()).message() + ")");
    }
    sent += static_cast<std::size_t>(n);
  }
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string reply_line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      auto reply = nlohmann::json::parse(reply_line, nullptr, false);
      if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok"))
        return failure(errc::protocol_error, what + ": malformed reply from hvsockd");
      if (reply["ok"] == true) return reply.value("result", nlohmann::json());
      const int code = reply.value("code", static_cast<int>(errc::protocol_error));
      return failure(make_error_code(static_cast<errc>(code)),
                     reply.value("error", std::string("hvsockd refused ") + op));
    }
    if (auto ready = wait_ready(fd_.get(), POLLIN, timeout_); !ready)
      return failure(errc::timed_out, what + ": no answer from hvsockd within " +
                                          std::to_string(timeout_.count()) + " ms");
    char chunk[16384];
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return failure(errc::daemon_unavailable, what + ": hvsockd closed the connection");
    pending_.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace hvsock::detail
