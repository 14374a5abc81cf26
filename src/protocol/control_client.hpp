// control_client: the client side of the control protocol
// (control_wire.hpp) that libhvsock's emulated transport and the preload
// shim share: opening a control connection, waiting for the daemon's reply,
// and name lookups.
//
// Inside an isolated partition (`hvsock run --vm NAME`) only that
// partition's control socket exists; a connection to any other path fails
// with a message that says so, instead of "is hvsockd running?".
//
// Thread safety: every function is safe to call from any thread; none keeps
// state. Library code: nothing here writes to stderr.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <hvsock/endpoint.hpp>
#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "protocol/control_wire.hpp"

namespace hvsock::detail {

// A new SOCK_SEQPACKET connection to the control socket at `path`.
result<unique_fd> open_control(const std::string& path);

// await_reply's reading without its words: waits at most `timeout` for the
// reply on `control` and returns its error's code (a refusal's errc, or
// timed_out, daemon_unavailable, protocol_error, or recvmsg's error), with
// `reply` filled in when one was read (also a refusal's). Allocates nothing
// unless poll or recvmsg itself fails: the preload shim calls it in forked
// children of threaded programs, where malloc's locks may be held forever by
// threads the child does not have.
// The fd the reply carried goes to `fd`, or is closed when that is null.
std::error_code read_reply(int control, std::chrono::milliseconds timeout, wire::reply& reply,
                           unique_fd* fd = nullptr);

// Waits at most `timeout` for the reply on `control`. A refusal becomes a
// failure with the daemon's reason (prefixed "what: " when `what` is not
// empty); a truncated or malformed message is protocol_error. The fd the
// reply carried, if any, comes back with it.
result<std::pair<wire::reply, unique_fd>> await_reply(int control,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& what);

// Asks the daemon behind `control_socket` for the GUID of a service
// (lookup_kind::service: the registered ElementName) or a partition
// (lookup_kind::partition: answered only if the caller's partition may reach
// it). invalid_argument for an empty or over-long name.
result<guid> look_up(const std::string& control_socket, wire::lookup_kind kind,
                     std::string_view name,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A partition named by name or VmId text: its VmId, and the VmId the switch
// reports for it to the caller's partition (on accept, as a peer): LOOPBACK
// for the caller itself, PARENT for its parent, else its VmId.
struct partition_names {
  vm_id id;
  vm_id as_peer;
};
result<partition_names> look_up_partition(
    const std::string& control_socket, std::string_view name_or_id,
    std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace hvsock::detail
