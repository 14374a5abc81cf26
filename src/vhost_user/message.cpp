#include "vhost_user/message.hpp"

#include "sys/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace hvsock::vhost_user {
namespace {

failure protocol_error(const std::string& what) {
  return failure(errc::protocol_error, "vhost-user " + what);
}

// What a request carries and which fds may come with it.
enum class shape { none, u64, state, addr, memory, config };
enum class fd_rule { none, one_per_region, one_unless_invalid_flag };

struct request_rule {
  shape body;
  fd_rule fds;
};

bool rule_for(std::uint32_t code, request_rule& out) {
  switch (static_cast<request>(code)) {
    case request::get_features:
    case request::set_owner:
    case request::reset_owner:
    case request::get_protocol_features:
    case request::get_queue_num:
    case request::get_max_mem_slots: out = {shape::none, fd_rule::none}; return true;
    case request::set_features:
    case request::set_protocol_features: out = {shape::u64, fd_rule::none}; return true;
    case request::set_vring_kick:
    case request::set_vring_call:
    case request::set_vring_err: out = {shape::u64, fd_rule::one_unless_invalid_flag}; return true;
    case request::set_vring_num:
    case request::set_vring_base:
    case request::get_vring_base:
    case request::set_vring_enable: out = {shape::state, fd_rule::none}; return true;
    case request::set_vring_addr: out = {shape::addr, fd_rule::none}; return true;
    case request::set_mem_table: out = {shape::memory, fd_rule::one_per_region}; return true;
    case request::get_config:
    case request::set_config: out = {shape::config, fd_rule::none}; return true;
  }
  return false;
}

template <class T>
T load(std::span<const std::byte> bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

template <class T>
void store(std::vector<std::byte>& out, T value) {
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof value);
}

failure wrong_size(const std::string& name, std::size_t got, std::size_t expected) {
  return protocol_error(name + ": payload of " + std::to_string(got) + " bytes, expected " +
                        std::to_string(expected));
}

}  // namespace

std::string request_name(std::uint32_t code) {
  switch (static_cast<request>(code)) {
    case request::get_features: return "GET_FEATURES";
    case request::set_features: return "SET_FEATURES";
    case request::set_owner: return "SET_OWNER";
    case request::reset_owner: return "RESET_OWNER";
    case request::set_mem_table: return "SET_MEM_TABLE";
    case request::set_vring_num: return "SET_VRING_NUM";
    case request::set_vring_addr: return "SET_VRING_ADDR";
    case request::set_vring_base: return "SET_VRING_BASE";
    case request::get_vring_base: return "GET_VRING_BASE";
    case request::set_vring_kick: return "SET_VRING_KICK";
    case request::set_vring_call: return "SET_VRING_CALL";
    case request::set_vring_err: return "SET_VRING_ERR";
    case request::get_protocol_features: return "GET_PROTOCOL_FEATURES";
    case request::set_protocol_features: return "SET_PROTOCOL_FEATURES";
    case request::get_queue_num: return "GET_QUEUE_NUM";
    case request::set_vring_enable: return "SET_VRING_ENABLE";
    case request::get_config: return "GET_CONFIG";
    case request::set_config: return "SET_CONFIG";
    case request::get_max_mem_slots: return "GET_MAX_MEM_SLOTS";
  }
  return "request " + std::to_string(code);
}

