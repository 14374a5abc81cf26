// hvsock vm create|list|set|remove
#include <iostream>

#include "cli_common.hpp"

namespace hvsock::cli {
namespace {

struct vm_args {
  std::string name;
  std::string parent;
  std::string kind = "vm";
  std::string id;
  std::optional<std::uint32_t> cid;
  bool qemu = false;
  std::string qmp;
  bool no_qmp = false;
  std::string hybrid_vsock;
  bool json = false;
};

// hvsockd has another working directory: a relative path would name another
// file there.
std::string absolute_path(const std::string& path) {
  return path.starts_with('/') ? std::string() : "\"" + path + "\" is not an absolute path";
}

std::string text_or_dash(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return std::to_string(v.get<std::uint64_t>());
  return "-";
}

// "hybrid" says whether the VMM's socket is there: the VM is likely down
// without it.
std::string backend_text(const nlohmann::json& p) {
  const std::string backend = text_or_dash(p.value("backend", nlohmann::json()));
  if (backend == "hybrid" && !p.value("vmm_socket_present", false)) return "hybrid (no VMM socket)";
  return backend;
}

}  // namespace

void add_vm_commands(CLI::App& app, global_options& options) {
  auto args = std::make_shared<vm_args>();
  auto* vm = app.add_subcommand("vm", "Manage partitions (VMs and containers)");
  vm->require_subcommand(1);

  auto* create = vm->add_subcommand("create", "Create a partition; prints its VmId");
  create->add_option("NAME", args->name, "partition name")->required();
  completes_partition(
      create->add_option("--parent", args->parent, "parent partition (default: host)"));
  create->add_option("--kind", args->kind, "vm or container")
      ->check(CLI::IsMember({"vm", "container"}));
  create->add_option("--id", args->id, "the VmId (default: a new random GUID)");
  create->add_option("--cid", args->cid, "the vsock CID (default: the lowest free from 3)")
      ->check(CLI::Range(3u, 0xfffffffeu));
  create->add_flag("--qemu", args->qemu,
                   "a real QEMU guest: hvsockd serves a vhost-user-vsock socket for it (its "
                   "path is printed on stderr; see docs/qemu.md)");
  create
      ->add_option("--qmp", args->qmp,
                   "the QMP socket of that QEMU (-qmp unix:PATH,server=on,wait=off), an absolute "
                   "path: hvsockd re-plugs the guest's vsock device through it when hvsockd "
                   "restarts")
      ->needs("--qemu")
      ->check(absolute_path);
  create
      ->add_option("--hybrid-vsock", args->hybrid_vsock,
                   "a Firecracker or Cloud Hypervisor VM: its VMM's vsock Unix socket (uds_path, "
                   "socket=), an absolute path; hvsockd connects there for the VM and listens at "
                   "PATH_<port> for its guest (docs/hybrid-vsock.md)")
      ->type_name("PATH")
      ->excludes("--qemu")
      ->check(absolute_path);
  create->callback([args, &options] {
    nlohmann::json request{{"name", args->name}, {"kind", args->kind}};
    if (!args->parent.empty()) request["parent"] = args->parent;
    if (!args->id.empty()) request["id"] = must(guid::parse(args->id)).to_string();
    if (args->cid) request["cid"] = *args->cid;
    if (args->qemu) request["qemu"] = true;
    if (!args->qmp.empty()) request["qmp"] = args->qmp;
    if (!args->hybrid_vsock.empty()) request["hybrid_vsock"] = args->hybrid_vsock;
    auto client = open_management(options);
    // The only partition vm.create looks up is the parent.
    const auto created = must_naming_partition(client.call("vm.create", request), args->parent);
    std::cout << created.value("id", "") << "\n";
    if (args->qemu) {
      std::cerr << "vhost-user socket: " << created.value("vhost_user_socket", "") << "\n";
      std::cerr << "hybrid vsock socket: " << created.value("hybrid_socket", "") << "\n";
    }
  });

  auto* list = vm->add_subcommand("list", "List partitions");
  list->add_flag("--json", args->json, "print JSON: a list of {name, id, kind, parent, cid, ...}");
  list->callback([args, &options] {
    auto client = open_management(options);
    const auto partitions = must(client.call("vm.list"));
    if (args->json) {
      std::cout << partitions.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : partitions)
      rows.push_back({text_or_dash(p.value("name", nlohmann::json())),
                      text_or_dash(p.value("id", nlohmann::json())),
                      text_or_dash(p.value("kind", nlohmann::json())),
                      text_or_dash(p.value("parent", nlohmann::json())),
                      text_or_dash(p.value("cid", nlohmann::json())), backend_text(p),
                      text_or_dash(p.value("qmp_socket", nlohmann::json()))});
    print_table({"NAME", "VMID", "KIND", "PARENT", "CID", "BACKEND", "QMP"}, rows);
  });

  auto* set =
      vm->add_subcommand("set", "Change a partition's settings (a QEMU guest's QMP socket)");
  completes_partition(set->add_option("NAME", args->name, "partition name")->required());
  auto* set_qmp =
      set->add_option("--qmp", args->qmp,
                      "the QMP socket of the guest's QEMU, an absolute path; hvsockd re-plugs "
                      "the guest's vsock device through it at once if it is detached, and when "
                      "hvsockd restarts")
          ->check(absolute_path);
  set->add_flag("--no-qmp", args->no_qmp, "forget the QMP socket")->excludes(set_qmp);
  set->callback([args, &options] {
    if (args->qmp.empty() && !args->no_qmp)
      fail("vm set: nothing to set (give --qmp PATH or --no-qmp)", exit_usage);
    auto client = open_management(options);
    must_naming_partition(client.call("vm.set", {{"name", args->name}, {"qmp", args->qmp}}),
                          args->name);
  });

  auto* remove = vm->add_subcommand("remove", "Remove a partition (it must have no children)");
  completes_partition(remove->add_option("NAME", args->name, "partition name")->required());
  remove->callback([args, &options] {
    auto client = open_management(options);
    must_naming_partition(client.call("vm.remove", {{"name", args->name}}), args->name);
  });
}

}  // namespace hvsock::cli
