// hvsock vm create|list|remove
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
  bool json = false;
};

std::string text_or_dash(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return std::to_string(v.get<std::uint64_t>());
  return "-";
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
  create->callback([args, &options] {
    nlohmann::json request{{"name", args->name}, {"kind", args->kind}};
    if (!args->parent.empty()) request["parent"] = args->parent;
    if (!args->id.empty()) request["id"] = must(guid::parse(args->id)).to_string();
    if (args->cid) request["cid"] = *args->cid;
    if (args->qemu) request["qemu"] = true;
    auto client = open_management(options);
    // The only partition vm.create looks up is the parent.
    const auto created = must_naming_partition(client.call("vm.create", request), args->parent);
    std::cout << created.value("id", "") << "\n";
    if (args->qemu)
      std::cerr << "vhost-user socket: " << created.value("vhost_user_socket", "") << "\n";
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
                      text_or_dash(p.value("cid", nlohmann::json()))});
    print_table({"NAME", "VMID", "KIND", "PARENT", "CID"}, rows);
  });

  auto* remove = vm->add_subcommand("remove", "Remove a partition (it must have no children)");
  completes_partition(remove->add_option("NAME", args->name, "partition name")->required());
  remove->callback([args, &options] {
    auto client = open_management(options);
    must_naming_partition(client.call("vm.remove", {{"name", args->name}}), args->name);
  });
}

}  // namespace hvsock::cli
