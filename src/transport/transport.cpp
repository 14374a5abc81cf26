#include "transport/transport.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string_view>

#include "protocol/runtime_paths.hpp"

namespace hvsock::detail {
namespace {

// A virtio-vsock device bound to its driver: this is a guest with a host.
// Reads sysfs only; never touches a vsock socket.
bool is_virtio_vsock_guest() {
  std::error_code ec;
  const std::filesystem::path driver = "/sys/bus/virtio/drivers/vmw_vsock_virtio_transport";
  for (const auto& entry : std::filesystem::directory_iterator(driver, ec))
    if (entry.path().filename().string().starts_with("virtio")) return true;
  return false;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

result<std::shared_ptr<const transport>> select_transport(const std::string& control_socket) {
  if (!control_socket.empty()) return make_emulated_transport(control_socket);
  const char* forced = std::getenv(env_transport);
  const std::string_view choice = forced != nullptr ? forced : "";
  if (choice == "emulated") return make_emulated_transport(process_control_socket());
  if (choice == "kernel") return make_kernel_transport();
  if (!choice.empty())
    return failure(errc::invalid_argument, std::string(env_transport) + "=" + std::string(choice) +
                                               ": expected \"emulated\" or \"kernel\"");
  const bool configured = std::getenv(env_control_socket) != nullptr;
  const std::string socket = process_control_socket();
  if (!configured && !exists(socket) && is_virtio_vsock_guest()) return make_kernel_transport();
  return make_emulated_transport(socket);
}

}  // namespace hvsock::detail
