// socket_type: whether an hvsock connection is a byte stream or keeps
// message boundaries. The two share one address space (a service bound as
// one type is in use for the other) but never connect to each other: the
// switch refuses a connect whose type differs from the listener's, as
// Linux's vsock does.
#pragma once

#include <cstddef>
#include <string_view>

namespace hvsock {

enum class socket_type {
  stream,     // SOCK_STREAM: hvsock::stream, hvsock::listener
  seqpacket,  // SOCK_SEQPACKET: hvsock::message_socket, hvsock::message_listener
};

// The largest message hvsock carries on every path: hvsockd's socket pairs,
// its QEMU guests' vsock device and, inside a guest, the kernel transport's
// SO_VM_SOCKETS_BUFFER_SIZE. Four times Linux vsock's default buffer.
inline constexpr std::size_t max_seqpacket_message_size = std::size_t{1} << 20;

constexpr std::string_view to_string(socket_type type) {
  return type == socket_type::stream ? "stream" : "seqpacket";
}

}  // namespace hvsock
