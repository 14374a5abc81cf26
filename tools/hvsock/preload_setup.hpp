// What `hvsock run` needs to start a program under the preload shim: where
// libhvsock-preload.so is, where the command's executable is, and whether
// that executable is static (LD_PRELOAD cannot reach into it).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace hvsock::cli {

// HVSOCK_PRELOAD_LIBRARY if set; else next to this hvsock executable (a
// build tree), else in the install's library directory. `searched` lists
// every place looked at, for the error message.
std::optional<std::string> find_preload_library(std::vector<std::string>& searched);

// The file execvp would run for `command` (searching PATH for a bare name).
std::optional<std::string> resolve_command(const std::string& command);

// True for an ELF executable without a program interpreter (statically
// linked); false for dynamic ELF files, scripts and anything unreadable.
bool is_static_executable(const std::string& path);

}  // namespace hvsock::cli
