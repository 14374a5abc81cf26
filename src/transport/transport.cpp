#include "transport/transport.hpp"

#include "protocol/runtime_paths.hpp"

namespace hvsock::detail {

std::shared_ptr<const transport> select_transport(const std::string& control_socket) {
  return make_emulated_transport(control_socket.empty() ? process_control_socket()
                                                        : control_socket);
}

}  // namespace hvsock::detail
