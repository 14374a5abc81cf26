#include "vhost_user/backend.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace hvsock::vhost_user {
namespace {

// Messages handled per on_readable() call before yielding to the loop.
constexpr int batch_limit = 64;

// Features this back-end cannot honour whatever the device says: dirty
// logging (VHOST_F_LOG_ALL, needs LOG_SHMFD), IOVAs (VIRTIO_F_ACCESS_PLATFORM,
// needs an IOTLB) and packed rings (VIRTIO_F_RING_PACKED).
constexpr std::uint64_t unsupported_features =
    (std::uint64_t{1} << 26) | (std::uint64_t{1} << 33) | (std::uint64_t{1} << 34);

constexpr std::uint32_t vring_flag_log = 0x1;

std::string hex(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

failure request_error(request code, const std::string& what) {
  return failure(errc::protocol_error, "vhost-user " + request_name(code) + ": " + what);
}

bool is_power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

bool has_explicit_reply(request code) {
  switch (code) {
    case request::get_features:
    case request::get_protocol_features:
    case request::get_vring_base:
    case request::get_queue_num:
    case request::get_config:
    case request::get_max_mem_slots: return true;
    default: return false;
  }
}

}  // namespace

std::vector<std::byte> vsock_config(std::uint64_t guest_cid) {
  std::vector<std::byte> out(8);
  for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(guest_cid >> (8 * i));
  return out;
}

vhost_user_backend::vhost_user_backend(unique_fd connection, device_hooks& hooks,
                                       backend_options options)
    : connection_(std::move(connection)), hooks_(hooks), options_(std::move(options)) {
  // The ring index travels in 8 bits (SET_VRING_KICK/CALL/ERR).
  if (options_.queue_count == 0 || options_.queue_count > 256)
    throw std::invalid_argument("vhost-user back-end: queue count must be 1..256");
  offered_features_ = ((std::uint64_t{1} << feature_version_1) |
                       (std::uint64_t{1} << feature_protocol_features) | options_.device_features) &
                      ~unsupported_features;
  rings_.resize(options_.queue_count);
}

vhost_user_backend::~vhost_user_backend() = default;

bool vhost_user_backend::protocol_features_negotiated() const {
  return (acked_features_ >> feature_protocol_features) & 1;
}

bool vhost_user_backend::ring_running(std::uint32_t index) const {
  return index < rings_.size() && rings_[index].running;
}

int vhost_user_backend::call_fd(std::uint32_t index) const {
  return index < rings_.size() ? rings_[index].call.get() : -1;
}

result<void> vhost_user_backend::notify_used(std::uint32_t index) const {
  const int fd = call_fd(index);
  if (fd < 0) return {};
  const std::uint64_t one = 1;
  for (;;) {
    if (::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one)) return {};
    if (errno == EINTR) continue;
    // EAGAIN: the counter is saturated, so the front-end has a wake-up pending.
    if (errno == EAGAIN) return {};
    return make_system_error(errno, "vhost-user: signal ring " + std::to_string(index));
  }
}

result<vhost_user_backend::status> vhost_user_backend::on_readable() {
  if (!connection_) return failure(errc::not_connected, "vhost-user: session disconnected");
  for (int handled = 0; handled < batch_limit; ++handled) {
    auto r = reader_.read(connection_.get());
    if (!r) return r.error();
    switch (r->what) {
      case message_reader::outcome::kind::would_block: return status::open;
      case message_reader::outcome::kind::closed: return status::peer_closed;
      case message_reader::outcome::kind::message: break;
    }
    message& m = r->msg;
    auto ok = handle(m);
    if (!ok) {
      // Tell a front-end that asked for an ack why it is being dropped; best
      // effort, the connection is going away anyway.
      if (m.need_reply() && !has_explicit_reply(m.code)) (void)reply_ack(m.code, false);
      return ok.error();
    }
  }
  return status::open;
}

void vhost_user_backend::disconnect() {
  if (!connection_) return;
  stop_all();
  hooks_.on_reset();
  memory_.clear();
  rings_.clear();
  rings_.resize(options_.queue_count);
  connection_.reset();
}

