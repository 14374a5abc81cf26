#include "command_tree.hpp"

namespace hvsock::cli_reference {
namespace {

option_doc describe_option(CLI::Option& option, const CLI::Option* help) {
  option_doc doc;
  doc.help = &option == help;
  for (const auto& s : option.get_snames()) doc.flags.push_back("-" + s);
  for (const auto& l : option.get_lnames()) doc.flags.push_back("--" + l);
  doc.takes_value = option.get_expected_max() != 0;  // flags expect no value
  if (doc.flags.empty()) {
    doc.value_name = option.get_name(true);
  } else if (doc.takes_value) {
    // "UINT:UINT in [3 - 4294967294]": the type, without its checks.
    const std::string type = option.get_type_name();
    doc.value_name = type.substr(0, type.find(':'));
  }
  doc.description = option.get_description();
  doc.default_value = option.get_default_str();
  doc.environment = option.get_envname();
  doc.required = option.get_required();
  doc.repeatable = option.get_expected_max() == CLI::detail::expected_max_vector_size;
  doc.hint = hint_of(option);
  return doc;
}

command_doc describe_command(CLI::App& app, std::vector<std::string> path) {
  command_doc doc;
  doc.path = std::move(path);
  doc.description = app.get_description();
  doc.subcommand_required = app.get_require_subcommand_min() > 0;
  doc.takes_parent_options = app.get_parent() != nullptr && app.get_fallthrough();
  for (CLI::Option* option :
       app.get_options([](CLI::Option* o) { return !o->get_group().empty(); }))
    (option->nonpositional() ? doc.options : doc.positionals)
        .push_back(describe_option(*option, app.get_help_ptr()));
  for (CLI::App* sub : app.get_subcommands(
           [](CLI::App* s) { return !s->get_name().empty() && !s->get_group().empty(); })) {
    auto sub_path = doc.path;
    sub_path.push_back(sub->get_name());
    doc.subcommands.push_back(describe_command(*sub, std::move(sub_path)));
  }
  return doc;
}

}  // namespace

command_doc describe(CLI::App& app) { return describe_command(app, {}); }

std::string joined_path(const command_doc& command) {
  std::string joined;
  for (const auto& word : command.path) joined += (joined.empty() ? "" : " ") + word;
  return joined;
}

}  // namespace hvsock::cli_reference
