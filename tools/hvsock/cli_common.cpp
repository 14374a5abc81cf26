#include "cli_common.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "protocol/control_client.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {

void fail(const std::string& message, int code) { throw cli_exit{code, message}; }

void fail(const failure& f) { fail(f.message()); }

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

service_id resolve_service(const std::string& text, const global_options& options) {
  if (auto id = guid::parse(text)) return *id;
  // A vsock port number: needs no registry, so it also works inside a guest.
  if (!text.empty() && text.size() <= 10 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const unsigned long long port = std::stoull(text);
    if (port <= 0xffffffffULL) return service_id_from_port(static_cast<std::uint32_t>(port));
  }
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
    fail("\"" + text + "\" is not a VmId, a VmId word (parent, loopback, children, any) " +
         "or a partition name (see: hvsock vm list)");
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
