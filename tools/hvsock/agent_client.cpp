#include "agent_client.hpp"

#include "agent/agent_protocol.hpp"

namespace hvsock::cli {

namespace {

std::string text_of(const agent::frame& f) {
  return {reinterpret_cast<const char*>(f.payload.data()), f.payload.size()};
}

}  // namespace

stream connect_agent(const std::string& vm, std::chrono::milliseconds timeout,
                     const std::string& what, const global_options& options) {
  const endpoint target{resolve_vm(vm, options), agent::agent_service};
  auto s = stream::connect(target, {.timeout = timeout, .control_socket = control_socket(options)});
  if (!s) {
    std::string hint;
    if (s.error().code() == make_error_code(errc::service_not_registered)) {
      hint = "; register the agent's service: hvsock service register --name \"" +
             std::string(agent::agent_service_name) + "\" --port " +
             std::to_string(agent::agent_port);
    } else if (s.error().code() == std::errc::connection_refused) {
      // No listener that takes this partition: none at all, or an agent
      // that admits only its parent (the default).
      hint = "; is the agent running there";
      if (!vm_id_from_word(vm) && !guid::parse(vm))
        hint += " (hvsock run --vm " + vm + " -- hvsock agent)";
      hint +=
          ", and does it admit this partition? (by default an agent admits only its "
          "parent; see hvsock agent --allow)";
    }
    fail(what + ": " + s.error().message() + hint, exit_agent_lost);
  }
  const int sock = s->native_handle();
  const bool sent = static_cast<bool>(agent::write_all(sock, agent::encode_hello()));
  // Even when HELLO could not be sent, the agent may have said why it
  // closed (a partition it does not admit, too many sessions): read that.
  auto answer = agent::read_frame(sock);
  if (answer && answer->type == agent::frame_type::error)
    fail(what + ": refused by the agent: " + text_of(*answer), exit_agent_lost);
  if (!sent) fail(what + ": the agent went away", exit_agent_lost);
  if (!answer || answer->type != agent::frame_type::hello || !agent::decode_hello(answer->payload))
    fail(what + ": no agent answered on " + target.to_string(), exit_agent_lost);
  return std::move(*s);
}

}  // namespace hvsock::cli
