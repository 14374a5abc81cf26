// The hvsock CLI driven as a user drives it: separate processes against a
// real hvsockd, checking exit codes, what goes to stdout (machine-readable:
// one GUID line, JSON) and that failures are one "hvsock: ..." line on
// stderr. listen/connect are run as two processes in two partitions, one of
// them through `hvsock run`.
#include <stdlib.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Whether two paths name the same file (std::filesystem::equivalent refuses
// sockets).
bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// A failing command: non-zero exit, nothing on stdout, and exactly one line
// on stderr that starts with "hvsock: ".
void expect_one_line_failure(const run_result& r, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_TRUE(r.status.exited_normally())
      << "killed by signal " << r.status.signal << ": " << r.err;
  EXPECT_NE(r.status.code, 0) << "should have failed; stdout: " << r.out;
  EXPECT_EQ(r.out, "") << "a failure prints nothing on stdout";
  const auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << "stderr should be one line, got:\n" << r.err;
  EXPECT_EQ(lines[0].rfind("hvsock: ", 0), 0u) << lines[0];
  EXPECT_EQ(r.err.back(), '\n');
}

// stdout is exactly one GUID line in lowercase canonical form; returns it.
std::string expect_single_guid_line(const run_result& r) {
  EXPECT_EQ(r.status.code, 0) << r.err;
  const auto lines = lines_of(r.out);
  EXPECT_EQ(lines.size(), 1u) << "stdout: " << r.out;
  if (lines.size() != 1) return {};
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(lines[0].size(), 36u) << lines[0];
  EXPECT_EQ(lines[0], lowercase(lines[0]));
  auto parsed = guid::parse(lines[0]);
  EXPECT_TRUE(parsed) << lines[0];
  if (parsed) {
    EXPECT_EQ(parsed->to_string(), lines[0]);
  }
  return lines[0];
}

class CliTest : public ::testing::Test {
 protected:
  run_result cli(const std::vector<std::string>& args, const std::string& input = {}) const {
    return sw.cli(args, input, 30s);
  }

  json list_json(const std::string& what) const {
    const auto r = cli({what, "list", "--json"});
    EXPECT_EQ(r.status.code, 0) << r.err;
    auto parsed = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << r.out;
    EXPECT_TRUE(parsed.is_array()) << r.out;
    return parsed.is_array() ? parsed : json::array();
  }

  // The entry of `list` whose `key` is `value`, or null.
  static json find_entry(const json& list, const std::string& key, const std::string& value) {
    for (const auto& e : list)
      if (e.contains(key) && e[key].is_string() && e[key].get<std::string>() == value) return e;
    return nullptr;
  }

  // Registers the vsock-template service for `port`; returns its GUID.
  std::string cli_port(const std::string& name, std::uint32_t port) const {
    return sw.cli_ok({"service", "register", "--name", name, "--port", std::to_string(port)});
  }

  json service_entry(const std::string& name) const {
    return find_entry(list_json("service"), "name", name);
  }

