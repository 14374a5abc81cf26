// management_server: the JSON requests and responses (handle_line), with
// real control socket files and state file in a temporary directory.
#include "daemon/management_server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "protocol/runtime_paths.hpp"

namespace hvsock::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ManagementServerTest : public ::testing::Test {
 protected:
  ManagementServerTest()
      : dir_(make_temp_dir()),
        tree_(guid::generate()),
        router_(tree_, registry_),
        store_(dir_ + "/state"),
        budget_(16) {
    fs::create_directories(dir_ + "/state");
    fs::create_directories(detail::partitions_dir(dir_ + "/run"));
    loop_ = std::move(*event_loop::create());
    control_ = std::make_unique<control_server>(
        *loop_, budget_, tree_, registry_, router_, counters_,
        control_server::options{dir_ + "/run", socket_file_options{}, false},
        [this](log_level, const std::string& line) { log_ += line + "\n"; });
    EXPECT_TRUE(control_->open_partition(tree_.host()));
    server_ = std::make_unique<management_server>(
        *loop_, budget_,
        management_server::context{tree_, registry_, store_, counters_, *control_, dir_ + "/state",
                                   dir_ + "/run", "test"},
        [this](log_level, const std::string& line) { log_ += line + "\n"; });
  }
  ~ManagementServerTest() override {
    server_.reset();
    control_.reset();
    fs::remove_all(dir_);
  }

  static std::string make_temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "hvsockd-mgmt-test-XXXXXX").string();
    return ::mkdtemp(pattern.data());
  }

  json call(const json& request) { return call_raw(request.dump()); }
  json call_raw(const std::string& line) {
    const std::string response = server_->handle_line(line);
    EXPECT_EQ(response.find('\n'), std::string::npos);
    return json::parse(response);
  }
  json ok(const json& request) {
    json r = call(request);
    EXPECT_EQ(r["ok"], true) << request.dump() << " -> " << r.dump();
    return r["result"];
  }
  json refused(const json& request, errc code) {
    json r = call(request);
    EXPECT_EQ(r["ok"], false) << request.dump() << " -> " << r.dump();
    EXPECT_EQ(r.value("code", 0), static_cast<int>(code)) << r.dump();
    EXPECT_TRUE(r["error"].is_string());
    EXPECT_FALSE(r["error"].get<std::string>().empty());
    return r;
  }
  // The state as saved on disk.
  switch_state saved() {
    auto loaded = store_.load();
    EXPECT_TRUE(loaded && loaded->has_value());
    return std::move(**loaded);
  }

  std::string dir_;
  partition_tree tree_;
  service_registry registry_;
  router router_;
  state_store store_;
  service_counters counters_;
  client_budget budget_;
  std::unique_ptr<event_loop> loop_;
  std::unique_ptr<control_server> control_;
  std::unique_ptr<management_server> server_;
  std::string log_;
};

TEST_F(ManagementServerTest, Status) {
  json s = ok({{"op", "status"}});
  EXPECT_EQ(s["version"], "test");
  EXPECT_EQ(s["pid"], ::getpid());
  EXPECT_EQ(s["state_dir"], dir_ + "/state");
  EXPECT_EQ(s["runtime_dir"], dir_ + "/run");
  EXPECT_EQ(s["partitions"], 1);
  EXPECT_EQ(s["services"], 0);
}

TEST_F(ManagementServerTest, MalformedRequests) {
  EXPECT_EQ(call_raw("not json")["ok"], false);
  EXPECT_EQ(call_raw("[1,2]")["ok"], false);
  EXPECT_EQ(call_raw("{}")["ok"], false);
  refused({{"op", 7}}, errc::invalid_argument);
  json unknown = refused({{"op", "frobnicate"}}, errc::invalid_argument);
  EXPECT_NE(unknown["error"].get<std::string>().find("frobnicate"), std::string::npos);
  refused({{"op", "service.register"}}, errc::invalid_argument);
  refused({{"op", "service.register"}, {"name", 5}}, errc::invalid_argument);
  refused({{"op", "service.register"}, {"name", "x"}, {"id", "not-a-guid"}}, errc::invalid_guid);
  refused({{"op", "service.register"}, {"name", "x"}, {"port", -1}}, errc::invalid_argument);
  refused({{"op", "service.register"},
           {"name", "x"},
           {"port", 1},
           {"id", guid::generate().to_string()}},
          errc::invalid_argument);
  refused({{"op", "vm.create"}, {"name", "vm1"}, {"cid", "3"}}, errc::invalid_argument);
  refused({{"op", "vm.create"}, {"name", "vm1"}, {"kind", "host"}}, errc::invalid_argument);
}

