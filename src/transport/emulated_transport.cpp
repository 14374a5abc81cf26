// The emulated transport: each connect or listen opens its own connection to
// the partition's control socket and speaks control_wire.hpp over it.
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>

#include "protocol/control_client.hpp"
#include "protocol/control_wire.hpp"
#include "sys/fd_passing.hpp"
#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock::detail {
namespace {

constexpr std::chrono::milliseconds bind_reply_timeout{5000};

using buffer = std::array<std::byte, wire::max_message_size + 1>;

class emulated_transport final : public transport {
 public:
  explicit emulated_transport(std::string control_socket)
      : control_socket_(std::move(control_socket)) {}

  std::string_view name() const override { return "emulated"; }

  result<stream> connect(const endpoint& target, std::chrono::milliseconds timeout,
                         socket_type type) const override {
    const std::string what = "connect " + target.to_string();
    auto control = open_control(control_socket_);
    if (!control) return control.error().with_context(what);
    auto request = wire::make<wire::connect_request>(wire::message_type::connect_request);
    request.target = wire::to_raw(target);
    request.socket_type = wire::to_wire(type);
    if (auto sent = send_message(control->get(), wire::as_bytes(request)); !sent)
      return sent.error().with_context(what);
    auto answer = await_reply(control->get(), timeout, what);
    if (!answer) return answer.error();
    auto& [reply, fd] = *answer;
    if (!fd) return failure(errc::protocol_error, what + ": hvsockd sent no stream");
    return stream(std::move(fd), wire::from_raw(reply.local), wire::from_raw(reply.peer));
  }

  result<listener> listen(const endpoint& local, int backlog, socket_type type) const override {
    const std::string what = "listen " + local.to_string();
    if (backlog < 1 || backlog > max_backlog)
      return failure(errc::invalid_argument,
                     what + ": backlog must be 1.." + std::to_string(max_backlog));
    auto control = open_control(control_socket_);
    if (!control) return control.error().with_context(what);
    auto request = wire::make<wire::bind_request>(wire::message_type::bind_request);
    request.local = wire::to_raw(local);
    request.backlog = static_cast<std::uint32_t>(backlog);
    request.socket_type = wire::to_wire(type);
    if (auto sent = send_message(control->get(), wire::as_bytes(request)); !sent)
      return sent.error().with_context(what);
    auto answer = await_reply(control->get(), bind_reply_timeout, what);
    if (!answer) return answer.error();
    return listener(std::move(*control), wire::from_raw(answer->first.local), shared_from_this(),
                    type);
  }

  result<stream> accept(int listener_fd, const endpoint& listener_local,
                        std::optional<std::chrono::milliseconds> timeout) const override {
    const std::string what = "accept " + listener_local.to_string();
    if (timeout) {
      if (auto ready = wait_ready(listener_fd, POLLIN, timeout); !ready)
        return ready.error().with_context(what);
    }
    buffer raw;
    auto got = receive_message(listener_fd, raw);
    // A stopped hvsockd closes the listener: EOF, or a reset when it died
    // with our last `accepted` unread. Either way the listener is finished.
    if (!got && (got.error().code() == std::errc::connection_reset ||
                 got.error().code() == std::errc::connection_aborted))
      return failure(errc::daemon_unavailable,
                     what + ": hvsockd went away (the listener was reset)");
    if (!got) return got.error().with_context(what);
    if (got->size == 0)
      return failure(errc::daemon_unavailable,
                     what + ": hvsockd went away (it closed the listener)");
    auto incoming = wire::decode<wire::incoming>(std::span(raw.data(), got->size),
                                                 wire::message_type::incoming);
    if (!incoming || got->truncated || got->fd_count != 1)
      return failure(errc::protocol_error, what + ": malformed message from hvsockd");
    // Tell the switch one queued connection is taken. If the switch is gone
    // the stream is still good, so a failure here is not the caller's error.
    const auto ack = wire::make<wire::accepted>(wire::message_type::accepted);
    (void)send_message(listener_fd, wire::as_bytes(ack), -1, MSG_DONTWAIT);
    return stream(std::move(got->fd), wire::from_raw(incoming->local),
                  wire::from_raw(incoming->peer));
  }

 private:
  // Waits for the single reply on a control connection; turns an error reply
  // into an error whose message is the operation and the switch's reason.

  std::string control_socket_;
};

}  // namespace

std::shared_ptr<const transport> make_emulated_transport(std::string control_socket) {
  return std::make_shared<emulated_transport>(std::move(control_socket));
}

}  // namespace hvsock::detail