result<void> vhost_user_backend::reply(request code, const payload& body) {
  const auto bytes = encode(static_cast<std::uint32_t>(code), version_1 | flag_reply, body);
  return write_message(connection_.get(), bytes);
}

result<void> vhost_user_backend::reply_ack(request code, bool ok) {
  return reply(code, std::uint64_t{ok ? 0u : 1u});
}

result<void> vhost_user_backend::require_owner(request code) const {
  if (!owned_) return request_error(code, "sent before SET_OWNER");
  return {};
}

result<vhost_user_backend::vring*> vhost_user_backend::ring_at(request code, std::uint32_t index) {
  if (auto ok = require_owner(code); !ok) return ok.error();
  if (index >= rings_.size())
    return request_error(code, "ring index " + std::to_string(index) + " out of range (" +
                                   std::to_string(rings_.size()) + " queues)");
  return &rings_[index];
}

void vhost_user_backend::stop_ring(std::uint32_t index) {
  vring& r = rings_[index];
  if (!r.running) return;
  r.base = hooks_.on_ring_stopped(index);
  r.running = false;
}

void vhost_user_backend::stop_all() {
  for (std::uint32_t i = 0; i < rings_.size(); ++i) stop_ring(i);
}

result<ring_info> vhost_user_backend::describe(std::uint32_t index) const {
  const vring& r = rings_[index];
  ring_info info;
  info.index = index;
  info.num = r.num;
  info.base = r.base;
  info.addr_flags = r.addr.flags;
  info.desc_user_addr = r.addr.descriptor;
  info.avail_user_addr = r.addr.available;
  info.used_user_addr = r.addr.used;
  info.log_guest_addr = r.addr.log;
  info.kick_fd = r.kick.get();
  info.memory = &memory_;
  const std::uint64_t num = r.num;
  struct part {
    const char* name;
    std::uint64_t addr;
    std::uint64_t length;
    std::size_t align;  // the split ring's alignment rules (virtio 1.x, 2.7)
    std::span<std::byte>* out;
  } parts[] = {
      {"descriptor table", r.addr.descriptor, 16 * num, 16, &info.desc},
      {"available ring", r.addr.available, 6 + 2 * num, 2, &info.avail},
      {"used ring", r.addr.used, 6 + 8 * num, 4, &info.used},
  };
  for (auto& p : parts) {
    auto span = memory_.translate_user(p.addr, p.length);
    if (!span)
      return failure(errc::invalid_argument, "ring " + std::to_string(index) + " " + p.name +
                                                 " at " + hex(p.addr) + ": " +
                                                 span.error().message());
    if (reinterpret_cast<std::uintptr_t>(span->data()) % p.align != 0)
      return failure(errc::invalid_argument, "ring " + std::to_string(index) + " " + p.name +
                                                 " at " + hex(p.addr) + " is not " +
                                                 std::to_string(p.align) + "-byte aligned");
    *p.out = *span;
  }
  return info;
}

result<void> vhost_user_backend::reconcile() {
  const bool enable_by_message = protocol_features_negotiated();
  for (std::uint32_t i = 0; i < rings_.size(); ++i) {
    vring& r = rings_[i];
    const bool ready = r.kick_set && r.num != 0 && r.has_addr && memory_.region_count() != 0;
    const bool should_run = ready && (enable_by_message ? r.enabled : true);
    if (should_run && !r.running) {
      auto info = describe(i);
      if (!info) return info.error();
      if (auto ok = hooks_.on_ring_started(i, *info); !ok) return ok.error();
      r.running = true;
    } else if (!should_run && r.running) {
      stop_ring(i);
    }
  }
  return {};
}