TEST_F(ManagementServerTest, ServiceLifecycle) {
  json s = ok({{"op", "service.register"}, {"name", "HV Socket Demo"}, {"port", 5000}});
  EXPECT_EQ(s["id"], "00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ(s["name"], "HV Socket Demo");
  EXPECT_EQ(s["enabled"], true);
  json generated = ok({{"op", "service.register"}, {"name", "other"}});
  ASSERT_TRUE(guid::parse(generated["id"].get<std::string>()));
  const std::string given = guid::generate().to_string();
  EXPECT_EQ(ok({{"op", "service.register"}, {"name", "given"}, {"id", given}})["id"], given);
  refused({{"op", "service.register"}, {"name", "HV Socket Demo"}}, errc::already_exists);
  refused({{"op", "service.register"}, {"name", "again"}, {"id", given}}, errc::already_exists);

  json list = ok({{"op", "service.list"}});
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["name"], "HV Socket Demo");
  EXPECT_EQ(list[0]["port"], 5000);
  EXPECT_EQ(list[0]["disabled_for"], json::array());
  EXPECT_FALSE(list[1].contains("port"));

  ok({{"op", "vm.create"}, {"name", "vm1"}});
  json off = ok({{"op", "service.disable"}, {"service", "HV Socket Demo"}, {"vm", "vm1"}});
  EXPECT_EQ(off["enabled"], true);
  EXPECT_EQ(off["disabled_for"], json::array({"vm1"}));
  EXPECT_EQ(saved().services.find(service_id_from_port(5000))->disabled_for.size(), 1u);
  refused({{"op", "service.disable"}, {"service", "HV Socket Demo"}, {"vm", "nope"}},
          errc::unknown_partition);
  ok({{"op", "service.enable"},
      {"service", "00001388-facb-11e6-bd58-64006a7986d3"},
      {"vm", "vm1"}});
  json globally_off =
      ok({{"op", "service.disable"}, {"service", "{00001388-FACB-11E6-BD58-64006A7986D3}"}});
  EXPECT_EQ(globally_off["enabled"], false);
  EXPECT_FALSE(saved().services.find(service_id_from_port(5000))->enabled);
  refused({{"op", "service.enable"}, {"service", "nope"}}, errc::not_found);

  json removed = ok({{"op", "service.remove"}, {"service", "other"}});
  EXPECT_EQ(removed["name"], "other");
  EXPECT_EQ(saved().services.size(), 2u);
  refused({{"op", "service.remove"}, {"service", "other"}}, errc::not_found);
}