result<header> decode_header(std::span<const std::byte> bytes) {
  if (bytes.size() != header_size)
    return protocol_error("header of " + std::to_string(bytes.size()) + " bytes");
  header h;
  h.request = load<std::uint32_t>(bytes, 0);
  h.flags = load<std::uint32_t>(bytes, 4);
  h.size = load<std::uint32_t>(bytes, 8);
  const std::string name = request_name(h.request);
  request_rule rule;
  if (!rule_for(h.request, rule)) return protocol_error(name + ": not supported by this back-end");
  if ((h.flags & version_mask) != version_1)
    return protocol_error(name + ": protocol version " + std::to_string(h.flags & version_mask) +
                          ", only version 1 is supported");
  if ((h.flags & flag_reply) != 0) return protocol_error(name + ": reply flag set on a request");
  if ((h.flags & ~(version_mask | flag_reply | flag_need_reply)) != 0)
    return protocol_error(name + ": reserved flag bits set");
  if (h.size > max_payload_size)
    return protocol_error(name + ": payload size " + std::to_string(h.size) +
                          " exceeds the maximum of " + std::to_string(max_payload_size));
  return h;
}

result<message> decode_message(const header& h, std::span<const std::byte> bytes,
                               std::vector<unique_fd> fds) {
  const std::string name = request_name(h.request);
  request_rule rule;
  if (!rule_for(h.request, rule)) return protocol_error(name + ": not supported by this back-end");
  if (bytes.size() != h.size) return wrong_size(name, bytes.size(), h.size);

  message m;
  m.code = static_cast<request>(h.request);
  m.flags = h.flags;
  std::size_t fds_allowed = 0;
  switch (rule.body) {
    case shape::none:
      if (!bytes.empty()) return wrong_size(name, bytes.size(), 0);
      break;
    case shape::u64: {
      if (bytes.size() != 8) return wrong_size(name, bytes.size(), 8);
      const auto value = load<std::uint64_t>(bytes, 0);
      if (rule.fds == fd_rule::one_unless_invalid_flag) {
        if ((value & ~(vring_index_mask | vring_invalid_fd_flag)) != 0)
          return protocol_error(name + ": reserved bits set in the ring index word");
        fds_allowed = (value & vring_invalid_fd_flag) != 0 ? 0 : 1;
      }
      m.body = value;
      break;
    }
    case shape::state:
      if (bytes.size() != vring_state_size) return wrong_size(name, bytes.size(), vring_state_size);
      m.body = vring_state{load<std::uint32_t>(bytes, 0), load<std::uint32_t>(bytes, 4)};
      break;
    case shape::addr: {
      if (bytes.size() != vring_addr_size) return wrong_size(name, bytes.size(), vring_addr_size);
      vring_addr a;
      a.index = load<std::uint32_t>(bytes, 0);
      a.flags = load<std::uint32_t>(bytes, 4);
      a.descriptor = load<std::uint64_t>(bytes, 8);
      a.used = load<std::uint64_t>(bytes, 16);
      a.available = load<std::uint64_t>(bytes, 24);
      a.log = load<std::uint64_t>(bytes, 32);
      m.body = a;
      break;
    }
    case shape::memory: {
      if (bytes.size() < memory_table_header_size)
        return wrong_size(name, bytes.size(), memory_table_header_size);
      const auto count = load<std::uint32_t>(bytes, 0);
      if (count > max_regions)
        return protocol_error(name + ": " + std::to_string(count) + " regions, at most " +
                              std::to_string(max_regions) + " are supported");
      // QEMU sends only the regions in use, not the whole 8-entry array.
      const std::size_t expected = memory_table_header_size + count * memory_region_size;
      if (bytes.size() != expected) return wrong_size(name, bytes.size(), expected);
      memory_table t;
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t at = memory_table_header_size + i * memory_region_size;
        t.regions.push_back({load<std::uint64_t>(bytes, at), load<std::uint64_t>(bytes, at + 8),
                             load<std::uint64_t>(bytes, at + 16),
                             load<std::uint64_t>(bytes, at + 24)});
      }
      fds_allowed = count;
      m.body = std::move(t);
      break;
    }
    case shape::config: {
      if (bytes.size() < config_header_size)
        return wrong_size(name, bytes.size(), config_header_size);
      config_space c;
      c.offset = load<std::uint32_t>(bytes, 0);
      c.size = load<std::uint32_t>(bytes, 4);
      c.flags = load<std::uint32_t>(bytes, 8);
      if (c.size > max_config_size)
        return protocol_error(name + ": config access of " + std::to_string(c.size) +
                              " bytes, at most " + std::to_string(max_config_size));
      if (bytes.size() != config_header_size + c.size)
        return wrong_size(name, bytes.size(), config_header_size + c.size);
      c.payload.assign(bytes.begin() + config_header_size, bytes.end());
      m.body = std::move(c);
      break;
    }
  }
  if (fds.size() != fds_allowed)
    return protocol_error(name + ": came with " + std::to_string(fds.size()) + " fds, expected " +
                          std::to_string(fds_allowed));
  m.fds = std::move(fds);
  return m;
}

