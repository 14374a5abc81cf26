// service_file: the registry as a .reg file (checked byte by byte against a
// golden file made with iconv, not with the writer) and as JSON, and what the
// readers refuse, line by line.
#include "registry/service_file.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace hvsock::service_file {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

std::string golden(const std::string& name) {
  std::ifstream in(std::string(HVSOCK_TEST_DATA_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

service_definition def(std::string_view id, std::string name) {
  return {guid::parse(id).value(), std::move(name)};
}

const std::vector<service_definition> two{
    def("00001388-facb-11e6-bd58-64006a7986d3", R"(echo "quoted" \ back)"),
    def("7c1b1b9e-4e2d-4b5e-9a35-2f4c9d2a6b11", "HV Socket Demo")};

// The error of reading `text` as reg.
std::string reg_error(const std::string& text) {
  auto r = read(format::reg, bytes_of(text));
  EXPECT_FALSE(r) << text;
  return r ? std::string() : r.error().message();
}

const std::string key_prefix = std::string("[") + std::string(services_key) + "\\";
const std::string header = "Windows Registry Editor Version 5.00\n\n";

TEST(ServiceFile, RegIsWrittenAsRegImportTakesIt) {
  EXPECT_EQ(write(format::reg, two), golden("two-services.reg"));
  EXPECT_EQ(write(format::reg, {}), golden("two-services.reg").substr(0, 2 + 2 * 40));
}

TEST(ServiceFile, RegReadsBackExactly) {
  const auto file = golden("two-services.reg");
  auto r = read(format::reg, bytes_of(file));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, two);
  EXPECT_EQ(detect(bytes_of(file)), format::reg);
}

TEST(ServiceFile, RegReaderTakesWhatPeopleWrite) {
  // UTF-8 with a BOM, LF ends, comments, the parent key, a braced upper-case
  // GUID, blanks, another value (with continuation lines) and a default value.
  const std::string text = "\xef\xbb\xbf" + header + "; provisioned by hand\n[" +
                           std::string(services_key) + "]\n\n" + key_prefix +
                           "{00001388-FACB-11E6-BD58-64006A7986D3}]\n" +
                           "\"Other\"=hex:01,02,\\\n  03\n@=\"default\"\n" +
                           R"(  "ElementName" = "echo \"quoted\" \\ back"  )" + "\n" + key_prefix +
                           "7c1b1b9e-4e2d-4b5e-9a35-2f4c9d2a6b11]\n\"ElementName\"=\"HV Socket "
                           "Demo\"\n";
  auto r = read(format::reg, bytes_of(text));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, two);
}

TEST(ServiceFile, MalformedRegNamesTheLine) {
  EXPECT_NE(reg_error("REGEDIT4\n").find("line 1: expected \"Windows Registry Editor"),
            std::string::npos);
  EXPECT_NE(reg_error("").find("empty"), std::string::npos);
  EXPECT_NE(reg_error(header + "[HKEY_CURRENT_USER\\Software\\x]\n").find("line 3: key"),
            std::string::npos);
  EXPECT_NE(reg_error(header + key_prefix + "not-a-guid]\n\"ElementName\"=\"x\"\n")
                .find("line 3: key \"not-a-guid\" is not a service GUID"),
            std::string::npos);
  EXPECT_NE(reg_error(header + key_prefix + "00001388-facb-11e6-bd58-64006a7986d3]\n\n")
                .find("line 3: service 00001388-facb-11e6-bd58-64006a7986d3 has no "
                      "\"ElementName\""),
            std::string::npos);
  EXPECT_NE(reg_error(header + "\"ElementName\"=\"x\"\n").find("line 3: a value outside"),
            std::string::npos);
  const std::string k = key_prefix + "00001388-facb-11e6-bd58-64006a7986d3]\n";
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=hex(2):41,00\n")
                .find("line 4: \"ElementName\" must be a string"),
            std::string::npos);
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=\"open\n").find("line 4:"), std::string::npos);
  EXPECT_NE(
      reg_error(header + k + "\"ElementName\"=\"a\\n\"\n").find("line 4: a string may escape"),
      std::string::npos);
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=\"a\" junk\n").find("line 4: unexpected text"),
            std::string::npos);
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=\"a\"\n\"ElementName\"=\"b\"\n")
                .find("line 5: \"ElementName\" is given twice"),
            std::string::npos);
  EXPECT_NE(reg_error(header + "[-" + std::string(services_key) + "]\n").find("line 3: deleting"),
            std::string::npos);
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=\"a\"\n" + k + "\"ElementName\"=\"b\"\n")
                .find("line 5: service 00001388-facb-11e6-bd58-64006a7986d3 is given twice "
                      "(first line 3)"),
            std::string::npos);
  EXPECT_NE(reg_error(header + k + "\"ElementName\"=\"a\"\n" + key_prefix +
                      "7c1b1b9e-4e2d-4b5e-9a35-2f4c9d2a6b11]\n\"ElementName\"=\"a\"\n")
                .find("line 5: the ElementName \"a\" is given twice (first line 3)"),
            std::string::npos);
  EXPECT_NE(
      reg_error(header + "[" + std::string(services_key) + "\\x\n").find("line 3: a key line"),
      std::string::npos);
}

TEST(ServiceFile, BadUtf16IsRefused) {
  std::string odd = golden("two-services.reg");
  odd.pop_back();
  EXPECT_NE(reg_error(odd).find("odd number of bytes"), std::string::npos);
  std::string lone = "\xff\xfe";
  lone += std::string("\x00\xd8", 2);  // a high surrogate with nothing after it
  EXPECT_NE(reg_error(lone).find("lone surrogate"), std::string::npos);
}

TEST(ServiceFile, NonAsciiSurvivesUtf16BothWays) {
  const std::vector<service_definition> wide{
      def("00001388-facb-11e6-bd58-64006a7986d3", "caf\xc3\xa9 \xf0\x9f\x98\x80")};
  const auto file = write(format::reg, wide);
  auto r = read(format::reg, bytes_of(file));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, wide);
}

TEST(ServiceFile, JsonBothWaysAndItsErrors) {
  const auto file = write(format::json, two);
  EXPECT_EQ(detect(bytes_of(file)), format::json);
  auto r = read(format::json, bytes_of(file));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, two);
  auto error = [](const std::string& text) {
    auto bad = read(format::json, bytes_of(text));
    EXPECT_FALSE(bad) << text;
    return bad ? std::string() : bad.error().message();
  };
  EXPECT_NE(error("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error("[]").find("expected {\"services\""), std::string::npos);
  EXPECT_NE(error(R"({"services":[{"id":"x","name":"a"}]})").find("services[0]: \"id\" is not"),
            std::string::npos);
  EXPECT_NE(error(R"({"services":[{"name":"a"}]})").find("services[0]: expected"),
            std::string::npos);
  EXPECT_NE(error(R"({"services":[{"id":"00001388-facb-11e6-bd58-64006a7986d3","name":"a"},)"
                  R"({"id":"00001388-facb-11e6-bd58-64006a7986d3","name":"b"}]})")
                .find("services[1]: service 00001388-facb-11e6-bd58-64006a7986d3 is given twice"),
            std::string::npos);
}

TEST(ServiceFile, FormatNames) {
  EXPECT_EQ(format_from_name("reg"), format::reg);
  EXPECT_EQ(format_from_name("json"), format::json);
  EXPECT_EQ(format_from_name("xml"), std::nullopt);
}

}  // namespace
}  // namespace hvsock::service_file
