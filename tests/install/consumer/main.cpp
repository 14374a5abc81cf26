// Uses the installed headers and library: parses a GUID, maps a vsock port,
// and fails cleanly when no hvsockd is running at the given runtime dir.
#include <hvsock/hvsock.hpp>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const auto id = hvsock::guid::parse("{00000AC9-FACB-11E6-BD58-64006A7986D3}");
  if (!id || hvsock::port_from_service_id(*id).value() != 2761) return 3;
  auto s = hvsock::stream::connect({hvsock::vm_id_parent, *id},
                                   {.timeout = std::chrono::seconds(2), .control_socket = argv[1]});
  if (s || s.error().code() != hvsock::errc::daemon_unavailable) return 4;
  std::cout << "consumer ok: " << s.error().message() << "\n";
  return 0;
}
