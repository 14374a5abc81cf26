// The "hybrid vsock" line protocol of Firecracker's vsock device, also
// spoken by Cloud Hypervisor and vhost-device-vsock (docs/hybrid-vsock.md):
// a host process connects to the VMM's Unix socket and writes
// "CONNECT <port>\n"; once the guest's port accepts, the VMM answers
// "OK <host port>\n" and the connection is the stream. A refusal is the
// socket closed without an answer. Both sides of it live here: hvsockd
// serves it for QEMU guests and speaks it to Firecracker / Cloud
// Hypervisor VMs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <hvsock/result.hpp>

namespace hvsock::detail {

// The longest line either side accepts, its newline included. The longest
// valid one, "CONNECT 4294967295\n", has 19 bytes.
inline constexpr std::size_t hybrid_max_line = 64;

// "CONNECT <port>\n"
std::string hybrid_connect_line(std::uint32_t port);
// "OK <host port>\n"
std::string hybrid_ok_line(std::uint32_t host_port);

// A line without its '\n': a keyword and a
// decimal port separated by blanks (spaces or tabs), blanks and one '\r'
// at the end tolerated; anything else (another keyword, a sign, a port
// over 2^32-1, a third word) is nullopt.
std::optional<std::uint32_t> parse_hybrid_connect(std::string_view line);
std::optional<std::uint32_t> parse_hybrid_ok(std::string_view line);

// Reads what `fd` has of a line into `line` (without the '\n'), never a
// byte past the '\n': those are the stream's. Does not block (MSG_DONTWAIT).
// true once the line is whole, false while more is to come; a failure for
// EOF, an error, or a line over hybrid_max_line bytes.
result<bool> read_hybrid_line(int fd, std::string& line);

}  // namespace hvsock::detail
