// What the value of an option or positional names, for the bash completion:
// live partition or service names (asked of hvsockd), a local file, a
// command to run. Kept on the CLI11 option itself, as a named validator that
// accepts everything and shows nothing in --help, so the declaration of an
// option is the one place that says what it takes.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace hvsock::cli_reference {

struct value_hint {
  // "partition", "service", "file", "command", "guest_command", "choice",
  // or empty (nothing to offer: a number, an address).
  std::string kind;
  // Fixed words offered besides the live names ("parent", "loopback"), or
  // the choices of a "choice".
  std::vector<std::string> words;
};

// A partition name or VmId; `words` are the VmId words the option also takes.
CLI::Option* completes_partition(CLI::Option* option, std::vector<std::string> words = {});
// A service name (or a GUID or port number, which are not offered).
CLI::Option* completes_service(CLI::Option* option);
// A local path.
CLI::Option* completes_file(CLI::Option* option);
// A program and its arguments, run here: programs, then files.
CLI::Option* completes_command(CLI::Option* option);
// A program and its arguments, run in a VM: nothing to offer from here.
CLI::Option* completes_guest_command(CLI::Option* option);

// The hint given with completes_*(); else the choices of a CLI::IsMember
// check as a "choice"; else none.
value_hint hint_of(CLI::Option& option);

}  // namespace hvsock::cli_reference
