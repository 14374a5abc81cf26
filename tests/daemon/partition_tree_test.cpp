// partition_tree: names, ids, CIDs, parents, lookups and removal.
#include "daemon/partition_tree.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace hvsock::daemon {
namespace {

const vm_id host_id = guid_literal("11111111-2222-4333-8444-555555555555");

partition_spec vm(std::string name) {
  partition_spec spec;
  spec.name = std::move(name);
  return spec;
}

partition_spec container(std::string name, std::string parent) {
  partition_spec spec;
  spec.name = std::move(name);
  spec.kind = partition_kind::container;
  spec.parent = std::move(parent);
  return spec;
}

TEST(PartitionTree, HostIsTheRoot) {
  partition_tree tree(host_id);
  const partition& host = tree.host();
  EXPECT_EQ(host.name, "host");
  EXPECT_EQ(host.kind, partition_kind::host);
  EXPECT_EQ(host.cid, 2u);
  EXPECT_EQ(host.id, host_id);
  EXPECT_FALSE(host.parent.has_value());
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree.find("host"), &host);
  EXPECT_EQ(tree.find(host_id), &host);
  EXPECT_EQ(tree.find_by_cid(2), &host);
  EXPECT_EQ(tree.parent_of(host), nullptr);
}

TEST(PartitionTree, NameRules) {
  EXPECT_TRUE(partition_tree::check_name("vm1"));
  EXPECT_TRUE(partition_tree::check_name("A.b_c-9"));
  EXPECT_TRUE(partition_tree::check_name(std::string(63, 'a')));
  EXPECT_FALSE(partition_tree::check_name(std::string(64, 'a')));
  EXPECT_FALSE(partition_tree::check_name(""));
  EXPECT_FALSE(partition_tree::check_name(".hidden"));
  EXPECT_FALSE(partition_tree::check_name("-x"));
  EXPECT_FALSE(partition_tree::check_name("a/b"));
  EXPECT_FALSE(partition_tree::check_name("a b"));
  EXPECT_FALSE(partition_tree::check_name("host"));
  auto bad = partition_tree::check_name("a/b");
  EXPECT_EQ(bad.error().code(), errc::invalid_argument);
}

TEST(PartitionTree, CreatesVmWithGeneratedIdAndLowestFreeCid) {
  partition_tree tree(host_id);
  auto vm1 = tree.create(vm("vm1"));
  ASSERT_TRUE(vm1) << vm1.error().message();
  EXPECT_EQ((*vm1)->kind, partition_kind::vm);
  EXPECT_EQ((*vm1)->cid, 3u);
  EXPECT_EQ((*vm1)->parent, host_id);
  EXPECT_FALSE(classify_vm_id((*vm1)->id).has_value());
  auto vm2 = tree.create(vm("vm2"));
  ASSERT_TRUE(vm2);
  EXPECT_EQ((*vm2)->cid, 4u);
  EXPECT_NE((*vm1)->id, (*vm2)->id);

  // A freed CID is reused, lowest first.
  ASSERT_TRUE(tree.remove("vm1"));
  auto vm3 = tree.create(vm("vm3"));
  ASSERT_TRUE(vm3);
  EXPECT_EQ((*vm3)->cid, 3u);
}

TEST(PartitionTree, GivenIdAndCid) {
  partition_tree tree(host_id);
  partition_spec spec = vm("vm1");
  spec.id = guid_literal("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
  spec.cid = 100;
  auto p = tree.create(spec);
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)->id, *spec.id);
  EXPECT_EQ((*p)->cid, 100u);
  EXPECT_EQ(tree.find(*spec.id), *p);
  EXPECT_EQ(tree.find_by_cid(100), *p);
  // Automatic CIDs skip neither the given one nor leave gaps below it.
  auto next = tree.create(vm("vm2"));
  ASSERT_TRUE(next);
  EXPECT_EQ((*next)->cid, 3u);
}

TEST(PartitionTree, RefusesBadOrDuplicateIds) {
  partition_tree tree(host_id);
  for (const vm_id& bad : {vm_id_wildcard, vm_id_broadcast, vm_id_children, vm_id_loopback,
                           vm_id_parent, vm_id_silohost}) {
    partition_spec spec = vm("vm1");
    spec.id = bad;
    auto r = tree.create(spec);
    ASSERT_FALSE(r) << bad.to_string();
    EXPECT_EQ(r.error().code(), errc::invalid_argument);
  }
  partition_spec spec = vm("vm1");
  spec.id = host_id;
  auto dup = tree.create(spec);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), errc::already_exists);
  EXPECT_EQ(tree.size(), 1u);
}