TEST_F(ManagementServerTest, PartitionLifecycle) {
  json vm1 = ok({{"op", "vm.create"}, {"name", "vm1"}});
  EXPECT_EQ(vm1["kind"], "vm");
  EXPECT_EQ(vm1["parent"], "host");
  EXPECT_EQ(vm1["cid"], 3);
  const std::string socket = vm1["control_socket"];
  EXPECT_EQ(socket, detail::partition_socket_path(dir_ + "/run", "vm1"));
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string id = guid::generate().to_string();
  json c1 = ok({{"op", "vm.create"},
                {"name", "c1"},
                {"parent", "vm1"},
                {"kind", "container"},
                {"id", id},
                {"cid", 99}});
  EXPECT_EQ(c1["id"], id);
  EXPECT_EQ(c1["cid"], 99);
  EXPECT_EQ(c1["parent"], "vm1");
  refused({{"op", "vm.create"}, {"name", "vm1"}}, errc::already_exists);
  refused({{"op", "vm.create"}, {"name", "bad name"}}, errc::invalid_argument);
  refused({{"op", "vm.create"}, {"name", "x"}, {"parent", "ghost"}}, errc::unknown_partition);
  refused({{"op", "vm.create"}, {"name", "x"}, {"id", vm_id_parent.to_string()}},
          errc::invalid_argument);

  json list = ok({{"op", "vm.list"}});
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["name"], "host");
  EXPECT_EQ(list[0]["kind"], "host");
  EXPECT_TRUE(list[0]["parent"].is_null());
  EXPECT_EQ(list[0]["cid"], 2);
  EXPECT_EQ(saved().partitions.size(), 3u);

  refused({{"op", "vm.remove"}, {"name", "vm1"}}, errc::invalid_argument);  // has a child
  refused({{"op", "vm.remove"}, {"name", "host"}}, errc::invalid_argument);
  refused({{"op", "vm.remove"}, {"name", "ghost"}}, errc::unknown_partition);
  ok({{"op", "vm.remove"}, {"name", "c1"}});
  ok({{"op", "vm.remove"}, {"name", "vm1"}});
  EXPECT_NE(::stat(socket.c_str(), &st), 0);
  EXPECT_EQ(saved().partitions.size(), 1u);
}

TEST_F(ManagementServerTest, QmpSocketOfAQemuGuest) {
  json r = refused({{"op", "vm.create"}, {"name", "g"}, {"qmp", "/run/qmp.sock"}},
                   errc::invalid_argument);
  EXPECT_NE(r["error"].get<std::string>().find("only for a QEMU guest"), std::string::npos) << r;
  r = refused({{"op", "vm.create"}, {"name", "g"}, {"qemu", true}, {"qmp", "qmp.sock"}},
              errc::invalid_argument);
  EXPECT_NE(r["error"].get<std::string>().find("absolute path"), std::string::npos) << r;
  refused({{"op", "vm.create"}, {"name", "g"}, {"qemu", true}, {"qmp", 5}}, errc::invalid_argument);
  refused(
      {{"op", "vm.create"}, {"name", "g"}, {"qemu", true}, {"qmp", "/" + std::string(200, 'x')}},
      errc::invalid_argument);
  EXPECT_EQ(ok({{"op", "vm.list"}}).size(), 1u);

  json g = ok({{"op", "vm.create"}, {"name", "g"}, {"qemu", true}, {"qmp", dir_ + "/qmp.sock"}});
  EXPECT_EQ(g["qmp_socket"], dir_ + "/qmp.sock");
  json plain = ok({{"op", "vm.create"}, {"name", "p"}, {"qemu", true}});
  EXPECT_TRUE(plain["qmp_socket"].is_null());
  EXPECT_EQ(saved().partitions.find("g")->qmp_socket, dir_ + "/qmp.sock");

  // vm.set changes it, or forgets it with "".
  json set = ok({{"op", "vm.set"}, {"name", "p"}, {"qmp", dir_ + "/p.qmp"}});
  EXPECT_EQ(set["qmp_socket"], dir_ + "/p.qmp");
  EXPECT_EQ(saved().partitions.find("p")->qmp_socket, dir_ + "/p.qmp");
  set = ok({{"op", "vm.set"}, {"name", "g"}, {"qmp", ""}});
  EXPECT_TRUE(set["qmp_socket"].is_null());
  EXPECT_EQ(saved().partitions.find("g")->qmp_socket, "");
  refused({{"op", "vm.set"}, {"name", "p"}}, errc::invalid_argument);
  refused({{"op", "vm.set"}, {"name", "p"}, {"qmp", "relative"}}, errc::invalid_argument);
  refused({{"op", "vm.set"}, {"name", "ghost"}, {"qmp", "/q"}}, errc::unknown_partition);
  refused({{"op", "vm.set"}, {"name", "host"}, {"qmp", "/q"}}, errc::invalid_argument);
  EXPECT_EQ(saved().partitions.find("p")->qmp_socket, dir_ + "/p.qmp");
}