  // `hvsock --runtime-dir R` as a command to run inside `hvsock run`.
  std::vector<std::string> inner_cli(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{hvsock_cli_path, "--runtime-dir", sw.runtime_dir()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  std::vector<std::string> run_in(const std::string& vm,
                                  const std::vector<std::string>& command) const {
    std::vector<std::string> args{"run", "--vm", vm, "--"};
    args.insert(args.end(), command.begin(), command.end());
    return args;
  }

  // Runs a started `listen` (waits for its "listening" line) against a
  // `connect` given by `connect_args`, each side sending its data; checks
  // both exit 0 and each printed what the other sent.
  void exchange(child_process& listener_cli, const std::vector<std::string>& connect_args,
                const std::string& listener_data, const std::string& connector_data) {
    ASSERT_TRUE(listener_cli.wait_for_stderr("listening", 10s))
        << "listen never said it was listening: " << listener_cli.err();
    // The listener's side runs on its own thread, so that both processes'
    // pipes are drained at once whatever the amount of data.
    exit_status listener_status;
    std::thread listener_side([&] {
      try {
        listener_cli.write_stdin(listener_data);
      } catch (const std::exception&) {
        // It exited early; wait() below reports how.
      }
      listener_cli.close_stdin();
      listener_status = listener_cli.wait(30s);
    });
    const auto connector = cli(connect_args, connector_data);
    listener_side.join();

    EXPECT_EQ(connector.status.code, 0) << "connect stderr: " << connector.err;
    EXPECT_EQ(listener_status.code, 0) << "listen stderr: " << listener_cli.err();
    EXPECT_TRUE(connector.out == listener_data)
        << "connect printed " << connector.out.size() << " bytes, the listener sent "
        << listener_data.size();
    EXPECT_TRUE(listener_cli.out() == connector_data)
        << "listen printed " << listener_cli.out().size() << " bytes, the connector sent "
        << connector_data.size();
  }

  static std::string pattern(std::size_t size, char seed) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>(seed + (i * 7) % 61);
    for (std::size_t i = 99; i < size; i += 100) s[i] = '\n';
    return s;
  }

  switch_fixture sw;
};

// --- status -----------------------------------------------------------------

TEST_F(CliTest, StatusExitsZeroWhenDaemonAnswers) {
  const auto r = cli({"status"});
  EXPECT_EQ(r.status.code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
}

TEST_F(CliTest, StatusFailsWithOneLineWithoutDaemon) {
  char tmpl[] = "/tmp/hvst-empty-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string empty_dir = tmpl;
  const auto r = run({hvsock_cli_path, "--runtime-dir", empty_dir, "status"}, {}, {}, 10s);
  std::filesystem::remove_all(empty_dir);
  expect_one_line_failure(r, "status without a daemon");
  EXPECT_EQ(r.status.code, 1);
  EXPECT_TRUE(contains(r.err, empty_dir)) << "should say where it looked: " << r.err;
}

TEST_F(CliTest, StatusHonoursRuntimeDirFromEnvironment) {
  const auto r =
      run({hvsock_cli_path, "status"}, {}, {{"HVSOCK_RUNTIME_DIR", sw.runtime_dir()}}, 10s);
  EXPECT_EQ(r.status.code, 0) << r.err;
}

// --- service ----------------------------------------------------------------

TEST_F(CliTest, ServiceRegisterPrintsOneGuidLine) {
  const auto r = cli({"service", "register", "--name", "alpha"});
  const auto id = expect_single_guid_line(r);
  const auto entry = service_entry("alpha");
  ASSERT_FALSE(entry.is_null()) << "alpha not listed";
  EXPECT_EQ(entry.value("id", ""), id);
}

TEST_F(CliTest, ServiceRegisterWithIdEchoesItLowercase) {
  const auto r = cli(
      {"service", "register", "--name", "upper", "--id", "{0A1B2C3D-4E5F-6A7B-8C9D-AEBFC0D1E2F3}"});
  EXPECT_EQ(expect_single_guid_line(r), "0a1b2c3d-4e5f-6a7b-8c9d-aebfc0d1e2f3");
  EXPECT_EQ(service_entry("upper").value("id", ""), "0a1b2c3d-4e5f-6a7b-8c9d-aebfc0d1e2f3");
}

TEST_F(CliTest, ServiceRegisterWithPortUsesVsockTemplate) {
  const auto r = cli({"service", "register", "--name", "port2761", "--port", "2761"});
  EXPECT_EQ(expect_single_guid_line(r), "00000ac9-facb-11e6-bd58-64006a7986d3");
  const auto entry = service_entry("port2761");
  ASSERT_FALSE(entry.is_null());
  ASSERT_TRUE(entry.contains("port")) << entry.dump();
  EXPECT_EQ(entry["port"], 2761) << entry.dump();
}

TEST_F(CliTest, ServiceRegisterDuplicateNameOrIdFails) {
  const auto first = sw.register_service("dup");
  expect_one_line_failure(cli({"service", "register", "--name", "dup"}), "same name");
  expect_one_line_failure(cli({"service", "register", "--name", "other", "--id", first}),
                          "same id");
  const auto upper = cli({"service", "register", "--name", "other2", "--id", "{" + [&] {
                            std::string u = first;
                            for (auto& c : u) c = static_cast<char>(std::toupper(c));
                            return u;
                          }() + "}"});
  expect_one_line_failure(upper, "same id, other spelling");
  const auto services = list_json("service");
  EXPECT_EQ(services.size(), 1u) << services.dump();
}

TEST_F(CliTest, ServiceRegisterMalformedGuidFailsNamingIt) {
  const std::string bad = "0a1b2c3d-4e5f-6a7b-8c9d-aebfc0d1e2fz";
  const auto r = cli({"service", "register", "--name", "bad", "--id", bad});
  expect_one_line_failure(r, "malformed GUID");
  EXPECT_TRUE(contains(r.err, bad)) << r.err;
  EXPECT_TRUE(list_json("service").empty());
}

TEST_F(CliTest, ServiceRegisterIdAndPortTogetherIsUsageError) {
  const auto r = cli({"service", "register", "--name", "x", "--port", "1", "--id",
                      "0a1b2c3d-4e5f-6a7b-8c9d-aebfc0d1e2f3"});
  EXPECT_EQ(r.status.code, 2) << r.err;
}

TEST_F(CliTest, ServiceListTableAndJson) {
  const auto a = sw.register_service("alpha");
  const auto b = cli_port("beta", 5000);
  const auto table = cli({"service", "list"});
  ASSERT_EQ(table.status.code, 0) << table.err;
  const auto lines = lines_of(table.out);
  ASSERT_EQ(lines.size(), 3u) << "header + two rows:\n" << table.out;
  EXPECT_TRUE(contains(lines[0], "ID") && contains(lines[0], "NAME")) << lines[0];
  bool saw_a = false, saw_b = false;
  for (const auto& line : lines) {
    if (contains(line, a) && contains(line, "alpha")) saw_a = true;
    if (contains(line, b) && contains(line, "beta") && contains(line, "5000")) saw_b = true;
  }
  EXPECT_TRUE(saw_a && saw_b) << table.out;

  const auto services = list_json("service");
  ASSERT_EQ(services.size(), 2u) << services.dump();
  for (const auto& s : services) {
    SCOPED_TRACE(s.dump());
    ASSERT_TRUE(s.is_object());
    for (const char* key : {"id", "name", "enabled", "disabled_for"})
      EXPECT_TRUE(s.contains(key)) << "missing " << key;
    EXPECT_TRUE(s.value("enabled", json()).is_boolean());
    EXPECT_TRUE(s.value("disabled_for", json()).is_array());
    EXPECT_TRUE(s.value("disabled_for", json::array()).empty());
  }
  const auto alpha = find_entry(services, "name", "alpha");
  const auto beta = find_entry(services, "name", "beta");
  ASSERT_FALSE(alpha.is_null());
  ASSERT_FALSE(beta.is_null());
  EXPECT_EQ(alpha["id"], a);
  EXPECT_EQ(alpha["enabled"], true);
  // A random GUID is not of the vsock template form: no port.
  EXPECT_TRUE(!alpha.contains("port") || alpha["port"].is_null()) << alpha.dump();
  EXPECT_EQ(beta["id"], b);
  EXPECT_EQ(beta.value("port", json()), 5000);
}

TEST_F(CliTest, ServiceListWhenEmpty) {
  EXPECT_TRUE(list_json("service").empty());
  const auto table = cli({"service", "list"});
  EXPECT_EQ(table.status.code, 0) << table.err;
}

TEST_F(CliTest, ServiceEnableDisableReflectedInList) {
  const auto web_id = sw.create_vm("web");
  const auto id = sw.register_service("toggle");

  sw.cli_ok({"service", "disable", "toggle"});
  EXPECT_EQ(service_entry("toggle").value("enabled", true), false);
  sw.cli_ok({"service", "enable", id});
  EXPECT_EQ(service_entry("toggle").value("enabled", false), true);

  sw.cli_ok({"service", "disable", id, "--vm", "web"});
  auto entry = service_entry("toggle");
  EXPECT_EQ(entry.value("enabled", false), true) << "a per-VM disable leaves it enabled";
  const auto disabled_for = entry.value("disabled_for", json::array());
  ASSERT_EQ(disabled_for.size(), 1u) << entry.dump();
  EXPECT_TRUE(disabled_for[0] == web_id || disabled_for[0] == "web") << entry.dump();
  const auto table = cli({"service", "list"});
  EXPECT_TRUE(contains(table.out, web_id) || contains(table.out, "web")) << table.out;

  sw.cli_ok({"service", "enable", "toggle", "--vm", "web"});
  entry = service_entry("toggle");
  EXPECT_TRUE(entry.value("disabled_for", json::array()).empty()) << entry.dump();
  EXPECT_EQ(entry.value("enabled", false), true);
}

TEST_F(CliTest, ServiceEnableDisableUnknownFails) {
  sw.create_vm("web");
  sw.register_service("known");
  expect_one_line_failure(cli({"service", "disable", "nosuch"}), "unknown name");
  expect_one_line_failure(cli({"service", "enable", "0a1b2c3d-4e5f-6a7b-8c9d-aebfc0d1e2f3"}),
                          "unknown id");
  expect_one_line_failure(cli({"service", "disable", "known", "--vm", "novm"}), "unknown vm");
}

TEST_F(CliTest, ServiceRemove) {
  const auto keep = sw.register_service("keep");
  const auto gone = sw.register_service("gone");
  sw.cli_ok({"service", "remove", "gone"});
  auto services = list_json("service");
  ASSERT_EQ(services.size(), 1u) << services.dump();
  EXPECT_EQ(services[0].value("id", ""), keep);
  expect_one_line_failure(cli({"service", "remove", gone}), "remove twice");
  sw.cli_ok({"service", "remove", keep});
  EXPECT_TRUE(list_json("service").empty());
  // The name is free again.
  expect_single_guid_line(cli({"service", "register", "--name", "gone"}));
}

// --- vm ---------------------------------------------------------------------

TEST_F(CliTest, VmCreatePrintsOneVmIdLine) {
  const auto id = expect_single_guid_line(cli({"vm", "create", "web"}));
  const auto web = find_entry(list_json("vm"), "name", "web");
  ASSERT_FALSE(web.is_null());
  EXPECT_EQ(web.value("id", ""), id);
  EXPECT_EQ(web.value("kind", ""), "vm");
  EXPECT_GE(web.value("cid", 0u), 3u);
}

TEST_F(CliTest, VmCreateContainerWithParent) {
  const auto web_id = sw.create_vm("web");
  const auto box_id = expect_single_guid_line(
      cli({"vm", "create", "box", "--kind", "container", "--parent", "web"}));
  const auto host_box_id =
      expect_single_guid_line(cli({"vm", "create", "hostbox", "--kind", "container"}));
  const auto vms = list_json("vm");
  const auto box = find_entry(vms, "name", "box");
  ASSERT_FALSE(box.is_null()) << vms.dump();
  EXPECT_EQ(box.value("id", ""), box_id);
  EXPECT_EQ(box.value("kind", ""), "container");
  EXPECT_TRUE(box.value("parent", json()) == "web" || box.value("parent", json()) == web_id)
      << box.dump();
  const auto hostbox = find_entry(vms, "name", "hostbox");
  ASSERT_FALSE(hostbox.is_null());
  EXPECT_EQ(hostbox.value("id", ""), host_box_id);
  EXPECT_EQ(hostbox.value("kind", ""), "container");
  const auto host = find_entry(vms, "name", "host");
  ASSERT_FALSE(host.is_null());
  EXPECT_TRUE(hostbox.value("parent", json()) == "host" ||
              hostbox.value("parent", json()) == host.value("id", json()))
      << hostbox.dump();
}

TEST_F(CliTest, VmCreateHonoursIdAndCid) {
  const auto r = cli(
      {"vm", "create", "fixed", "--id", "{AABBCCDD-1122-3344-5566-778899AABBCC}", "--cid", "42"});
  EXPECT_EQ(expect_single_guid_line(r), "aabbccdd-1122-3344-5566-778899aabbcc");
  const auto fixed = find_entry(list_json("vm"), "name", "fixed");
  ASSERT_FALSE(fixed.is_null());
  EXPECT_EQ(fixed.value("id", ""), "aabbccdd-1122-3344-5566-778899aabbcc");
  EXPECT_EQ(fixed.value("cid", 0u), 42u);
}

TEST_F(CliTest, VmCreateRejectsBadRequests) {
  const auto web_id = sw.create_vm("web");
  expect_one_line_failure(cli({"vm", "create", "web"}), "duplicate name");
  expect_one_line_failure(cli({"vm", "create", "other", "--id", web_id}), "duplicate id");
  expect_one_line_failure(cli({"vm", "create", "box", "--kind", "container", "--parent", "nosuch"}),
                          "unknown parent");
  const auto bad_kind = cli({"vm", "create", "odd", "--kind", "toaster"});
  expect_one_line_failure(bad_kind, "bad kind");
  EXPECT_TRUE(contains(bad_kind.err, "toaster")) << bad_kind.err;
  expect_one_line_failure(cli({"vm", "create", "badid", "--id", "not-a-guid"}), "bad id");
  // Only the host and web are there.
  EXPECT_EQ(list_json("vm").size(), 2u);
}

TEST_F(CliTest, VmListJsonIncludesHost) {
  const auto web_id = sw.create_vm("web");
  const auto vms = list_json("vm");
  ASSERT_EQ(vms.size(), 2u) << vms.dump();
  for (const auto& v : vms) {
    SCOPED_TRACE(v.dump());
    for (const char* key : {"name", "id", "kind", "parent", "cid"})
      EXPECT_TRUE(v.contains(key)) << "missing " << key;
    EXPECT_TRUE(guid::parse(v.value("id", "")));
  }
  const auto host = find_entry(vms, "name", "host");
  ASSERT_FALSE(host.is_null()) << vms.dump();
  EXPECT_EQ(host.value("cid", 0u), 2u);
  EXPECT_EQ(host.value("kind", ""), "host");
  const auto web = find_entry(vms, "name", "web");
  ASSERT_FALSE(web.is_null());
  EXPECT_EQ(web.value("id", ""), web_id);
  EXPECT_TRUE(web.value("parent", json()) == "host" ||
              web.value("parent", json()) == host.value("id", json()))
      << web.dump();
  EXPECT_NE(web.value("cid", 0u), 2u);

  const auto table = cli({"vm", "list"});
  ASSERT_EQ(table.status.code, 0) << table.err;
  const auto lines = lines_of(table.out);
  ASSERT_EQ(lines.size(), 3u) << table.out;
  EXPECT_TRUE(contains(table.out, web_id));
}

TEST_F(CliTest, VmRemove) {
  sw.create_vm("web");
  sw.create_vm("box", "web", "container");
  expect_one_line_failure(cli({"vm", "remove", "web"}), "remove a VM that has a container");
  sw.cli_ok({"vm", "remove", "box"});
  sw.cli_ok({"vm", "remove", "web"});
  const auto vms = list_json("vm");
  EXPECT_EQ(vms.size(), 1u) << vms.dump();
  expect_one_line_failure(cli({"vm", "remove", "web"}), "remove twice");
  expect_one_line_failure(cli({"vm", "remove", "host"}), "remove the host");
}

// --- run --------------------------------------------------------------------

TEST_F(CliTest, RunSetsThePartitionsControlSocket) {
  sw.create_vm("web");
  const auto r = cli(run_in("web", {"/usr/bin/env"}));
  ASSERT_EQ(r.status.code, 0) << r.err;
  std::string control;
  for (const auto& line : lines_of(r.out))
    if (line.rfind("HVSOCK_CONTROL_SOCKET=", 0) == 0) control = line.substr(22);
  ASSERT_FALSE(control.empty()) << r.out;
  EXPECT_TRUE(same_file(control, sw.control_socket("web")))
      << control << " is not " << sw.control_socket("web");
  EXPECT_FALSE(same_file(control, sw.control_socket("host")));
}

TEST_F(CliTest, RunPassesArgumentsAndExitCode) {
  sw.create_vm("web");
  const auto r = cli(run_in("web", {"/bin/sh", "-c", "echo \"$0 $1\"; exit 7", "a b", "--help"}));
  EXPECT_EQ(r.status.code, 7) << r.err;
  EXPECT_EQ(r.out, "a b --help\n");
}

TEST_F(CliTest, RunWithUnknownVmFails) {
  const auto r = cli(run_in("nosuch", {"/usr/bin/env"}));
  expect_one_line_failure(r, "unknown vm");
  EXPECT_TRUE(contains(r.err, "nosuch")) << r.err;
}

TEST_F(CliTest, RunOfMissingCommandExits127) {
  sw.create_vm("web");
  const auto r = cli(run_in("web", {"/nonexistent/hvsock-test-command"}));
  EXPECT_EQ(r.status.code, 127) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, "/nonexistent/hvsock-test-command")) << r.err;
}

