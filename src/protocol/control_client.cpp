#include "protocol/control_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include "protocol/runtime_paths.hpp"
#include "sys/fd_passing.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::detail {

result<unique_fd> open_control(const std::string& path) {
  auto fd = connect_unix(path, SOCK_SEQPACKET);
  if (fd || fd.error().code() != make_error_code(errc::daemon_unavailable)) return fd;
  // In an isolated partition the other sockets are hidden on purpose.
  if (auto inside = isolated_partition(); inside)
    return failure(errc::permission_denied, "no control socket at " + path + ": from partition \"" +
                                                inside->name + "\" only its own control socket (" +
                                                inside->control_socket + ") is reachable");
  return fd;
}

std::error_code read_reply(int control, std::chrono::milliseconds timeout, wire::reply& reply,
                           unique_fd* fd) {
  if (auto ready = wait_ready(control, POLLIN, timeout); !ready)
    return make_error_code(errc::timed_out);
  std::array<std::byte, wire::max_message_size + 1> raw{};
  auto got = receive_message(control, raw);
  if (!got) return got.error().code();
  if (got->size == 0) return make_error_code(errc::daemon_unavailable);
  auto decoded =
      wire::decode<wire::reply>(std::span(raw.data(), got->size), wire::message_type::reply);
  if (!decoded || got->truncated) return make_error_code(errc::protocol_error);
  reply = *decoded;
  if (fd != nullptr) *fd = std::move(got->fd);
  if (reply.status != 0) return make_error_code(static_cast<errc>(reply.status));
  return {};
}

result<std::pair<wire::reply, unique_fd>> await_reply(int control,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& what) {
  auto context = [&](failure f) { return what.empty() ? f : f.with_context(what); };
  wire::reply reply{};
  unique_fd fd;
  const std::error_code error = read_reply(control, timeout, reply, &fd);
  if (!error) return std::pair{reply, std::move(fd)};
  if (reply.status != 0) {
    std::string reason = wire::reply_reason(reply);
    if (reason.empty()) reason = error.message();
    return context(failure(error, std::move(reason)));
  }
  if (error == make_error_code(errc::timed_out))
    return context(failure(errc::timed_out, "no answer from hvsockd within " +
                                                std::to_string(timeout.count()) + " ms"));
  if (error == make_error_code(errc::daemon_unavailable))
    return context(failure(errc::daemon_unavailable, "hvsockd closed the connection"));
  if (error == make_error_code(errc::protocol_error))
    return context(failure(errc::protocol_error, "malformed reply from hvsockd"));
  return context(make_error(error, "recvmsg"));
}

namespace {

result<endpoint> look_up_endpoint(const std::string& control_socket, wire::lookup_kind kind,
                                  std::string_view name, std::chrono::milliseconds timeout) {
  const std::string what = std::string("look up ") +
                           (kind == wire::lookup_kind::service ? "service" : "partition") + " \"" +
                           std::string(name) + "\"";
  if (name.empty() || name.size() > wire::max_lookup_name_length)
    return failure(
        errc::invalid_argument,
        what + ": a name must have 1.." + std::to_string(wire::max_lookup_name_length) + " bytes");
  auto control = open_control(control_socket);
  if (!control) return control.error().with_context(what);
  auto request = wire::make<wire::lookup_request>(wire::message_type::lookup_request);
  request.kind = static_cast<std::uint32_t>(kind);
  request.name_length = static_cast<std::uint16_t>(name.size());
  std::memcpy(request.name, name.data(), name.size());
  if (auto sent = send_message(control->get(), wire::as_bytes(request)); !sent)
    return sent.error().with_context(what);
  auto answer = await_reply(control->get(), timeout, what);
  if (!answer) return answer.error();
  return wire::from_raw(answer->first.peer);
}

}  // namespace

result<guid> look_up(const std::string& control_socket, wire::lookup_kind kind,
                     std::string_view name, std::chrono::milliseconds timeout) {
  auto found = look_up_endpoint(control_socket, kind, name, timeout);
  if (!found) return found.error();
  return kind == wire::lookup_kind::service ? guid(found->service) : guid(found->vm);
}

result<partition_names> look_up_partition(const std::string& control_socket,
                                          std::string_view name_or_id,
                                          std::chrono::milliseconds timeout) {
  auto found = look_up_endpoint(control_socket, wire::lookup_kind::partition, name_or_id, timeout);
  if (!found) return found.error();
  return partition_names{found->vm, found->service};
}

}  // namespace hvsock::detail
