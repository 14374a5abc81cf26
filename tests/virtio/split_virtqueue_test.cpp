// split_virtqueue: chains come out validated, and every way a driver can
// break the ring rules is an error (reset the device), never a crash or an
// access outside guest memory.
#include "virtio/split_virtqueue.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "fake_driver.hpp"

namespace hvsock::virtio {
namespace {

using testing::buffer;
using testing::fake_driver;

// pop() must fail with errc::protocol_error and a message containing `what`.
void expect_broken(split_virtqueue& q, const std::string& what) {
  const std::uint16_t before = q.last_avail_idx();
  auto r = q.pop();
  ASSERT_FALSE(r) << "expected failure containing '" << what << "'";
  EXPECT_EQ(r.error().code(), make_error_code(errc::protocol_error));
  EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  EXPECT_EQ(q.last_avail_idx(), before) << "a failed pop consumes nothing";
}

descriptor_chain pop_one(split_virtqueue& q) {
  auto r = q.pop();
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  if (!r || !*r) {
    ADD_FAILURE() << "no chain available";
    return {};
  }
  return std::move(**r);
}

TEST(SplitVirtqueue, RefusesBadSetUp) {
  fake_driver drv(16);
  for (std::uint32_t bad : {0u, 3u, 12u, 65536u}) {
    auto cfg = drv.config();
    cfg.size = bad;
    auto q = split_virtqueue::create(drv.memory(), cfg);
    ASSERT_FALSE(q) << bad;
    EXPECT_NE(q.error().message().find("power of two"), std::string::npos);
  }
  auto cfg = drv.config();
  cfg.addresses.desc += 8;
  auto misaligned = split_virtqueue::create(drv.memory(), cfg);
  ASSERT_FALSE(misaligned);
  EXPECT_NE(misaligned.error().message().find("16-byte aligned"), std::string::npos);
  cfg = drv.config();
  cfg.addresses.used += 2;
  EXPECT_FALSE(split_virtqueue::create(drv.memory(), cfg)) << "used ring must be 4-aligned";
  cfg = drv.config();
  cfg.addresses.avail += 1;
  EXPECT_FALSE(split_virtqueue::create(drv.memory(), cfg)) << "avail ring must be 2-aligned";

  // A ring that runs off the end of guest memory.
  cfg = drv.config();
  cfg.addresses.used = fake_driver::base + fake_driver::ram_size - 64;
  auto outside = split_virtqueue::create(drv.memory(), cfg);
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message().find("used ring"), std::string::npos);
  // A size bigger than the memory laid out for the descriptor table.
  cfg = drv.config();
  cfg.size = 32768;
  cfg.addresses.desc = fake_driver::base + fake_driver::ram_size - 4096;
  EXPECT_FALSE(split_virtqueue::create(drv.memory(), cfg));
  // Front-end addresses are looked up as such (this memory has none mapped there).
  cfg = drv.config();
  cfg.space = address_space::frontend_virtual;
  EXPECT_FALSE(split_virtqueue::create(drv.memory(), cfg));
}

TEST(SplitVirtqueue, EmptyRingPopsNothing) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  auto r = q.pop();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(q.last_avail_idx(), 0);
}

TEST(SplitVirtqueue, PopsAChainWithReadableThenWritableBuffers) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  const auto a = drv.alloc(44), b = drv.alloc(100), c = drv.alloc(4096), d = drv.alloc(10);
  const auto head =
      drv.add_chain({{a, 44, false}, {b, 100, false}, {c, 4096, true}, {d, 10, true}});
  auto chain = pop_one(q);
  EXPECT_EQ(chain.head, head);
  ASSERT_EQ(chain.readable.size(), 2u);
  ASSERT_EQ(chain.writable.size(), 2u);
  EXPECT_EQ(chain.readable[0].data(), drv.bytes(a, 44).data());
  EXPECT_EQ(chain.readable[1].size(), 100u);
  EXPECT_EQ(chain.writable[0].data(), drv.bytes(c, 1).data());
  EXPECT_EQ(chain.writable[1].size(), 10u);
  EXPECT_EQ(chain.readable_length, 144u);
  EXPECT_EQ(chain.writable_length, 4106u);
  EXPECT_EQ(q.last_avail_idx(), 1);
  EXPECT_EQ(q.in_flight(), 1);
  auto none = q.pop();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST(SplitVirtqueue, PopsManyChainsInOrder) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  std::vector<std::uint16_t> heads;
  for (int i = 0; i < 5; ++i) heads.push_back(drv.add_chain({{drv.alloc(8), 8, i % 2 == 0}}));
  for (int i = 0; i < 5; ++i) {
    auto c = pop_one(q);
    EXPECT_EQ(c.head, heads[i]);
    EXPECT_EQ(i % 2 == 0 ? c.writable_length : c.readable_length, 8u);
  }
}