// --- listen / connect -------------------------------------------------------

TEST_F(CliTest, ListenOnHostConnectFromVm) {
  sw.create_vm("web");
  const auto svc = sw.register_service("echo");
  auto listener_cli = sw.cli_async({"listen", svc});
  exchange(*listener_cli, run_in("web", inner_cli({"connect", "parent", svc})), pattern(20000, 'a'),
           pattern(300000, 'A'));
}

// A peer that writes everything before it reads (as many programs do) must
// not deadlock against the CLI: the CLI keeps reading the socket while its
// own writes wait. The peer here is bounded in time instead of hanging.
TEST_F(CliTest, PeerThatWritesBeforeReadingDoesNotDeadlock) {
  sw.create_vm("web");
  const auto svc = sw.register_service("bulk");
  auto listener_cli = sw.cli_async({"listen", svc});
  ASSERT_TRUE(listener_cli->wait_for_stderr("listening", 10s)) << listener_cli->err();
  const std::string from_cli = pattern(8 << 20, 'l');
  const std::string from_peer = pattern(8 << 20, 'p');
  std::thread cli_side([&] {
    try {
      listener_cli->write_stdin(from_cli);
    } catch (const std::exception&) {
    }
    listener_cli->close_stdin();
    listener_cli->wait(60s);
  });
  std::string got;
  // The peer's part; returning early still reaches the join below.
  [&] {
    auto s = stream::connect({vm_id_parent, *guid::parse(svc)},
                             {.timeout = 5s, .control_socket = sw.control_socket("web")});
    ASSERT_TRUE(s) << s.error().message();
    ASSERT_TRUE(s->set_non_blocking(true));
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    std::size_t sent = 0;
    while (sent < from_peer.size() && std::chrono::steady_clock::now() < deadline) {
      auto n = s->write(std::as_bytes(std::span(from_peer).subspan(sent)));
      if (n) {
        sent += *n;
      } else {
        ASSERT_EQ(n.error().code(), make_error_code(errc::would_block)) << n.error().message();
        pollfd p{s->native_handle(), POLLOUT, 0};
        ::poll(&p, 1, 100);
      }
    }
    ASSERT_EQ(sent, from_peer.size()) << "the CLI stopped reading while it had data to write";
    ASSERT_TRUE(s->shutdown(shutdown_how::write));
    char buf[65536];
    while (std::chrono::steady_clock::now() < deadline) {
      auto n = s->read(buf, sizeof buf);
      if (n && *n == 0) break;
      if (n) {
        got.append(buf, *n);
      } else {
        pollfd p{s->native_handle(), POLLIN, 0};
        ::poll(&p, 1, 100);
      }
    }
    s->close();
  }();
  if (got.size() != from_cli.size()) listener_cli->kill(SIGKILL);  // failed: don't wait 60 s
  cli_side.join();
  EXPECT_TRUE(got == from_cli) << "received " << got.size() << " bytes";
  EXPECT_TRUE(listener_cli->out() == from_peer) << "the CLI printed " << listener_cli->out().size();
}