TEST_F(ManagementServerTest, RemovingAPartitionDropsItsOverrides) {
  ok({{"op", "service.register"}, {"name", "demo"}, {"port", 1}});
  ok({{"op", "vm.create"}, {"name", "vm1"}});
  ok({{"op", "service.disable"}, {"service", "demo"}, {"vm", "vm1"}});
  ok({{"op", "vm.remove"}, {"name", "vm1"}});
  EXPECT_TRUE(registry_.find(service_id_from_port(1))->disabled_for.empty());
  EXPECT_TRUE(saved().services.find(service_id_from_port(1))->disabled_for.empty());
}

TEST_F(ManagementServerTest, Stats) {
  ok({{"op", "service.register"}, {"name", "demo"}, {"port", 1}});
  counters_.record_refused(service_id_from_port(1), refusal_reason::backlog_full);
  counters_.record_unregistered_refused();
  json stats = ok({{"op", "stats"}});
  ASSERT_EQ(stats["services"].size(), 1u);
  const json& s = stats["services"][0];
  EXPECT_EQ(s["name"], "demo");
  EXPECT_EQ(s["accepted"], 0);
  EXPECT_EQ(s["active"], 0);
  EXPECT_EQ(s["refused"]["backlog_full"], 1);
  EXPECT_EQ(s["refused"]["disabled"], 0);
  EXPECT_EQ(s["refused"]["no_listener"], 0);
  EXPECT_EQ(s["refused"]["unreachable"], 0);
  EXPECT_EQ(s["refused"]["type_mismatch"], 0);
  EXPECT_EQ(s["refused"]["other"], 0);
  EXPECT_EQ(stats["unregistered_refused"], 1);
}

TEST_F(ManagementServerTest, StatsHavePartitionsAndSwitchWideFigures) {
  ok({{"op", "service.register"}, {"name", "demo"}, {"port", 1}});
  ok({{"op", "vm.create"}, {"name", "vm1"}});
  ok({{"op", "vm.create"}, {"name", "guest"}, {"qemu", true}});
  json stats = ok({{"op", "stats"}});
  ASSERT_EQ(stats["partitions"].size(), 3u);
  const json& host = stats["partitions"][0];
  EXPECT_EQ(host["name"], "host");
  EXPECT_EQ(host["connections"], json({{"outbound", 0}, {"inbound", 0}}));
  EXPECT_FALSE(host.contains("guest_attached"));  // QEMU partitions only
  const json* guest = nullptr;
  for (const json& p : stats["partitions"])
    if (p["name"] == "guest") guest = &p;
  ASSERT_NE(guest, nullptr);
  EXPECT_EQ((*guest)["backend"], "qemu");
  EXPECT_EQ((*guest)["guest_attached"], false);
  const json& sw = stats["switch"];
  EXPECT_EQ(sw["version"], "test");
  EXPECT_EQ(sw["partitions"], 3);
  EXPECT_EQ(sw["services"], 1);
  EXPECT_GE(sw["uptime_seconds"].get<double>(), 0.0);
  EXPECT_EQ(sw["control_clients"], 0);
  EXPECT_EQ(sw["management_clients"], 0);  // handle_line has no socket client
}

TEST_F(ManagementServerTest, ChangeThatCannotBeSavedIsRolledBack) {
  ok({{"op", "service.register"}, {"name", "kept"}});
  fs::remove_all(dir_ + "/state");
  json lost = call({{"op", "service.register"}, {"name", "lost"}});
  EXPECT_EQ(lost["ok"], false);
  EXPECT_NE(lost["error"].get<std::string>().find("not made"), std::string::npos);
  EXPECT_EQ(registry_.find_by_name("lost"), nullptr);
  EXPECT_NE(registry_.find_by_name("kept"), nullptr);
  json vm = call({{"op", "vm.create"}, {"name", "vm1"}});
  EXPECT_EQ(vm["ok"], false);
  EXPECT_EQ(tree_.find("vm1"), nullptr);
  EXPECT_FALSE(fs::exists(detail::partition_socket_path(dir_ + "/run", "vm1")));
}

}  // namespace
}  // namespace hvsock::daemon
