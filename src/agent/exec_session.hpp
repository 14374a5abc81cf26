// exec_session: the agent's side of one request, on one connection: read
// HELLO and EXEC, start the command (pipes, or a pseudo-terminal for -t) in
// its own process group, move stdin in and stdout/stderr out as frames with
// backpressure both ways, pass on SIGNAL and WINSIZE, and send EXIT once
// the command has exited and its output is drained. Runs in a process of
// its own (the agent forks one per connection), so one command's trouble
// touches no other.
#pragma once

namespace hvsock::agent {

// Serves the request on `socket` (a connected stream); returns when it is
// over. Never throws. The return value is for logs: 0 when an EXIT was sent.
int run_exec_session(int socket);

}  // namespace hvsock::agent
