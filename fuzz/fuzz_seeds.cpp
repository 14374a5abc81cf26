// fuzz_seeds: writes the seed corpus of each fuzzer in fuzz/ (a few valid
// conversations, and a few near misses) as DIR/<fuzzer>/<name>, built with
// the real encoders (control_wire, vhost_user::encode, the agent's encode_*)
// so the seeds follow the wire formats when they change. scripts/test.sh
// runs it before fuzzing; the fuzzers read DIR/<fuzzer> next to their own
// growing corpus.
//
//   fuzz_seeds DIR
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <xxhash.h>

#include "agent/agent_protocol.hpp"
#include "fuzz_inputs.hpp"
#include "protocol/control_wire.hpp"
#include "vhost_user/message.hpp"

namespace {

using namespace hvsock;
using bytes = std::vector<std::byte>;
namespace fs = std::filesystem;

void save(const fs::path& dir, const std::string& name, const bytes& data) {
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
}

// --- control messages -------------------------------------------------------
namespace control {

namespace wire = hvsock::detail::wire;
namespace ci = hvsock::fuzz::control_input;
using ci::action;

constexpr std::size_t host = 0, web = 1, box = 2, lone = 3;

service_id port(std::uint32_t p) { return service_id_from_port(p); }

bytes connect_to(const vm_id& vm, const service_id& service,
                 socket_type type = socket_type::stream) {
  auto m = wire::make<wire::connect_request>(wire::message_type::connect_request);
  m.target = wire::to_raw(endpoint{vm, service});
  m.socket_type = wire::to_wire(type);
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

bytes connect_socket_to(const vm_id& vm, const service_id& service, std::uint32_t cid = 0,
                        std::uint32_t flags = 0, std::uint32_t local_port = 0) {
  auto m = wire::make<wire::connect_socket_request>(wire::message_type::connect_socket_request);
  m.target = wire::to_raw(endpoint{vm, service});
  m.target_cid = cid;
  m.flags = flags;
  m.local_port = local_port;
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

bytes bind_to(const vm_id& vm, const service_id& service, std::uint32_t backlog,
              socket_type type = socket_type::stream) {
  auto m = wire::make<wire::bind_request>(wire::message_type::bind_request);
  m.local = wire::to_raw(endpoint{vm, service});
  m.backlog = backlog;
  m.socket_type = wire::to_wire(type);
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

bytes listen_with(std::uint32_t backlog) {
  auto m = wire::make<wire::listen_request>(wire::message_type::listen_request);
  m.backlog = backlog;
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

bytes accepted() {
  const auto m = wire::make<wire::accepted>(wire::message_type::accepted);
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

bytes lookup(wire::lookup_kind kind, std::string_view name) {
  auto m = wire::make<wire::lookup_request>(wire::message_type::lookup_request);
  m.kind = static_cast<std::uint32_t>(kind);
  m.name_length = static_cast<std::uint16_t>(name.size());
  std::memcpy(m.name, name.data(), name.size());
  const auto b = wire::as_bytes(m);
  return {b.begin(), b.end()};
}

// A conversation: records appended one by one.
struct script {
  bytes out;
  script& send(std::size_t slot, std::size_t partition, const bytes& message,
               action a = action::send, bool batch = false) {
    ci::record(out, ci::op(a, slot, partition, batch), message);
    return *this;
  }
  script& drain(std::size_t slot) {
    ci::record(out, ci::op(action::drain, slot));
    return *this;
  }
  script& close(std::size_t slot, bool batch = false) {
    ci::record(out, ci::op(action::close, slot, 0, batch));
    return *this;
  }
};

void write_all(const fs::path& dir) {
  const auto echo = port(ci::echo_port);
  save(dir, "lookup-service",
       script{}.send(0, host, lookup(wire::lookup_kind::service, "echo")).drain(0).out);
  save(dir, "lookup-partition",
       script{}.send(0, box, lookup(wire::lookup_kind::partition, "web")).drain(0).out);
  save(dir, "connect-through-listener",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 4))
           .drain(0)
           .send(1, web, connect_to(vm_id_parent, echo))
           .drain(0)
           .send(0, host, accepted())
           .drain(1)
           .out);
  save(dir, "connect-seqpacket-and-mismatch",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 4, socket_type::seqpacket))
           .drain(0)
           .send(1, web, connect_to(vm_id_parent, echo, socket_type::seqpacket))
           .drain(0)
           .send(2, web, connect_to(vm_id_parent, echo))
           .drain(2)
           .send(0, host, accepted())
           .drain(1)
           .out);
  save(dir, "connect-socket",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 4))
           .send(1, web, connect_socket_to(vm_id_parent, echo), action::send_unix_socket)
           .drain(0)
           .drain(1)
           .out);
  save(dir, "connect-socket-by-cid",
       script{}
           .send(0, web, bind_to(vm_id_children, echo, 2))
           .send(1, box,
                 connect_socket_to(vm_id_wildcard, echo, 3,
                                   wire::target_by_cid | wire::local_port_given, 1234),
                 action::send_unix_socket)
           .drain(0)
           .drain(1)
           .out);
  save(dir, "bind-then-listen",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 0))
           .send(1, web, connect_to(vm_id_parent, echo))
           .send(0, host, listen_with(2))
           .send(2, web, connect_to(vm_id_parent, echo))
           .drain(0)
           .drain(1)
           .drain(2)
           .out);
  save(dir, "backlog-full-with-queued-acks",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 1))
           .send(1, web, connect_to(vm_id_parent, echo))
           .drain(0)
           .send(0, host, accepted(), action::send, true)
           .send(2, web, connect_to(vm_id_parent, echo))
           .drain(0)
           .drain(2)
           .out);
  save(dir, "rebind-after-close",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 1))
           .close(0, true)
           .send(1, host, bind_to(vm_id_wildcard, echo, 1))
           .drain(1)
           .out);
  save(dir, "loopback",
       script{}
           .send(0, lone, bind_to(vm_id_loopback, echo, 1))
           .send(1, lone, connect_to(vm_id_loopback, echo))
           .drain(0)
           .drain(1)
           .out);
  save(dir, "connect-into-qemu-guest",
       script{}
           .send(0, host, connect_to(ci::guest_id, echo))
           .drain(0)
           .send(1, host, connect_to(ci::guest_id, ci::named_service))
           .send(2, host, connect_socket_to(ci::guest_id, echo), action::send_unix_socket)
           .drain(1)
           .drain(2)
           .out);
  save(dir, "refusals",
       script{}
           .send(0, web, connect_to(vm_id_parent, port(ci::off_port)))
           .send(1, web, connect_to(vm_id_broadcast, echo))
           .send(2, web, connect_to(ci::box_id, port(ci::partly_port)))
           .send(3, box, connect_to(ci::lone_id, echo))
           .drain(0)
           .drain(1)
           .drain(2)
           .drain(3)
           .out);
  bytes truncated = connect_to(vm_id_parent, echo);
  truncated.resize(10);
  save(dir, "malformed",
       script{}
           .send(0, host, truncated)
           .send(1, host, accepted())
           .send(2, host, bind_to(vm_id_wildcard, echo, 1), action::send_pipe)
           .send(3, web, connect_socket_to(vm_id_parent, echo), action::send_two_sockets)
           .out);
  // Two listeners fill the host's places; its third client is turned away.
  save(dir, "partition-limit",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 8))
           .send(1, host, bind_to(vm_id_children, echo, 8))
           .send(2, host, lookup(wire::lookup_kind::service, "echo"))
           .drain(2)
           .out);
  // A client that connects and says nothing is closed by the timeout.
  save(dir, "silent-client", script{}.send(0, web, {}).drain(0).send(1, web, {}).close(1).out);
  // Three listeners hold the three client places; the fourth is turned away.
  save(dir, "client-limit",
       script{}
           .send(0, host, bind_to(vm_id_wildcard, echo, 8))
           .send(1, web, bind_to(vm_id_wildcard, echo, 8))
           .send(2, lone, bind_to(vm_id_wildcard, echo, 8))
           .send(3, box, connect_to(vm_id_parent, echo))
           .drain(3)
           .out);
}

}  // namespace control

