// The hvsock error category and message helpers.
#include <hvsock/error.hpp>

#include <cstring>

namespace hvsock {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "hvsock"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_guid: return "invalid GUID";
      case errc::invalid_argument: return "invalid argument";
      case errc::broadcast_not_allowed: return "the broadcast VmId has no meaning";
      case errc::service_not_registered: return "service not registered";
      case errc::service_disabled: return "service disabled";
      case errc::connection_refused: return "connection refused (no listener)";
      case errc::backlog_full: return "connection refused (listener backlog full)";
      case errc::network_unreachable: return "partition unreachable from here";
      case errc::unknown_partition: return "unknown partition";
      case errc::parent_on_host: return "the host partition has no parent";
      case errc::address_in_use: return "address already in use";
      case errc::timed_out: return "timed out";
      case errc::daemon_unavailable: return "hvsockd is not reachable";
      case errc::protocol_error: return "protocol error";
      case errc::no_vsock_port: return "service GUID has no vsock port";
      case errc::already_exists: return "already exists";
      case errc::not_found: return "not found";
      case errc::limit_reached: return "limit reached";
      case errc::permission_denied: return "permission denied";
      case errc::not_connected: return "not connected";
      case errc::would_block: return "operation would block";
      case errc::io_error: return "input/output error";
      case errc::message_too_long: return "message too long";
    }
    return "unknown hvsock error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_guid:
      case errc::invalid_argument:
      case errc::no_vsock_port: return std::errc::invalid_argument;
      case errc::broadcast_not_allowed:
      case errc::parent_on_host: return std::errc::address_not_available;
      case errc::service_not_registered:
      case errc::service_disabled:
      case errc::permission_denied: return std::errc::permission_denied;
      case errc::connection_refused:
      case errc::backlog_full:
      case errc::daemon_unavailable: return std::errc::connection_refused;
      case errc::network_unreachable:
      case errc::unknown_partition: return std::errc::network_unreachable;
      case errc::address_in_use: return std::errc::address_in_use;
      case errc::timed_out: return std::errc::timed_out;
      case errc::protocol_error: return std::errc::protocol_error;
      case errc::already_exists: return std::errc::file_exists;
      case errc::not_found: return std::errc::no_such_file_or_directory;
      case errc::limit_reached: return std::errc::too_many_files_open;
      case errc::not_connected: return std::errc::not_connected;
      case errc::would_block: return std::errc::operation_would_block;
      case errc::io_error: return std::errc::io_error;
      case errc::message_too_long: return std::errc::message_size;
    }
    return std::error_condition(value, *this);
  }
};

}  // namespace

const std::error_category& hvsock_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), hvsock_category()};
}

failure failure::with_context(const std::string& context) const {
  return failure(code_, context + ": " + message_);
}

failure make_error(errc code, const std::string& context) {
  return make_error(make_error_code(code), context);
}

failure make_error(std::error_code code, const std::string& context) {
  return failure(code, context.empty() ? code.message() : context + ": " + code.message());
}

failure make_system_error(int err, const std::string& context) {
  return make_error(std::error_code(err, std::system_category()), context);
}

}  // namespace hvsock