TEST_F(CliTest, ListenInVmConnectFromHostByNames) {
  sw.create_vm("web");
  sw.register_service("guest service");
  auto listener_cli =
      sw.cli_async(run_in("web", inner_cli({"listen", "--from", "parent", "guest service"})));
  exchange(*listener_cli, {"connect", "web", "guest service"}, "hello from the guest\n",
           "hello from the host\n");
}

TEST_F(CliTest, ConnectByVmIdToListenerInVm) {
  const auto web_id = sw.create_vm("web");
  const auto svc = sw.register_service("by vmid");
  auto listener_cli = sw.cli_async(run_in("web", inner_cli({"listen", "--from", "any", svc})));
  exchange(*listener_cli, {"connect", web_id, svc}, "", "one way only\n");
}

// A vsock port number names its template service without the registry, so
// the same command line works inside a QEMU guest (no hvsockd there).
TEST_F(CliTest, ServicesCanBeNamedByVsockPortNumber) {
  sw.create_vm("web");
  sw.cli_ok({"service", "register", "--name", "by port", "--port", "5000"});
  auto listener_cli = sw.cli_async({"listen", "5000"});
  exchange(*listener_cli, run_in("web", inner_cli({"connect", "parent", "5000"})), "ping\n",
           "pong\n");

  const auto too_big = cli({"connect", "web", "4294967296"}, "x");
  expect_one_line_failure(too_big, "not a port");
  EXPECT_TRUE(contains(too_big.err, "vsock port number")) << too_big.err;
}

