// guid text and binary encodings.
#include <hvsock/guid.hpp>

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

namespace hvsock {
namespace {

constexpr std::size_t text_length = 36;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_dash_position(std::size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

failure parse_error(std::string_view text, const std::string& why) {
  return failure(errc::invalid_guid, "invalid GUID \"" + std::string(text.substr(0, 64)) +
                                         (text.size() > 64 ? "..." : "") + "\": " + why);
}

}  // namespace

result<guid> guid::parse(std::string_view text) {
  std::string_view body = text;
  if (text.empty()) return parse_error(text, "empty");
  const bool open = text.front() == '{';
  const bool close = text.back() == '}';
  if (open != close || (open && text.size() < 2)) return parse_error(text, "unbalanced braces");
  if (open) body = text.substr(1, text.size() - 2);
  // Positions in messages count from 1 in `text` as given (braces included).
  const std::size_t first = open ? 2 : 1;
  if (body.size() != text_length)
    return parse_error(text, "expected 36 characters (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got " +
                                 std::to_string(body.size()));
  std::uint8_t nibbles[32];
  std::size_t n = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (is_dash_position(i)) {
      if (c != '-')
        return parse_error(text, "expected '-' at position " + std::to_string(i + first));
      continue;
    }
    const int v = hex_value(c);
    if (v < 0) return parse_error(text, "not a hex digit at position " + std::to_string(i + first));
    nibbles[n++] = static_cast<std::uint8_t>(v);
  }
  auto take = [&](std::size_t from, std::size_t count) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < count; ++i) v = (v << 4) | nibbles[from + i];
    return v;
  };
  std::array<std::uint8_t, 8> d4{};
  for (std::size_t i = 0; i < 8; ++i) d4[i] = static_cast<std::uint8_t>(take(16 + 2 * i, 2));
  return guid{take(0, 8), static_cast<std::uint16_t>(take(8, 4)),
              static_cast<std::uint16_t>(take(12, 4)), d4};
}

guid guid::generate() {
  bytes raw{};
  std::size_t got = 0;
  while (got < raw.size()) {
    const ssize_t n = getrandom(raw.data() + got, raw.size() - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // No getrandom (old kernel, seccomp): fall back to the C++ source,
      // which reads /dev/urandom on Linux.
      std::random_device device;
      for (auto& b : raw) b = static_cast<std::uint8_t>(device());
      break;
    }
  }
  guid g = from_windows_bytes(raw);
  // RFC 4122 version 4, variant 1.
  g.data3_ = static_cast<std::uint16_t>((g.data3_ & 0x0fff) | 0x4000);
  g.data4_[0] = static_cast<std::uint8_t>((g.data4_[0] & 0x3f) | 0x80);
  return g;
}

guid guid::from_windows_bytes(const bytes& raw) {
  guid g;
  g.data1_ = static_cast<std::uint32_t>(raw[0]) | static_cast<std::uint32_t>(raw[1]) << 8 |
             static_cast<std::uint32_t>(raw[2]) << 16 | static_cast<std::uint32_t>(raw[3]) << 24;
  g.data2_ = static_cast<std::uint16_t>(raw[4] | raw[5] << 8);
  g.data3_ = static_cast<std::uint16_t>(raw[6] | raw[7] << 8);
  std::memcpy(g.data4_.data(), raw.data() + 8, 8);
  return g;
}

guid::bytes guid::to_windows_bytes() const {
  bytes raw{};
  raw[0] = static_cast<std::uint8_t>(data1_);
  raw[1] = static_cast<std::uint8_t>(data1_ >> 8);
  raw[2] = static_cast<std::uint8_t>(data1_ >> 16);
  raw[3] = static_cast<std::uint8_t>(data1_ >> 24);
  raw[4] = static_cast<std::uint8_t>(data2_);
  raw[5] = static_cast<std::uint8_t>(data2_ >> 8);
  raw[6] = static_cast<std::uint8_t>(data3_);
  raw[7] = static_cast<std::uint8_t>(data3_ >> 8);
  std::memcpy(raw.data() + 8, data4_.data(), 8);
  return raw;
}

std::string guid::to_string() const {
  char text[text_length + 1];
  std::snprintf(text, sizeof text, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", data1_,
                data2_, data3_, data4_[0], data4_[1], data4_[2], data4_[3], data4_[4], data4_[5],
                data4_[6], data4_[7]);
  return std::string(text, text_length);
}

}  // namespace hvsock

std::size_t std::hash<hvsock::guid>::operator()(const hvsock::guid& g) const noexcept {
  // FNV-1a over the binary form: cheap, and GUIDs are already well mixed.
  std::size_t h = 14695981039346656037ull;
  for (std::uint8_t b : g.to_windows_bytes()) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}
