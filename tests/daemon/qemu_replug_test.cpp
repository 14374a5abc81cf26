// qemu_replug and qmp_client against a fake QEMU: a thread serving QMP on a
// Unix socket in a temporary directory, answering each command from a
// script. Checks the commands sent (and their arguments), that garbage and
// errors from QEMU end an attempt with a log line and a retry rather than a
// crash, the give-up bound, and the parsing helpers.
#include "daemon/qemu_replug.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sys/socket_ops.hpp"

namespace hvsock::daemon {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* greeting =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}})";

// What the fake QEMU sends back for one command: lines (each a JSON text or
// deliberate garbage), or close the connection instead.
struct answer {
  std::vector<std::string> lines;
  bool close = false;
};

std::string reply(const json& command, const json& value) {
  return json{{"return", value}, {"id", command["id"]}}.dump();
}
std::string error_reply(const json& command, const std::string& desc) {
  return json{{"error", {{"class", "GenericError"}, {"desc", desc}}}, {"id", command["id"]}}.dump();
}

// A fake QEMU monitor: accepts connections one after the other and answers
// with `script(connection number, command)`.
class fake_qmp {
 public:
  using script_function = std::function<answer(int connection, const json& command)>;

  fake_qmp(const std::string& path, script_function script) : script_(std::move(script)) {
    auto fd = detail::listen_unix(path, SOCK_STREAM, {});
    EXPECT_TRUE(fd) << fd.error().message();
    listen_fd_ = std::move(*fd);
    thread_ = std::thread([this] { serve(); });
  }
  ~fake_qmp() {
    stop_ = true;
    thread_.join();
  }

  std::vector<json> commands() {
    std::lock_guard lock(mutex_);
    return commands_;
  }
  std::vector<std::string> command_names() {
    std::vector<std::string> out;
    for (const json& c : commands()) out.push_back(c.value("execute", ""));
    return out;
  }

 private:
  void serve() {
    for (int connection = 0; !stop_; ++connection) {
      pollfd p{listen_fd_.get(), POLLIN, 0};
      while (!stop_ && ::poll(&p, 1, 20) == 0) {
      }
      if (stop_) return;
      unique_fd c(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      (void)detail::set_non_blocking(c.get(), false);
      if (!send_line(c.get(), greeting)) continue;
      converse(c.get(), connection);
    }
  }

  void converse(int fd, int connection) {
    std::string in;
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, 20);
      if (stop_) return;
      if (ready == 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<std::size_t>(n));
      for (std::size_t eol; (eol = in.find('\n')) != std::string::npos;) {
        const json command = json::parse(in.substr(0, eol));
        in.erase(0, eol + 1);
        {
          std::lock_guard lock(mutex_);
          commands_.push_back(command);
        }
        const answer a = script_(connection, command);
        for (const std::string& line : a.lines)
          if (!send_line(fd, line)) return;
        if (a.close) return;
      }
    }
  }

  static bool send_line(int fd, const std::string& line) {
    const std::string text = line + "\r\n";  // QEMU ends its lines so
    return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }

  script_function script_;
  unique_fd listen_fd_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<json> commands_;
  std::thread thread_;
};

// A QEMU with one vhost-user-vsock-pci device. `device_named` gives it the
// id "vsock0" (else it is anonymous, as run-guest.sh makes it). Plugging the
// device in "attaches" it (sets `attached`).
struct fake_qemu_state {
  std::string socket_path;
  bool device_named = false;
  bool device_present = true;
  std::atomic<bool> attached{false};

  std::string device_path() const {
    return device_named ? "/machine/peripheral/vsock0" : "/machine/peripheral-anon/device[0]";
  }