TEST_F(CliTest, ListenerWithNothingToSayStillGetsData) {
  sw.create_vm("web");
  const auto svc = sw.register_service("sink");
  auto listener_cli = sw.cli_async({"listen", "--from", "children", "sink"});
  exchange(*listener_cli, run_in("web", inner_cli({"connect", "parent", "sink"})), "",
           pattern(100000, '0'));
}

TEST_F(CliTest, ConnectToUnregisteredServiceFails) {
  sw.create_vm("web");
  const auto unregistered = service_id_from_port(31337).to_string();
  // A listener is there; only the registration is missing.
  auto l = listener::listen({vm_id_wildcard, service_id_from_port(31337)},
                            {.backlog = 4, .control_socket = sw.control_socket("web")});
  ASSERT_TRUE(l) << l.error().message();
  const auto r = cli({"connect", "web", unregistered}, "x");
  expect_one_line_failure(r, "unregistered");
  EXPECT_TRUE(contains(r.err, "not registered")) << r.err;
  EXPECT_TRUE(contains(r.err, unregistered)) << r.err;

  const auto by_name = cli({"connect", "web", "no such service"}, "x");
  expect_one_line_failure(by_name, "unknown name");
  EXPECT_TRUE(contains(by_name.err, "no such service")) << by_name.err;
}

