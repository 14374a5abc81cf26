// hvsock completion bash, and two hidden helpers: `__complete partitions|
// services` (the live names the completion offers) and `__man TEMPLATE` (the
// man page the build installs). Both the script and the page are rendered
// from this program's own CLI11 definitions (tools/cli_reference/).
#include <fstream>
#include <iostream>
#include <sstream>

#include "bash_completion.hpp"
#include "cli_common.hpp"
#include "man_page.hpp"

namespace hvsock::cli {
namespace {

// One name a line. Silent on any failure, with exit 1: a completion must not
// print into the user's command line, and hvsockd may well be down.
void print_live_names(const std::string& kind, const global_options& options) {
  try {
    // A short timeout: a hung daemon must not hang the shell for long.
    auto client =
        detail::management_client::open(runtime_dir(options), std::chrono::milliseconds(1000));
    if (!client) throw cli_exit{exit_failure, ""};
    const auto listed = client->call(kind == "partitions" ? "vm.list" : "service.list");
    if (!listed || !listed->is_array()) throw cli_exit{exit_failure, ""};
    for (const auto& entry : *listed)
      if (auto name = entry.value("name", std::string()); !name.empty()) std::cout << name << "\n";
  } catch (const cli_exit&) {
    throw;
  } catch (const std::exception&) {
    throw cli_exit{exit_failure, ""};
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

void add_reference_commands(CLI::App& app, global_options& options) {
  auto shell = std::make_shared<std::string>();
  auto* completion = app.add_subcommand(
      "completion", "Print the shell completion script (the one the package installs)");
  completion->add_option("SHELL", *shell, "the shell: bash")
      ->required()
      ->check(CLI::IsMember({"bash"}));
  completion->callback([shell, &app] {  // keeps the option's target alive
    std::cout << cli_reference::render_bash_completion(cli_reference::describe(app), "hvsock",
                                                       {"hvsock", "hvsock-static"});
  });

  // Hidden (group ""): not in --help, the man page or the completion.
  auto kind = std::make_shared<std::string>();
  auto* names = app.add_subcommand("__complete", "Print live names for the completion");
  names->group("");
  names->add_option("KIND", *kind)->required()->check(CLI::IsMember({"partitions", "services"}));
  names->callback([kind, &options] { print_live_names(*kind, options); });

  auto page_template = std::make_shared<std::string>();
  auto* man = app.add_subcommand("__man", "Print the man page hvsock(1)");
  man->group("");
  man->add_option("TEMPLATE", *page_template, "packaging/man/hvsock.1.in, configured")->required();
  man->callback([page_template, &app] {
    std::cout << cli_reference::render_man_page(cli_reference::describe(app), "hvsock",
                                                read_file(*page_template));
  });
}

}  // namespace hvsock::cli