TEST(PartitionTree, RefusesReservedOrDuplicateCids) {
  partition_tree tree(host_id);
  for (std::uint32_t bad : {0u, 1u, 2u, 0xffffffffu}) {
    partition_spec spec = vm("vm1");
    spec.cid = bad;
    auto r = tree.create(spec);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), errc::invalid_argument);
  }
  partition_spec first = vm("vm1");
  first.cid = 7;
  ASSERT_TRUE(tree.create(first));
  partition_spec second = vm("vm2");
  second.cid = 7;
  auto dup = tree.create(second);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), errc::already_exists);
}

TEST(PartitionTree, RefusesDuplicateNames) {
  partition_tree tree(host_id);
  ASSERT_TRUE(tree.create(vm("vm1")));
  auto dup = tree.create(vm("vm1"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), errc::already_exists);
}

TEST(PartitionTree, ParentRules) {
  partition_tree tree(host_id);
  ASSERT_TRUE(tree.create(vm("vm1")));
  // A VM's parent is the host.
  partition_spec nested = vm("vm2");
  nested.parent = "vm1";
  auto r = tree.create(nested);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::invalid_argument);
  // Containers run in a VM or on the host, not in a container.
  auto c1 = tree.create(container("c1", "vm1"));
  ASSERT_TRUE(c1);
  EXPECT_EQ((*c1)->parent, tree.find("vm1")->id);
  ASSERT_TRUE(tree.create(container("c2", "host")));
  auto c3 = tree.create(container("c3", "c1"));
  ASSERT_FALSE(c3);
  EXPECT_EQ(c3.error().code(), errc::invalid_argument);
  // Unknown parent.
  auto orphan = tree.create(container("c4", "nowhere"));
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().code(), errc::unknown_partition);
  // Only one host.
  partition_spec second_host = vm("h2");
  second_host.kind = partition_kind::host;
  EXPECT_FALSE(tree.create(second_host));
}

TEST(PartitionTree, ChildrenAndListOrder) {
  partition_tree tree(host_id);
  ASSERT_TRUE(tree.create(vm("vmb")));
  ASSERT_TRUE(tree.create(vm("vma")));
  ASSERT_TRUE(tree.create(container("c1", "vmb")));
  ASSERT_TRUE(tree.create(container("c0", "host")));
  auto children = tree.children_of(tree.host());
  ASSERT_EQ(children.size(), 3u);
  EXPECT_TRUE(partition_tree::is_child_of(*tree.find("c1"), *tree.find("vmb")));
  EXPECT_FALSE(partition_tree::is_child_of(*tree.find("c1"), tree.host()));
  // Host first, every parent before its children.
  auto all = tree.list();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0]->name, "host");
  std::vector<std::string> names;
  for (auto* p : all) names.push_back(p->name);
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n); };
  EXPECT_LT(pos("vmb"), pos("c1"));
}

TEST(PartitionTree, RemoveRules) {
  partition_tree tree(host_id);
  ASSERT_TRUE(tree.create(vm("vm1")));
  ASSERT_TRUE(tree.create(container("c1", "vm1")));
  auto host = tree.remove("host");
  ASSERT_FALSE(host);
  EXPECT_EQ(host.error().code(), errc::invalid_argument);
  auto busy = tree.remove("vm1");
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), errc::invalid_argument);
  EXPECT_NE(busy.error().message().find("c1"), std::string::npos);
  auto unknown = tree.remove("nope");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), errc::unknown_partition);

  const vm_id c1_id = tree.find("c1")->id;
  const std::uint32_t c1_cid = tree.find("c1")->cid;
  ASSERT_TRUE(tree.remove("c1"));
  EXPECT_EQ(tree.find("c1"), nullptr);
  EXPECT_EQ(tree.find(c1_id), nullptr);
  EXPECT_EQ(tree.find_by_cid(c1_cid), nullptr);
  ASSERT_TRUE(tree.remove("vm1"));
  EXPECT_EQ(tree.size(), 1u);
}

TEST(PartitionTree, LimitIncludesTheHost) {
  partition_tree tree(host_id, 3);
  ASSERT_TRUE(tree.create(vm("a")));
  ASSERT_TRUE(tree.create(vm("b")));
  auto r = tree.create(vm("c"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::limit_reached);
}

TEST(PartitionTree, CopiesAreIndependent) {
  partition_tree tree(host_id);
  ASSERT_TRUE(tree.create(vm("vm1")));
  partition_tree snapshot = tree;
  ASSERT_TRUE(tree.create(vm("vm2")));
  tree = snapshot;
  EXPECT_EQ(tree.find("vm2"), nullptr);
  EXPECT_NE(tree.find("vm1"), nullptr);
  EXPECT_EQ(tree.size(), 2u);
}

}  // namespace
}  // namespace hvsock::daemon