TEST_F(CliTest, ConnectWithNoListenerFails) {
  sw.create_vm("web");
  const auto svc = sw.register_service("nobody");
  const auto r = cli({"connect", "web", "nobody"}, "x");
  expect_one_line_failure(r, "no listener");
  EXPECT_TRUE(contains(lowercase(r.err), "refused") || contains(lowercase(r.err), "listen"))
      << r.err;
  EXPECT_TRUE(contains(r.err, svc)) << r.err;
}

TEST_F(CliTest, ConnectToDisabledServiceFails) {
  sw.create_vm("web");
  const auto svc = sw.register_service("off");
  auto l = listener::listen({vm_id_wildcard, *guid::parse(svc)},
                            {.backlog = 4, .control_socket = sw.control_socket("web")});
  ASSERT_TRUE(l) << l.error().message();
  sw.cli_ok({"service", "disable", "off"});
  const auto r = cli({"connect", "web", "off"}, "x");
  expect_one_line_failure(r, "disabled");
  EXPECT_TRUE(contains(r.err, "disabled")) << r.err;
  EXPECT_TRUE(contains(r.err, "off") || contains(r.err, svc)) << r.err;

  sw.cli_ok({"service", "enable", "off"});
  sw.cli_ok({"service", "disable", "off", "--vm", "web"});
  const auto per_vm = cli({"connect", "web", "off"}, "x");
  expect_one_line_failure(per_vm, "disabled for web");
  EXPECT_TRUE(contains(per_vm.err, "disabled")) << per_vm.err;
}

