#include "man_page.hpp"

#include <sstream>
#include <stdexcept>

namespace hvsock::cli_reference {

std::string roff_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";  // a minus sign, so options copied from the page work
    else
      out += c;
  }
  // A line starting with . or ' would be read as a request.
  if (!out.empty() && (out.front() == '.' || out.front() == '\'')) out.insert(0, "\\&");
  return out;
}

namespace {

constexpr std::string_view marker_prefix = ".\\\" generated: ";

std::string bold(const std::string& text) { return "\\fB" + roff_escape(text) + "\\fR"; }
std::string italic(const std::string& text) { return "\\fI" + roff_escape(text) + "\\fR"; }

std::string joined_flags(const option_doc& option) {
  std::string out;
  for (const auto& flag : option.flags) out += (out.empty() ? "" : ", ") + bold(flag);
  return out;
}

// One option or positional as a usage word: [--vm TEXT], NAME, [-e TEXT]...
std::string usage_word(const option_doc& option) {
  std::string word;
  if (option.flags.empty()) {
    word = italic(option.value_name);
    // A command line comes after "--", so its options are not hvsock's.
    if (option.hint.kind == "command" || option.hint.kind == "guest_command")
      word = "[\\-\\-] " + word;
  } else {
    word = bold(option.flags.back());
    if (option.takes_value) word += " " + italic(option.value_name);
  }
  if (!option.required) word = "[" + word + "]";
  if (option.repeatable) word += "...";
  return word;
}

std::string usage_line(const command_doc& command, const std::string& program_name) {
  std::string line = bold(program_name + (command.path.empty() ? "" : " " + joined_path(command)));
  for (const auto& option : command.options)
    if (!option.help) line += " " + usage_word(option);
  for (const auto& positional : command.positionals) line += " " + usage_word(positional);
  if (!command.subcommands.empty())
    line += command.subcommand_required ? " " + italic("COMMAND") : " [" + italic("COMMAND") + "]";
  return line;
}

std::string described(const option_doc& option) {
  std::string text = roff_escape(option.description);
  if (!option.default_value.empty())
    text += " (default: " + roff_escape(option.default_value) + ")";
  if (!option.environment.empty()) text += "; also from " + bold("$" + option.environment);
  return text;
}

void render_entry(std::ostream& out, const option_doc& option) {
  out << ".TP\n";
  if (option.flags.empty()) {
    out << italic(option.value_name) << (option.repeatable ? "..." : "") << "\n";
  } else {
    out << joined_flags(option);
    if (option.takes_value) out << " " << italic(option.value_name);
    out << (option.repeatable ? " (repeatable)" : "") << "\n";
  }
  out << described(option) << "\n";
}

void render_synopsis(std::ostream& out, const command_doc& program, const std::string& name) {
  out << ".SH SYNOPSIS\n" << usage_line(program, name) << "\n";
}

void render_options(std::ostream& out, const command_doc& program) {
  out << ".SH OPTIONS\n";
  for (const auto& option : program.options) render_entry(out, option);
}

void render_command(std::ostream& out, const command_doc& command, const std::string& name) {
  out << ".SS \"" << roff_escape(name + " " + joined_path(command)) << "\"\n"
      << usage_line(command, name) << "\n.PP\n"
      << roff_escape(command.description) << "\n";
  for (const auto& positional : command.positionals) render_entry(out, positional);
  for (const auto& option : command.options)
    if (!option.help) render_entry(out, option);
  for (const auto& sub : command.subcommands) render_command(out, sub, name);
}

void render_commands(std::ostream& out, const command_doc& program, const std::string& name) {
  if (program.subcommands.empty()) return;
  out << ".SH COMMANDS\n"
      << "Every command also takes " << bold("-h") << ", " << bold("--help") << ".\n";
  for (const auto& command : program.subcommands) render_command(out, command, name);
}

}  // namespace

std::string render_man_page(const command_doc& program, const std::string& program_name,
                            std::string_view page_template) {
  std::ostringstream out;
  bool has_synopsis = false, has_options = false;
  std::istringstream lines{std::string(page_template)};
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(marker_prefix, 0) != 0) {
      out << line << "\n";
      continue;
    }
    const std::string section = line.substr(marker_prefix.size());
    if (section == "synopsis") {
      render_synopsis(out, program, program_name);
      has_synopsis = true;
    } else if (section == "options") {
      render_options(out, program);
      has_options = true;
    } else if (section == "commands") {
      render_commands(out, program, program_name);
    } else {
      throw std::runtime_error("man page template: unknown section \"" + section + "\"");
    }
  }
  if (!has_synopsis || !has_options)
    throw std::runtime_error("man page template: needs the synopsis and options markers");
  return out.str();
}

}  // namespace hvsock::cli_reference
