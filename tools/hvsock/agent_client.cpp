#include "agent_client.hpp"

#include "agent/agent_protocol.hpp"

namespace hvsock::cli {

stream connect_agent(const std::string& vm, std::chrono::milliseconds timeout,
                     const std::string& what, const global_options& options) {
  const endpoint target{resolve_vm(vm, options), agent::agent_service};
  auto s = stream::connect(target, {.timeout = timeout, .control_socket = control_socket(options)});
  if (!s) {
    std::string hint;
    if (s.error().code() == make_error_code(errc::service_not_registered))
      hint = "; register the agent's service: hvsock service register --name \"" +
             std::string(agent::agent_service_name) + "\" --port " +
             std::to_string(agent::agent_port);
    else if (s.error().code() == std::errc::connection_refused)
      hint = "; is the agent running there? (hvsock run --vm " + vm + " -- hvsock agent)";
    fail(what + ": " + s.error().message() + hint, exit_agent_lost);
  }
  if (!agent::write_all(s->native_handle(), agent::encode_hello()))
    fail(what + ": the agent went away", exit_agent_lost);
  auto hello = agent::read_frame(s->native_handle());
  if (!hello || hello->type != agent::frame_type::hello || !agent::decode_hello(hello->payload))
    fail(what + ": no agent answered on " + target.to_string(), exit_agent_lost);
  return std::move(*s);
}

}  // namespace hvsock::cli