  answer handle(const json& command) {
    const std::string name = command.value("execute", "");
    const json args = command.value("arguments", json::object());
    if (name == "qmp_capabilities") return {{reply(command, json::object())}};
    if (name == "qom-list") {
      const std::string path = args.value("path", "");
      json children = json::array({{{"name", "type"}, {"type", "string"}}});
      const bool here = device_present && (path == "/machine/peripheral") == device_named;
      if (here)
        children.push_back({{"name", device_named ? "vsock0" : "device[0]"},
                            {"type", "child<vhost-user-vsock-pci>"}});
      if (path == "/machine/peripheral-anon" && device_named)
        return {{error_reply(command, "Device '/machine/peripheral-anon' not found")}};
      return {{reply(command, children)}};
    }
    if (name == "qom-get") {
      const std::string property = args.value("property", "");
      if (property == "chardev") return {{reply(command, "hvsock-vsock")}};
      if (property == "parent_bus") return {{reply(command, "/machine/i440fx/pci.0")}};
      if (property == "addr") return {{reply(command, 16)}};
    }
    if (name == "query-chardev")
      return {{reply(command, json::array({{{"label", "hvsock-vsock"},
                                            {"filename", "disconnected:unix:" + socket_path},
                                            {"frontend-open", false}},
                                           {{"label", "compat_monitor0"},
                                            {"filename", "unix:/tmp/qmp.sock,server=on"},
                                            {"frontend-open", true}}}))}};
    if (name == "device_del") {
      device_present = false;
      // QEMU announces the virtio back-end child first; it must not count.
      return {{reply(command, json::object()),
               json{{"event", "DEVICE_DELETED"},
                    {"data", {{"path", device_path() + "/virtio-backend"}}}}
                   .dump(),
               json{{"event", "DEVICE_DELETED"}, {"data", {{"path", device_path()}}}}.dump()}};
    }
    if (name == "chardev-remove" || name == "chardev-add")
      return {{reply(command, json::object())}};
    if (name == "device_add") {
      device_present = true;
      attached = true;
      return {{reply(command, json::object())}};
    }
    return {{error_reply(command, "The command " + name + " has not been found")}};
  }
};

class QemuReplugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hvsock-replug-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    qmp_path_ = (dir_ / "qmp.sock").string();
    qemu_.socket_path = (dir_ / "vhost-user.sock").string();
    auto loop = event_loop::create();
    ASSERT_TRUE(loop) << loop.error().message();
    loop_ = std::move(*loop);
    options_.first_retry = 10ms;
    options_.max_retry = 40ms;
    options_.unplug_timeout = 200ms;
    options_.qmp.reply_timeout = 1000ms;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs one start() to its end (or a 10 s guard) and returns its outcome.
  std::optional<qemu_replug::outcome> run_replug() {
    qemu_replug replug(
        *loop_, qemu_replug::target{"web", qemu_.socket_path, qmp_path_},
        [this] { return qemu_.attached.load(); },
        [this](log_level, const std::string& l) { log_.push_back(l); }, options_);
    std::optional<qemu_replug::outcome> result;
    replug.on_finished([&](qemu_replug::outcome o) {
      result = o;
      loop_->stop();
    });
    auto guard = loop_->add_timer(10s, [&] { loop_->stop(); });
    EXPECT_TRUE(guard);
    replug.start();
    EXPECT_TRUE(replug.running() || result);
    EXPECT_TRUE(loop_->run());
    loop_->cancel_timer(*guard);
    EXPECT_FALSE(replug.running());
    return result;
  }

  std::string log_text() const {
    std::string all;
    for (const auto& l : log_) all += l + "\n";
    return all;
  }

  std::filesystem::path dir_;
  std::string qmp_path_;
  fake_qemu_state qemu_;
  std::unique_ptr<event_loop> loop_;
  qemu_replug::options options_;
  std::vector<std::string> log_;
};

const std::vector<std::string> full_sequence{
    "qmp_capabilities", "qom-list",   "qom-list",       "qom-get",     "qom-get",   "qom-get",
    "query-chardev",    "device_del", "chardev-remove", "chardev-add", "device_add"};