TEST(SplitVirtqueue, SkipsZeroLengthBuffersWithoutTranslatingThem) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  // Address 0 is outside guest memory, but an empty buffer touches nothing.
  drv.add_chain({{0, 0, false}, {drv.alloc(16), 16, true}});
  auto c = pop_one(q);
  EXPECT_TRUE(c.readable.empty());
  EXPECT_EQ(c.writable_length, 16u);
}

TEST(SplitVirtqueue, IndirectTables) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  const auto a = drv.alloc(44), b = drv.alloc(300), c = drv.alloc(64);
  const auto head = drv.add_indirect_chain({{a, 44, false}, {b, 300, false}, {c, 64, true}});
  auto chain = pop_one(q);
  EXPECT_EQ(chain.head, head);
  ASSERT_EQ(chain.readable.size(), 2u);
  ASSERT_EQ(chain.writable.size(), 1u);
  EXPECT_EQ(chain.readable[1].data(), drv.bytes(b, 1).data());
  EXPECT_EQ(chain.readable_length, 344u);
  EXPECT_EQ(chain.writable_length, 64u);

  // Direct descriptors followed by a final indirect one are allowed too.
  const auto table = drv.alloc(16);
  drv.write_desc(table, c, 64, virtq_desc_f_write, 0);
  drv.set_desc(5, a, 44, virtq_desc_f_next, 6);
  // The WRITE flag on the indirect descriptor itself is ignored (spec).
  drv.set_desc(6, table, 16, virtq_desc_f_indirect | virtq_desc_f_write, 0);
  drv.publish(5);
  auto mixed = pop_one(q);
  EXPECT_EQ(mixed.readable_length, 44u);
  EXPECT_EQ(mixed.writable_length, 64u);

  // A misaligned indirect table still works (the spec does not require alignment).
  const auto odd = drv.alloc(40) + 4;
  drv.write_desc(odd, a, 44, virtq_desc_f_next, 1);
  drv.write_desc(odd + 16, c, 64, virtq_desc_f_write, 0);
  drv.set_desc(7, odd, 32, virtq_desc_f_indirect, 0);
  drv.publish(7);
  auto unaligned = pop_one(q);
  EXPECT_EQ(unaligned.readable_length, 44u);
  EXPECT_EQ(unaligned.writable_length, 64u);
}

