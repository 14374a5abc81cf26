// The client side of a connection to a VM's guest agent, shared by hvsock
// exec and hvsock cp: connect, say HELLO, check the answer.
#pragma once

#include <chrono>
#include <string>

#include "cli_common.hpp"

namespace hvsock::cli {

// What hvsock exec and cp exit with when the agent is unreachable, lost,
// or refuses the connection.
inline constexpr int exit_agent_lost = 255;

// Connects to the agent in `vm` and exchanges HELLO. Ends the program with
// exit_agent_lost and a one-line reason prefixed by `what`: how to register
// the service or start the agent when that is the problem, and the agent's
// own words ("refused by the agent: ...") when it answers HELLO with ERROR
// (a partition it does not admit, too many sessions, another version).
stream connect_agent(const std::string& vm, std::chrono::milliseconds timeout,
                     const std::string& what, const global_options& options);

}  // namespace hvsock::cli
