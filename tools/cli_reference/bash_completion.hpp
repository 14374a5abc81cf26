// The bash completion script of a CLI11 program: its commands and options
// come from the definitions (command_tree), the partition and service names
// from the program itself at completion time (`PROGRAM __complete KIND`,
// which prints one name a line and nothing when hvsockd is not running).
#pragma once

#include <string>

#include "command_tree.hpp"

namespace hvsock::cli_reference {

// The script defines _NAME (NAME: the program name, '-' as '_') and
// registers it with `complete` for each of `commands`.
std::string render_bash_completion(const command_doc& program, const std::string& program_name,
                                   const std::vector<std::string>& commands);

}  // namespace hvsock::cli_reference