TEST_F(CliTest, ConnectToUnknownTargetFails) {
  sw.register_service("svc");
  const auto r = cli({"connect", "nosuchvm", "svc"}, "x");
  expect_one_line_failure(r, "unknown target");
  EXPECT_TRUE(contains(r.err, "nosuchvm")) << r.err;
  // The host has no parent.
  expect_one_line_failure(cli({"connect", "parent", "svc"}, "x"), "parent on host");
}

// --- stats ------------------------------------------------------------------

TEST_F(CliTest, StatsCountAcceptedAndRefusedByElementName) {
  sw.create_vm("web");
  const auto svc = *guid::parse(sw.register_service("counted"));
  const connect_options from_web{.timeout = 5s, .control_socket = sw.control_socket("web")};
  {
    auto l = listener::listen({vm_id_wildcard, svc},
                              {.backlog = 8, .control_socket = sw.control_socket("host")});
    ASSERT_TRUE(l) << l.error().message();
    for (int i = 0; i < 3; ++i) {
      auto s = stream::connect({vm_id_parent, svc}, from_web);
      ASSERT_TRUE(s) << s.error().message();
      ASSERT_TRUE(l->accept(5s));
    }
    sw.cli_ok({"service", "disable", "counted"});
    for (int i = 0; i < 2; ++i) EXPECT_FALSE(stream::connect({vm_id_parent, svc}, from_web));
    sw.cli_ok({"service", "enable", "counted"});
  }
  // The listener is gone now.
  EXPECT_FALSE(stream::connect({vm_id_parent, svc}, from_web));
  EXPECT_FALSE(stream::connect({vm_id_parent, service_id_from_port(999)}, from_web));

  const auto r = cli({"stats", "--json"});
  ASSERT_EQ(r.status.code, 0) << r.err;
  const auto stats = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(stats.is_discarded()) << r.out;
  ASSERT_TRUE(stats.contains("services")) << r.out;
  const auto counted = find_entry(stats["services"], "name", "counted");
  ASSERT_FALSE(counted.is_null()) << r.out;
  EXPECT_EQ(counted.value("accepted", -1), 3) << counted.dump();
  const auto refused = counted.value("refused", json::object());
  EXPECT_EQ(refused.value("disabled", -1), 2) << counted.dump();
  EXPECT_EQ(refused.value("no_listener", -1), 1) << counted.dump();
  EXPECT_EQ(stats.value("unregistered_refused", -1), 1) << r.out;

  const auto table = cli({"stats"});
  ASSERT_EQ(table.status.code, 0) << table.err;
  std::string row;
  for (const auto& line : lines_of(table.out))
    if (line.rfind("counted", 0) == 0) row = line;
  ASSERT_FALSE(row.empty()) << table.out;
  EXPECT_TRUE(contains(row, " 3 ")) << row;
  EXPECT_TRUE(contains(row, " 2 ")) << row;
}

