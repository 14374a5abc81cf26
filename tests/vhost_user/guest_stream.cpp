#include "guest_stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace hvsock::test {

using namespace std::chrono_literals;
using virtio::virtio_vsock_hdr;
using virtio::vsock_op;

virtio_vsock_hdr guest_header(const fake_frontend& g, vsock_op o, std::uint32_t src_port,
                              std::uint32_t dst_port) {
  virtio_vsock_hdr h;
  h.src_cid = g.guest_cid();
  h.dst_cid = virtio::vmaddr_cid_host;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.type = static_cast<std::uint16_t>(virtio::vsock_type::stream);
  h.op = op(o);
  h.buf_alloc = guest_buf_alloc;
  return h;
}

namespace {

// The host's next REQUEST to guest port `port`, within `timeout`.
result<virtio_vsock_hdr> next_request(fake_frontend& g, std::uint32_t port,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (const auto& p : g.receive())
      if (p.hdr.op == op(vsock_op::request) && p.hdr.dst_port == port) return p.hdr;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || !g.wait_for_device(left))
      return failure(errc::timed_out, "no REQUEST from the host");
  }
}

}  // namespace

result<guest_stream> guest_stream::accept(fake_frontend& g, std::uint32_t port,
                                          std::chrono::milliseconds timeout) {
  auto request = next_request(g, port, timeout);
  if (!request) return request.error();
  guest_stream s(g, port, request->src_port);
  s.peer_buf_alloc_ = request->buf_alloc;
  s.peer_fwd_cnt_ = request->fwd_cnt;
  if (auto ok = g.send(s.header(vsock_op::response), {}, 10s); !ok) return ok.error();
  s.connected_ = true;
  return s;
}

result<void> guest_stream::refuse(fake_frontend& g, std::uint32_t port,
                                  std::chrono::milliseconds timeout) {
  auto request = next_request(g, port, timeout);
  if (!request) return request.error();
  return g.send(guest_header(g, vsock_op::rst, port, request->src_port), {}, 10s);
}

result<void> guest_stream::connect() {
  if (auto ok = g_.send(header(vsock_op::request), {}, 10s); !ok) return ok;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!connected_) {
    if (reset_) return failure(errc::connection_refused, "hvsockd answered the REQUEST with RST");
    if (std::chrono::steady_clock::now() > deadline || !wait())
      return failure(errc::timed_out, "no RESPONSE from hvsockd");
  }
  return {};
}

result<void> guest_stream::write(std::span<const std::byte> data) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!data.empty()) {
    take_packets();
    if (reset_) return failure(errc::connection_refused, "hvsockd reset the stream");
    const std::uint32_t credit = peer_buf_alloc_ - (tx_cnt_ - peer_fwd_cnt_);
    if (credit == 0) {
      if (std::chrono::steady_clock::now() > deadline || !wait())
        return failure(errc::timed_out, "no credit from hvsockd");
      continue;
    }
    const std::size_t n = std::min<std::size_t>({data.size(), credit, 65536});
    auto h = header(vsock_op::rw);
    if (auto ok = g_.send(h, data.first(n), 10s); !ok) return ok;
    tx_cnt_ += static_cast<std::uint32_t>(n);
    data = data.subspan(n);
  }
  return {};
}

result<void> guest_stream::shutdown_send() {
  auto h = header(vsock_op::shutdown);
  h.flags = virtio::vsock_shutdown_send;
  return g_.send(h, {}, 10s);
}

const std::string& guest_stream::read(std::size_t bytes, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  take_packets();
  while (received_.size() < bytes && !reset_ && !peer_shut_ &&
         std::chrono::steady_clock::now() < deadline)
    wait();
  return received_;
}

bool guest_stream::wait() {
  const bool woke = g_.wait_for_device(10s);
  take_packets();
  return woke;
}

void guest_stream::take_packets() {
  for (const auto& p : g_.receive()) {
    if (p.hdr.src_port != dst_ || p.hdr.dst_port != src_) continue;
    peer_buf_alloc_ = p.hdr.buf_alloc;
    peer_fwd_cnt_ = p.hdr.fwd_cnt;
    if (p.hdr.op == op(vsock_op::response)) connected_ = true;
    if (p.hdr.op == op(vsock_op::rst)) reset_ = true;
    if (p.hdr.op == op(vsock_op::shutdown)) peer_shut_ = true;
    if (p.hdr.op == op(vsock_op::rw))
      received_.append(reinterpret_cast<const char*>(p.payload.data()), p.payload.size());
  }
}

nlohmann::json partition(const switch_fixture& sw, const std::string& name) {
  for (const auto& p : nlohmann::json::parse(sw.cli_ok({"vm", "list", "--json"})))
    if (p.at("name") == name) return p;
  return {};
}

std::unique_ptr<fake_frontend> attach_guest(switch_fixture& sw, const std::string& name,
                                            std::uint64_t cid) {
  const auto created = sw.cli({"vm", "create", name, "--qemu", "--cid", std::to_string(cid)});
  EXPECT_EQ(created.status.code, 0) << created.err;
  const std::string socket = partition(sw, name).at("vhost_user_socket");
  auto g = fake_frontend::attach(socket, cid);
  EXPECT_TRUE(g) << (g ? "" : g.error().message());
  return g ? std::move(*g) : nullptr;
}

}  // namespace hvsock::test
