// state_store: round trip, missing file, corrupt or invalid files (reported
// with the file's name, never overwritten), atomic replacement.
#include "daemon/state_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace hvsock::daemon {
namespace {

namespace fs = std::filesystem;

const vm_id host_id = guid_literal("00000001-0000-4000-8000-000000000000");
const vm_id vm1_id = guid_literal("00000002-0000-4000-8000-000000000000");

class StateStoreTest : public ::testing::Test {
 public:
  StateStoreTest() {
    std::string pattern = (fs::temp_directory_path() / "hvsockd-state-test-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    EXPECT_FALSE(dir_.empty());
  }
  ~StateStoreTest() override { fs::remove_all(dir_); }

  std::string file() const { return dir_ + "/state.json"; }
  void write(const std::string& text) { std::ofstream(file()) << text; }
  std::string read() const {
    std::ifstream in(file());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
};

TEST_F(StateStoreTest, MissingFileIsAFreshStart) {
  state_store store(dir_);
  auto loaded = store.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_FALSE(loaded->has_value());
}

TEST_F(StateStoreTest, RoundTrip) {
  partition_tree tree(host_id);
  partition_spec vm;
  vm.name = "vm1";
  vm.id = vm1_id;
  vm.cid = 42;
  ASSERT_TRUE(tree.create(vm));
  partition_spec c;
  c.name = "c1";
  c.kind = partition_kind::container;
  c.parent = "vm1";
  ASSERT_TRUE(tree.create(c));
  partition_spec c2;
  c2.name = "c2";
  c2.kind = partition_kind::container;
  ASSERT_TRUE(tree.create(c2));
  service_registry registry;
  ASSERT_TRUE(registry.register_service(service_id_from_port(5000), "HV Socket Demo"));
  ASSERT_TRUE(registry.register_service(guid::generate(), "off", false));
  ASSERT_TRUE(registry.set_enabled_for(service_id_from_port(5000), vm1_id, false));

  state_store store(dir_);
  ASSERT_TRUE(store.save(tree, registry));
  EXPECT_FALSE(fs::exists(file() + ".tmp"));
  auto loaded = store.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_TRUE(loaded->has_value());
  const switch_state& state = **loaded;

  EXPECT_EQ(state.partitions.host().id, host_id);
  ASSERT_EQ(state.partitions.size(), 4u);
  const partition* vm1 = state.partitions.find("vm1");
  ASSERT_NE(vm1, nullptr);
  EXPECT_EQ(vm1->id, vm1_id);
  EXPECT_EQ(vm1->cid, 42u);
  EXPECT_EQ(vm1->kind, partition_kind::vm);
  const partition* c1 = state.partitions.find("c1");
  ASSERT_NE(c1, nullptr);
  EXPECT_EQ(c1->kind, partition_kind::container);
  EXPECT_EQ(c1->parent, vm1_id);
  EXPECT_EQ(c1->id, tree.find("c1")->id);
  EXPECT_EQ(c1->cid, tree.find("c1")->cid);
  EXPECT_EQ(state.partitions.find("c2")->parent, host_id);

  ASSERT_EQ(state.services.size(), 2u);
  const service_entry* demo = state.services.find(service_id_from_port(5000));
  ASSERT_NE(demo, nullptr);
  EXPECT_EQ(demo->name, "HV Socket Demo");
  EXPECT_TRUE(demo->enabled);
  EXPECT_EQ(demo->disabled_for, std::set<vm_id>{vm1_id});
  const service_entry* off = state.services.find_by_name("off");
  ASSERT_NE(off, nullptr);
  EXPECT_FALSE(off->enabled);

  // Saving what was loaded gives the same text.
  EXPECT_EQ(state_store::serialize(state.partitions, state.services),
            state_store::serialize(tree, registry));
}

TEST_F(StateStoreTest, FileIsReadableJson) {
  partition_tree tree(host_id);
  service_registry registry;
  ASSERT_TRUE(registry.register_service(service_id_from_port(5000), "demo"));
  state_store store(dir_);
  ASSERT_TRUE(store.save(tree, registry));
  const std::string text = read();
  EXPECT_NE(text.find("\"format\": 1"), std::string::npos);
  EXPECT_NE(text.find(host_id.to_string()), std::string::npos);
  EXPECT_NE(text.find("\"name\": \"demo\""), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

TEST_F(StateStoreTest, SaveReplacesTheFile) {
  partition_tree tree(host_id);
  service_registry registry;
  state_store store(dir_);
  ASSERT_TRUE(store.save(tree, registry));
  ASSERT_TRUE(registry.register_service(service_id_from_port(1), "one"));
  ASSERT_TRUE(store.save(tree, registry));
  auto loaded = store.load();
  ASSERT_TRUE(loaded && loaded->has_value());
  EXPECT_EQ((*loaded)->services.size(), 1u);
}

void expect_refused(StateStoreTest& test, const std::string& text, const std::string& needle) {
  test.write(text);
  state_store store(test.dir_);
  auto loaded = store.load();
  ASSERT_FALSE(loaded) << "accepted: " << text;
  EXPECT_NE(loaded.error().message().find(test.file()), std::string::npos)
      << loaded.error().message();
  EXPECT_NE(loaded.error().message().find(needle), std::string::npos) << loaded.error().message();
  EXPECT_EQ(test.read(), text) << "the file must be left alone";
}

TEST_F(StateStoreTest, CorruptFileIsAnErrorAndLeftAlone) {
  expect_refused(*this, "{\"format\": 1, \"host\": ", "not valid JSON");
  expect_refused(*this, "", "not valid JSON");
  expect_refused(*this, "\x01\x02garbage", "not valid JSON");
}

TEST_F(StateStoreTest, InvalidContentIsAnError) {
  const std::string host = "\"host\": {\"id\": \"" + host_id.to_string() + "\"}";
  expect_refused(*this, "[]", "object");
  expect_refused(*this, "{\"format\": 2, " + host + ", \"partitions\": [], \"services\": []}",
                 "format");
  expect_refused(*this, "{\"format\": 1, \"partitions\": [], \"services\": []}", "host");
  expect_refused(*this,
                 "{\"format\": 1, \"host\": {\"id\": \"nope\"}, \"partitions\": [], "
                 "\"services\": []}",
                 "nope");
  expect_refused(*this,
                 "{\"format\": 1, \"host\": {\"id\": \"" + vm_id_parent.to_string() +
                     "\"}, \"partitions\": [], \"services\": []}",
                 "well-known");
  expect_refused(*this, "{\"format\": 1, " + host + ", \"services\": []}", "partitions");
  const std::string vm = "{\"name\": \"vm1\", \"id\": \"" + vm1_id.to_string() +
                         "\", \"kind\": \"vm\", \"parent\": \"host\", \"cid\": 3}";
  expect_refused(
      *this,
      "{\"format\": 1, " + host + ", \"partitions\": [" + vm + ", " + vm + "], \"services\": []}",
      "already exists");
  expect_refused(*this,
                 "{\"format\": 1, " + host + ", \"partitions\": [{\"name\": \"vm1\", \"id\": \"" +
                     vm1_id.to_string() +
                     "\", \"kind\": \"vm\", \"parent\": \"ghost\", \"cid\": 3}], "
                     "\"services\": []}",
                 "ghost");
  expect_refused(*this,
                 "{\"format\": 1, " + host + ", \"partitions\": [{\"name\": \"vm1\", \"id\": \"" +
                     vm1_id.to_string() +
                     "\", \"kind\": \"vm\", \"parent\": \"host\", \"cid\": -3}], "
                     "\"services\": []}",
                 "cid");
  expect_refused(*this,
                 "{\"format\": 1, " + host + ", \"partitions\": [], \"services\": [{\"id\": \"" +
                     service_id_from_port(1).to_string() +
                     "\", \"name\": \"a\", \"enabled\": \"yes\", \"disabled_for\": []}]}",
                 "enabled");
  expect_refused(*this,
                 "{\"format\": 1, " + host + ", \"partitions\": [], \"services\": [{\"id\": \"" +
                     service_id_from_port(1).to_string() +
                     "\", \"name\": \"a\", \"enabled\": true, \"disabled_for\": [\"" +
                     vm1_id.to_string() + "\"]}]}",
                 "no partition");
}

TEST_F(StateStoreTest, ChildrenMayBeListedBeforeTheirParents) {
  const std::string text = "{\"format\": 1, \"host\": {\"id\": \"" + host_id.to_string() +
                           "\"}, \"partitions\": ["
                           "{\"name\": \"c1\", \"id\": \"" +
                           guid::generate().to_string() +
                           "\", \"kind\": \"container\", \"parent\": \"vm1\", \"cid\": 4},"
                           "{\"name\": \"vm1\", \"id\": \"" +
                           vm1_id.to_string() +
                           "\", \"kind\": \"vm\", \"parent\": \"host\", \"cid\": 3}"
                           "], \"services\": []}";
  auto state = state_store::parse(text, "test");
  ASSERT_TRUE(state) << state.error().message();
  EXPECT_EQ(state->partitions.find("c1")->parent, vm1_id);
}

TEST_F(StateStoreTest, SaveFailsCleanlyWhenTheDirectoryIsGone) {
  partition_tree tree(host_id);
  service_registry registry;
  state_store store(dir_ + "/missing");
  auto saved = store.save(tree, registry);
  ASSERT_FALSE(saved);
  EXPECT_NE(saved.error().message().find("missing"), std::string::npos);
}

}  // namespace
}  // namespace hvsock::daemon

namespace hvsock::daemon {
namespace {

TEST_F(StateStoreTest, QemuBackendRoundTripsAndDefaultsToEmulated) {
  partition_tree tree(host_id);
  partition_spec q;
  q.name = "guest";
  q.qemu = true;
  ASSERT_TRUE(tree.create(q));
  partition_spec e;
  e.name = "emu";
  ASSERT_TRUE(tree.create(e));
  state_store store(dir_);
  ASSERT_TRUE(store.save(tree, service_registry()));
  EXPECT_NE(read().find("\"backend\": \"qemu\""), std::string::npos) << read();
  auto loaded = store.load();
  ASSERT_TRUE(loaded && *loaded) << (loaded ? "" : loaded.error().message());
  EXPECT_TRUE((*loaded)->partitions.find("guest")->qemu);
  EXPECT_FALSE((*loaded)->partitions.find("emu")->qemu);

  // An unknown backend is an error that names the field.
  std::string text = read();
  text.replace(text.find("\"qemu\""), 6, "\"xen\"");
  write(text);
  auto bad = store.load();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("backend"), std::string::npos) << bad.error().message();
}

TEST_F(StateStoreTest, QmpSocketRoundTripsAndIsChecked) {
  partition_tree tree(host_id);
  partition_spec q;
  q.name = "guest";
  q.qemu = true;
  q.qmp_socket = "/run/qemu/guest.qmp";
  ASSERT_TRUE(tree.create(q));
  state_store store(dir_);
  ASSERT_TRUE(store.save(tree, service_registry()));
  auto loaded = store.load();
  ASSERT_TRUE(loaded && *loaded) << (loaded ? "" : loaded.error().message());
  EXPECT_EQ((*loaded)->partitions.find("guest")->qmp_socket, "/run/qemu/guest.qmp");

  std::string text = read();
  text.replace(text.find("\"/run/qemu/guest.qmp\""), 21, "\"guest.qmp\"");
  write(text);
  auto bad = store.load();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("absolute path"), std::string::npos)
      << bad.error().message();
}

TEST(PartitionTreeQemu, OnlyVmsCanBeQemuGuests) {
  partition_tree tree(host_id);
  partition_spec c;
  c.name = "box";
  c.kind = partition_kind::container;
  c.qemu = true;
  auto r = tree.create(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(errc::invalid_argument));
  EXPECT_NE(r.error().message().find("QEMU"), std::string::npos);
}

}  // namespace
}  // namespace hvsock::daemon
