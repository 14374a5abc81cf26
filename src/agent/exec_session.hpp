// exec_session: the agent's side of one connection: read HELLO and the
// request, then serve it. An EXEC starts the command (pipes, or a
// pseudo-terminal for -t) in its own process group, moves stdin in and
// stdout/stderr out as frames with backpressure both ways, passes on SIGNAL
// and WINSIZE, and sends EXIT once the command has exited and its output is
// drained; a PUT or GET goes to copy_session.hpp. Runs in a process of its
// own (the agent forks one per connection), so one command's trouble
// touches no other. Every fd it opens is close-on-exec: the command gets
// its stdio and nothing else of the agent's.
#pragma once

#include <chrono>

namespace hvsock::agent {

// How long a new connection has to send HELLO and its request.
inline constexpr std::chrono::milliseconds default_request_timeout{10000};

// Serves the request on `socket` (a connected, blocking stream); returns
// when it is over. A peer that has not sent HELLO and its request within
// `request_timeout` of the call gets ERROR and EXIT 255, and the session
// ends. Never throws. The return value is for logs: 0 when an EXIT 0 (or
// the command's EXIT) was sent.
int run_exec_session(int socket,
                     std::chrono::milliseconds request_timeout = default_request_timeout);

}  // namespace hvsock::agent
