// vhost-user back-end: the test plays QEMU over a socketpair, with a real
// memfd as guest RAM and real eventfds, and checks replies, the device hooks,
// and that every malformed message ends the session without a crash or an
// fd leak.
#include "vhost_user/backend.hpp"
#include "sys/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hvsock::vhost_user {
namespace {

constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << n; }
constexpr std::uint32_t rq(request r) { return static_cast<std::uint32_t>(r); }

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// The device side: records what the session tells it.
struct recording_device : device_hooks {
  std::map<std::uint32_t, ring_info> running;
  std::vector<std::uint32_t> started, stopped;
  int resets = 0;
  std::map<std::uint32_t, std::uint16_t> last_avail;  // what on_ring_stopped returns
  bool fail_start = false;

  result<void> on_ring_started(std::uint32_t index, const ring_info& ring) override {
    if (fail_start) return failure(errc::io_error, "device refuses");
    EXPECT_EQ(running.count(index), 0u) << "started twice";
    running[index] = ring;
    started.push_back(index);
    return {};
  }
  std::uint16_t on_ring_stopped(std::uint32_t index) override {
    EXPECT_EQ(running.count(index), 1u) << "stopped while not running";
    running.erase(index);
    stopped.push_back(index);
    auto it = last_avail.find(index);
    return it == last_avail.end() ? 0 : it->second;
  }
  void on_reset() override {
    EXPECT_TRUE(running.empty()) << "reset with rings running";
    ++resets;
  }
};

// Guest RAM as QEMU has it: a memfd mapped here; the region's user address
// is this mapping's address, as in QEMU.
struct guest_ram {
  static constexpr std::size_t size = 1 << 20;
  unique_fd fd;
  std::byte* base = nullptr;

  guest_ram() {
    fd.reset(::memfd_create("vhost-user-test-ram", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), size), 0);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    EXPECT_NE(p, MAP_FAILED);
    base = static_cast<std::byte*>(p);
  }
  ~guest_ram() { ::munmap(base, size); }
  std::uint64_t user(std::size_t offset) const {
    return reinterpret_cast<std::uint64_t>(base) + offset;
  }
  memory_table table() const {
    return memory_table{
        {{.guest_phys_addr = 0, .memory_size = size, .userspace_addr = user(0), .mmap_offset = 0}}};
  }
  // Ring i's layout: descriptors, then available, then used, 64 KiB apart.
  std::size_t desc_off(std::uint32_t i) const { return 0x10000 + 0x30000 * i; }
  vring_addr addr(std::uint32_t i) const {
    return {.index = i,
            .flags = 0,
            .descriptor = user(desc_off(i)),
            .used = user(desc_off(i) + 0x20000),
            .available = user(desc_off(i) + 0x10000),
            .log = 0};
  }
};

