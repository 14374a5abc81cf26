// service_file: the service registry as a file, to carry service
// definitions between hvsockd and a Hyper-V host (or a provisioning tool).
//
// Two formats:
// - reg: what `reg import` (and regedit) take on Windows: UTF-16LE with a
//   byte order mark, CRLF line ends, "Windows Registry Editor Version 5.00",
//   then one key per service under services_key (HKLM's
//   ...\Virtualization\GuestCommunicationServices), named by the service GUID
//   (lower case, no braces, as `New-Item -Name ((New-Guid).Guid)` names it)
//   with the string value "ElementName". The reader also takes UTF-8 (with
//   or without a BOM), LF line ends, braced and upper-case GUIDs, comments
//   (";"), the parent key itself, and values other than ElementName (they
//   are skipped); anything else is an error naming its line.
// - json: {"services": [{"id": GUID, "name": ElementName}, ...]}, for tools.
//
// Writing and reading are exact inverses: read(write(s)) == s. Names are not
// judged here (hvsockd checks ElementNames when it registers them).
//
// Thread safety: free functions on caller-owned data.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hvsock/guid.hpp>
#include <hvsock/result.hpp>

namespace hvsock::service_file {

struct service_definition {
  guid id;
  std::string name;  // ElementName
  friend bool operator==(const service_definition&, const service_definition&) = default;
};

enum class format { reg, json };

// "reg" or "json"; nullopt for anything else.
std::optional<format> format_from_name(std::string_view name);

// The registry key the services live under (no trailing backslash).
inline constexpr std::string_view services_key =
    "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\"
    "GuestCommunicationServices";

// The file's bytes.
std::string write(format f, const std::vector<service_definition>& services);

// Parses a file's bytes. Errors (errc::invalid_argument) name the line (reg)
// or the entry (json): "line 7: ...". A GUID or ElementName given twice is
// an error.
result<std::vector<service_definition>> read(format f, std::span<const std::byte> bytes);
// json when the first character after any BOM and blanks is '{', else reg.
format detect(std::span<const std::byte> bytes);

}  // namespace hvsock::service_file
