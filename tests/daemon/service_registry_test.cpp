// service_registry: registration, names, resolution, enable/disable.
#include "daemon/service_registry.hpp"

#include <gtest/gtest.h>

#include <string>

namespace hvsock::daemon {
namespace {

const service_id demo = service_id_from_port(5000);
const service_id other = guid_literal("3049197c-facb-11e6-bd58-64006a7986d3");
const vm_id vm1 = guid_literal("aaaaaaaa-0000-4000-8000-000000000001");

TEST(ServiceRegistry, RegistersAndFinds) {
  service_registry registry;
  auto added = registry.register_service(demo, "HV Socket Demo");
  ASSERT_TRUE(added) << added.error().message();
  EXPECT_EQ((*added)->id, demo);
  EXPECT_EQ((*added)->name, "HV Socket Demo");
  EXPECT_TRUE((*added)->enabled);
  EXPECT_EQ(registry.find(demo), *added);
  EXPECT_EQ(registry.find_by_name("HV Socket Demo"), *added);
  EXPECT_EQ(registry.find(other), nullptr);
  EXPECT_EQ(registry.size(), 1u);
}

TEST(ServiceRegistry, DuplicatesAreAlreadyExists) {
  service_registry registry;
  ASSERT_TRUE(registry.register_service(demo, "demo"));
  auto same_id = registry.register_service(demo, "another");
  ASSERT_FALSE(same_id);
  EXPECT_EQ(same_id.error().code(), errc::already_exists);
  auto same_name = registry.register_service(other, "demo");
  ASSERT_FALSE(same_name);
  EXPECT_EQ(same_name.error().code(), errc::already_exists);
  EXPECT_EQ(registry.size(), 1u);
}

TEST(ServiceRegistry, NameRules) {
  EXPECT_TRUE(service_registry::check_name("HV Socket Demo"));
  EXPECT_TRUE(service_registry::check_name(std::string(256, 'x')));
  EXPECT_FALSE(service_registry::check_name(std::string(257, 'x')));
  EXPECT_FALSE(service_registry::check_name(""));
  EXPECT_FALSE(service_registry::check_name("tab\there"));
  EXPECT_FALSE(service_registry::check_name("new\nline"));
  EXPECT_FALSE(service_registry::check_name(" leading"));
  EXPECT_FALSE(service_registry::check_name("trailing "));
  EXPECT_FALSE(service_registry::check_name("caf\xc3\xa9"));
  // A GUID-shaped name would make "GUID or ElementName" ambiguous.
  EXPECT_FALSE(service_registry::check_name("00001388-facb-11e6-bd58-64006a7986d3"));
  service_registry registry;
  auto bad = registry.register_service(demo, "");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), errc::invalid_argument);
}

TEST(ServiceRegistry, ResolvesGuidOrName) {
  service_registry registry;
  ASSERT_TRUE(registry.register_service(demo, "demo"));
  auto by_name = registry.resolve("demo");
  ASSERT_TRUE(by_name);
  EXPECT_EQ((*by_name)->id, demo);
  auto by_guid = registry.resolve("{00001388-FACB-11E6-BD58-64006A7986D3}");
  ASSERT_TRUE(by_guid);
  EXPECT_EQ((*by_guid)->id, demo);
  auto unknown_guid = registry.resolve(other.to_string());
  ASSERT_FALSE(unknown_guid);
  EXPECT_EQ(unknown_guid.error().code(), errc::not_found);
  auto unknown_name = registry.resolve("nope");
  ASSERT_FALSE(unknown_name);
  EXPECT_EQ(unknown_name.error().code(), errc::not_found);
  EXPECT_NE(unknown_name.error().message().find("nope"), std::string::npos);
}

TEST(ServiceRegistry, EnableDisableGloballyAndPerPartition) {
  service_registry registry;
  ASSERT_TRUE(registry.register_service(demo, "demo"));
  const service_entry& s = *registry.find(demo);
  EXPECT_TRUE(service_registry::allowed_for(s, vm1));

  ASSERT_TRUE(registry.set_enabled(demo, false));
  EXPECT_FALSE(s.enabled);
  EXPECT_FALSE(service_registry::allowed_for(s, vm1));
  ASSERT_TRUE(registry.set_enabled(demo, true));

  ASSERT_TRUE(registry.set_enabled_for(demo, vm1, false));
  EXPECT_TRUE(s.enabled);
  EXPECT_TRUE(s.disabled_for.contains(vm1));
  EXPECT_FALSE(service_registry::allowed_for(s, vm1));
  EXPECT_TRUE(service_registry::allowed_for(s, vm_id_parent));
  ASSERT_TRUE(registry.set_enabled_for(demo, vm1, true));
  EXPECT_TRUE(service_registry::allowed_for(s, vm1));

  ASSERT_TRUE(registry.set_enabled_for(demo, vm1, false));
  registry.forget_partition(vm1);
  EXPECT_TRUE(s.disabled_for.empty());

  auto unknown = registry.set_enabled(other, false);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), errc::not_found);
  EXPECT_FALSE(registry.set_enabled_for(other, vm1, false));
}

TEST(ServiceRegistry, RemoveFreesIdAndName) {
  service_registry registry;
  ASSERT_TRUE(registry.register_service(demo, "demo"));
  ASSERT_TRUE(registry.remove(demo));
  EXPECT_EQ(registry.find(demo), nullptr);
  EXPECT_EQ(registry.find_by_name("demo"), nullptr);
  auto again = registry.remove(demo);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), errc::not_found);
  EXPECT_TRUE(registry.register_service(other, "demo"));
}

TEST(ServiceRegistry, ListsByName) {
  service_registry registry;
  ASSERT_TRUE(registry.register_service(demo, "zeta"));
  ASSERT_TRUE(registry.register_service(other, "alpha"));
  auto all = registry.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]->name, "alpha");
  EXPECT_EQ(all[1]->name, "zeta");
}

TEST(ServiceRegistry, Limit) {
  service_registry registry(1);
  ASSERT_TRUE(registry.register_service(demo, "demo"));
  auto r = registry.register_service(other, "other");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::limit_reached);
}

}  // namespace
}  // namespace hvsock::daemon
