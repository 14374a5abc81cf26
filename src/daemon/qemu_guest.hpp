// qemu_guest: one QEMU partition as hvsockd serves it. hvsockd listens on
// <runtime>/vhost-user/<name>.sock; QEMU's vhost-user-vsock-pci device
// connects there, and the guest's kernel AF_VSOCK then reaches the switch:
// a guest connect to CID 2, port P is brokered like a connect from an
// emulated VM partition to PARENT, service P-facb-11e6-bd58-64006a7986d3,
// with the same registry and routing rules, so host listeners cannot tell
// a QEMU guest from an emulated partition.
//
// One front-end at a time: a second connection while one is attached is
// closed. When QEMU goes away (or is killed) every guest connection is reset
// and the socket waits for the next QEMU, without restarting hvsockd.
//
// Unlike emulated partitions, the daemon is in the data path here: it moves
// bytes between the guest's virtqueues and the host processes' streams.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"
#include "vhost_user/backend.hpp"
#include "virtio/vsock_device.hpp"

namespace hvsock::daemon {

class qemu_guest final : public vhost_user::device_hooks, public virtio::vsock_host_side {
 public:
  // Turns a guest's connect of `type` to the host (dst_port) from guest port
  // src_port into a host socket of that type, or the reason to refuse it.
  using broker_function = std::function<result<unique_fd>(
      std::uint32_t dst_port, std::uint32_t src_port, socket_type type)>;

  // Listens on `socket_path`. `loop` must outlive the guest.
  static result<std::unique_ptr<qemu_guest>> open(event_loop& loop, std::string name,
                                                  std::uint32_t guest_cid, std::string socket_path,
                                                  const socket_file_options& sockets,
                                                  broker_function broker, log_function log);
  qemu_guest(const qemu_guest&) = delete;
  qemu_guest& operator=(const qemu_guest&) = delete;
  // Detaches QEMU (resetting guest connections) and removes the socket file.
  ~qemu_guest() override;

  const std::string& socket_path() const { return socket_path_; }
  bool attached() const { return session_ != nullptr; }

  // A host process's connect of `type` to the guest's vsock port
  // `guest_port` (host_socket: an AF_UNIX socket of that type): the guest's
  // kernel answers (virtio::vsock_device::connect_to_guest, whose rules
  // `done` follows). With no QEMU attached it is refused at once.
  void connect(std::uint32_t guest_port, unique_fd host_socket, socket_type type,
               virtio::vsock_device::connect_handler done);

 private:
  qemu_guest(event_loop& loop, std::string name, std::uint32_t guest_cid, std::string socket_path,
             broker_function broker, log_function log);

  void on_listen_socket();
  void on_session_readable();
  void detach(const std::string& why);
  void on_kick(std::uint32_t index);
  // The device reset itself because of the guest; a guest whose memory is
  // gone is detached on the next turn (not from inside the device).
  void on_device_fault(const failure& why);

  // vhost_user::device_hooks
  result<void> on_ring_started(std::uint32_t index, const vhost_user::ring_info& ring) override;
  std::uint16_t on_ring_stopped(std::uint32_t index) override;
  void on_reset() override;
  // virtio::vsock_host_side
  result<unique_fd> open_to_host(std::uint32_t dst_port, std::uint32_t src_port,
                                 virtio::vsock_type type) override;

  event_loop& loop_;
  std::string name_;
  std::uint32_t guest_cid_;
  std::string socket_path_;
  broker_function broker_;
  log_function log_;

  unique_fd listen_fd_;
  event_loop::watch_id listen_watch_ = 0;
  unique_fd tick_fd_;  // timerfd: connect and drain timeouts of the device
  event_loop::watch_id tick_watch_ = 0;
  virtio::loop_fd_watcher<event_loop> watcher_;
  std::unique_ptr<virtio::vsock_device> device_;
  std::unique_ptr<vhost_user::vhost_user_backend> session_;
  event_loop::watch_id session_watch_ = 0;
  std::optional<event_loop::watch_id> kick_watch_[2];
  event_loop::timer_id detach_timer_ = 0;  // a detach due to lost guest memory
};

}  // namespace hvsock::daemon
