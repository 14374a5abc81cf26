// relisten_echo PORT: a libhvsock program that opted in to surviving hvsockd
// restarts (listen_options::relisten). Listens on WILDCARD:PORT, answers each
// connection with what it sent (after the peer's half-close), one at a time,
// and reports the listener's events on stderr:
//   relisten_echo: listening on ENDPOINT
//   relisten_echo: hvsockd went away (...)
//   relisten_echo: hvsockd is back: listening on ENDPOINT again
// Used by restart.servers_come_back.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <hvsock/listener.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: relisten_echo PORT\n";
    return 2;
  }
  const auto port = static_cast<std::uint32_t>(std::strtoul(argv[1], nullptr, 10));
  hvsock::listen_options options;
  options.relisten = true;
  options.on_event = [](const hvsock::listener_event& e) {
    switch (e.what) {
      case hvsock::listener_event::kind::went_away:
        std::cerr << "relisten_echo: hvsockd went away (" << e.message << ")" << std::endl;
        break;
      case hvsock::listener_event::kind::back:
        std::cerr << "relisten_echo: hvsockd is back: " << e.message << std::endl;
        break;
      case hvsock::listener_event::kind::relisten_failed:
        std::cerr << "relisten_echo: listening again failed: " << e.message << std::endl;
        break;
    }
  };
  auto l = hvsock::listener::listen({hvsock::vm_id_wildcard, hvsock::service_id_from_port(port)},
                                    options);
  if (!l) {
    std::cerr << "relisten_echo: " << l.error().message() << std::endl;
    return 1;
  }
  std::cerr << "relisten_echo: listening on " << l->local_endpoint().to_string() << std::endl;
  for (;;) {
    auto s = l->accept();  // waits through hvsockd restarts
    if (!s) {
      std::cerr << "relisten_echo: " << s.error().message() << std::endl;
      return 1;
    }
    std::string got;
    std::vector<char> buffer(4096);
    for (;;) {
      auto n = s->read(buffer.data(), buffer.size());
      if (!n || *n == 0) break;
      got.append(buffer.data(), *n);
    }
    (void)s->write_all(got);
  }
}
