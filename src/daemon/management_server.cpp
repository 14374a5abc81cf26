// management_server: the JSON requests, and the buffered non-blocking I/O of
// management clients.
#include "daemon/management_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <optional>
#include <utility>

namespace hvsock::daemon {
namespace {

using json = nlohmann::ordered_json;

constexpr std::size_t read_chunk = 64 * 1024;

failure bad_request(std::string message) {
  return failure(errc::invalid_argument, std::move(message));
}

const json* field(const json& request, const char* key) {
  auto it = request.find(key);
  return it == request.end() || it->is_null() ? nullptr : &*it;
}

result<std::optional<std::string>> optional_string(const json& request, const char* key,
                                                   std::string_view op) {
  const json* v = field(request, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return bad_request(fmt::format("{}: \"{}\" must be a string", op, key));
  return std::optional<std::string>(v->get<std::string>());
}

result<std::string> required_string(const json& request, const char* key, std::string_view op) {
  auto v = optional_string(request, key, op);
  if (!v) return v.error();
  if (!*v) return bad_request(fmt::format("{}: \"{}\" is required", op, key));
  return std::move(**v);
}

result<std::optional<std::uint32_t>> optional_u32(const json& request, const char* key,
                                                  std::string_view op) {
  const json* v = field(request, key);
  if (v == nullptr) return std::optional<std::uint32_t>();
  if (!v->is_number_unsigned() || v->get<unsigned long long>() > 0xffffffffULL)
    return bad_request(fmt::format("{}: \"{}\" must be an integer from 0 to 4294967295", op, key));
  return std::optional<std::uint32_t>(v->get<std::uint32_t>());
}

result<bool> optional_bool(const json& request, const char* key, std::string_view op) {
  const json* v = field(request, key);
  if (v == nullptr) return false;
  if (!v->is_boolean())
    return bad_request(fmt::format("{}: \"{}\" must be true or false", op, key));
  return v->get<bool>();
}

result<std::optional<guid>> optional_guid(const json& request, const char* key,
                                          std::string_view op) {
  auto text = optional_string(request, key, op);
  if (!text) return text.error();
  if (!*text) return std::optional<guid>();
  auto parsed = guid::parse(**text);
  if (!parsed)
    return failure(parsed.error().code(),
                   fmt::format("{}: \"{}\": {}", op, key, parsed.error().message()));
  return std::optional<guid>(*parsed);
}

// The "code" of an error response: an hvsock::errc value. OS errors (from
// saving the state, creating a socket file) are mapped to the nearest one.
int wire_code(const std::error_code& code) {
  if (code.category() == hvsock_category()) return code.value();
  if (code == std::errc::permission_denied || code == std::errc::operation_not_permitted ||
      code == std::errc::read_only_file_system)
    return static_cast<int>(errc::permission_denied);
  if (code == std::errc::no_space_on_device || code == std::errc::too_many_files_open ||
      code == std::errc::too_many_files_open_in_system)
    return static_cast<int>(errc::limit_reached);
  if (code == std::errc::address_in_use) return static_cast<int>(errc::address_in_use);
  return static_cast<int>(errc::io_error);
}

std::string dump_line(const json& value) {
  // Strings come from validated input, but never let a stray byte turn into
  // an exception on the way out.
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

management_server::management_server(event_loop& loop, client_budget& budget, context ctx,
                                     log_function log)
    : loop_(loop),
      budget_(budget),
      gate_(budget,
            fmt::format("client limit ({}) reached; refusing new management clients", budget.max()),
            log),
      ctx_(std::move(ctx)),
      log_(std::move(log)) {}

management_server::~management_server() { close(); }

result<void> management_server::open(const std::string& path, const socket_file_options& options) {
  auto listener =
      socket_listener::open(loop_, gate_, path, SOCK_STREAM, options, "management socket", log_,
                            [this](unique_fd fd) { return add_client(std::move(fd)); });
  if (!listener) return listener.error().with_context("management socket");
  listener_ = std::move(*listener);
  return {};
}

void management_server::close() {
  while (!clients_.empty()) close_client(clients_.begin()->first);
  listener_.reset();  // removes the socket file
}

// --- requests ----------------------------------------------------------------

std::string management_server::handle_line(std::string_view line) {
  json response;
  result<json> outcome = failure(errc::invalid_argument, "request is not valid JSON");
  json request = json::parse(line, nullptr, false);
  if (!request.is_discarded()) {
    try {
      outcome = dispatch(request);
    } catch (const std::exception& e) {
      // A bug, not the client's fault; keep serving.
      log_(log_level::error, fmt::format("management request failed unexpectedly: {}", e.what()));
      outcome = failure(errc::protocol_error, fmt::format("internal error: {}", e.what()));
    }
  }
  if (outcome) {
    response = json{{"ok", true}, {"result", std::move(*outcome)}};
  } else {
    response = json{{"ok", false},
                    {"code", wire_code(outcome.error().code())},
                    {"error", outcome.error().message()}};
  }
  return dump_line(response);
}

result<json> management_server::dispatch(const json& request) {
  if (!request.is_object()) return bad_request("a request must be a JSON object");
  const json* op_field = field(request, "op");
  if (op_field == nullptr || !op_field->is_string())
    return bad_request("a request needs an \"op\" string");
  const std::string op = op_field->get<std::string>();
  if (op == "status") return status();
  if (op == "service.register") return service_register(request);
  if (op == "service.list") return service_list();
  if (op == "service.enable") return service_set_enabled(request, true);
  if (op == "service.disable") return service_set_enabled(request, false);
  if (op == "service.remove") return service_remove(request);
  if (op == "service.import") return service_import(request);
  if (op == "vm.create") return vm_create(request);
  if (op == "vm.list") return vm_list();
  if (op == "vm.remove") return vm_remove(request);
  if (op == "vm.set") return vm_set(request);
  if (op == "stats") return stats_report();
  return bad_request(fmt::format(
      "unknown op \"{}\" (known: status, service.register, service.list, service.enable, "
      "service.disable, service.remove, service.import, vm.create, vm.list, vm.remove, vm.set, "
      "stats)",
      op.substr(0, 64)));
}

result<void> management_server::commit(const partition_tree& old_partitions,
                                       const service_registry& old_services) {
  auto saved = ctx_.store.save(ctx_.partitions, ctx_.services);
  if (saved) {
    // Hybrid vsock VMs listen on the ports of the services now enabled.
    ctx_.control.services_changed();
    return {};
  }
  ctx_.partitions = old_partitions;
  ctx_.services = old_services;
  log_(log_level::error, fmt::format("{} (the change was not made)", saved.error().message()));
  return saved.error().with_context("the change was not made");
}

json management_server::describe(const service_entry& s) const {
  json out{{"id", s.id.to_string()}, {"name", s.name}, {"enabled", s.enabled}};
  if (auto port = port_from_service_id(s.id)) out["port"] = *port;
  json disabled = json::array();
  for (const vm_id& vm : s.disabled_for) {
    const partition* p = ctx_.partitions.find(vm);
    disabled.push_back(p != nullptr ? p->name : vm.to_string());
  }
  out["disabled_for"] = std::move(disabled);
  return out;
}

json management_server::describe(const partition& p) const {
  const partition* parent = ctx_.partitions.parent_of(p);
  json out{{"name", p.name},
           {"id", p.id.to_string()},
           {"kind", std::string(to_string(p.kind))},
           {"parent", parent != nullptr ? json(parent->name) : json(nullptr)},
           {"cid", p.cid},
           {"backend", std::string(p.backend())}};
  if (!p.hybrid_vsock.empty()) {
    // Its VMM has the guest; hvsockd reaches it through the VMM's socket.
    out["control_socket"] = nullptr;
    out["hybrid_vsock"] = p.hybrid_vsock;
    out["vmm_socket_present"] = ctx_.control.vmm_socket_present(p.name);
  } else if (p.qemu) {
    // Processes cannot join a QEMU guest; QEMU attaches to its socket.
    out["control_socket"] = nullptr;
    out["vhost_user_socket"] = ctx_.control.vhost_user_socket_path(p.name);
    out["hybrid_socket"] = ctx_.control.hybrid_socket_path(p.name);
    out["guest_attached"] = ctx_.control.guest_attached(p.name);
    out["qmp_socket"] = p.qmp_socket.empty() ? json(nullptr) : json(p.qmp_socket);
  } else {
    out["control_socket"] = ctx_.control.socket_path(p.name);
  }
  return out;
}

result<json> management_server::status() const {
  return json{{"version", ctx_.version},
              {"pid", static_cast<long long>(::getpid())},
              {"state_dir", ctx_.state_dir},
              {"runtime_dir", ctx_.runtime_dir},
              {"partitions", ctx_.partitions.size()},
              {"services", ctx_.services.size()},
              {"clients", budget_.used()}};
}

result<json> management_server::service_register(const json& request) {
  constexpr std::string_view op = "service.register";
  auto name = required_string(request, "name", op);
  if (!name) return name.error();
  auto id = optional_guid(request, "id", op);
  if (!id) return id.error();
  auto port = optional_u32(request, "port", op);
  if (!port) return port.error();
  if (*id && *port) return bad_request("service.register: give \"id\" or \"port\", not both");
  service_id sid;
  if (*id) {
    sid = **id;
  } else if (*port) {
    sid = service_id_from_port(**port);
  } else {
    do {
      sid = guid::generate();
    } while (ctx_.services.find(sid) != nullptr);
  }
  const service_registry before = ctx_.services;
  auto added = ctx_.services.register_service(sid, std::move(*name));
  if (!added) return added.error();
  if (auto ok = commit(ctx_.partitions, before); !ok) return ok.error();
  const service_entry& s = *ctx_.services.find(sid);
  log_(log_level::notice, fmt::format("service registered: \"{}\" ({})", s.name, s.id.to_string()));
  return describe(s);
}

result<json> management_server::service_import(const json& request) {
  constexpr std::string_view op = "service.import";
  if (!request.contains("services") || !request["services"].is_array())
    return bad_request("service.import: \"services\" must be an array of {\"id\", \"name\"}");
  const service_registry before = ctx_.services;
  std::size_t added = 0, unchanged = 0;
  // Applied to the live registry, rolled back whole on the first refusal:
  // an import registers every service or none.
  auto refuse = [&](const failure& why) -> result<json> {
    ctx_.services = before;
    return why;
  };
  for (const auto& entry : request["services"]) {
    if (!entry.is_object()) return refuse(bad_request("service.import: an entry is not an object"));
    auto name = required_string(entry, "name", op);
    if (!name) return refuse(name.error());
    auto id = optional_guid(entry, "id", op);
    if (!id) return refuse(id.error());
    if (!*id) return refuse(bad_request("service.import: an entry has no \"id\""));
    // Already there, the same: nothing to do, so importing twice is harmless.
    if (const service_entry* s = ctx_.services.find(**id); s != nullptr && s->name == *name) {
      ++unchanged;
      continue;
    }
    auto ok = ctx_.services.register_service(**id, *name);
    if (!ok)
      return refuse(
          failure(ok.error().code(), fmt::format("{} ({}): {} (nothing was imported)", *name,
                                                 (*id)->to_string(), ok.error().message())));
    ++added;
  }
  if (added > 0) {
    if (auto ok = commit(ctx_.partitions, before); !ok) return ok.error();
    log_(log_level::notice,
         fmt::format("services imported: {} added, {} already registered", added, unchanged));
  }
  return json{{"added", added}, {"unchanged", unchanged}};
}

result<json> management_server::service_list() const {
  json out = json::array();
  for (const service_entry* s : ctx_.services.list()) out.push_back(describe(*s));
  return out;
}

result<json> management_server::service_set_enabled(const json& request, bool enabled) {
  const std::string_view op = enabled ? "service.enable" : "service.disable";
  auto which = required_string(request, "service", op);
  if (!which) return which.error();
  auto vm = optional_string(request, "vm", op);
  if (!vm) return vm.error();
  auto found = ctx_.services.resolve(*which);
  if (!found) return found.error();
  const service_id sid = (*found)->id;
  const service_registry before = ctx_.services;
  std::string scope;
  if (*vm) {
    const partition* p = ctx_.partitions.find(**vm);
    if (p == nullptr)
      return failure(errc::unknown_partition, fmt::format("no partition is named \"{}\"", **vm));
    if (auto ok = ctx_.services.set_enabled_for(sid, p->id, enabled); !ok) return ok.error();
    scope = fmt::format(" for \"{}\"", p->name);
  } else if (auto ok = ctx_.services.set_enabled(sid, enabled); !ok) {
    return ok.error();
  }
  if (auto ok = commit(ctx_.partitions, before); !ok) return ok.error();
  const service_entry& s = *ctx_.services.find(sid);
  log_(log_level::notice, fmt::format("service \"{}\" ({}) {}{}", s.name, s.id.to_string(),
                                      enabled ? "enabled" : "disabled", scope));
  return describe(s);
}

result<json> management_server::service_remove(const json& request) {
  auto which = required_string(request, "service", "service.remove");
  if (!which) return which.error();
  auto found = ctx_.services.resolve(*which);
  if (!found) return found.error();
  const service_entry removed = **found;
  const service_registry before = ctx_.services;
  if (auto ok = ctx_.services.remove(removed.id); !ok) return ok.error();
  if (auto ok = commit(ctx_.partitions, before); !ok) return ok.error();
  ctx_.counters.forget(removed.id);
  log_(log_level::notice,
       fmt::format("service removed: \"{}\" ({})", removed.name, removed.id.to_string()));
  return json{{"id", removed.id.to_string()}, {"name", removed.name}};
}

result<json> management_server::vm_create(const json& request) {
  constexpr std::string_view op = "vm.create";
  partition_spec spec;
  auto name = required_string(request, "name", op);
  if (!name) return name.error();
  spec.name = std::move(*name);
  auto parent = optional_string(request, "parent", op);
  if (!parent) return parent.error();
  if (*parent) spec.parent = std::move(**parent);
  auto kind = optional_string(request, "kind", op);
  if (!kind) return kind.error();
  if (*kind) {
    auto parsed = partition_kind_from_string(**kind);
    if (!parsed || *parsed == partition_kind::host)
      return bad_request(
          fmt::format("vm.create: \"kind\" is \"{}\", expected \"vm\" or \"container\"", **kind));
    spec.kind = *parsed;
  }
  auto id = optional_guid(request, "id", op);
  if (!id) return id.error();
  spec.id = *id;
  auto cid = optional_u32(request, "cid", op);
  if (!cid) return cid.error();
  spec.cid = *cid;
  auto qemu = optional_bool(request, "qemu", op);
  if (!qemu) return qemu.error();
  spec.qemu = *qemu;
  auto qmp = optional_string(request, "qmp", op);
  if (!qmp) return qmp.error();
  if (*qmp) {
    if (!spec.qemu)
      return bad_request("vm.create: \"qmp\" is only for a QEMU guest (add \"qemu\": true)");
    if (auto ok = partition_tree::check_qmp_socket(**qmp); !ok)
      return bad_request(fmt::format("vm.create: \"qmp\": {}", ok.error().message()));
    spec.qmp_socket = std::move(**qmp);
  }
  auto hybrid = optional_string(request, "hybrid_vsock", op);
  if (!hybrid) return hybrid.error();
  if (*hybrid) {
    if (spec.qemu)
      return bad_request("vm.create: \"hybrid_vsock\" and \"qemu\" exclude each other");
    if (auto ok = partition_tree::check_hybrid_vsock_socket(**hybrid); !ok)
      return bad_request(fmt::format("vm.create: \"hybrid_vsock\": {}", ok.error().message()));
    spec.hybrid_vsock = std::move(**hybrid);
  }

  const partition_tree before = ctx_.partitions;
  auto created = ctx_.partitions.create(spec);
  if (!created) return created.error();
  if (auto opened = ctx_.control.open_partition(**created); !opened) {
    ctx_.partitions = before;
    return opened.error();
  }
  if (auto ok = commit(before, ctx_.services); !ok) {
    ctx_.control.close_partition(spec.name);
    return ok.error();
  }
  const partition& p = *ctx_.partitions.find(spec.name);
  log_(log_level::notice,
       fmt::format("partition created: \"{}\" ({}, VmId {}, CID {}, parent \"{}\"{})", p.name,
                   to_string(p.kind), p.id.to_string(), p.cid, spec.parent,
                   p.qmp_socket.empty() ? "" : ", QMP socket " + p.qmp_socket));
  return describe(p);
}

result<json> management_server::vm_list() const {
  json out = json::array();
  for (const partition* p : ctx_.partitions.list()) out.push_back(describe(*p));
  return out;
}

result<json> management_server::vm_remove(const json& request) {
  auto name = required_string(request, "name", "vm.remove");
  if (!name) return name.error();
  if (auto ok = ctx_.partitions.check_removable(*name); !ok) return ok.error();
  const partition removed = *ctx_.partitions.find(*name);
  const json description = describe(removed);
  const partition_tree partitions_before = ctx_.partitions;
  const service_registry services_before = ctx_.services;
  if (auto ok = ctx_.partitions.remove(removed.name); !ok) return ok.error();
  // Overrides for a partition that no longer exists would only confuse a
  // later partition that reuses the VmId.
  ctx_.services.forget_partition(removed.id);
  if (auto ok = commit(partitions_before, services_before); !ok) return ok.error();
  ctx_.control.close_partition(removed.name);
  log_(log_level::notice,
       fmt::format("partition removed: \"{}\" (VmId {})", removed.name, removed.id.to_string()));
  return description;
}

result<json> management_server::vm_set(const json& request) {
  constexpr std::string_view op = "vm.set";
  auto name = required_string(request, "name", op);
  if (!name) return name.error();
  auto qmp = optional_string(request, "qmp", op);
  if (!qmp) return qmp.error();
  if (!*qmp) return bad_request("vm.set: nothing to set (give \"qmp\")");
  const partition_tree before = ctx_.partitions;
  if (auto ok = ctx_.partitions.set_qmp_socket(*name, **qmp); !ok)
    return failure(ok.error().code(), fmt::format("vm.set: {}", ok.error().message()));
  if (auto ok = commit(before, ctx_.services); !ok) return ok.error();
  const partition& p = *ctx_.partitions.find(*name);
  ctx_.control.qmp_socket_changed(p);
  log_(log_level::notice,
       p.qmp_socket.empty() ? fmt::format("partition \"{}\": QMP socket forgotten", p.name)
                            : fmt::format("partition \"{}\": QMP socket {}", p.name, p.qmp_socket));
  return describe(p);
}

json management_server::stats_report() {
  if (auto fresh = ctx_.counters.refresh_active(); !fresh)
    log_(log_level::warning,
         fmt::format("stats: active counts may be stale: {}", fresh.error().message()));
  json services = json::array();
  for (const service_entry* s : ctx_.services.list()) {
    const service_stats st = ctx_.counters.stats(s->id);
    services.push_back(json{{"id", s->id.to_string()},
                            {"name", s->name},
                            {"accepted", st.accepted},
                            {"accepted_seqpacket", st.accepted_seqpacket},
                            {"active", st.active},
                            {"refused",
                             {{"disabled", st.refused_disabled},
                              {"no_listener", st.refused_no_listener},
                              {"backlog_full", st.refused_backlog_full},
                              {"unreachable", st.refused_unreachable},
                              {"type_mismatch", st.refused_type_mismatch},
                              {"other", st.refused_other}}}});
  }
  json partitions = json::array();
  for (const partition* p : ctx_.partitions.list()) {
    const partition_connection_counts counts = ctx_.control.partition_connections().counts(p->name);
    json entry{{"name", p->name},
               {"id", p->id.to_string()},
               {"kind", std::string(to_string(p->kind))},
               {"backend", std::string(p->backend())}};
    if (p->qemu) entry["guest_attached"] = ctx_.control.guest_attached(p->name);
    entry["connections"] = json{{"outbound", counts.outbound}, {"inbound", counts.inbound}};
    partitions.push_back(std::move(entry));
  }
  const double uptime =
      std::chrono::duration<double>(event_loop::clock::now() - ctx_.started).count();
  return json{{"services", std::move(services)},
              {"unregistered_refused", ctx_.counters.unregistered_refused()},
              {"partitions", std::move(partitions)},
              {"switch",
               {{"version", ctx_.version},
                {"uptime_seconds", uptime},
                {"partitions", ctx_.partitions.size()},
                {"services", ctx_.services.size()},
                {"control_clients", ctx_.control.client_count()},
                {"management_clients", clients_.size()}}}};
}

// --- client I/O ----------------------------------------------------------------

result<void> management_server::add_client(unique_fd fd) {
  const std::uint64_t id = next_client_id_++;
  client c;
  c.fd = std::move(fd);
  c.events = EPOLLIN;
  auto watched = loop_.watch(c.fd.get(), c.events,
                             [this, id](std::uint32_t events) { on_client(id, events); });
  if (!watched) return watched.error();
  c.watch = *watched;
  clients_.emplace(id, std::move(c));
  return {};
}

void management_server::on_client(std::uint64_t id, std::uint32_t events) {
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0 && !flush(id)) return;
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  client& c = it->second;
  if ((c.events & EPOLLIN) != 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    char chunk[read_chunk];
    const ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      c.in.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      c.eof = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      close_client(id);
      return;
    }
  }
  if (!process_input(id)) return;
  update_interest(id);
}

bool management_server::process_input(std::uint64_t id) {
  for (;;) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return false;
    client& c = it->second;
    if (c.out.size() >= output_pause) return true;  // resume once the client reads
    std::size_t eol = c.in.find('\n');
    if (eol == std::string::npos) {
      if (c.in.size() > max_line) {
        close_client(id, fmt::format("management client sent a line longer than {} bytes; "
                                     "closing it",
                                     max_line));
        return false;
      }
      // At EOF a last line without a newline is still a request.
      if (!c.eof || c.in.empty()) return true;
      eol = c.in.size();
      c.in.push_back('\n');
    }
    if (eol > max_line) {
      close_client(id, fmt::format("management client sent a line longer than {} bytes; "
                                   "closing it",
                                   max_line));
      return false;
    }
    std::string_view line(c.in.data(), eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool blank = line.find_first_not_of(" \t") == std::string_view::npos;
    std::string response = blank ? std::string() : handle_line(line);
    // handle_line may have closed clients (not this one), so look it up again.
    it = clients_.find(id);
    if (it == clients_.end()) return false;
    client& same = it->second;
    same.in.erase(0, eol + 1);
    if (blank) continue;
    same.out += response;
    same.out += '\n';
    if (same.out.size() > max_output) {
      close_client(id, "management client is not reading its responses; closing it");
      return false;
    }
    if (!flush(id)) return false;
  }
}

bool management_server::flush(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return false;
  client& c = it->second;
  std::size_t sent = 0;
  while (sent < c.out.size()) {
    const ssize_t n =
        ::send(c.fd.get(), c.out.data() + sent, c.out.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    close_client(id);  // the client went away
    return false;
  }
  c.out.erase(0, sent);
  return true;
}

void management_server::update_interest(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  client& c = it->second;
  if (c.eof && c.out.empty() && c.in.find('\n') == std::string::npos) {
    close_client(id);  // said everything, got every answer
    return;
  }
  std::uint32_t wanted = 0;
  if (!c.eof && c.out.size() < output_pause) wanted |= EPOLLIN;
  if (!c.out.empty()) wanted |= EPOLLOUT;
  if (wanted == c.events) return;
  if (auto ok = loop_.modify(c.watch, wanted); !ok) {
    close_client(id, fmt::format("management client: {}", ok.error().message()));
    return;
  }
  c.events = wanted;
}

void management_server::close_client(std::uint64_t id, const std::string& why) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  if (!why.empty()) log_(log_level::warning, why);
  loop_.unwatch(it->second.watch);
  gate_.release();
  clients_.erase(it);
}

}  // namespace hvsock::daemon