// --- vhost-user messages ----------------------------------------------------
namespace vhost {

using namespace hvsock::vhost_user;
namespace vi = hvsock::fuzz::vhost_input;

constexpr std::uint64_t ram_user = 0x7f0000000000;  // where "QEMU" has the RAM
std::uint64_t desc_at(std::uint32_t i) { return 0x10000 + 0x30000 * std::uint64_t{i}; }

struct stream {
  bytes out;
  explicit stream(std::uint8_t flags) { out.push_back(std::byte{flags}); }
  stream& add(request r, const payload& body = std::monostate{}, std::uint32_t flags = version_1) {
    const auto m = encode(static_cast<std::uint32_t>(r), flags, body);
    out.insert(out.end(), m.begin(), m.end());
    return *this;
  }
};

stream& qemu_init(stream& s) {
  const std::uint64_t features =
      (std::uint64_t{1} << feature_version_1) | (std::uint64_t{1} << feature_protocol_features);
  const std::uint64_t protocol = (std::uint64_t{1} << protocol_feature_reply_ack) |
                                 (std::uint64_t{1} << protocol_feature_config);
  s.add(request::get_features)
      .add(request::get_protocol_features)
      .add(request::set_protocol_features, protocol)
      .add(request::set_owner)
      .add(request::get_features)
      .add(request::set_vring_call, std::uint64_t{0})
      .add(request::set_vring_call, std::uint64_t{1})
      .add(request::get_config, config_space{0, 8, 0, bytes(8)})
      .add(request::set_features, features)
      .add(request::set_mem_table, memory_table{{{.guest_phys_addr = 0,
                                                  .memory_size = vi::ram_size,
                                                  .userspace_addr = ram_user,
                                                  .mmap_offset = 0}}});
  for (std::uint32_t i = 0; i < 2; ++i)
    s.add(request::set_vring_num, vring_state{i, 256})
        .add(request::set_vring_addr, vring_addr{.index = i,
                                                 .flags = 0,
                                                 .descriptor = ram_user + desc_at(i),
                                                 .used = ram_user + desc_at(i) + 0x20000,
                                                 .available = ram_user + desc_at(i) + 0x10000,
                                                 .log = 0})
        .add(request::set_vring_base, vring_state{i, 0})
        .add(request::set_vring_kick, std::uint64_t{i})
        .add(request::set_vring_enable, vring_state{i, 1});
  return s;
}

void write_all(const fs::path& dir) {
  {
    stream s(vi::attach_fds);
    qemu_init(s)
        .add(request::get_vring_base, vring_state{0, 0})
        .add(request::get_vring_base, vring_state{1, 0})
        .add(request::reset_owner);
    save(dir, "qemu-start-stop", s.out);
  }
  {
    stream s(vi::attach_fds);
    qemu_init(s)
        .add(request::set_vring_kick, std::uint64_t{2} | vring_invalid_fd_flag)
        .add(request::set_vring_err, std::uint64_t{0})
        .add(request::set_vring_enable, vring_state{0, 0})
        .add(request::set_mem_table, memory_table{{{.guest_phys_addr = 0x100000,
                                                    .memory_size = vi::ram_size / 2,
                                                    .userspace_addr = ram_user,
                                                    .mmap_offset = 0x1000}}});
    save(dir, "qemu-remap", s.out);
  }
  {
    stream s(vi::attach_fds | vi::device_refuses);
    qemu_init(s);
    save(dir, "device-refuses", s.out);
  }
  {
    stream s(std::uint8_t{1} << vi::piece_shift);  // 3-byte pieces, no fds
    s.add(request::get_features)
        .add(request::set_owner, std::monostate{}, version_1 | flag_need_reply)
        .add(request::get_queue_num)
        .add(request::get_max_mem_slots)
        .add(request::set_config, config_space{0, 8, 0, bytes(8)}, version_1 | flag_need_reply)
        .add(request::get_config, config_space{4, 16, 0, bytes(16)})
        .add(request::set_mem_table, memory_table{{{0, 4096, ram_user, 0}}});
    save(dir, "queries-no-fds", s.out);
  }
}

}  // namespace vhost

