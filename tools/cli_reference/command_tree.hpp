// A CLI11 App as plain data: its commands, options and positionals with
// their descriptions, the same ones --help prints. The man pages and the
// bash completion are rendered from it, so neither keeps a list of its own.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "completion_hint.hpp"

namespace hvsock::cli_reference {

struct option_doc {
  std::vector<std::string> flags;  // "-t", "--tty"; empty for a positional
  std::string value_name;          // "TEXT", "WHO"; a positional's own name ("VM")
  std::string description;
  std::string default_value;  // as --help shows it; empty when none
  std::string environment;    // the variable it is read from; empty when none
  bool takes_value = false;
  bool required = false;
  bool repeatable = false;  // a vector: the option again, or more words
  bool help = false;        // -h,--help, which every command has
  value_hint hint;
};

struct command_doc {
  std::vector<std::string> path;  // {"vm", "create"}; empty for the program itself
  std::string description;
  std::vector<option_doc> options;      // named options, in declaration order
  std::vector<option_doc> positionals;  // in the order they are taken
  std::vector<command_doc> subcommands;
  bool subcommand_required = false;
  // CLI11's fallthrough: the parent's options are accepted here too.
  bool takes_parent_options = false;
};

// Hidden options and subcommands (group "") are left out, as --help does.
command_doc describe(CLI::App& app);

// "vm create"; empty for the program.
std::string joined_path(const command_doc& command);

}  // namespace hvsock::cli_reference