TEST_F(QemuReplugTest, ReplugsAnAnonymousDeviceOnTheSameBusAndSlot) {
  fake_qmp server(qmp_path_, [this](int, const json& c) { return qemu_.handle(c); });
  EXPECT_EQ(run_replug(), qemu_replug::outcome::reattached) << log_text();
  EXPECT_EQ(server.command_names(), full_sequence);
  const auto commands = server.commands();
  EXPECT_EQ(commands[7]["arguments"], json({{"id", "/machine/peripheral-anon/device[0]"}}));
  EXPECT_EQ(commands[8]["arguments"], json({{"id", "hvsock-vsock"}}));
  EXPECT_EQ(commands[9]["arguments"]["backend"]["data"]["addr"]["data"]["path"], qemu_.socket_path);
  EXPECT_EQ(commands[9]["arguments"]["backend"]["data"]["server"], false);
  EXPECT_EQ(commands[10]["arguments"], json({{"driver", "vhost-user-vsock-pci"},
                                             {"chardev", "hvsock-vsock"},
                                             {"bus", "pci.0"},
                                             {"addr", "02.0"}}));
  ASSERT_EQ(log_.size(), 1u) << log_text();
  EXPECT_NE(log_[0].find("web: QEMU reattached through QMP"), std::string::npos) << log_[0];
}

TEST_F(QemuReplugTest, KeepsTheIdOfANamedDevice) {
  qemu_.device_named = true;
  fake_qmp server(qmp_path_, [this](int, const json& c) { return qemu_.handle(c); });
  EXPECT_EQ(run_replug(), qemu_replug::outcome::reattached) << log_text();
  const auto commands = server.commands();
  ASSERT_EQ(commands.size(), full_sequence.size());
  EXPECT_EQ(commands[7]["arguments"], json({{"id", "vsock0"}}));
  EXPECT_EQ(commands[10]["arguments"]["id"], "vsock0");
}

TEST_F(QemuReplugTest, LeavesAnAttachedGuestAlone) {
  qemu_.attached = true;
  EXPECT_EQ(run_replug(), qemu_replug::outcome::already_attached);
  EXPECT_TRUE(log_.empty()) << log_text();
}

TEST_F(QemuReplugTest, NobodyOnTheQmpSocketMeansQemuIsNotRunning) {
  EXPECT_EQ(run_replug(), qemu_replug::outcome::qemu_not_running);
  ASSERT_EQ(log_.size(), 1u) << log_text();
  EXPECT_NE(log_[0].find("web: nobody answers on the QMP socket"), std::string::npos) << log_[0];
}

TEST_F(QemuReplugTest, GarbageFromQemuEndsTheAttemptAndTheNextOneWorks) {
  fake_qmp server(qmp_path_, [this](int connection, const json& c) -> answer {
    if (connection == 0 && c["execute"] == "qom-list") return {{"this is not JSON {"}};
    if (connection == 1 && c["execute"] == "qom-list")
      return {{reply(c, "a string where a list belongs")}};  // no device found
    if (connection == 2 && c["execute"] == "query-chardev")
      return {{R"({"return": [], "id": 99999})"}};
    return qemu_.handle(c);
  });
  EXPECT_EQ(run_replug(), qemu_replug::outcome::reattached) << log_text();
  ASSERT_EQ(log_.size(), 4u) << log_text();
  EXPECT_NE(log_[0].find("web: reattaching through QMP: QMP: QEMU sent something that is not a "
                         "QMP message"),
            std::string::npos)
      << log_[0];
  EXPECT_NE(log_[0].find("attempt 1 of 8"), std::string::npos) << log_[0];
  EXPECT_NE(log_[1].find("finding the device"), std::string::npos) << log_[1];
  EXPECT_NE(log_[2].find("answers no command"), std::string::npos) << log_[2];
}