// --- agent frames -----------------------------------------------------------
namespace agent_frames {

using namespace hvsock::agent;

struct stream {
  bytes out;
  explicit stream(std::uint8_t destination) {
    out.push_back(std::byte{destination});
    add(encode_hello());
  }
  stream& add(const bytes& frame) {
    out.insert(out.end(), frame.begin(), frame.end());
    return *this;
  }
  stream& entry(std::uint8_t kind, std::string_view path, std::uint32_t mode,
                std::uint64_t size = 0) {
    bytes p;
    p.push_back(std::byte{kind});
    for (int i = 0; i < 4; ++i) p.push_back(static_cast<std::byte>(path.size() >> (8 * i)));
    for (char c : path) p.push_back(static_cast<std::byte>(c));
    for (int i = 0; i < 4; ++i) p.push_back(static_cast<std::byte>(mode >> (8 * i)));
    for (int i = 0; i < 8; ++i) p.push_back(static_cast<std::byte>(size >> (8 * i)));
    return add(encode(frame_type::entry, p));
  }
  // A file entry with its data and digest (`wrong`: a digest that does not match).
  stream& file(std::string_view path, std::uint32_t mode, std::string_view text,
               bool wrong = false) {
    entry(1, path, mode, text.size());
    if (!text.empty()) add(encode(frame_type::data, std::as_bytes(std::span(text))));
    XXH128_canonical_t digest;
    XXH128_canonicalFromHash(&digest, XXH3_128bits(text.data(), text.size()));
    if (wrong) digest.digest[0] ^= 1;
    return add(encode(frame_type::digest, std::as_bytes(std::span(digest.digest))));
  }
  stream& end() { return add(encode(frame_type::end)); }
};

constexpr std::uint8_t directory = 2;

void write_all(const fs::path& dir) {
  save(dir, "put-file",
       stream(0).add(encode_put("x", "a.txt")).file("", 0644, "hello\n").end().out);
  save(dir, "put-tree",
       stream(1)
           .add(encode_put("x", "tree"))
           .entry(directory, "", 0755)
           .entry(directory, "d", 0700)
           .file("d/f", 04755, "setuid dropped\n")
           .entry(directory, "ro", 0500)
           .file("ro/g", 0644, "")
           .end()
           .out);
  save(dir, "put-into-existing",
       stream(3).add(encode_put("x", "new.txt")).file("", 0600, "into sub\n").end().out);
  save(dir, "put-over-file",
       stream(4).add(encode_put("x", "f")).file("", 0644, "over\n").end().out);
  save(dir, "put-through-link-dir",
       stream(0)
           .add(encode_put("x", "evil"))
           .entry(directory, "", 0755)
           .file("victim", 0644, "owned\n")
           .end()
           .out);
  save(dir, "put-through-link-file",
       stream(0).add(encode_put("x", "evilfile")).file("", 0644, "owned\n").end().out);
  save(dir, "put-bad-digest",
       stream(2)
           .add(encode_put("x", "d"))
           .entry(directory, "", 0755)
           .file("f", 0644, "x", true)
           .end()
           .out);
  exec_request r;
  r.argv = {"true"};
  r.env = {"A=b"};
  save(dir, "exec",
       stream(0)
           .add(encode_exec(r))
           .add(encode(frame_type::stdin_data, std::as_bytes(std::span("abc", 3))))
           .add(encode_winsize(24, 80))
           .add(encode_signal(15))
           .add(encode(frame_type::stdin_eof))
           .out);
  save(dir, "get", stream(0).add(encode_get("/etc/hostname")).out);
}

}  // namespace agent_frames

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  try {
    for (const char* target :
         {"control_message_fuzzer", "vhost_user_message_fuzzer", "agent_frame_fuzzer"})
      fs::create_directories(dir / target);
    control::write_all(dir / "control_message_fuzzer");
    vhost::write_all(dir / "vhost_user_message_fuzzer");
    agent_frames::write_all(dir / "agent_frame_fuzzer");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
