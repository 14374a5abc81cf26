// A guest's vsock streams as its virtio-vsock driver runs them, on a
// fake_frontend: connecting to the host (REQUEST, RESPONSE, RW within the
// host's credit), accepting or refusing a host's REQUEST, reading what the
// host sent. Plus creating a QEMU partition on a switch_fixture and
// attaching a fake_frontend to it. One connection at a time per guest:
// packets for other connections are dropped while a stream waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <hvsock/result.hpp>
#include <nlohmann/json.hpp>

#include "fake_frontend.hpp"
#include "switch_fixture.hpp"

namespace hvsock::test {

inline constexpr std::uint32_t guest_buf_alloc = 256 * 1024;

constexpr std::uint16_t op(virtio::vsock_op o) { return static_cast<std::uint16_t>(o); }

virtio::virtio_vsock_hdr guest_header(const fake_frontend& g, virtio::vsock_op o,
                                      std::uint32_t src_port, std::uint32_t dst_port);

class guest_stream {
 public:
  // A stream from guest port src_port to host port dst_port (not yet connected).
  guest_stream(fake_frontend& g, std::uint32_t src_port, std::uint32_t dst_port)
      : g_(g), src_(src_port), dst_(dst_port) {}

  // Waits (bounded by `timeout`) for the host's REQUEST to guest port
  // `port` and answers it: RESPONSE (accept) or RST (refuse).
  static result<guest_stream> accept(fake_frontend& g, std::uint32_t port,
                                     std::chrono::milliseconds timeout);
  static result<void> refuse(fake_frontend& g, std::uint32_t port,
                             std::chrono::milliseconds timeout);

  result<void> connect();
  result<void> write(std::span<const std::byte> data);
  result<void> shutdown_send();
  // What the host sent so far, after waiting until at least `bytes` came
  // (or the host shut down, reset, or `timeout` passed).
  const std::string& read(std::size_t bytes, std::chrono::milliseconds timeout);
  bool reset() const { return reset_; }
  std::uint32_t host_port() const { return dst_; }

 private:
  virtio::virtio_vsock_hdr header(virtio::vsock_op o) const {
    return guest_header(g_, o, src_, dst_);
  }
  bool wait();
  void take_packets();

  fake_frontend& g_;
  std::uint32_t src_, dst_;
  bool connected_ = false;
  bool reset_ = false;
  bool peer_shut_ = false;
  std::uint32_t peer_buf_alloc_ = 0;
  std::uint32_t peer_fwd_cnt_ = 0;
  std::uint32_t tx_cnt_ = 0;
  std::string received_;
};

// `name`'s entry in `hvsock vm list --json` (null when there is none).
nlohmann::json partition(const switch_fixture& sw, const std::string& name);

// Creates QEMU partition `name` with CID `cid` and attaches a fake front-end.
std::unique_ptr<fake_frontend> attach_guest(switch_fixture& sw, const std::string& name,
                                            std::uint64_t cid);

}  // namespace hvsock::test