unique_fd make_eventfd() { return unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

// The front-end's end of the connection plus the session under test.
class session_test : public ::testing::Test {
 public:  // the malformed-input cases below drive these helpers
  void SetUp() override { connect_session(); }

  void connect_session() {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    front_.reset(sv[0]);
    ASSERT_EQ(::fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    backend_options options;
    options.config = vsock_config(0x1234'5678'9abc);
    options.device_features = bit(28);  // VIRTIO_RING_F_INDIRECT_DESC, as the device will
    session_.emplace(unique_fd(sv[1]), device_, std::move(options));
  }

  void send_bytes(std::span<const std::byte> bytes, const std::vector<int>& fds = {}) {
    auto sent = detail::send_message(front_.get(), bytes, std::span(fds));
    ASSERT_TRUE(sent) << sent.error().message();
  }

  void send(request r, const payload& body = std::monostate{}, const std::vector<int>& fds = {},
            std::uint32_t flags = version_1) {
    send_bytes(encode(rq(r), flags, body), fds);
  }

  // Lets the session read; expects it to stay open.
  void pump() {
    auto st = session_->on_readable();
    ASSERT_TRUE(st) << st.error().message();
    ASSERT_EQ(*st, vhost_user_backend::status::open);
  }

  void call(request r, const payload& body = std::monostate{}, const std::vector<int>& fds = {},
            std::uint32_t flags = version_1) {
    send(r, body, fds, flags);
    pump();
  }

  bool reply_waiting() {
    pollfd p{front_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

  void read_exact(std::byte* out, std::size_t n) {
    while (n > 0) {
      pollfd p{front_.get(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 2000), 1) << "no reply";
      const ssize_t got = ::read(front_.get(), out, n);
      ASSERT_GT(got, 0);
      out += got;
      n -= static_cast<std::size_t>(got);
    }
  }

  // Reads a reply; checks its header is a version-1 reply to `r`.
  std::vector<std::byte> read_reply(request r) {
    std::byte h[header_size];
    read_exact(h, sizeof h);
    std::uint32_t code, flags, size;
    std::memcpy(&code, h, 4);
    std::memcpy(&flags, h + 4, 4);
    std::memcpy(&size, h + 8, 4);
    EXPECT_EQ(code, rq(r));
    EXPECT_EQ(flags, version_1 | flag_reply) << "QEMU checks these flags exactly";
    std::vector<std::byte> body(size);
    if (size > 0) read_exact(body.data(), size);
    return body;
  }

  std::uint64_t read_u64_reply(request r) {
    auto body = read_reply(r);
    EXPECT_EQ(body.size(), 8u);
    std::uint64_t v = 0;
    if (body.size() == 8) std::memcpy(&v, body.data(), 8);
    return v;
  }

  std::uint64_t get_u64(request r) {
    send(r);
    pump();
    return read_u64_reply(r);
  }

  // QEMU 7.2's vhost_dev_init for vhost-user-vsock: backend init, owner,
  // features, the call fds of its two rings, then the config space.
  void init_like_qemu() {
    const std::uint64_t features = get_u64(request::get_features);
    ASSERT_TRUE(features & bit(feature_protocol_features));
    ASSERT_TRUE(features & bit(feature_version_1));
    const std::uint64_t protocol = get_u64(request::get_protocol_features);
    ASSERT_TRUE(protocol & bit(protocol_feature_config));
    ASSERT_TRUE(protocol & bit(protocol_feature_reply_ack));
    ASSERT_FALSE(protocol & bit(protocol_feature_mq));
    call(request::set_protocol_features, protocol);
    call(request::set_owner);
    EXPECT_EQ(get_u64(request::get_features), features);
    for (std::uint32_t i = 0; i < 2; ++i) {
      calls_[i] = make_eventfd();
      call(request::set_vring_call, std::uint64_t{i}, {calls_[i].get()});
    }
    send(request::get_config, config_space{0, 8, 0, std::vector<std::byte>(8)});
    pump();
    auto body = read_reply(request::get_config);
    ASSERT_EQ(body.size(), config_header_size + 8);
    std::uint64_t cid;
    std::memcpy(&cid, body.data() + config_header_size, 8);
    EXPECT_EQ(cid, 0x1234'5678'9abcu);
  }

  // QEMU 7.2's vhost_dev_start: features, memory table (acked, as REPLY_ACK
  // was negotiated), then each ring, then SET_VRING_ENABLE 1 for each.
  void start_like_qemu(std::uint64_t features, bool enable = true) {
    call(request::set_features, features);
    call(request::set_mem_table, ram_.table(), {ram_.fd.get()}, version_1 | flag_need_reply);
    EXPECT_EQ(read_u64_reply(request::set_mem_table), 0u);
    for (std::uint32_t i = 0; i < 2; ++i) {
      call(request::set_vring_num, vring_state{i, 128});
      call(request::set_vring_base, vring_state{i, 0});
      call(request::set_vring_addr, ram_.addr(i));
      kicks_[i] = make_eventfd();
      call(request::set_vring_kick, std::uint64_t{i}, {kicks_[i].get()});
      if (!calls_[i]) calls_[i] = make_eventfd();
      call(request::set_vring_call, std::uint64_t{i}, {calls_[i].get()});
    }
    if (enable)
      for (std::uint32_t i = 0; i < 2; ++i) call(request::set_vring_enable, vring_state{i, 1});
  }

  static constexpr std::uint64_t qemu_features =
      bit(feature_version_1) | bit(feature_protocol_features);

  recording_device device_;
  guest_ram ram_;
  unique_fd front_;
  unique_fd kicks_[2], calls_[2];
  std::optional<vhost_user_backend> session_;
};

TEST_F(session_test, QemuHandshakeStartsRingsWithTranslatableAddresses) {
  init_like_qemu();
  start_like_qemu(qemu_features, /*enable=*/false);
  EXPECT_TRUE(device_.started.empty()) << "PROTOCOL_FEATURES negotiated: rings wait for enable";
  EXPECT_FALSE(reply_waiting()) << "no acks were asked for";

  for (std::uint32_t i = 0; i < 2; ++i) call(request::set_vring_enable, vring_state{i, 1});
  ASSERT_EQ(device_.started, (std::vector<std::uint32_t>{0, 1}));
  EXPECT_EQ(session_->acked_features(), qemu_features);
  for (std::uint32_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    const ring_info& ring = device_.running.at(i);
    EXPECT_EQ(ring.index, i);
    EXPECT_EQ(ring.num, 128u);
    EXPECT_EQ(ring.base, 0u);
    EXPECT_EQ(ring.desc.size(), 16u * 128);
    EXPECT_EQ(ring.avail.size(), 6u + 2 * 128);
    EXPECT_EQ(ring.used.size(), 6u + 8 * 128);
    EXPECT_EQ(ring.desc_user_addr, ram_.user(ram_.desc_off(i)));
    // Same memory, the session's own mapping: what the front-end writes
    // shows up there.
    std::memset(ram_.base + ram_.desc_off(i), 0x5a + static_cast<int>(i), 16);
    std::memset(ram_.base + ram_.desc_off(i) + 0x20000, 0x77, 4);
    EXPECT_EQ(ring.desc[15], std::byte(0x5a + i));
    EXPECT_EQ(ring.used[3], std::byte(0x77));
    EXPECT_NE(ring.desc.data(), ram_.base + ram_.desc_off(i)) << "a separate mapping";
    ASSERT_NE(ring.memory, nullptr);
    auto gpa = ring.memory->translate(ram_.desc_off(i), 16);
    ASSERT_TRUE(gpa);
    EXPECT_EQ(gpa->data(), ring.desc.data());
    // The kick fd is (a copy of) QEMU's eventfd.
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(kicks_[i].get(), &one, 8), 8);
    std::uint64_t got = 0;
    ASSERT_EQ(::read(ring.kick_fd, &got, 8), 8);
    EXPECT_EQ(got, 1u);
    // And notify_used reaches QEMU's call eventfd.
    ASSERT_TRUE(session_->notify_used(i));
    ASSERT_EQ(::read(calls_[i].get(), &got, 8), 8);
    EXPECT_EQ(got, 1u);
  }

  // vhost_dev_stop: disable, then GET_VRING_BASE for each ring.
  device_.last_avail[0] = 7;
  device_.last_avail[1] = 9;
  call(request::set_vring_enable, vring_state{0, 0});
  EXPECT_EQ(device_.stopped, (std::vector<std::uint32_t>{0}));
  for (std::uint32_t i = 0; i < 2; ++i) {
    send(request::get_vring_base, vring_state{i, 0});
    pump();
    auto body = read_reply(request::get_vring_base);
    ASSERT_EQ(body.size(), 8u);
    std::uint32_t index, num;
    std::memcpy(&index, body.data(), 4);
    std::memcpy(&num, body.data() + 4, 4);
    EXPECT_EQ(index, i);
    EXPECT_EQ(num, i == 0 ? 7u : 9u);
  }
  EXPECT_TRUE(device_.running.empty());
  // Re-enabling does not restart a ring that GET_VRING_BASE stopped: it
  // needs a new kick.
  call(request::set_vring_enable, vring_state{1, 1});
  EXPECT_TRUE(device_.running.empty());
  // QEMU restarts the device: it resumes from the base it saved.
  call(request::set_vring_base, vring_state{1, 9});
  call(request::set_vring_kick, std::uint64_t{1}, {kicks_[1].get()});
  ASSERT_EQ(device_.running.count(1), 1u);
  EXPECT_EQ(device_.running.at(1).base, 9u);

  session_->disconnect();
  EXPECT_TRUE(device_.running.empty());
  EXPECT_EQ(device_.resets, 1);
}

TEST_F(session_test, WithoutProtocolFeaturesRingsStartEnabled) {
  call(request::set_owner);
  start_like_qemu(bit(feature_version_1), /*enable=*/false);
  EXPECT_EQ(device_.started, (std::vector<std::uint32_t>{0, 1}));
}

TEST_F(session_test, PollingKickGivesNoFd) {
  call(request::set_owner);
  call(request::set_features, bit(feature_version_1));
  call(request::set_mem_table, ram_.table(), {ram_.fd.get()});
  call(request::set_vring_num, vring_state{0, 256});
  call(request::set_vring_addr, ram_.addr(0));
  call(request::set_vring_kick, std::uint64_t{vring_invalid_fd_flag | 0});
  ASSERT_EQ(device_.running.count(0), 1u);
  EXPECT_EQ(device_.running.at(0).kick_fd, -1);
  EXPECT_TRUE(session_->notify_used(0)) << "no call fd: nothing to signal";
}

TEST_F(session_test, NewMemoryTableRestartsRunningRings) {
  init_like_qemu();
  start_like_qemu(qemu_features);
  ASSERT_EQ(device_.running.size(), 2u);
  const std::byte* old_desc = device_.running.at(0).desc.data();
  device_.last_avail[0] = 3;
  call(request::set_mem_table, ram_.table(), {ram_.fd.get()});
  ASSERT_EQ(device_.running.size(), 2u);
  EXPECT_EQ(device_.stopped.size(), 2u);
  EXPECT_EQ(device_.running.at(0).base, 3u) << "resumes where the device stopped";
  std::memset(ram_.base + ram_.desc_off(0), 0x42, 1);
  EXPECT_EQ(device_.running.at(0).desc[0], std::byte{0x42});
  (void)old_desc;  // unmapped now; only the new pointer may be used
}

TEST_F(session_test, SmallQueriesAndConfigBounds) {
  call(request::set_owner);
  EXPECT_EQ(get_u64(request::get_queue_num), vsock_queue_count);
  EXPECT_EQ(get_u64(request::get_max_mem_slots), max_regions);
  // Part of the config space.
  send(request::get_config, config_space{4, 4, 0, std::vector<std::byte>(4)});
  pump();
  auto part = read_reply(request::get_config);
  ASSERT_EQ(part.size(), config_header_size + 4);
  std::uint32_t high;
  std::memcpy(&high, part.data() + config_header_size, 4);
  EXPECT_EQ(high, 0x1234u);
  // Outside it: the spec's error reply, an empty payload; the session lives on.
  send(request::get_config, config_space{4, 8, 0, std::vector<std::byte>(8)});
  pump();
  EXPECT_TRUE(read_reply(request::get_config).empty());
  // SET_CONFIG of the read-only CID is refused (ack 1), not fatal.
  call(request::set_config, config_space{0, 8, 0, std::vector<std::byte>(8)}, {},
       version_1 | flag_need_reply);
  EXPECT_EQ(read_u64_reply(request::set_config), 1u);
  // Any request can ask for an ack.
  call(request::set_vring_num, vring_state{2, 64}, {}, version_1 | flag_need_reply);
  EXPECT_EQ(read_u64_reply(request::set_vring_num), 0u);
  // RESET_OWNER: stops rings, resets the device, keeps the session.
  call(request::reset_owner);
  EXPECT_EQ(device_.resets, 1);
  EXPECT_EQ(get_u64(request::get_queue_num), vsock_queue_count);
}

TEST_F(session_test, AFailedRequestThatWantedAnAckGetsOneBeforeTheError) {
  call(request::set_owner);
  send(request::set_vring_num, vring_state{0, 3}, {}, version_1 | flag_need_reply);
  auto st = session_->on_readable();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("SET_VRING_NUM"), std::string::npos) << st.error().message();
  EXPECT_EQ(read_u64_reply(request::set_vring_num), 1u);
}

TEST_F(session_test, DeviceRefusingToStartEndsTheSession) {
  call(request::set_owner);
  call(request::set_features, bit(feature_version_1));
  call(request::set_mem_table, ram_.table(), {ram_.fd.get()});
  call(request::set_vring_num, vring_state{0, 8});
  call(request::set_vring_addr, ram_.addr(0));
  device_.fail_start = true;
  send(request::set_vring_kick, std::uint64_t{vring_invalid_fd_flag});
  EXPECT_FALSE(session_->on_readable());
}

TEST_F(session_test, ReadsMessagesByteByByteAndManyAtOnce) {
  call(request::set_owner);
  // One message dribbled in a byte at a time (the fd with the first byte).
  auto bytes = encode(rq(request::set_vring_call), version_1, std::uint64_t{1});
  auto efd = make_eventfd();
  send_bytes(std::span(bytes).first(1), {efd.get()});
  pump();
  for (std::size_t i = 1; i < bytes.size(); ++i) {
    send_bytes(std::span(bytes).subspan(i, 1));
    pump();
    EXPECT_EQ(session_->call_fd(1) >= 0, i + 1 == bytes.size()) << i;
  }
  // Several messages in one write: all handled in one call.
  std::vector<std::byte> batch;
  for (auto r : {request::get_features, request::get_protocol_features, request::get_queue_num}) {
    auto m = encode(rq(r), version_1, std::monostate{});
    batch.insert(batch.end(), m.begin(), m.end());
  }
  send_bytes(batch);
  pump();
  read_u64_reply(request::get_features);
  read_u64_reply(request::get_protocol_features);
  EXPECT_EQ(read_u64_reply(request::get_queue_num), 3u);
}

TEST_F(session_test, PeerCloseBetweenMessagesIsNotAnError) {
  init_like_qemu();
  start_like_qemu(qemu_features);
  front_.reset();
  auto st = session_->on_readable();
  ASSERT_TRUE(st);
  EXPECT_EQ(*st, vhost_user_backend::status::peer_closed);
  session_->disconnect();
  EXPECT_TRUE(device_.running.empty());
  EXPECT_EQ(device_.resets, 1);
  session_->disconnect();  // idempotent
  EXPECT_EQ(device_.resets, 1);
  EXPECT_FALSE(session_->on_readable());
}

TEST_F(session_test, ReconnectionStartsFromScratch) {
  init_like_qemu();
  start_like_qemu(qemu_features);
  ASSERT_EQ(device_.running.size(), 2u);
  // QEMU dies: the owner drops the session.
  front_.reset();
  ASSERT_TRUE(session_->on_readable());
  session_->disconnect();
  session_.reset();
  device_ = recording_device{};
  // QEMU comes back on a new connection.
  connect_session();
  EXPECT_FALSE(session_->owned());
  EXPECT_EQ(session_->memory().region_count(), 0u);
  init_like_qemu();
  start_like_qemu(qemu_features);
  EXPECT_EQ(device_.started, (std::vector<std::uint32_t>{0, 1}));
}

// --- malformed input ----------------------------------------------------------

// One malformed case: whatever good messages it needs first, then the bad
// bytes. The session must then fail on_readable() without crashing, and once
// dropped, leave no fd behind.
struct bad_case {
  std::string name;
  std::function<void(session_test&)> run;
};

std::vector<std::byte> raw(std::uint32_t code, std::uint32_t flags, std::uint32_t size,
                           std::size_t payload_bytes) {
  std::vector<std::byte> out(header_size + payload_bytes);
  std::memcpy(out.data(), &code, 4);
  std::memcpy(out.data() + 4, &flags, 4);
  std::memcpy(out.data() + 8, &size, 4);
  return out;
}

// A message whose size is wrong for its request.
std::vector<std::byte> wrong_size(request r) {
  switch (r) {
    case request::get_features:
    case request::set_owner:
    case request::reset_owner:
    case request::get_protocol_features:
    case request::get_queue_num:
    case request::get_max_mem_slots: return raw(rq(r), version_1, 8, 8);
    case request::set_features:
    case request::set_protocol_features:
    case request::set_vring_kick:
    case request::set_vring_call:
    case request::set_vring_err: return raw(rq(r), version_1, 4, 4);
    case request::set_vring_num:
    case request::set_vring_base:
    case request::get_vring_base:
    case request::set_vring_enable: return raw(rq(r), version_1, 12, 12);
    case request::set_vring_addr: return raw(rq(r), version_1, 32, 32);
    case request::set_mem_table: {
      auto m = raw(rq(r), version_1, 8 + 16, 8 + 16);  // one region announced, half sent
      const std::uint32_t one = 1;
      std::memcpy(m.data() + header_size, &one, 4);
      return m;
    }
    case request::get_config:
    case request::set_config: {
      auto m = raw(rq(r), version_1, 12 + 4, 12 + 4);  // claims 8 config bytes, carries 4
      const std::uint32_t eight = 8;
      std::memcpy(m.data() + header_size + 4, &eight, 4);
      return m;
    }
  }
  return {};
}

void owned(session_test& t) { t.call(request::set_owner); }

// Owner, features, guest memory and ring 0's size: ready for addresses.
void ready(session_test& t) {
  owned(t);
  t.call(request::set_features, bit(feature_version_1));
  t.call(request::set_mem_table, t.ram_.table(), {t.ram_.fd.get()});
  t.call(request::set_vring_num, vring_state{0, 128});
}

std::vector<bad_case> bad_cases() {
  std::vector<bad_case> cases;
  const request all[] = {request::get_features,
                         request::set_features,
                         request::set_owner,
                         request::reset_owner,
                         request::set_mem_table,
                         request::set_vring_num,
                         request::set_vring_addr,
                         request::set_vring_base,
                         request::get_vring_base,
                         request::set_vring_kick,
                         request::set_vring_call,
                         request::set_vring_err,
                         request::get_protocol_features,
                         request::set_protocol_features,
                         request::get_queue_num,
                         request::set_vring_enable,
                         request::get_config,
                         request::set_config,
                         request::get_max_mem_slots};
  for (request r : all) {
    cases.push_back({"WrongSize_" + request_name(r), [r](session_test& t) {
                       owned(t);
                       // Fd-carrying requests get the fds they would be allowed.
                       auto efd = make_eventfd();
                       std::vector<int> fds;
                       if (r == request::set_vring_kick || r == request::set_vring_call ||
                           r == request::set_vring_err)
                         fds = {efd.get()};
                       if (r == request::set_mem_table) fds = {t.ram_.fd.get()};
                       t.send_bytes(wrong_size(r), fds);
                     }});
  }
  auto add = [&](std::string name, std::function<void(session_test&)> run) {
    cases.push_back({std::move(name), std::move(run)});
  };
  // Header.
  add("TruncatedHeader", [](session_test& t) {
    auto m = encode(rq(request::get_features), version_1, std::monostate{});
    t.send_bytes(std::span(m).first(6));
    t.pump();                             // half a header is not an error yet...
    ::shutdown(t.front_.get(), SHUT_WR);  // ...but the front-end ending there is
  });
  add("TruncatedPayload", [](session_test& t) {
    auto m = encode(rq(request::set_features), version_1, std::uint64_t{0});
    t.send_bytes(std::span(m).first(header_size + 4));
    ::shutdown(t.front_.get(), SHUT_WR);
  });
  add("TruncatedPayloadWithFds", [](session_test& t) {
    auto m = encode(rq(request::set_mem_table), version_1, t.ram_.table());
    t.send_bytes(std::span(m).first(header_size + 10), {t.ram_.fd.get()});
    ::shutdown(t.front_.get(), SHUT_WR);
  });
  add("Version0", [](session_test& t) { t.send_bytes(raw(rq(request::get_features), 0, 0, 0)); });
  add("Version2", [](session_test& t) { t.send_bytes(raw(rq(request::get_features), 2, 0, 0)); });
  add("Version3", [](session_test& t) { t.send_bytes(raw(rq(request::get_features), 3, 0, 0)); });
  add("ReplyFlagOnRequest", [](session_test& t) {
    t.send_bytes(raw(rq(request::get_features), version_1 | flag_reply, 0, 0));
  });
  add("ReservedFlag", [](session_test& t) {
    t.send_bytes(raw(rq(request::get_features), version_1 | 0x100, 0, 0));
  });
  add("HugeSize", [](session_test& t) {
    t.send_bytes(raw(rq(request::set_features), version_1, 0xffffffff, 64));
  });
  add("UnknownRequest", [](session_test& t) { t.send_bytes(raw(99, version_1, 0, 0)); });
  add("RequestZero", [](session_test& t) { t.send_bytes(raw(0, version_1, 0, 0)); });
  add("UnsupportedSetLogBase", [](session_test& t) { t.send_bytes(raw(6, version_1, 8, 8)); });
  // Memory table.
  add("TooManyRegions", [](session_test& t) {
    owned(t);
    memory_table table;
    for (std::uint64_t i = 0; i < 9; ++i)
      table.regions.push_back({i << 20, 4096, t.ram_.user(0), 0});
    t.send(request::set_mem_table, table, {t.ram_.fd.get()});
  });
  add("NineRegionsInAFittingSize", [](session_test& t) {
    owned(t);
    auto m = raw(rq(request::set_mem_table), version_1, 8, 8);
    const std::uint32_t nine = 9;
    std::memcpy(m.data() + header_size, &nine, 4);
    t.send_bytes(m);
  });
  add("MoreThanEightFds", [](session_test& t) {
    owned(t);
    std::vector<int> fds(9, t.ram_.fd.get());
    t.send(request::set_mem_table, t.ram_.table(), fds);
  });
  add("OverlappingRegions", [](session_test& t) {
    owned(t);
    memory_table table{{{0, 0x80000, t.ram_.user(0), 0}, {0x40000, 0x80000, t.ram_.user(0), 0}}};
    t.send(request::set_mem_table, table, {t.ram_.fd.get(), t.ram_.fd.get()});
  });
  add("RegionPastEndOfFile", [](session_test& t) {
    owned(t);
    memory_table table{{{0, 2 * guest_ram::size, t.ram_.user(0), 0}}};
    t.send(request::set_mem_table, table, {t.ram_.fd.get()});
  });
  add("EmptyRegion", [](session_test& t) {
    owned(t);
    t.send(request::set_mem_table, memory_table{{{0, 0, t.ram_.user(0), 0}}}, {t.ram_.fd.get()});
  });
  add("MemTableMissingFd", [](session_test& t) {
    owned(t);
    t.send(request::set_mem_table, t.ram_.table());
  });
  add("MemTableExtraFd", [](session_test& t) {
    owned(t);
    t.send(request::set_mem_table, t.ram_.table(), {t.ram_.fd.get(), t.ram_.fd.get()});
  });
  add("MemTableBeforeOwner",
      [](session_test& t) { t.send(request::set_mem_table, t.ram_.table(), {t.ram_.fd.get()}); });
  add("MemTableNotCoveringARunningRing", [](session_test& t) {
    ready(t);
    t.call(request::set_vring_addr, t.ram_.addr(0));
    t.call(request::set_vring_kick, std::uint64_t{vring_invalid_fd_flag});
    memory_table small{{{0, 0x10000, t.ram_.user(0), 0}}};
    t.send(request::set_mem_table, small, {t.ram_.fd.get()});
  });
  // Fds on other requests.
  add("KickWithoutFdOrFlag", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_kick, std::uint64_t{0});
  });
  add("KickWithFlagAndFd", [](session_test& t) {
    owned(t);
    auto efd = make_eventfd();
    t.send(request::set_vring_kick, std::uint64_t{vring_invalid_fd_flag}, {efd.get()});
  });
  add("CallWithTwoFds", [](session_test& t) {
    owned(t);
    auto a = make_eventfd(), b = make_eventfd();
    t.send(request::set_vring_call, std::uint64_t{0}, {a.get(), b.get()});
  });
  add("OwnerWithFd", [](session_test& t) {
    auto efd = make_eventfd();
    t.send(request::set_owner, std::monostate{}, {efd.get()});
  });
  add("KickReservedBits", [](session_test& t) {
    owned(t);
    auto efd = make_eventfd();
    t.send(request::set_vring_kick, std::uint64_t{0x200}, {efd.get()});
  });
  // Rings.
  add("NumNotPowerOfTwo", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_num, vring_state{0, 3});
  });
  add("NumZero", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_num, vring_state{0, 0});
  });
  add("NumTooLarge", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_num, vring_state{0, 65536});
  });
  add("NumBeforeOwner", [](session_test& t) { t.send(request::set_vring_num, vring_state{0, 8}); });
  add("BaseTooLarge", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_base, vring_state{0, 0x10000});
  });
  add("NumIndexOutOfRange", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_num, vring_state{3, 8});
  });
  add("KickIndexOutOfRange", [](session_test& t) {
    owned(t);
    auto efd = make_eventfd();
    t.send(request::set_vring_kick, std::uint64_t{3}, {efd.get()});
  });
  add("GetBaseIndexOutOfRange", [](session_test& t) {
    owned(t);
    t.send(request::get_vring_base, vring_state{200, 0});
  });
  add("EnableIndexOutOfRange", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_enable, vring_state{3, 1});
  });
  add("EnableWordTwo", [](session_test& t) {
    owned(t);
    t.send(request::set_vring_enable, vring_state{0, 2});
  });
  add("AddrIndexOutOfRange", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.index = 7;
    t.send(request::set_vring_addr, a);
  });
  add("RingOutsideMemory", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.descriptor = t.ram_.user(guest_ram::size) + 0x1000;
    t.send(request::set_vring_addr, a);
  });
  add("RingBelowMemory", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.used = t.ram_.user(0) - 0x1000;
    t.send(request::set_vring_addr, a);
  });
  add("RingStraddlesTheEnd", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.available = t.ram_.user(guest_ram::size - 64);
    t.send(request::set_vring_addr, a);
  });
  add("RingMisaligned", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.descriptor += 8;
    t.send(request::set_vring_addr, a);
  });
  add("RingGrowsOutOfMemory", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.descriptor = t.ram_.user(guest_ram::size - 16 * 128);  // fits 128 entries exactly
    t.call(request::set_vring_addr, a);
    t.call(request::set_vring_kick, std::uint64_t{vring_invalid_fd_flag});
    ASSERT_TRUE(t.session_->ring_running(0));
    t.send(request::set_vring_num, vring_state{0, 256});  // restarting it cannot work
  });
  add("RingLogFlag", [](session_test& t) {
    ready(t);
    auto a = t.ram_.addr(0);
    a.flags = 1;
    t.send(request::set_vring_addr, a);
  });
  // Features and config.
  add("FeaturesNotOffered", [](session_test& t) {
    owned(t);
    t.send(request::set_features, bit(feature_version_1) | bit(33));
  });
  add("ProtocolFeaturesNotOffered",
      [](session_test& t) { t.send(request::set_protocol_features, bit(protocol_feature_mq)); });
  add("ConfigLargerThanMax", [](session_test& t) {
    t.send_bytes(raw(rq(request::get_config), version_1, 12 + 257, 12 + 257));
  });
  add("SetConfigOutOfBounds", [](session_test& t) {
    t.send(request::set_config, config_space{4, 8, 0, std::vector<std::byte>(8)});
  });
  return cases;
}

