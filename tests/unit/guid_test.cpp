// Unit tests for hvsock::guid: text parsing and formatting, the Windows binary
// layout, comparison, hashing and generation.
#include <hvsock/guid.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>

namespace hvsock {
namespace {

constexpr std::string_view kVsock2761 = "00000ac9-facb-11e6-bd58-64006a7986d3";
constexpr guid::bytes kVsock2761Bytes = {0xc9, 0x0a, 0x00, 0x00, 0xcb, 0xfa, 0xe6, 0x11,
                                         0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3};

// A GUID whose fields are all distinct and non-symmetric, so byte-order
// mistakes show up.
constexpr std::string_view kSample = "01234567-89ab-cdef-0123-456789abcdef";

guid parse_ok(std::string_view text) {
  auto r = guid::parse(text);
  EXPECT_TRUE(r.has_value()) << "parse(\"" << text
                             << "\") failed: " << (r ? std::string() : r.error().message());
  return r ? *r : guid{};
}

// Parses `text`, expects errc::invalid_guid, and returns the message.
std::string parse_error(std::string_view text) {
  auto r = guid::parse(text);
  EXPECT_FALSE(r.has_value()) << "parse(\"" << text << "\") unexpectedly gave "
                              << (r ? r->to_string() : std::string());
  if (r) return {};
  EXPECT_EQ(r.error().code(), make_error_code(errc::invalid_guid)) << text;
  EXPECT_FALSE(r.error().message().empty()) << text;
  return r.error().message();
}

// --- parsing: accepted forms -------------------------------------------------

TEST(GuidParse, FieldsOfTheTextForm) {
  const guid g = parse_ok(kSample);
  EXPECT_EQ(g.data1(), 0x01234567u);
  EXPECT_EQ(g.data2(), 0x89abu);
  EXPECT_EQ(g.data3(), 0xcdefu);
  const std::array<std::uint8_t, 8> d4 = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  EXPECT_EQ(g.data4(), d4);
}

TEST(GuidParse, WithBraces) {
  EXPECT_EQ(parse_ok("{01234567-89ab-cdef-0123-456789abcdef}"), parse_ok(kSample));
}

TEST(GuidParse, UpperLowerAndMixedCaseAreEqual) {
  const guid lower = parse_ok("a42e7cda-d03f-480c-9cc2-a4de20abb878");
  EXPECT_EQ(parse_ok("A42E7CDA-D03F-480C-9CC2-A4DE20ABB878"), lower);
  EXPECT_EQ(parse_ok("a42E7cDa-D03f-480C-9Cc2-A4dE20aBb878"), lower);
  EXPECT_EQ(parse_ok("{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}"), lower);
  EXPECT_EQ(lower.data1(), 0xa42e7cdau);
}

TEST(GuidParse, ZeroAndAllOnes) {
  const guid zero = parse_ok("00000000-0000-0000-0000-000000000000");
  EXPECT_TRUE(zero.is_zero());
  EXPECT_EQ(zero, guid{});
  const guid ones = parse_ok("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF");
  EXPECT_FALSE(ones.is_zero());
  EXPECT_EQ(ones.data1(), 0xffffffffu);
  EXPECT_EQ(ones.data2(), 0xffffu);
  EXPECT_EQ(ones.data3(), 0xffffu);
  for (std::uint8_t b : ones.data4()) EXPECT_EQ(b, 0xff);
}

// --- parsing: rejected forms -------------------------------------------------

TEST(GuidParseRejects, Empty) {
  const std::string message = parse_error("");
  EXPECT_NE(message.find("empty"), std::string::npos) << message;
}

TEST(GuidParseRejects, BadLength) {
  // 35, 37 and 38 characters without braces; 36 inside braces is the only
  // accepted size.
  const std::string s35(kSample.substr(0, 35));
  const std::string s37 = std::string(kSample) + "0";
  const std::string s38 = std::string(kSample) + "00";
  for (const std::string& text : {s35, s37, s38}) {
    ASSERT_TRUE(text.size() == 35 || text.size() == 37 || text.size() == 38);
    const std::string message = parse_error(text);
    EXPECT_NE(message.find("36"), std::string::npos) << message;
    EXPECT_NE(message.find("got " + std::to_string(text.size())), std::string::npos) << message;
  }
  // Braces around the wrong number of characters.
  parse_error("{" + s35 + "}");
  parse_error("{" + s37 + "}");
  parse_error("{}");
  parse_error("0");
  // Compact (no dashes) 32-digit form is not accepted either.
  parse_error("0123456789abcdef0123456789abcdef");
}

TEST(GuidParseRejects, BadHexAtEveryKindOfPosition) {
  // Positions (0-based) inside each of the five groups, first and last digit.
  for (std::size_t pos : {0u, 7u, 9u, 12u, 14u, 17u, 19u, 22u, 24u, 35u}) {
    for (char bad : {'g', 'G', 'x', 'z', ' ', '-', '/', ':', '@', '`'}) {
      std::string text(kSample);
      text[pos] = bad;
      const std::string message = parse_error(text);
      EXPECT_NE(message.find("position " + std::to_string(pos + 1)), std::string::npos)
          << text << " -> " << message;
      EXPECT_NE(message.find("hex"), std::string::npos) << message;
    }
  }
}

TEST(GuidParseRejects, MessageQuotesTheInput) {
  const std::string message = parse_error("0123456z-89ab-cdef-0123-456789abcdef");
  EXPECT_NE(message.find("0123456z-89ab-cdef-0123-456789abcdef"), std::string::npos) << message;
  EXPECT_NE(message.find("position 8"), std::string::npos) << message;
}

TEST(GuidParseRejects, PositionCountsInTheInputAsGiven) {
  // With braces, the position is still that of the bad character in the
  // quoted input, so a person can count to it.
  const std::string hex = parse_error("{0123456z-89ab-cdef-0123-456789abcdef}");
  EXPECT_NE(hex.find("position 9"), std::string::npos) << hex;
  EXPECT_NE(hex.find("\"{0123456z-89ab-cdef-0123-456789abcdef}\""), std::string::npos) << hex;
  const std::string dash = parse_error("{01234567_89ab-cdef-0123-456789abcdef}");
  EXPECT_NE(dash.find("position 10"), std::string::npos) << dash;
  EXPECT_EQ(dash.find("position 9"), std::string::npos) << dash;
}

TEST(GuidParseRejects, LongInputQuotedShortened) {
  const std::string text(1000, 'a');
  const std::string message = parse_error(text);
  EXPECT_LT(message.size(), 200u) << message;
  EXPECT_NE(message.find("..."), std::string::npos) << message;
  EXPECT_NE(message.find("got 1000"), std::string::npos) << message;
}

TEST(GuidParseRejects, DashesMisplaced) {
  // Same length, dashes shifted by one.
  parse_error("0123456-789ab-cdef-0123-456789abcdef");
  parse_error("01234567-89abc-def-0123-456789abcdef");
  parse_error("01234567-89ab-cdef0-123-456789abcdef");
  parse_error("01234567-89ab-cdef-01234-56789abcdef");
  // A dash replaced by a hex digit and a digit replaced by a dash elsewhere.
  parse_error("012345670-89ab-cdef-0123-456789abcde");
  // Every dash replaced by another separator.
  for (std::size_t dash : {8u, 13u, 18u, 23u}) {
    std::string text(kSample);
    text[dash] = '_';
    const std::string message = parse_error(text);
    EXPECT_NE(message.find("'-'"), std::string::npos) << message;
    EXPECT_NE(message.find("position " + std::to_string(dash + 1)), std::string::npos) << message;
  }
}

TEST(GuidParseRejects, UnbalancedOrMixedBraces) {
  const std::string body(kSample);
  for (const std::string& text :
       {"{" + body, body + "}", "{{" + body + "}}", "{" + body + "}}", "{{" + body + "}",
        "(" + body + ")", "[" + body + "]", "}" + body + "{", "{" + body + ")", std::string("{"),
        std::string("}")}) {
    parse_error(text);
  }
  const std::string message = parse_error("{" + body);
  EXPECT_NE(message.find("brace"), std::string::npos) << message;
  const std::string closing = parse_error(body + "}");
  EXPECT_NE(closing.find("brace"), std::string::npos) << closing;
}

TEST(GuidParseRejects, Whitespace) {
  const std::string body(kSample);
  for (const std::string& text :
       {" " + body, body + " ", "\t" + body, body + "\n", "{ " + body + "}", "{" + body + " }",
        " {" + body + "}", "{" + body + "} "}) {
    parse_error(text);
  }
  // Whitespace in place of one digit keeps the length right; still rejected.
  std::string inner = body;
  inner[20] = ' ';
  parse_error(inner);
}

TEST(GuidParseRejects, EmbeddedNul) {
  std::string text(kSample);
  text[3] = '\0';
  parse_error(text);
}

// --- formatting ----------------------------------------------------------------

TEST(GuidFormat, LowercaseThirtySixCharacters) {
  const guid g = parse_ok("{ABCDEF01-2345-6789-ABCD-EF0123456789}");
  const std::string text = g.to_string();
  EXPECT_EQ(text, "abcdef01-2345-6789-abcd-ef0123456789");
  EXPECT_EQ(text.size(), 36u);
}

TEST(GuidFormat, LeadingZerosKept) {
  const guid g(0x1, 0x2, 0x3, {0, 0x4, 0, 0, 0, 0, 0, 0x5});
  EXPECT_EQ(g.to_string(), "00000001-0002-0003-0004-000000000005");
  EXPECT_EQ(guid{}.to_string(), "00000000-0000-0000-0000-000000000000");
}

TEST(GuidFormat, RoundTrip) {
  for (std::string_view text :
       {kSample, kVsock2761, std::string_view("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        std::string_view("90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd")}) {
    const guid g = parse_ok(text);
    EXPECT_EQ(g.to_string(), text);
    EXPECT_EQ(parse_ok(g.to_string()), g);
  }
  for (int i = 0; i < 100; ++i) {
    const guid g = guid::generate();
    const std::string text = g.to_string();
    ASSERT_EQ(text.size(), 36u);
    EXPECT_EQ(parse_ok(text), g);
    EXPECT_EQ(parse_ok("{" + text + "}"), g);
  }
}

// --- guid_literal ------------------------------------------------------------------

TEST(GuidLiteral, EqualsParse) {
  constexpr guid lit = guid_literal("01234567-89ab-cdef-0123-456789abcdef");
  static_assert(lit.data1() == 0x01234567u);
  static_assert(lit.data2() == 0x89ab);
  static_assert(lit.data3() == 0xcdef);
  static_assert(lit.data4()[7] == 0xef);
  EXPECT_EQ(lit, parse_ok(kSample));
  constexpr guid upper = guid_literal("A42E7CDA-D03F-480C-9CC2-A4DE20ABB878");
  EXPECT_EQ(upper, parse_ok("a42e7cda-d03f-480c-9cc2-a4de20abb878"));
  EXPECT_EQ(guid_literal("00000ac9-facb-11e6-bd58-64006a7986d3"), parse_ok(kVsock2761));
}

// --- Windows binary layout ---------------------------------------------------------

TEST(GuidBinary, KnownBytesToWindows) {
  const guid g = parse_ok(kVsock2761);
  EXPECT_EQ(g.to_windows_bytes(), kVsock2761Bytes);
}

TEST(GuidBinary, KnownBytesFromWindows) {
  const guid g = guid::from_windows_bytes(kVsock2761Bytes);
  EXPECT_EQ(g.to_string(), kVsock2761);
  EXPECT_EQ(g.data1(), 0x00000ac9u);
  EXPECT_EQ(g.data2(), 0xfacbu);
  EXPECT_EQ(g.data3(), 0x11e6u);
}

TEST(GuidBinary, EveryFieldLittleEndianExceptData4) {
  const guid g = parse_ok(kSample);
  const guid::bytes expected = {0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd,
                                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  EXPECT_EQ(g.to_windows_bytes(), expected);
  EXPECT_EQ(guid::from_windows_bytes(expected), g);
}

TEST(GuidBinary, RoundTripOfGenerated) {
  for (int i = 0; i < 100; ++i) {
    const guid g = guid::generate();
    EXPECT_EQ(guid::from_windows_bytes(g.to_windows_bytes()), g);
  }
}

// --- comparison and hashing ----------------------------------------------------------

TEST(GuidCompare, EqualityAndOrdering) {
  const guid a = parse_ok("00000001-0000-0000-0000-000000000000");
  const guid b = parse_ok("00000002-0000-0000-0000-000000000000");
  const guid a_copy = parse_ok("{00000001-0000-0000-0000-000000000000}");
  EXPECT_EQ(a, a_copy);
  EXPECT_FALSE(a != a_copy);
  EXPECT_NE(a, b);
  EXPECT_LT(a, b);
  EXPECT_GT(b, a);
  EXPECT_LE(a, a_copy);
  EXPECT_GE(a, a_copy);
  EXPECT_LT(guid{}, a);
  // Data1 dominates, then Data2, Data3, Data4 (the text order).
  EXPECT_LT(parse_ok("00000000-ffff-ffff-ffff-ffffffffffff"),
            parse_ok("00000001-0000-0000-0000-000000000000"));
  EXPECT_LT(parse_ok("00000000-0000-ffff-ffff-ffffffffffff"),
            parse_ok("00000000-0001-0000-0000-000000000000"));
  EXPECT_LT(parse_ok("00000000-0000-0000-ffff-ffffffffffff"),
            parse_ok("00000000-0000-0001-0000-000000000000"));
  EXPECT_LT(parse_ok("00000000-0000-0000-0000-fffffffffffe"),
            parse_ok("00000000-0000-0000-0000-ffffffffffff"));
  // A difference only in the last byte counts.
  EXPECT_NE(parse_ok("00000000-0000-0000-0000-000000000000"),
            parse_ok("00000000-0000-0000-0000-000000000001"));
}

TEST(GuidCompare, UsableAsSetKey) {
  std::set<guid> ordered = {parse_ok("00000003-0000-0000-0000-000000000000"),
                            parse_ok("00000001-0000-0000-0000-000000000000"),
                            parse_ok("00000002-0000-0000-0000-000000000000")};
  ASSERT_EQ(ordered.size(), 3u);
  EXPECT_EQ(ordered.begin()->data1(), 1u);
  EXPECT_EQ(ordered.rbegin()->data1(), 3u);
}

TEST(GuidHash, EqualValuesHashEqual) {
  const std::hash<guid> h;
  EXPECT_EQ(h(parse_ok(kSample)), h(parse_ok("{01234567-89AB-CDEF-0123-456789ABCDEF}")));
  EXPECT_NE(h(parse_ok(kSample)), h(parse_ok("01234567-89ab-cdef-0123-456789abcdee")));
}

TEST(GuidHash, UnorderedSet) {
  std::unordered_set<guid> set;
  EXPECT_TRUE(set.insert(parse_ok(kSample)).second);
  EXPECT_FALSE(set.insert(parse_ok("01234567-89AB-CDEF-0123-456789ABCDEF")).second);
  EXPECT_TRUE(set.insert(parse_ok(kVsock2761)).second);
  EXPECT_TRUE(set.insert(guid{}).second);
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.count(parse_ok("{00000AC9-FACB-11E6-BD58-64006A7986D3}")), 1u);
  EXPECT_EQ(set.count(parse_ok("00000aca-facb-11e6-bd58-64006a7986d3")), 0u);
  for (int i = 0; i < 1000; ++i) set.insert(guid::generate());
  EXPECT_EQ(set.size(), 1003u);
}

// --- generation -----------------------------------------------------------------------

TEST(GuidGenerate, VersionFourVariantOne) {
  for (int i = 0; i < 200; ++i) {
    const guid g = guid::generate();
    EXPECT_EQ(g.data3() >> 12, 4) << g.to_string();
    EXPECT_EQ(g.data4()[0] & 0xc0, 0x80) << g.to_string();
    const std::string text = g.to_string();
    EXPECT_EQ(text[14], '4') << text;
    EXPECT_NE(std::string_view("89ab").find(text[19]), std::string_view::npos) << text;
  }
}

TEST(GuidGenerate, ValuesDiffer) {
  std::set<guid> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(guid::generate());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_FALSE(guid::generate().is_zero());
}

TEST(GuidGenerate, RandomBitsVary) {
  // Over many values, every non-fixed bit of Data1 takes both values.
  std::uint32_t ones = 0;
  std::uint32_t zeros = 0;
  for (int i = 0; i < 256; ++i) {
    const guid g = guid::generate();
    ones |= g.data1();
    zeros |= ~g.data1();
  }
  EXPECT_EQ(ones, 0xffffffffu);
  EXPECT_EQ(zeros, 0xffffffffu);
}

}  // namespace
}  // namespace hvsock