result<void> vhost_user_backend::handle(message& m) {
  const request code = m.code;
  bool ack = true;  // what a NEED_REPLY ack reports
  switch (code) {
    case request::get_features:
      if (auto ok = reply(code, offered_features_); !ok) return ok;
      break;
    case request::set_features: {
      if (auto ok = require_owner(code); !ok) return ok;
      const auto v = std::get<std::uint64_t>(m.body);
      if ((v & ~offered_features_) != 0)
        return request_error(code, "features " + hex(v & ~offered_features_) + " were not offered");
      acked_features_ = v;
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    }
    case request::set_owner: owned_ = true; break;
    case request::reset_owner:
      // Deprecated; the spec recommends treating it as "disable all rings".
      // Features and memory stay, as later messages may rely on them.
      stop_all();
      for (auto& r : rings_) {
        r.kick_set = false;
        r.kick.reset();
        r.enabled = false;
      }
      hooks_.on_reset();
      break;
    case request::set_mem_table:
      if (auto ok = handle_mem_table(m); !ok) return ok;
      break;
    case request::set_vring_num: {
      const auto s = std::get<vring_state>(m.body);
      auto r = ring_at(code, s.index);
      if (!r) return r.error();
      if (!is_power_of_two(s.num) || s.num > max_ring_size)
        return request_error(code, "ring size " + std::to_string(s.num) +
                                       " is not a power of two in 1.." +
                                       std::to_string(max_ring_size));
      stop_ring(s.index);
      (*r)->num = s.num;
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    }
    case request::set_vring_addr: {
      const auto a = std::get<vring_addr>(m.body);
      auto r = ring_at(code, a.index);
      if (!r) return r.error();
      if ((a.flags & ~vring_flag_log) != 0)
        return request_error(code, "unknown ring flags " + hex(a.flags));
      if ((a.flags & vring_flag_log) != 0)
        return request_error(code, "dirty logging was requested but not negotiated");
      stop_ring(a.index);
      const vring_addr previous = (*r)->addr;
      const bool had_addr = (*r)->has_addr;
      (*r)->addr = a;
      (*r)->has_addr = true;
      // Check now, so that the error names the message that caused it, when
      // the size and memory it depends on are already known.
      if ((*r)->num != 0 && memory_.region_count() != 0) {
        if (auto info = describe(a.index); !info) {
          (*r)->addr = previous;
          (*r)->has_addr = had_addr;
          return request_error(code, info.error().message());
        }
      }
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    }
    case request::set_vring_base: {
      const auto s = std::get<vring_state>(m.body);
      auto r = ring_at(code, s.index);
      if (!r) return r.error();
      // Split rings: the base is a 16-bit free-running index.
      if (s.num > 0xffff)
        return request_error(code, "base " + std::to_string(s.num) + " does not fit 16 bits");
      stop_ring(s.index);
      (*r)->base = static_cast<std::uint16_t>(s.num);
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    }
    case request::get_vring_base: {
      const auto s = std::get<vring_state>(m.body);
      auto r = ring_at(code, s.index);
      if (!r) return r.error();
      stop_ring(s.index);
      // Stopped until the front-end sets the ring up and kicks it again.
      (*r)->kick_set = false;
      (*r)->kick.reset();
      if (auto ok = reply(code, vring_state{s.index, (*r)->base}); !ok) return ok;
      break;
    }
    case request::set_vring_kick:
    case request::set_vring_call:
    case request::set_vring_err:
      if (auto ok = handle_vring_fd(m); !ok) return ok;
      break;
    case request::get_protocol_features:
      if (auto ok = reply(code, offered_protocol_features); !ok) return ok;
      break;
    case request::set_protocol_features: {
      const auto v = std::get<std::uint64_t>(m.body);
      if ((v & ~offered_protocol_features) != 0)
        return request_error(
            code, "protocol features " + hex(v & ~offered_protocol_features) + " were not offered");
      acked_protocol_features_ = v;
      break;
    }
    case request::get_queue_num:
      if (auto ok = reply(code, std::uint64_t{rings_.size()}); !ok) return ok;
      break;
    case request::set_vring_enable: {
      const auto s = std::get<vring_state>(m.body);
      auto r = ring_at(code, s.index);
      if (!r) return r.error();
      if (s.num > 1) return request_error(code, "enable word " + std::to_string(s.num));
      (*r)->enabled = s.num == 1;
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    }
    case request::get_config:
      if (auto ok = handle_get_config(m); !ok) return ok;
      break;
    case request::set_config: {
      // vsock's config space (guest_cid) is read-only, and the spec forbids
      // accepting writes to read-only fields: refuse, but keep the session.
      const auto& c = std::get<config_space>(m.body);
      if (std::uint64_t{c.offset} + c.size > options_.config.size())
        return request_error(code, "config access [" + std::to_string(c.offset) + ", +" +
                                       std::to_string(c.size) + ") outside the " +
                                       std::to_string(options_.config.size()) + "-byte space");
      ack = false;
      break;
    }
    case request::get_max_mem_slots:
      if (auto ok = reply(code, std::uint64_t{max_regions}); !ok) return ok;
      break;
  }
  if (m.need_reply() && !has_explicit_reply(code)) return reply_ack(code, ack);
  return {};
}