std::vector<std::byte> encode(std::uint32_t code, std::uint32_t flags, const payload& body) {
  std::vector<std::byte> out;
  out.reserve(header_size + max_payload_size);
  store(out, code);
  store(out, flags);
  store(out, std::uint32_t{0});  // size, patched below
  if (const auto* v = std::get_if<std::uint64_t>(&body)) {
    store(out, *v);
  } else if (const auto* s = std::get_if<vring_state>(&body)) {
    store(out, s->index);
    store(out, s->num);
  } else if (const auto* a = std::get_if<vring_addr>(&body)) {
    store(out, a->index);
    store(out, a->flags);
    store(out, a->descriptor);
    store(out, a->used);
    store(out, a->available);
    store(out, a->log);
  } else if (const auto* t = std::get_if<memory_table>(&body)) {
    store(out, static_cast<std::uint32_t>(t->regions.size()));
    store(out, std::uint32_t{0});  // padding
    for (const auto& r : t->regions) {
      store(out, r.guest_phys_addr);
      store(out, r.memory_size);
      store(out, r.userspace_addr);
      store(out, r.mmap_offset);
    }
  } else if (const auto* c = std::get_if<config_space>(&body)) {
    store(out, c->offset);
    store(out, c->size);
    store(out, c->flags);
    out.insert(out.end(), c->payload.begin(), c->payload.end());
  }
  const auto size = static_cast<std::uint32_t>(out.size() - header_size);
  std::memcpy(out.data() + 8, &size, sizeof size);
  return out;
}

result<message_reader::outcome> message_reader::read(int socket) {
  for (;;) {
    const std::size_t target = have_ < header_size ? header_size : header_size + header_.size;
    if (have_ == target) {
      // Complete (a payload of zero bytes completes with the header).
      auto m = decode_message(header_, std::span(buffer_).subspan(header_size, header_.size),
                              std::exchange(fds_, {}));
      have_ = 0;
      if (!m) return m.error();
      outcome o;
      o.what = outcome::kind::message;
      o.msg = std::move(*m);
      return o;
    }
    auto got = detail::receive_message(socket, std::span(buffer_).subspan(have_, target - have_),
                                       MSG_DONTWAIT, &fds_);
    if (!got) {
      if (got.error().code() == errc::would_block) return outcome{};
      return got.error().with_context("vhost-user");
    }
    const std::size_t n = got->size;
    const bool too_many = got->control_truncated || fds_.size() > max_fds;
    if (too_many)
      return protocol_error("message came with more than " + std::to_string(max_fds) + " fds");
    if (n == 0) {
      if (!partial()) {
        outcome o;
        o.what = outcome::kind::closed;
        return o;
      }
      return protocol_error("front-end closed the connection in the middle of a message (" +
                            std::to_string(have_) + " bytes read)");
    }
    have_ += n;
    if (have_ == header_size) {
      auto h = decode_header(std::span(buffer_).first(header_size));
      if (!h) return h.error();
      header_ = *h;
    }
  }
}

result<void> write_message(int socket, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(socket, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return failure(errc::would_block, "vhost-user reply: the front-end is not reading");
      return make_system_error(errno, "vhost-user reply");
    }
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace hvsock::vhost_user
