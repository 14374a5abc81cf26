// A man page in roff: hand-written prose (a template under packaging/man/)
// with the sections that list commands and options rendered from the CLI11
// definitions, so the page says what --help says.
#pragma once

#include <string>
#include <string_view>

#include "command_tree.hpp"

namespace hvsock::cli_reference {

// `page_template` is roff in which each of these lines is replaced:
//   .\" generated: synopsis    SYNOPSIS: the program's usage, and each command's
//   .\" generated: options     OPTIONS: the program's own options
//   .\" generated: commands    COMMANDS: every command with its usage,
//                              positionals and options (none without subcommands)
// Throws std::runtime_error for a template without the synopsis and options
// markers, or with a marker not listed here.
std::string render_man_page(const command_doc& program, const std::string& program_name,
                            std::string_view page_template);

// Text as roff prints it: backslashes and hyphens escaped, never a control line.
std::string roff_escape(const std::string& text);

}  // namespace hvsock::cli_reference
