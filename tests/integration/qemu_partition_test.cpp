// QEMU partitions as hvsockd manages them, without booting a guest (the
// guest tests in tests/guest do that): the vhost-user socket, one front-end
// at a time, and the clear refusal of connects into a guest.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

unique_fd connect_stream(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return {};
  return fd;
}

nlohmann::json partition(const switch_fixture& sw, const std::string& name) {
  for (const auto& p : nlohmann::json::parse(sw.cli_ok({"vm", "list", "--json"})))
    if (p.at("name") == name) return p;
  return {};
}

TEST(QemuPartition, ServesOneFrontEndAtATime) {
  switch_fixture sw;
  const auto created = sw.cli({"vm", "create", "guest", "--qemu"});
  ASSERT_EQ(created.status.code, 0) << created.err;
  const auto p = partition(sw, "guest");
  EXPECT_EQ(p.at("backend"), "qemu");
  EXPECT_TRUE(p.at("control_socket").is_null());
  const std::string socket = p.at("vhost_user_socket");
  EXPECT_NE(created.err.find(socket), std::string::npos) << created.err;
  EXPECT_EQ(p.at("guest_attached"), false);

  auto first = connect_stream(socket);
  ASSERT_TRUE(first);
  bool attached = false;
  for (int i = 0; i < 200 && !attached; ++i) {
    attached = partition(sw, "guest").at("guest_attached") == true;
    if (!attached) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(attached);

  // A second front-end is turned away: it reads end of file.
  auto second = connect_stream(socket);
  ASSERT_TRUE(second);
  char c;
  EXPECT_EQ(::read(second.get(), &c, 1), 0);

  // Garbage from the attached one detaches it; the daemon keeps serving.
  const char garbage[] = "this is not vhost-user";
  ASSERT_EQ(::write(first.get(), garbage, sizeof garbage), static_cast<ssize_t>(sizeof garbage));
  bool detached = false;
  for (int i = 0; i < 200 && !detached; ++i) {
    detached = partition(sw, "guest").at("guest_attached") == false;
    if (!detached) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(detached);
  EXPECT_EQ(sw.cli({"status"}).status.code, 0);
}

TEST(QemuPartition, ConnectsIntoAGuestWithoutQemuAreRefusedClearly) {
  switch_fixture sw;
  const auto id = *guid::parse(sw.cli_ok({"vm", "create", "guest", "--qemu"}));
  const auto svc =
      *guid::parse(sw.register_service("into guest", service_id_from_port(80).to_string()));
  auto s = stream::connect({id, svc}, {.timeout = 5s, .control_socket = sw.control_socket("host")});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::connection_refused));
  EXPECT_NE(s.error().message().find("no QEMU is attached"), std::string::npos)
      << s.error().message();
  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
  EXPECT_EQ(stats.at("services").at(0).at("refused").at("no_listener"), 1) << stats.dump();
  // The daemon is unharmed and the next connect is answered the same way.
  auto again =
      stream::connect({id, svc}, {.timeout = 5s, .control_socket = sw.control_socket("host")});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), make_error_code(errc::connection_refused));
}

TEST(QemuPartition, AGuestIsReachedOnlyByVsockPortServices) {
  switch_fixture sw;
  const auto id = *guid::parse(sw.cli_ok({"vm", "create", "guest", "--qemu"}));
  const auto svc =
      *guid::parse(sw.register_service("not a port", "3049197c-facb-11e6-bd58-64006a7986d4"));
  auto s = stream::connect({id, svc}, {.timeout = 5s, .control_socket = sw.control_socket("host")});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::no_vsock_port));
  EXPECT_NE(s.error().message().find("vsock form"), std::string::npos) << s.error().message();
}

TEST(QemuPartition, OnlyVmsCanBeQemuGuests) {
  switch_fixture sw;
  const auto r = sw.cli({"vm", "create", "box", "--kind", "container", "--qemu"});
  EXPECT_NE(r.status.code, 0);
  EXPECT_NE(r.err.find("QEMU"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hvsock::test
