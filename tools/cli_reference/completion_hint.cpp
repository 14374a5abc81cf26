#include "completion_hint.hpp"

namespace hvsock::cli_reference {
namespace {

// The validator's name carries the hint: "complete=KIND:WORD,WORD".
constexpr std::string_view tag_prefix = "complete=";

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const auto end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return parts;
}

CLI::Option* tag(CLI::Option* option, const std::string& kind,
                 const std::vector<std::string>& words = {}) {
  std::string name = std::string(tag_prefix) + kind + ":";
  for (std::size_t i = 0; i < words.size(); ++i) name += (i > 0 ? "," : "") + words[i];
  // Accepts every value unchanged; an empty description keeps --help as it was.
  return option->check(CLI::Validator([](std::string&) { return std::string(); }, "", name));
}

// "TEXT:{vm,container}" (CLI::IsMember's description) -> {"vm", "container"}.
std::vector<std::string> member_choices(const std::string& type_name) {
  const auto open = type_name.find('{');
  const auto close = type_name.find('}', open);
  if (open == std::string::npos || close == std::string::npos) return {};
  return split(type_name.substr(open + 1, close - open - 1), ',');
}

}  // namespace

CLI::Option* completes_partition(CLI::Option* option, std::vector<std::string> words) {
  return tag(option, "partition", words);
}
CLI::Option* completes_service(CLI::Option* option) { return tag(option, "service"); }
CLI::Option* completes_file(CLI::Option* option) { return tag(option, "file"); }
CLI::Option* completes_command(CLI::Option* option) { return tag(option, "command"); }
CLI::Option* completes_guest_command(CLI::Option* option) { return tag(option, "guest_command"); }

value_hint hint_of(CLI::Option& option) {
  // CLI11 offers validators by index only; the end shows as OptionNotFound.
  for (int index = 0;; ++index) {
    const CLI::Validator* validator = nullptr;
    try {
      validator = option.get_validator(index);
    } catch (const CLI::OptionNotFound&) {
      break;
    }
    const std::string& name = validator->get_name();
    if (name.rfind(tag_prefix, 0) != 0) continue;
    const auto colon = name.find(':');
    return {name.substr(tag_prefix.size(), colon - tag_prefix.size()),
            split(name.substr(colon + 1), ',')};
  }
  if (auto choices = member_choices(option.get_type_name()); !choices.empty())
    return {"choice", choices};
  return {};
}

}  // namespace hvsock::cli_reference
