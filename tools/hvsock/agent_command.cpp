// hvsock agent: the guest agent. Listens on the agent service (vsock port
// 0x4856, "hvsock Guest Agent") in its partition (under `hvsock run --vm`)
// or, in a QEMU guest, on the guest kernel's vsock; serves each connection
// in a process of its own (src/agent/exec_session.hpp), so many execs run at
// once and one going wrong touches no other. Protocol: docs/agent-protocol.md.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "agent/agent_protocol.hpp"
#include "agent/exec_session.hpp"
#include "cli_common.hpp"

namespace hvsock::cli {

void add_agent_command(CLI::App& app, global_options& options) {
  auto* agent = app.add_subcommand(
      "agent", "Run the guest agent (serves hvsock exec) in this partition or QEMU guest");
  agent->callback([&options] {
    auto l = listener::listen({vm_id_wildcard, agent::agent_service},
                              {.backlog = 64, .control_socket = control_socket(options)});
    if (!l) fail(l.error());
    std::cerr << "hvsock agent: listening on " << l->local_endpoint().to_string() << " (\""
              << agent::agent_service_name << "\", vsock port " << agent::agent_port << ")"
              << std::endl;
    ::signal(SIGCHLD, SIG_IGN);  // sessions are reaped by the kernel
    for (;;) {
      auto s = l->accept();
      if (!s) {
        if (s.error().code() == make_error_code(errc::daemon_unavailable) ||
            s.error().code() == std::errc::connection_aborted)
          fail(s.error());
        std::cerr << "hvsock agent: " << s.error().message() << std::endl;
        continue;
      }
      const pid_t pid = ::fork();
      if (pid == 0) {
        l->close();
        ::signal(SIGCHLD, SIG_DFL);  // the session waits for its command
        ::_exit(agent::run_exec_session(s->native_handle()));
      }
      if (pid < 0) std::perror("hvsock agent: fork");
    }
  });
}

}  // namespace hvsock::cli