TEST_F(QemuReplugTest, AQemuErrorIsLoggedAndAnUnpluggedDeviceIsPluggedBackOnRetry) {
  fake_qmp server(qmp_path_, [this](int connection, const json& c) -> answer {
    if (connection == 0 && c["execute"] == "device_add")
      return {{error_reply(c, "Bus 'pci.0' does not support hotplugging")}};
    return qemu_.handle(c);
  });
  EXPECT_EQ(run_replug(), qemu_replug::outcome::reattached) << log_text();
  ASSERT_EQ(log_.size(), 2u) << log_text();
  EXPECT_NE(log_[0].find("web: reattaching through QMP: device_add: device_add: Bus 'pci.0' does "
                         "not support hotplugging; retrying in 0.01 s (attempt 1 of 8)"),
            std::string::npos)
      << log_[0];
  // The second attempt finds no device any more, and plugs in the one it
  // remembers.
  const std::vector<std::string> second_attempt{"qmp_capabilities", "qom-list",       "qom-list",
                                                "query-chardev",    "chardev-remove", "chardev-add",
                                                "device_add"};
  const auto names = server.command_names();
  ASSERT_EQ(names.size(), full_sequence.size() + second_attempt.size());
  EXPECT_EQ(std::vector<std::string>(names.begin() + full_sequence.size(), names.end()),
            second_attempt);
  EXPECT_EQ(server.commands().back()["arguments"]["addr"], "02.0");
}

TEST_F(QemuReplugTest, AGuestThatNeverReleasesTheDeviceEndsInGivingUp) {
  options_.max_attempts = 2;
  fake_qmp server(qmp_path_, [this](int, const json& c) -> answer {
    if (c["execute"] == "device_del") return {{reply(c, json::object())}};  // no event follows
    return qemu_.handle(c);
  });
  EXPECT_EQ(run_replug(), qemu_replug::outcome::gave_up) << log_text();
  ASSERT_EQ(log_.size(), 2u) << log_text();
  EXPECT_NE(log_[0].find("did not release the device within 0.2 s"), std::string::npos) << log_[0];
  EXPECT_NE(log_[1].find("giving up after 2 attempts"), std::string::npos) << log_[1];
}

TEST_F(QemuReplugTest, ASilentQemuTimesOut) {
  options_.qmp.reply_timeout = 50ms;
  options_.max_attempts = 1;
  fake_qmp server(qmp_path_, [](int, const json&) { return answer{}; });  // never answers
  EXPECT_EQ(run_replug(), qemu_replug::outcome::gave_up) << log_text();
  ASSERT_EQ(log_.size(), 1u) << log_text();
  EXPECT_NE(log_[0].find("no answer on the QMP socket"), std::string::npos) << log_[0];
}

TEST(QmpParseTest, FindsVsockChildrenInQomList) {
  const json list = json::parse(R"([
    {"name": "type", "type": "string"},
    {"name": "rp0", "type": "child<pcie-root-port>"},
    {"name": "vsock0", "type": "child<vhost-user-vsock-pci>"},
    {"name": "v2", "type": "child<vhost-user-vsock-pci-non-transitional>"},
    {"name": "odd", "type": 7}, 42])");
  const auto found = qmp_parse::vsock_children(list);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0], (std::pair<std::string, std::string>{"vsock0", "vhost-user-vsock-pci"}));
  EXPECT_EQ(found[1].second, "vhost-user-vsock-pci-non-transitional");
  EXPECT_TRUE(qmp_parse::vsock_children(json("garbage")).empty());
}

TEST(QmpParseTest, ReadsSocketPathsOfChardevs) {
  EXPECT_EQ(qmp_parse::chardev_socket_path("disconnected:unix:/run/hvsock/vhost-user/web.sock"),
            "/run/hvsock/vhost-user/web.sock");
  EXPECT_EQ(qmp_parse::chardev_socket_path("unix:/tmp/qmp.sock,server=on"), "/tmp/qmp.sock");
  EXPECT_EQ(qmp_parse::chardev_socket_path("unix:"), std::nullopt);  // connected client
  EXPECT_EQ(qmp_parse::chardev_socket_path("stdio"), std::nullopt);
  EXPECT_EQ(qmp_parse::last_component("/machine/peripheral/rp0/rp0"), "rp0");
  EXPECT_EQ(qmp_parse::last_component("pci.0"), "pci.0");
  EXPECT_EQ(qmp_parse::pci_addr(16), "02.0");
  EXPECT_EQ(qmp_parse::pci_addr(0xfa), "1f.2");
}

}  // namespace
}  // namespace hvsock::daemon
