#include "cli_common.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "protocol/control_client.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {

void fail(const std::string& message, int code) { throw cli_exit{code, message}; }

void fail(const failure& f) { fail(f.message()); }

std::string no_partition_message(const std::string& name) {
  return "no partition named \"" + name + "\" (see: hvsock vm list)";
}

nlohmann::json must_naming_partition(result<nlohmann::json> r, const std::string& name) {
  if (!r && !name.empty() && r.error().code() == make_error_code(errc::unknown_partition))
    fail(no_partition_message(name));
  return must(std::move(r));
}

std::uint64_t checked_number(const std::string& text, std::uint64_t low, std::uint64_t high,
                             const std::string& what, const std::string& name) {
  std::uint64_t value = 0;
  bool ok = !text.empty() && text.size() <= 20;
  for (const char c : text) {
    if (!ok) break;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (c < '0' || c > '9' || value > (UINT64_MAX - digit) / 10)
      ok = false;
    else
      value = value * 10 + digit;
  }
  if (!ok || value < low || value > high)
    fail(what + ": " + name + " must be " + std::to_string(low) + ".." + std::to_string(high),
         exit_usage);
  return value;
}

namespace {

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of two adjacent letters ("lsit" is one from "list").
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::string joined_choices(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

}  // namespace

std::string closest_word(const std::string& word, const std::vector<std::string>& candidates) {
  // Close: one edit for a short word, two for a longer one.
  const std::size_t most = word.size() <= 4 ? 1 : 2;
  std::string best;
  std::size_t best_distance = most + 1;
  for (const auto& candidate : candidates) {
    const std::size_t d = edit_distance(word, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

int report_parse_error(CLI::App& app, const CLI::ParseError& e, const std::string& program) {
  if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
  // The subcommand being parsed: the deepest one the parser entered.
  CLI::App* current = &app;
  std::string path;  // "service register"
  for (auto parsed = current->get_subcommands(); !parsed.empty();
       parsed = current->get_subcommands()) {
    current = parsed.back();
    path += (path.empty() ? "" : " ") + current->get_name();
  }
  std::string reason = e.what();
  std::vector<std::string> commands;
  for (const CLI::App* sub : current->get_subcommands([](const CLI::App* s) {
         return !s->get_name().empty() && !s->get_disabled() && !s->get_group().empty();
       }))
    commands.push_back(sub->get_name());
  if (!commands.empty() && current->get_require_subcommand_min() > 0) {
    // No (sub)command was recognised. The words CLI11 could not place end up
    // with the top-level app (subcommands fall through to it).
    std::string word, option;
    for (const auto& left : app.remaining(true)) {
      if (left.rfind('-', 0) != 0) {
        if (word.empty()) word = left;
      } else if (option.empty()) {
        option = left;
      }
    }
    if (!word.empty()) {
      reason = "unknown command \"" + word + "\"";
      if (auto near = closest_word(word, commands); !near.empty())
        reason += " (did you mean \"" + near + "\"?)";
    } else if (!option.empty()) {
      reason = "unknown option \"" + option + "\"";
    } else {
      reason = std::string(path.empty() ? "a command" : "a subcommand") +
               " is required: " + joined_choices(commands);
    }
  }
  const std::string where = path.empty() ? "" : path + " ";
  std::cerr << program << ": " << (path.empty() ? "" : path + ": ") << reason
            << " (see: " << program << " " << where << "--help)\n";
  return exit_usage;
}

std::string runtime_dir(const global_options& options) {
  return options.runtime_dir.empty() ? detail::default_runtime_dir() : options.runtime_dir;
}

detail::management_client open_management(const global_options& options) {
  return must(detail::management_client::open(runtime_dir(options)));
}

std::string control_socket(const global_options& options) {
  if (const char* env = std::getenv(detail::env_control_socket); env != nullptr && *env != '\0')
    return {};
  // Without --runtime-dir libhvsock decides: the same default socket, or the
  // kernel transport in a QEMU guest that has no hvsockd (docs/qemu.md).
  if (options.runtime_dir.empty()) return {};
  return detail::partition_socket_path(options.runtime_dir, detail::host_partition_name);
}

std::string lookup_socket(const global_options& options) {
  auto path = control_socket(options);
  return path.empty() ? detail::process_control_socket() : path;
}

std::optional<service_id> service_from_port_text(const std::string& text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  // Needs no registry, so it also works inside a guest. All digits is always
  // a port: never silently a name lookup when it is out of range.
  const auto port =
      checked_number(text, 0, 0xffffffffULL, "service \"" + text + "\"", "a vsock port number");
  return service_id_from_port(static_cast<std::uint32_t>(port));
}

std::string service_argument(const std::string& text) {
  if (auto id = service_from_port_text(text)) return id->to_string();
  return text;
}

service_id resolve_service(const std::string& text, const global_options& options) {
  if (auto id = guid::parse(text)) return *id;
  if (auto id = service_from_port_text(text)) return *id;
  // Through the partition's own control socket, which also works inside an
  // isolated partition (the management socket does not).
  auto found = detail::look_up(lookup_socket(options), detail::wire::lookup_kind::service, text);
  if (found) return *found;
  if (found.error().code() == make_error_code(errc::service_not_registered))
    fail("service \"" + text + "\" is not a GUID, a vsock port number or a registered service " +
         "name (see: hvsock service list)");
  fail(found.error());
}

vm_id resolve_vm(const std::string& text, const global_options& options) {
  if (auto word = vm_id_from_word(text)) return *word;
  if (auto id = guid::parse(text)) return *id;
  auto found = detail::look_up(lookup_socket(options), detail::wire::lookup_kind::partition, text);
  if (found) return *found;
  if (found.error().code() == make_error_code(errc::unknown_partition))
    fail(no_partition_message(text));
  fail(found.error());
}

void print_table(const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) widths[i] = headers[i].size();
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << '\n';
  };
  print_row(headers);
  for (const auto& row : rows) print_row(row);
}

}  // namespace hvsock::cli
