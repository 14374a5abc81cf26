// hvsock service register|list|enable|disable|remove|export|import
#include <fcntl.h>
#include <unistd.h>

#include <iostream>

#include "cli_common.hpp"
#include "registry/service_file.hpp"
#include "sys/file_io.hpp"

namespace hvsock::cli {
namespace {

struct service_args {
  std::string name;
  std::string id;
  std::optional<std::uint32_t> port;
  std::string service;
  std::string vm;
  bool json = false;
  std::string export_format = "reg";   // reg or json
  std::string import_format = "auto";  // auto, reg or json
  std::string output;                  // export: a file instead of stdout
  std::string input;                   // import: the file
};

std::string yes_no(bool b) { return b ? "yes" : "no"; }

void list_services(const global_options& options, bool json) {
  auto client = open_management(options);
  const auto services = must(client.call("service.list"));
  if (json) {
    std::cout << services.dump(2) << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : services) {
    std::string disabled_for;
    for (const auto& vm : s.value("disabled_for", nlohmann::json::array())) {
      if (!disabled_for.empty()) disabled_for += ",";
      disabled_for += vm.get<std::string>();
    }
    rows.push_back({s.value("id", ""), s.value("name", ""), yes_no(s.value("enabled", false)),
                    s.contains("port") ? std::to_string(s["port"].get<std::uint32_t>()) : "-",
                    disabled_for.empty() ? "-" : disabled_for});
  }
  print_table({"ID", "NAME", "ENABLED", "PORT", "DISABLED FOR"}, rows);
}

void set_enabled(const global_options& options, const service_args& args, bool enabled) {
  auto client = open_management(options);
  nlohmann::json request{{"service", service_argument(args.service)}};
  if (!args.vm.empty()) request["vm"] = args.vm;
  must_naming_partition(client.call(enabled ? "service.enable" : "service.disable", request),
                        args.vm);
}

void export_services(const global_options& options, const service_args& args) {
  const auto format = service_file::format_from_name(args.export_format);
  auto client = open_management(options);
  std::vector<service_file::service_definition> services;
  for (const auto& s : must(client.call("service.list")))
    services.push_back({must(guid::parse(s.value("id", ""))), s.value("name", "")});
  const std::string file = service_file::write(*format, services);
  if (args.output.empty() || args.output == "-") {
    std::cout.write(file.data(), static_cast<std::streamsize>(file.size()));
    std::cout.flush();
    if (!std::cout) fail("cannot write to stdout");
    return;
  }
  if (auto ok = detail::replace_file(args.output, file, 0644); !ok)
    fail(ok.error().with_context("export to " + args.output));
  std::cerr << "exported " << services.size() << " services to " << args.output << "\n";
}

void import_services(const global_options& options, const service_args& args) {
  unique_fd fd(::open(args.input.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) fail(make_system_error(errno, "import: open " + args.input));
  const std::string text = must(detail::read_to_end(fd.get(), args.input));
  const auto bytes = std::as_bytes(std::span(text));
  const auto format = args.import_format == "auto"
                          ? service_file::detect(bytes)
                          : *service_file::format_from_name(args.import_format);
  auto services = service_file::read(format, bytes);
  if (!services) fail(services.error().with_context(args.input).message(), exit_usage);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : *services) list.push_back({{"id", s.id.to_string()}, {"name", s.name}});
  auto client = open_management(options);
  const auto done = must(client.call("service.import", {{"services", list}}));
  std::cerr << "imported " << args.input << ": " << done.value("added", 0) << " services added, "
            << done.value("unchanged", 0) << " already registered\n";
}

}  // namespace

void add_service_commands(CLI::App& app, global_options& options) {
  auto args = std::make_shared<service_args>();
  auto* service = app.add_subcommand("service", "Manage the service registry");
  service->require_subcommand(1);

  auto* reg = service->add_subcommand(
      "register", "Register a service (GUID + friendly name); prints the service GUID");
  reg->add_option("--name", args->name, "the friendly name (ElementName)")->required();
  auto* id_opt = reg->add_option("--id", args->id, "the service GUID (default: a new random one)");
  reg->add_option("--port", args->port,
                  "register the vsock service for this port (P-facb-11e6-bd58-64006a7986d3)")
      ->check(CLI::Range(0u, max_listen_port))
      ->excludes(id_opt);
  reg->callback([args, &options] {
    nlohmann::json request{{"name", args->name}};
    if (args->port) {
      request["id"] = service_id_from_port(*args->port).to_string();
    } else if (!args->id.empty()) {
      request["id"] = must(guid::parse(args->id)).to_string();
    }
    auto client = open_management(options);
    const auto registered = must(client.call("service.register", request));
    std::cout << registered.value("id", "") << "\n";
  });

  auto* list = service->add_subcommand("list", "List registered services");
  list->add_flag("--json", args->json, "print JSON");
  list->callback([args, &options] { list_services(options, args->json); });

  auto* enable = service->add_subcommand("enable", "Enable a service (everywhere, or for one VM)");
  completes_service(
      enable->add_option("ID", args->service, "service GUID, vsock port number or name")
          ->required());
  completes_partition(
      enable->add_option("--vm", args->vm, "remove the per-VM override for this partition only"));
  enable->callback([args, &options] { set_enabled(options, *args, true); });

  auto* disable =
      service->add_subcommand("disable", "Disable a service (everywhere, or for one VM)");
  completes_service(
      disable->add_option("ID", args->service, "service GUID, vsock port number or name")
          ->required());
  completes_partition(
      disable->add_option("--vm", args->vm, "disable it only for connections involving this VM"));
  disable->callback([args, &options] { set_enabled(options, *args, false); });

  auto* remove = service->add_subcommand("remove", "Remove a service from the registry");
  completes_service(
      remove->add_option("ID", args->service, "service GUID, vsock port number or name")
          ->required());
  remove->callback([args, &options] {
    auto client = open_management(options);
    must(client.call("service.remove", {{"service", service_argument(args->service)}}));
  });

  auto* exp = service->add_subcommand(
      "export",
      "Write the registered services as a .reg file for `reg import` on a Hyper-V host, or as "
      "JSON");
  exp->add_option("--format", args->export_format,
                  "reg: UTF-16LE, CRLF, one key per service under GuestCommunicationServices "
                  "with its ElementName; json: {\"services\": [{\"id\", \"name\"}]}")
      ->check(CLI::IsMember({"reg", "json"}))
      ->capture_default_str();
  exp->add_option("-o,--output", args->output,
                  "write to this file (replaced atomically) instead of stdout");
  exp->callback([args, &options] { export_services(options, *args); });

  auto* imp = service->add_subcommand(
      "import",
      "Register the services of a .reg or JSON file (as export writes them), all or none");
  imp->add_option("FILE", args->input, "the file (.reg as UTF-16LE or UTF-8, or JSON)")->required();
  imp->add_option("--format", args->import_format,
                  "auto: JSON if the file starts with '{', else reg")
      ->check(CLI::IsMember({"auto", "reg", "json"}))
      ->capture_default_str();
  imp->callback([args, &options] { import_services(options, *args); });
}

}  // namespace hvsock::cli
