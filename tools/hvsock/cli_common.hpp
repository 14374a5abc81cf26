// Shared pieces of the hvsock CLI: global options, failing with a one-line
// reason, the management connection, and turning user words (service names,
// VM names, "parent") into GUIDs.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "completion_hint.hpp"
#include "protocol/management_client.hpp"

namespace hvsock::cli {

using cli_reference::completes_command;
using cli_reference::completes_file;
using cli_reference::completes_guest_command;
using cli_reference::completes_partition;
using cli_reference::completes_service;

struct global_options {
  std::string runtime_dir;  // --runtime-dir; empty: HVSOCK_RUNTIME_DIR or the default
};

// Exit codes: 0 success, 1 the operation failed, 2 bad command line.
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

// Thrown to end the program with a message and an exit code; main() prints it.
struct cli_exit {
  int code;
  std::string message;
};

[[noreturn]] void fail(const std::string& message, int code = exit_failure);
[[noreturn]] void fail(const failure& f);

// Unwraps a result or ends the program with its message.
template <class T>
T must(result<T> r) {
  if (!r) fail(r.error());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// The one wording for a partition name nobody has, wherever it is found:
// no partition named "NAME" (see: hvsock vm list)
std::string no_partition_message(const std::string& name);
// must(), but hvsockd's unknown_partition answer (about `name`) ends the
// program with no_partition_message(name).
nlohmann::json must_naming_partition(result<nlohmann::json> r, const std::string& name);

// The one line for a command line CLI11 refused, and its exit code (2; 0
// for --help and --version, which it prints). `program` is "hvsock": the
// line names the subcommand being parsed and points at its own --help; an
// unknown (sub)command word is named, with the closest command suggested.
int report_parse_error(CLI::App& app, const CLI::ParseError& e, const std::string& program);
// The closest of `candidates` to `word` by edit distance (adjacent
// transpositions count one), or empty when none is close.
std::string closest_word(const std::string& word, const std::vector<std::string>& candidates);

// A decimal number given on the command line, checked against [low, high]:
// ends the program (exit 2) with "WHAT: NAME must be LOW..HIGH" otherwise.
std::uint64_t checked_number(const std::string& text, std::uint64_t low, std::uint64_t high,
                             const std::string& what, const std::string& name);

std::string runtime_dir(const global_options& options);
detail::management_client open_management(const global_options& options);
// The control socket for listen/connect: HVSOCK_CONTROL_SOCKET when set (we
// run inside a partition, via `hvsock run`), else the host partition's socket
// in runtime_dir(options). Empty means "let libhvsock decide" (the former).
std::string control_socket(const global_options& options);
// The control socket names are looked up through: control_socket(options),
// else this process's own (HVSOCK_CONTROL_SOCKET or the host's).
std::string lookup_socket(const global_options& options);

// A vsock port number (all digits, 0..4294967295) as its service GUID;
// nullopt when `text` is not all digits, exit 2 when it is out of range.
std::optional<service_id> service_from_port_text(const std::string& text);
// ID of service enable|disable|remove as hvsockd takes it: a port number
// becomes its GUID (range-checked), anything else goes as it is.
std::string service_argument(const std::string& text);
// SERVICE: a GUID, a vsock port number, or a registered ElementName.
service_id resolve_service(const std::string& text, const global_options& options);
// TARGET/--from: a VmId word (parent, loopback, children, any/wildcard, ...),
// a GUID, or a partition name.
vm_id resolve_vm(const std::string& text, const global_options& options);

// Prints rows as aligned columns under `headers`.
void print_table(const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows);

// One subcommand family each; each adds its subcommands to `app`.
void add_service_commands(CLI::App& app, global_options& options);
void add_vm_commands(CLI::App& app, global_options& options);
void add_run_command(CLI::App& app, global_options& options);
void add_stream_commands(CLI::App& app, global_options& options);
void add_stats_command(CLI::App& app, global_options& options);
void add_agent_command(CLI::App& app, global_options& options);
void add_exec_command(CLI::App& app, global_options& options);
void add_forward_command(CLI::App& app, global_options& options);
void add_cp_command(CLI::App& app, global_options& options);
// completion (and the hidden __complete and __man): after all the others,
// since they describe the whole app.
void add_reference_commands(CLI::App& app, global_options& options);

}  // namespace hvsock::cli
