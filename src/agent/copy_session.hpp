// copy_session: the agent's side of one `hvsock cp` request, after HELLO.
// PUT receives a file tree from the client into this partition; GET sends
// one out (the tree format and the atomic, digest-checked writes are
// file_transfer.hpp's). The session ends with EXIT 0, or ERROR (the reason)
// and EXIT 1. Runs in the per-connection process the agent forks, like an
// exec (exec_session.hpp dispatches to it).
#pragma once

#include "agent/agent_protocol.hpp"

namespace hvsock::agent {

// Serves `request` (a PUT or GET frame; anything else is refused) on
// `socket`, a connected blocking stream. Never throws. Returns 0 when EXIT 0
// was sent, 1 otherwise (for logs).
int run_copy_session(int socket, const frame& request);

}  // namespace hvsock::agent