TEST_F(CliTest, StatsCountConnectionsMadeWithTheCli) {
  sw.create_vm("web");
  sw.register_service("cli-counted");
  auto listener_cli = sw.cli_async({"listen", "cli-counted"});
  exchange(*listener_cli, run_in("web", inner_cli({"connect", "parent", "cli-counted"})), "a", "b");
  EXPECT_NE(cli({"connect", "web", "cli-counted"}, "x").status.code, 0);
  const auto r = cli({"stats", "--json"});
  ASSERT_EQ(r.status.code, 0) << r.err;
  const auto stats = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(stats.is_discarded()) << r.out;
  const auto counted = find_entry(stats.value("services", json::array()), "name", "cli-counted");
  ASSERT_FALSE(counted.is_null()) << r.out;
  EXPECT_EQ(counted.value("accepted", -1), 1) << counted.dump();
  EXPECT_EQ(counted.value("refused", json::object()).value("no_listener", -1), 1) << counted.dump();
}

// --- command line -----------------------------------------------------------

TEST_F(CliTest, HelpWorksEverywhere) {
  const std::vector<std::vector<std::string>> commands = {
      {},
      {"status"},
      {"service"},
      {"service", "register"},
      {"service", "list"},
      {"service", "enable"},
      {"service", "disable"},
      {"service", "remove"},
      {"vm"},
      {"vm", "create"},
      {"vm", "list"},
      {"vm", "remove"},
      {"run"},
      {"listen"},
      {"connect"},
      {"stats"},
  };
  for (const auto& command : commands) {
    std::string joined = "hvsock";
    for (const auto& word : command) joined += " " + word;
    SCOPED_TRACE(joined + " --help");
    auto args = command;
    args.push_back("--help");
    const auto r = cli(args);
    EXPECT_EQ(r.status.code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "Usage") || contains(r.out, "usage")) << r.out;
    // The help is about that command.
    if (!command.empty()) {
      EXPECT_TRUE(contains(r.out, command.back())) << r.out;
    }
  }
  // -h as well, and help needs no daemon.
  const auto r =
      run({hvsock_cli_path, "--runtime-dir", "/nonexistent", "service", "-h"}, {}, {}, 10s);
  EXPECT_EQ(r.status.code, 0) << r.err;
}

TEST_F(CliTest, UnknownSubcommandOrOptionExits2) {
  const std::vector<std::vector<std::string>> commands = {
      {"frobnicate"},
      {"--frobnicate", "status"},
      {"status", "--frobnicate"},
      {"service", "frobnicate"},
      {"service", "list", "--frobnicate"},
      {"vm", "create"},  // NAME is required
      {"vm", "create", "x", "--cid", "notanumber"},
      {"service", "register", "--name", "x", "--port", "-1"},
      {"connect", "parent"},  // SERVICE is required
      {},                     // a subcommand is required
  };
  for (const auto& command : commands) {
    std::string joined = "hvsock";
    for (const auto& word : command) joined += " " + word;
    SCOPED_TRACE(joined);
    const auto r = cli(command);
    EXPECT_EQ(r.status.code, 2) << r.out << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("hvsock: ", 0), 0u) << r.err;
  }
  // Nothing was created by any of them.
  EXPECT_EQ(list_json("vm").size(), 1u);
  EXPECT_TRUE(list_json("service").empty());
}

}  // namespace
}  // namespace hvsock::test
