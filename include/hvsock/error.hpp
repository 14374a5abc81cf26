// Errors: the hvsock::errc codes, their std::error_category, and
// hvsock::failure, a code plus a human message that names the operation and the
// endpoint ("connect parent:00001388-facb-...: service not registered").
//
// Every errc maps to a portable std::errc condition, so callers can test
// `ec == std::errc::connection_refused` without knowing hvsock's codes.
#pragma once

#include <string>
#include <system_error>
#include <utility>

namespace hvsock {

enum class errc {
  invalid_guid = 1,        // text is not a GUID
  invalid_argument,        // a bad parameter (name, port, backlog, ...)
  broadcast_not_allowed,   // HV_GUID_BROADCAST is defined but has no meaning
  service_not_registered,  // the service GUID is not in the registry
  service_disabled,        // registered but disabled (globally or for this VM)
  connection_refused,      // the target partition has no listener for it
  backlog_full,            // the listener's accept queue is full
  network_unreachable,     // the target partition may not be reached from here
  unknown_partition,       // no partition has that name or VmId
  parent_on_host,          // PARENT used on the host partition, which has none
  address_in_use,          // (VmId, service) already bound in this partition
  timed_out,               // connect/accept/daemon reply did not come in time
  daemon_unavailable,      // hvsockd is not running or the socket is unreachable
  protocol_error,          // a malformed message on a control channel
  no_vsock_port,           // a service GUID not of the vsock template form
  already_exists,          // a partition or service of that name/id exists
  not_found,               // a registry entry that does not exist
  limit_reached,           // a configured limit (clients, partitions) is reached
  permission_denied,       // the OS refused access (socket file mode, ...)
  not_connected,           // the operation needs a connected stream
  would_block,             // non-blocking operation could not complete now
  io_error,                // the operating system failed an operation (disk, memory)
  message_too_long,        // a message larger than the socket can carry whole
};

const std::error_category& hvsock_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// A failed operation: what went wrong (code) and a message for a person.
class failure {
 public:
  failure() = default;
  failure(std::error_code code, std::string message) : code_(code), message_(std::move(message)) {}
  failure(errc code, std::string message) : failure(make_error_code(code), std::move(message)) {}

  const std::error_code& code() const { return code_; }
  // The full message: "operation target: reason". Never empty for a real error.
  const std::string& message() const { return message_; }

  // Prepends context: failure(ec, "timed out").with_context("connect web:...")
  // gives "connect web:...: timed out".
  failure with_context(const std::string& context) const;

 private:
  std::error_code code_;
  std::string message_;
};

// Builds an error from a code; the message is "context: <code's message>".
failure make_error(errc code, const std::string& context);
failure make_error(std::error_code code, const std::string& context);
// From errno: make_system_error(errno, "connect /run/hvsock/host.sock").
failure make_system_error(int err, const std::string& context);

}  // namespace hvsock

template <>
struct std::is_error_code_enum<hvsock::errc> : std::true_type {};