class malformed_test : public session_test, public ::testing::WithParamInterface<bad_case> {};

TEST_P(malformed_test, EndsTheSessionWithoutLeaks) {
  // The fixture holds: the front-end's socket, the session's socket and the
  // memfd; everything else the case opens must be gone when the session is.
  const std::size_t baseline = open_fd_count();
  GetParam().run(*this);
  auto st = session_->on_readable();
  ASSERT_FALSE(st) << "accepted: " << GetParam().name;
  RecordProperty("error", st.error().message());
  EXPECT_EQ(st.error().code(), make_error_code(errc::protocol_error)) << st.error().message();
  EXPECT_NE(st.error().message().find("vhost-user"), std::string::npos);
  session_->disconnect();
  session_.reset();
  front_.reset();
  EXPECT_EQ(open_fd_count(), baseline - 2) << st.error().message();
  EXPECT_TRUE(device_.running.empty());
}

INSTANTIATE_TEST_SUITE_P(VhostUser, malformed_test, ::testing::ValuesIn(bad_cases()),
                         [](const auto& test_param) { return test_param.param.name; });

// --- message codec ------------------------------------------------------------

TEST(VhostUserMessage, RoundTripsEveryPayloadShape) {
  const payload bodies[] = {
      std::uint64_t{0x0102030405060708},
      vring_state{2, 256},
      vring_addr{1, 0, 0x1000, 0x2000, 0x3000, 0x4000},
      memory_table{{{0, 4096, 0x7f00, 0}, {0x100000, 8192, 0x9f00, 4096}}},
      config_space{0, 8, 0, vsock_config(42)},
  };
  const request codes[] = {request::set_features, request::set_vring_num, request::set_vring_addr,
                           request::set_mem_table, request::get_config};
  for (std::size_t i = 0; i < std::size(codes); ++i) {
    SCOPED_TRACE(request_name(codes[i]));
    auto bytes = encode(rq(codes[i]), version_1, bodies[i]);
    auto h = decode_header(std::span(bytes).first(header_size));
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ(h->size, bytes.size() - header_size);
    std::vector<unique_fd> fds;
    if (codes[i] == request::set_mem_table) {
      fds.push_back(make_eventfd());
      fds.push_back(make_eventfd());
    }
    auto m = decode_message(*h, std::span(bytes).subspan(header_size), std::move(fds));
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->code, codes[i]);
    EXPECT_EQ(encode(rq(m->code), m->flags, m->body), bytes);
  }
}

TEST(VhostUserMessage, VsockConfigIsLittleEndian) {
  auto c = vsock_config(0x0102);
  ASSERT_EQ(c.size(), 8u);
  EXPECT_EQ(c[0], std::byte{0x02});
  EXPECT_EQ(c[1], std::byte{0x01});
  EXPECT_EQ(c[7], std::byte{0});
}

TEST(VhostUserMessage, NamesRequests) {
  EXPECT_EQ(request_name(request::set_mem_table), "SET_MEM_TABLE");
  EXPECT_EQ(request_name(request::get_max_mem_slots), "GET_MAX_MEM_SLOTS");
  EXPECT_EQ(request_name(99), "request 99");
}

}  // namespace
}  // namespace hvsock::vhost_user
