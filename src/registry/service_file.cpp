#include "registry/service_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <set>

namespace hvsock::service_file {
namespace {

constexpr std::string_view reg_header = "Windows Registry Editor Version 5.00";

failure bad(std::string message) { return failure(errc::invalid_argument, std::move(message)); }

failure bad_line(std::size_t line, const std::string& message) {
  return bad("line " + std::to_string(line) + ": " + message);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// UTF-8 to UTF-16LE code units (the reg writer's text is ours: ASCII names
// in practice, but any valid UTF-8 converts).
std::string utf16le_of(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() * 2);
  auto unit = [&](std::uint32_t u) {
    out += static_cast<char>(u & 0xff);
    out += static_cast<char>(u >> 8);
  };
  for (std::size_t i = 0; i < utf8.size();) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    std::uint32_t cp = c;
    std::size_t n = 1;
    if (c >= 0xf0 && i + 3 < utf8.size()) {
      cp = ((c & 0x07u) << 18) | ((static_cast<unsigned char>(utf8[i + 1]) & 0x3fu) << 12) |
           ((static_cast<unsigned char>(utf8[i + 2]) & 0x3fu) << 6) |
           (static_cast<unsigned char>(utf8[i + 3]) & 0x3fu);
      n = 4;
    } else if (c >= 0xe0 && i + 2 < utf8.size()) {
      cp = ((c & 0x0fu) << 12) | ((static_cast<unsigned char>(utf8[i + 1]) & 0x3fu) << 6) |
           (static_cast<unsigned char>(utf8[i + 2]) & 0x3fu);
      n = 3;
    } else if (c >= 0xc0 && i + 1 < utf8.size()) {
      cp = ((c & 0x1fu) << 6) | (static_cast<unsigned char>(utf8[i + 1]) & 0x3fu);
      n = 2;
    }
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      unit(0xd800 | (cp >> 10));
      unit(0xdc00 | (cp & 0x3ff));
    } else {
      unit(cp);
    }
  }
  return out;
}