TEST(SplitVirtqueue, BadIndirectTablesBreakTheDevice) {
  const auto buf_flags = virtq_desc_f_next;
  auto run = [&](const char* expected, auto craft) {
    fake_driver drv(8);
    auto q = drv.make_queue();
    craft(drv);
    expect_broken(q, expected);
  };
  run("not a multiple of 16", [](fake_driver& d) {
    const auto t = d.alloc(32);
    d.set_desc(0, t, 24, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("not a multiple of 16", [](fake_driver& d) {
    d.set_desc(0, d.alloc(16), 0, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("also has NEXT", [](fake_driver& d) {
    const auto t = d.alloc(16);
    d.write_desc(t, d.alloc(8), 8, 0, 0);
    d.set_desc(0, t, 16, virtq_desc_f_indirect | virtq_desc_f_next, 1);
    d.set_desc(1, d.alloc(8), 8, 0, 0);
    d.publish(0);
  });
  run("contains an indirect descriptor", [](fake_driver& d) {
    const auto inner = d.alloc(16);
    d.write_desc(inner, d.alloc(8), 8, 0, 0);
    const auto t = d.alloc(16);
    d.write_desc(t, inner, 16, virtq_desc_f_indirect, 0);
    d.set_desc(0, t, 16, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("outside guest memory", [](fake_driver& d) {
    d.set_desc(0, fake_driver::base + fake_driver::ram_size - 16, 32, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("past its 2 entries", [&](fake_driver& d) {
    const auto t = d.alloc(32);
    d.write_desc(t, d.alloc(8), 8, buf_flags, 1);
    d.write_desc(t + 16, d.alloc(8), 8, buf_flags, 2);  // entry 2 does not exist
    d.set_desc(0, t, 32, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("loops", [&](fake_driver& d) {
    const auto t = d.alloc(48);
    d.write_desc(t, d.alloc(8), 8, buf_flags, 1);
    d.write_desc(t + 16, d.alloc(8), 8, buf_flags, 2);
    d.write_desc(t + 32, d.alloc(8), 8, buf_flags, 0);  // back to the start
    d.set_desc(0, t, 48, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("loops", [&](fake_driver& d) {
    const auto t = d.alloc(16);
    d.write_desc(t, d.alloc(8), 8, buf_flags, 0);  // itself
    d.set_desc(0, t, 16, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("more than 1024", [](fake_driver& d) {
    // A huge table costs nothing: it is refused before being walked.
    d.set_desc(0, d.alloc(16 * 2048), 16 * 2048, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("outside guest memory", [](fake_driver& d) {
    const auto t = d.alloc(16);
    d.write_desc(t, 0x1000, 8, 0, 0);  // a buffer below the RAM
    d.set_desc(0, t, 16, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("readable buffer after a writable", [](fake_driver& d) {
    const auto t = d.alloc(32);
    d.write_desc(t, d.alloc(8), 8, virtq_desc_f_write | virtq_desc_f_next, 1);
    d.write_desc(t + 16, d.alloc(8), 8, 0, 0);
    d.set_desc(0, t, 32, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
  run("readable buffer after a writable", [](fake_driver& d) {
    // The order holds across the switch from direct to indirect descriptors.
    const auto t = d.alloc(16);
    d.write_desc(t, d.alloc(8), 8, 0, 0);
    d.set_desc(0, d.alloc(8), 8, virtq_desc_f_write | virtq_desc_f_next, 1);
    d.set_desc(1, t, 16, virtq_desc_f_indirect, 0);
    d.publish(0);
  });
}

TEST(SplitVirtqueue, OutOfRangeDescriptorsBreakTheDevice) {
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.set_desc(0, 0x1000, 16, 0, 0);  // below the RAM
    drv.publish(0);
    expect_broken(q, "outside guest memory");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    // Starts inside, runs past the end.
    drv.set_desc(0, fake_driver::base + fake_driver::ram_size - 8, 16, 0, 0);
    drv.publish(0);
    expect_broken(q, "outside guest memory");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.set_desc(0, ~0ull - 4, 16, 0, 0);  // wraps around the address space
    drv.publish(0);
    expect_broken(q, "outside guest memory");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.set_desc(0, drv.alloc(8), 8, 0x80, 0);  // a packed-ring flag on a split ring
    drv.publish(0);
    expect_broken(q, "unknown flags");
  }
}

TEST(SplitVirtqueue, IndicesAtOrBeyondTheSizeBreakTheDevice) {
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.publish(8);  // head == size
    expect_broken(q, "names descriptor 8");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.publish(0xffff);
    expect_broken(q, "names descriptor 65535");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.set_desc(0, drv.alloc(8), 8, virtq_desc_f_next, 8);  // next == size
    drv.publish(0);
    expect_broken(q, "points at 8");
  }
}

TEST(SplitVirtqueue, LoopsBreakTheDevice) {
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    drv.set_desc(3, drv.alloc(8), 8, virtq_desc_f_next, 3);  // itself
    drv.publish(3);
    expect_broken(q, "loops");
  }
  {
    fake_driver drv(256);
    auto q = drv.make_queue();
    const auto buf = drv.alloc(8);
    // 0 → 1 → … → 99 → 50: a cycle that does not include the head.
    for (std::uint16_t i = 0; i < 100; ++i)
      drv.set_desc(i, buf, 8, virtq_desc_f_next, i == 99 ? 50 : i + 1);
    drv.publish(0);
    expect_broken(q, "loops");
  }
  {
    // A chain using every descriptor exactly once is not a loop.
    fake_driver drv(16);
    auto q = drv.make_queue();
    const auto buf = drv.alloc(8);
    for (std::uint16_t i = 0; i < 16; ++i)
      drv.set_desc(i, buf, 8, i == 15 ? 0 : virtq_desc_f_next, i + 1);
    drv.publish(0);
    EXPECT_EQ(pop_one(q).readable.size(), 16u);
  }
}

TEST(SplitVirtqueue, LimitsBoundTheChain) {
  {
    fake_driver drv(8);
    auto q = drv.make_queue({.max_total_length = 1000, .max_descriptors = 1024});
    drv.add_chain({{drv.alloc(600), 600, false}, {drv.alloc(401), 401, true}});
    expect_broken(q, "longer than 1000 bytes");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();  // default: 1 MiB + 4096
    drv.add_chain({{drv.alloc(2 << 20), 2 << 20, false}});
    expect_broken(q, "longer than");
  }
  {
    fake_driver drv(8);
    auto q = drv.make_queue();
    // The lengths of many buffers add up without overflowing 32 bits.
    const auto buf = drv.alloc(16);
    for (std::uint16_t i = 0; i < 8; ++i)
      drv.set_desc(i, buf, 0xffffffff, i == 7 ? 0 : virtq_desc_f_next, i + 1);
    drv.publish(0);
    expect_broken(q, "longer than");
  }
  {
    fake_driver drv(64);
    auto q = drv.make_queue({.max_total_length = 1 << 20, .max_descriptors = 4});
    const auto buf = drv.alloc(8);
    drv.add_chain({{buf, 8, false}, {buf, 8, false}, {buf, 8, false}, {buf, 8, false}});
    EXPECT_EQ(pop_one(q).readable.size(), 4u);
    drv.add_chain(
        {{buf, 8, false}, {buf, 8, false}, {buf, 8, false}, {buf, 8, false}, {buf, 8, false}});
    expect_broken(q, "more than 4 descriptors");
  }
}

TEST(SplitVirtqueue, WritableBeforeReadableBreaksTheDevice) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  drv.add_chain({{drv.alloc(8), 8, false}, {drv.alloc(8), 8, true}, {drv.alloc(8), 8, false}});
  expect_broken(q, "readable buffer after a writable one");
}

TEST(SplitVirtqueue, AvailIndexJumpsBreakTheDevice) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  for (int i = 0; i < 8; ++i) drv.add_chain({{drv.alloc(8), 8, false}});
  // Exactly `size` pending is fine...
  for (int i = 0; i < 8; ++i) pop_one(q);
  // ...more is not: the driver cannot have made more chains available than
  // the ring holds.
  drv.set_avail_idx(static_cast<std::uint16_t>(q.last_avail_idx() + 9));
  expect_broken(q, "more than the queue size 8");
  // Going backwards looks like a jump of almost 65536.
  drv.set_avail_idx(static_cast<std::uint16_t>(q.last_avail_idx() - 1));
  expect_broken(q, "ahead of the device's");
}

TEST(SplitVirtqueue, ResumesFromASavedBase) {
  fake_driver drv(8);
  drv.set_avail_idx(1000);
  auto cfg = drv.config();
  cfg.last_avail_idx = 1000;
  auto created = split_virtqueue::create(drv.memory(), cfg);
  ASSERT_TRUE(created);
  auto q = std::move(created).value();
  EXPECT_EQ(q.last_avail_idx(), 1000);
  const auto head = drv.add_chain({{drv.alloc(8), 8, false}});
  EXPECT_EQ(pop_one(q).head, head);
  EXPECT_EQ(q.last_avail_idx(), 1001);
  q.set_last_avail_idx(1000);
  EXPECT_EQ(pop_one(q).head, head) << "SET_VRING_BASE rewinds";
}

TEST(SplitVirtqueue, PublishesUsedBuffers) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  const auto h1 = drv.add_chain({{drv.alloc(8), 8, true}});
  const auto h2 = drv.add_chain({{drv.alloc(8), 8, true}});
  EXPECT_FALSE(q.push_used(h1, 4)) << "nothing is in flight yet";
  auto c1 = pop_one(q);
  auto c2 = pop_one(q);
  EXPECT_FALSE(q.push_used(8, 0)) << "head out of range";
  // Out of order completion is legal.
  ASSERT_TRUE(q.push_used(c2.head, 7));
  EXPECT_EQ(drv.used_idx(), 1);
  EXPECT_EQ(drv.used_elem(0), std::make_pair(std::uint32_t{h2}, std::uint32_t{7}));
  ASSERT_TRUE(q.push_used(c1.head, 3));
  EXPECT_EQ(drv.used_idx(), 2);
  EXPECT_EQ(drv.used_elem(1), std::make_pair(std::uint32_t{h1}, std::uint32_t{3}));
  EXPECT_EQ(q.in_flight(), 0);
  EXPECT_FALSE(q.push_used(c1.head, 0)) << "more pushes than pops";
}

TEST(SplitVirtqueue, UnpopGivesChainsBack) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  const auto h1 = drv.add_chain({{drv.alloc(8), 8, true}});
  const auto h2 = drv.add_chain({{drv.alloc(8), 8, true}});
  pop_one(q);
  pop_one(q);
  EXPECT_FALSE(q.unpop(3));
  ASSERT_TRUE(q.unpop(1));
  EXPECT_EQ(pop_one(q).head, h2);
  ASSERT_TRUE(q.unpop(2));
  EXPECT_EQ(pop_one(q).head, h1);
}

TEST(SplitVirtqueue, SixteenBitIndicesWrapAround) {
  fake_driver drv(8);  // 3 chains of 2 descriptors in flight at a time
  auto q = drv.make_queue();
  const auto buf = drv.alloc(128);
  // 70000 rounds of 3 chains: avail->idx, used->idx and the ring slots all wrap.
  for (int i = 0; i < 70000; ++i) {
    std::uint16_t heads[3];
    for (auto& h : heads) h = drv.add_chain({{buf, 44, false}, {buf + 64, 64, true}});
    for (int k = 0; k < 3; ++k) {
      auto c = pop_one(q);
      ASSERT_EQ(c.head, heads[k]) << "round " << i;
      ASSERT_TRUE(q.push_used(c.head, static_cast<std::uint32_t>(k)));
    }
    ASSERT_EQ(drv.reap(), 3u);
    auto none = q.pop();
    ASSERT_TRUE(none && !none->has_value());
  }
  EXPECT_EQ(q.last_avail_idx(), static_cast<std::uint16_t>(210000));
  EXPECT_EQ(q.used_idx(), static_cast<std::uint16_t>(210000));
  EXPECT_EQ(drv.used_idx(), static_cast<std::uint16_t>(210000));
}

TEST(SplitVirtqueue, InterruptsFollowNoInterrupt) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  drv.add_chain({{drv.alloc(8), 8, true}});
  auto c = pop_one(q);
  ASSERT_TRUE(q.push_used(c.head, 0));
  EXPECT_TRUE(q.needs_notification());
  drv.set_avail_flags(virtq_avail_f_no_interrupt);
  EXPECT_FALSE(q.needs_notification());
  drv.set_avail_flags(0);
  EXPECT_TRUE(q.needs_notification());

  q.set_kicks_suppressed(true);
  EXPECT_EQ(drv.used_flags(), virtq_used_f_no_notify);
  q.set_kicks_suppressed(false);
  EXPECT_EQ(drv.used_flags(), 0);
}

TEST(SplitVirtqueue, GuestRewritingTheRingAfterAPopChangesNothingValidated) {
  fake_driver drv(8);
  auto q = drv.make_queue();
  const auto buf = drv.alloc(64);
  const auto head = drv.add_chain({{buf, 64, false}});
  auto c = pop_one(q);
  // The guest now points the descriptor somewhere else; the popped chain
  // still holds what was validated.
  drv.set_desc(head, 0x1000, 0xffffffff, 0, 0);
  ASSERT_EQ(c.readable.size(), 1u);
  EXPECT_EQ(c.readable[0].data(), drv.bytes(buf, 1).data());
  EXPECT_EQ(c.readable[0].size(), 64u);
}

}  // namespace
}  // namespace hvsock::virtio