result<void> vhost_user_backend::handle_mem_table(message& m) {
  const request code = m.code;
  if (auto ok = require_owner(code); !ok) return ok;
  const auto& table = std::get<memory_table>(m.body);
  // Build the new table completely before touching the old one, so a bad
  // region leaves nothing half-mapped.
  virtio::guest_memory fresh;
  for (std::size_t i = 0; i < table.regions.size(); ++i) {
    const auto& region = table.regions[i];
    const int fd = m.fds[i].get();
    // A mapping past the end of its file would SIGBUS the daemon on first
    // touch; refuse it while the size can still be checked.
    struct stat st {};
    if (::fstat(fd, &st) != 0)
      return request_error(code, "fstat region " + std::to_string(i) + ": " +
                                     make_system_error(errno, "fstat").message());
    if (S_ISREG(st.st_mode)) {
      const std::uint64_t end = region.mmap_offset + region.memory_size;
      if (end < region.mmap_offset || end > static_cast<std::uint64_t>(st.st_size))
        return request_error(code, "region " + std::to_string(i) + " (" + hex(region.memory_size) +
                                       " bytes at offset " + hex(region.mmap_offset) +
                                       ") extends past the end of its " +
                                       std::to_string(st.st_size) + "-byte file");
    }
    const virtio::memory_region_spec spec{.guest_phys_addr = region.guest_phys_addr,
                                          .size = region.memory_size,
                                          .user_addr = region.userspace_addr,
                                          .mmap_offset = region.mmap_offset};
    if (auto ok = fresh.add_region(spec, fd); !ok)
      return request_error(code, "region " + std::to_string(i) + ": " + ok.error().message());
  }
  // Running rings hold pointers into the old mappings: stop them first; the
  // reconcile below restarts them with pointers into the new table.
  stop_all();
  memory_ = std::move(fresh);
  if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
  return {};
}

result<void> vhost_user_backend::handle_vring_fd(message& m) {
  const request code = m.code;
  const auto word = std::get<std::uint64_t>(m.body);
  const auto index = static_cast<std::uint32_t>(word & vring_index_mask);
  auto r = ring_at(code, index);
  if (!r) return r.error();
  // decode_message guarantees one fd without the invalid-fd flag, none with it.
  unique_fd fd = m.fds.empty() ? unique_fd() : std::move(m.fds.front());
  switch (code) {
    case request::set_vring_kick:
      // The owner watches the kick fd it was given at start: restart the
      // ring so it learns the new one.
      stop_ring(index);
      (*r)->kick = std::move(fd);
      (*r)->kick_set = true;
      if (auto ok = reconcile(); !ok) return request_error(code, ok.error().message());
      break;
    case request::set_vring_call: (*r)->call = std::move(fd); break;
    default: (*r)->err = std::move(fd); break;
  }
  return {};
}

result<void> vhost_user_backend::handle_get_config(const message& m) {
  const auto& c = std::get<config_space>(m.body);
  const auto& space = options_.config;
  if (std::uint64_t{c.offset} + c.size > space.size()) {
    // The spec's error answer: a reply with an empty payload.
    return reply(m.code, std::monostate{});
  }
  config_space out;
  out.offset = c.offset;
  out.size = c.size;
  out.flags = c.flags;
  out.payload.assign(space.begin() + c.offset, space.begin() + c.offset + c.size);
  return reply(m.code, out);
}

}  // namespace hvsock::vhost_user