// The file's text as UTF-8: UTF-16LE when it starts with its BOM (FF FE),
// else UTF-8 (a UTF-8 BOM dropped).
result<std::string> decode(std::span<const std::byte> bytes) {
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (bytes.size() >= 2 && at(0) == 0xff && at(1) == 0xfe) {
    if (bytes.size() % 2 != 0) return bad("the file is UTF-16LE but has an odd number of bytes");
    std::string out;
    out.reserve(bytes.size() / 2);
    for (std::size_t i = 2; i < bytes.size(); i += 2) {
      std::uint32_t u = at(i) | (at(i + 1) << 8);
      if (u >= 0xd800 && u <= 0xdbff && i + 3 < bytes.size()) {
        const std::uint32_t low = at(i + 2) | (at(i + 3) << 8);
        if (low >= 0xdc00 && low <= 0xdfff) {
          u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
          i += 2;
        }
      }
      if (u >= 0xd800 && u <= 0xdfff)
        return bad("the file is not valid UTF-16LE: a lone surrogate at byte " + std::to_string(i));
      append_utf8(out, u);
    }
    return out;
  }
  std::size_t start = 0;
  if (bytes.size() >= 3 && at(0) == 0xef && at(1) == 0xbb && at(2) == 0xbf) start = 3;
  return std::string(reinterpret_cast<const char*>(bytes.data()) + start, bytes.size() - start);
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A .reg string literal's body: \\ and \" are the only escapes regedit writes.
std::string escape_reg(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

// Reads a quoted .reg string at the start of `s`; leaves `s` after it.
result<std::string> take_quoted(std::string_view& s, std::size_t line) {
  if (s.empty() || s.front() != '"') return bad_line(line, "expected a quoted string");
  std::string out;
  for (std::size_t i = 1; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      s.remove_prefix(i + 1);
      return out;
    }
    if (c == '\\') {
      if (i + 1 == s.size() || (s[i + 1] != '\\' && s[i + 1] != '"'))
        return bad_line(line, "a string may escape only \\\\ and \\\"");
      out += s[++i];
      continue;
    }
    out += c;
  }
  return bad_line(line, "a string has no closing quote");
}

result<std::vector<service_definition>> check_unique(std::vector<service_definition> services,
                                                     const std::vector<std::string>& where) {
  std::map<guid, std::size_t> ids;
  std::map<std::string, std::size_t, std::less<>> names;
  for (std::size_t i = 0; i < services.size(); ++i) {
    const auto& s = services[i];
    if (auto [it, fresh] = ids.emplace(s.id, i); !fresh)
      return bad(where[i] + ": service " + s.id.to_string() + " is given twice (first " +
                 where[it->second] + ")");
    if (auto [it, fresh] = names.emplace(s.name, i); !fresh)
      return bad(where[i] + ": the ElementName \"" + s.name + "\" is given twice (first " +
                 where[it->second] + ")");
  }
  return services;
}

result<std::vector<service_definition>> read_reg(std::string_view text) {
  const auto lines = split_lines(text);
  std::size_t n = 0;
  // The header: the first line that is not blank.
  while (n < lines.size() && trim(lines[n]).empty()) ++n;
  if (n == lines.size()) return bad("the file is empty");
  if (trim(lines[n]) != reg_header)
    return bad_line(n + 1, "expected \"" + std::string(reg_header) + "\" (a .reg file)");

  std::vector<service_definition> services;
  std::vector<std::string> where;
  std::vector<std::size_t> key_lines;
  bool in_service = false;  // values now belong to services.back()
  bool has_name = false;
  auto end_key = [&]() -> result<void> {
    if (in_service && !has_name)
      return bad_line(key_lines.back(), "service " + services.back().id.to_string() +
                                            " has no \"ElementName\" value");
    in_service = false;
    return {};
  };
  for (++n; n < lines.size(); ++n) {
    const std::size_t line = n + 1;
    std::string_view l = trim(lines[n]);
    if (l.empty() || l.front() == ';') continue;
    if (l.front() == '[') {
      if (auto ok = end_key(); !ok) return ok.error();
      if (l.back() != ']') return bad_line(line, "a key line must end with ']'");
      std::string_view key = l.substr(1, l.size() - 2);
      if (!key.empty() && key.front() == '-')
        return bad_line(line, "deleting keys ([-...]) is not supported");
      if (iequals(key, services_key)) continue;  // the parent key itself
      if (key.size() <= services_key.size() + 1 ||
          !iequals(key.substr(0, services_key.size()), services_key) ||
          key[services_key.size()] != '\\')
        return bad_line(line, "key [" + std::string(key) + "] is not a service under [" +
                                  std::string(services_key) + "]");
      const std::string_view name = key.substr(services_key.size() + 1);
      auto id = guid::parse(name);
      if (!id)
        return bad_line(line, "key \"" + std::string(name) +
                                  "\" is not a service GUID: " + id.error().message());
      services.push_back({*id, {}});
      where.push_back("line " + std::to_string(line));
      key_lines.push_back(line);
      in_service = true;
      has_name = false;
      continue;
    }
    // A value: "Name"=... or @=... (the default value).
    if (!in_service) return bad_line(line, "a value outside a service key");
    std::string value_name;
    if (l.front() == '@') {
      l.remove_prefix(1);
    } else {
      auto quoted = take_quoted(l, line);
      if (!quoted) return quoted.error();
      value_name = std::move(*quoted);
    }
    l = trim(l);
    if (l.empty() || l.front() != '=') return bad_line(line, "expected '=' after the value name");
    l = trim(l.substr(1));
    if (!iequals(value_name, "ElementName")) {
      // Another value: skipped, continuation lines (a trailing '\') included.
      while (!l.empty() && l.back() == '\\' && n + 1 < lines.size()) l = trim(lines[++n]);
      continue;
    }
    if (has_name) return bad_line(line, "\"ElementName\" is given twice for this service");
    if (l.empty() || l.front() != '"')
      return bad_line(line, "\"ElementName\" must be a string (REG_SZ): \"ElementName\"=\"...\"");
    auto element_name = take_quoted(l, line);
    if (!element_name) return element_name.error();
    if (!trim(l).empty()) return bad_line(line, "unexpected text after the value");
    services.back().name = std::move(*element_name);
    has_name = true;
  }
  if (auto ok = end_key(); !ok) return ok.error();
  return check_unique(std::move(services), where);
}

result<std::vector<service_definition>> read_json(std::string_view text) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return bad("not valid JSON");
  if (!doc.is_object() || !doc.contains("services") || !doc["services"].is_array())
    return bad("expected {\"services\": [{\"id\": GUID, \"name\": ElementName}, ...]}");
  std::vector<service_definition> services;
  std::vector<std::string> where;
  const auto& list = doc["services"];
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string at = "services[" + std::to_string(i) + "]";
    const auto& e = list[i];
    if (!e.is_object() || !e.contains("id") || !e["id"].is_string() || !e.contains("name") ||
        !e["name"].is_string())
      return bad(at + ": expected {\"id\": GUID, \"name\": ElementName}");
    auto id = guid::parse(e["id"].get<std::string>());
    if (!id) return bad(at + ": \"id\" is not a GUID: " + id.error().message());
    services.push_back({*id, e["name"].get<std::string>()});
    where.push_back(at);
  }
  return check_unique(std::move(services), where);
}

}  // namespace

std::optional<format> format_from_name(std::string_view name) {
  if (name == "reg") return format::reg;
  if (name == "json") return format::json;
  return std::nullopt;
}

std::string write(format f, const std::vector<service_definition>& services) {
  if (f == format::json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : services) list.push_back({{"id", s.id.to_string()}, {"name", s.name}});
    return nlohmann::json{{"services", list}}.dump(2) + "\n";
  }
  std::string text(reg_header);
  text += "\r\n\r\n";
  for (const auto& s : services) {
    text += "[" + std::string(services_key) + "\\" + s.id.to_string() + "]\r\n";
    text += "\"ElementName\"=\"" + escape_reg(s.name) + "\"\r\n\r\n";
  }
  return "\xff\xfe" + utf16le_of(text);
}

format detect(std::span<const std::byte> bytes) {
  auto text = decode(bytes);
  if (!text) return format::reg;  // bad UTF-16: the reg reader says why
  const auto first = text->find_first_not_of(" \t\r\n");
  return first != std::string::npos && (*text)[first] == '{' ? format::json : format::reg;
}

result<std::vector<service_definition>> read(format f, std::span<const std::byte> bytes) {
  auto text = decode(bytes);
  if (!text) return text.error();
  return f == format::json ? read_json(*text) : read_reg(*text);
}

}  // namespace hvsock::service_file
