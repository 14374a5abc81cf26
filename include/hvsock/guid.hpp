// guid: a 128-bit identifier as Hyper-V uses it (VmId, ServiceId).
//
// The value is kept as the four Windows fields (Data1..Data4). The text form
// ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lowercase on output) and the
// Windows binary layout (Data1/2/3 little-endian, Data4 as bytes) are two
// separate encodings of that value; neither is the in-memory representation.
// A guid is a plain value: copyable, comparable, hashable, thread-compatible.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <hvsock/result.hpp>

namespace hvsock {

class guid {
 public:
  using bytes = std::array<std::uint8_t, 16>;

  constexpr guid() = default;
  constexpr guid(std::uint32_t data1, std::uint16_t data2, std::uint16_t data3,
                 std::array<std::uint8_t, 8> data4)
      : data1_(data1), data2_(data2), data3_(data3), data4_(data4) {}

  // Parses the 36-character text form, optionally wrapped in one pair of
  // braces, hex digits in any case. Anything else is errc::invalid_guid with a
  // message that says what is wrong and where.
  static result<guid> parse(std::string_view text);

  // A random (version 4) guid from the kernel's random source.
  static guid generate();

  // Windows binary layout: Data1, Data2, Data3 little-endian, then Data4.
  static guid from_windows_bytes(const bytes& raw);
  bytes to_windows_bytes() const;

  // Lowercase text form without braces, always 36 characters.
  std::string to_string() const;

  constexpr std::uint32_t data1() const { return data1_; }
  constexpr std::uint16_t data2() const { return data2_; }
  constexpr std::uint16_t data3() const { return data3_; }
  constexpr const std::array<std::uint8_t, 8>& data4() const { return data4_; }
  constexpr bool is_zero() const { return *this == guid{}; }

  friend constexpr auto operator<=>(const guid&, const guid&) = default;
  friend constexpr bool operator==(const guid&, const guid&) = default;

 private:
  std::uint32_t data1_ = 0;
  std::uint16_t data2_ = 0;
  std::uint16_t data3_ = 0;
  std::array<std::uint8_t, 8> data4_{};
};

// Compile-time construction from the text form; ill-formed text is a compile
// error (the throw is never reached at run time).
consteval guid guid_literal(const char (&text)[37]) {
  auto hex = [](char c) -> std::uint32_t {
    if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<std::uint32_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<std::uint32_t>(c - 'A' + 10);
    throw "guid_literal: not a hex digit";
  };
  auto field = [&](int from, int count) {
    std::uint32_t v = 0;
    for (int i = 0; i < count; ++i) v = (v << 4) | hex(text[from + i]);
    return v;
  };
  if (text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-')
    throw "guid_literal: dashes misplaced";
  std::array<std::uint8_t, 8> d4{};
  d4[0] = static_cast<std::uint8_t>(field(19, 2));
  d4[1] = static_cast<std::uint8_t>(field(21, 2));
  for (int i = 0; i < 6; ++i) d4[2 + i] = static_cast<std::uint8_t>(field(24 + 2 * i, 2));
  return guid{field(0, 8), static_cast<std::uint16_t>(field(9, 4)),
              static_cast<std::uint16_t>(field(14, 4)), d4};
}

}  // namespace hvsock

template <>
struct std::hash<hvsock::guid> {
  std::size_t operator()(const hvsock::guid& g) const noexcept;
};
