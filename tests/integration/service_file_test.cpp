// hvsock service export / import against real hvsockd processes: the
// registry leaves one switch as a .reg (or JSON) file and arrives in another
// exactly; a bad file or a conflicting service changes nothing.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

class ServiceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source.register_service("echo", "00001388-facb-11e6-bd58-64006a7986d3");
    source.register_service("HV Socket Demo", "7c1b1b9e-4e2d-4b5e-9a35-2f4c9d2a6b11");
    source.register_service(R"(odd "name" \ here)");
  }
  // `hvsock service list --json` without the per-switch parts (overrides).
  static std::string listing(const switch_fixture& sw) {
    return sw.cli_ok({"service", "list", "--json"});
  }
  switch_fixture source, target;
};

TEST_F(ServiceFileTest, RegExportImportsIntoAnotherSwitchExactly) {
  const std::string file = source.root() + "/services.reg";
  const auto exported = source.cli({"service", "export", "-o", file});
  ASSERT_EQ(exported.status.code, 0) << exported.err;
  EXPECT_NE(exported.err.find("exported 3 services"), std::string::npos) << exported.err;
  const std::string bytes = read_file(file);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(bytes.substr(0, 2), "\xff\xfe");                             // UTF-16LE's BOM
  EXPECT_NE(bytes.find(std::string("\r\0\n\0", 4)), std::string::npos);  // CRLF

  const auto imported = target.cli({"service", "import", file});
  ASSERT_EQ(imported.status.code, 0) << imported.err;
  EXPECT_NE(imported.err.find("3 services added, 0 already registered"), std::string::npos)
      << imported.err;
  EXPECT_EQ(listing(target), listing(source));
  // And back out: the same bytes.
  const std::string again = target.root() + "/again.reg";
  target.cli_ok({"service", "export", "-o", again});
  EXPECT_EQ(read_file(again), bytes);
  // Importing again changes nothing.
  const auto twice = target.cli({"service", "import", file});
  EXPECT_EQ(twice.status.code, 0) << twice.err;
  EXPECT_NE(twice.err.find("0 services added, 3 already registered"), std::string::npos)
      << twice.err;
}

TEST_F(ServiceFileTest, JsonToStdoutAndBack) {
  const auto exported = source.cli({"service", "export", "--format", "json"});
  ASSERT_EQ(exported.status.code, 0) << exported.err;
  EXPECT_EQ(exported.out.substr(0, 1), "{");
  const std::string file = target.root() + "/services.json";
  write_file(file, exported.out);
  const auto imported = target.cli({"service", "import", file});  // detected as JSON
  ASSERT_EQ(imported.status.code, 0) << imported.err;
  EXPECT_EQ(listing(target), listing(source));
}

TEST_F(ServiceFileTest, AMalformedFileNamesItsLineAndChangesNothing) {
  target.register_service("already");
  const std::string before = listing(target);
  const std::string file = target.root() + "/bad.reg";
  write_file(file,
             "Windows Registry Editor Version 5.00\r\n\r\n"
             "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
             "Virtualization\\GuestCommunicationServices\\00001388-facb-11e6-bd58-64006a7986d3]\r\n"
             "\"ElementName\"=\"fine\"\r\n\r\n"
             "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
             "Virtualization\\GuestCommunicationServices\\not-a-guid]\r\n");
  const auto r = target.cli({"service", "import", file});
  EXPECT_EQ(r.status.code, 2) << r.err;
  EXPECT_NE(r.err.find("line 6: key \"not-a-guid\" is not a service GUID"), std::string::npos)
      << r.err;
  EXPECT_EQ(listing(target), before);
}

TEST_F(ServiceFileTest, AConflictImportsNothing) {
  // "echo" is taken in the target by another GUID: the whole import is refused.
  target.register_service("echo", "0000138a-facb-11e6-bd58-64006a7986d3");
  const std::string before = listing(target);
  const std::string file = source.root() + "/services.reg";
  source.cli_ok({"service", "export", "-o", file});
  const auto r = target.cli({"service", "import", file});
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_NE(r.err.find("echo (00001388-facb-11e6-bd58-64006a7986d3)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing was imported"), std::string::npos) << r.err;
  EXPECT_EQ(listing(target), before);
  // A name the switch refuses (control characters) is refused the same way.
  write_file(file,
             "{\"services\": [{\"id\": \"00001389-facb-11e6-bd58-64006a7986d3\", "
             "\"name\": \"tab\\there\"}]}");
  const auto named = target.cli({"service", "import", file});
  EXPECT_EQ(named.status.code, 1) << named.err;
  EXPECT_EQ(listing(target), before);
}

TEST_F(ServiceFileTest, ClearErrorsForMissingFilesAndFormats) {
  const auto missing = target.cli({"service", "import", target.root() + "/nope.reg"});
  EXPECT_EQ(missing.status.code, 1);
  EXPECT_NE(missing.err.find("nope.reg"), std::string::npos) << missing.err;
  const auto format = source.cli({"service", "export", "--format", "xml"});
  EXPECT_EQ(format.status.code, 2);
  const auto dir = source.cli({"service", "export", "-o", source.root() + "/no/such/dir/x.reg"});
  EXPECT_EQ(dir.status.code, 1);
  EXPECT_NE(dir.err.find("no/such/dir"), std::string::npos) << dir.err;
}

}  // namespace
}  // namespace hvsock::test
