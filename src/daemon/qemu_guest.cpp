#include "daemon/qemu_guest.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <filesystem>
#include <random>
#include <utility>

#include "virtio/split_virtqueue.hpp"
#include "virtio/vsock_packet.hpp"

namespace hvsock::daemon {
namespace {

// The device's timeouts are in seconds; a coarse tick is plenty.
constexpr long tick_interval_ms = 500;
// Bit 28: indirect descriptors, which Linux's virtio-vsock driver may use;
// VIRTIO_VSOCK_F_SEQPACKET, which QEMU 7.2 passes through to the guest.
constexpr std::uint64_t device_features =
    (std::uint64_t{1} << 28) | (std::uint64_t{1} << virtio::virtio_vsock_f_seqpacket);

virtio::vsock_type vsock_type_of(socket_type type) {
  return type == socket_type::seqpacket ? virtio::vsock_type::seqpacket
                                        : virtio::vsock_type::stream;
}

}  // namespace

qemu_guest::qemu_guest(event_loop& loop, std::string name, std::uint32_t guest_cid,
                       std::string socket_path, broker_function broker, log_function log)
    : loop_(loop),
      name_(std::move(name)),
      guest_cid_(guest_cid),
      socket_path_(std::move(socket_path)),
      broker_(std::move(broker)),
      log_(std::move(log)),
      watcher_(loop) {}

result<std::unique_ptr<qemu_guest>> qemu_guest::open(event_loop& loop, std::string name,
                                                     std::uint32_t guest_cid,
                                                     std::string socket_path,
                                                     const socket_file_options& sockets,
                                                     broker_function broker, log_function log) {
  std::unique_ptr<qemu_guest> g(new qemu_guest(
      loop, std::move(name), guest_cid, std::move(socket_path), std::move(broker), std::move(log)));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(g->socket_path_).parent_path(), ec);
  auto fd = listen_unix(g->socket_path_, SOCK_STREAM, sockets);
  if (!fd) return fd.error();
  g->listen_fd_ = std::move(*fd);
  auto watched = loop.watch(g->listen_fd_.get(), EPOLLIN,
                            [p = g.get()](std::uint32_t) { p->on_listen_socket(); });
  if (!watched) return watched.error();
  g->listen_watch_ = *watched;

  g->tick_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!g->tick_fd_) return make_system_error(errno, "timerfd_create");
  itimerspec every{};
  every.it_interval.tv_nsec = tick_interval_ms * 1000000;
  every.it_value = every.it_interval;
  if (::timerfd_settime(g->tick_fd_.get(), 0, &every, nullptr) < 0)
    return make_system_error(errno, "timerfd_settime");
  auto ticking = loop.watch(g->tick_fd_.get(), EPOLLIN, [p = g.get()](std::uint32_t) {
    std::uint64_t expirations;
    while (::read(p->tick_fd_.get(), &expirations, sizeof expirations) > 0) {
    }
    if (p->device_) p->device_->on_tick();
  });
  if (!ticking) return ticking.error();
  g->tick_watch_ = *ticking;

  virtio::vsock_device_options options;
  options.guest_cid = guest_cid;
  // A random first host port, as Linux picks its own: after hvsockd
  // restarts, a guest that still holds a dead connection from the last
  // daemon's port (until its program closes it) would otherwise answer the
  // new daemon's first connects on the same port with a reset.
  options.first_ephemeral_port += std::random_device{}() & 0x7fffffffu;
  g->device_ = std::make_unique<virtio::vsock_device>(options, *g, g->watcher_,
                                                      [p = g.get()](std::uint16_t queue) {
                                                        if (p->session_)
                                                          (void)p->session_->notify_used(queue);
                                                      });
  g->device_->set_fault_handler([p = g.get()](const failure& why) { p->on_device_fault(why); });
  return g;
}

qemu_guest::~qemu_guest() {
  loop_.cancel_timer(detach_timer_);
  if (session_) detach("hvsockd is removing the partition");
  device_.reset();
  if (tick_watch_ != 0) loop_.unwatch(tick_watch_);
  if (listen_watch_ != 0) loop_.unwatch(listen_watch_);
  if (listen_fd_) ::unlink(socket_path_.c_str());
}

void qemu_guest::on_listen_socket() {
  auto accepted = loop_.accept(listen_fd_.get());
  if (!accepted) {
    if (accepted.error().code() != errc::would_block)
      log_(log_level::warning,
           fmt::format("{}: vhost-user socket: {}", name_, accepted.error().message()));
    return;
  }
  if (session_) {
    log_(log_level::warning,
         fmt::format("{}: a second QEMU tried to attach while one is attached; refused", name_));
    return;  // closing the fd is the refusal
  }
  vhost_user::backend_options options;
  options.device_features = device_features;
  options.config = vhost_user::vsock_config(guest_cid_);
  const int fd = accepted->get();
  session_ = std::make_unique<vhost_user::vhost_user_backend>(std::move(*accepted), *this,
                                                              std::move(options));
  auto watched = loop_.watch(fd, EPOLLIN, [this](std::uint32_t) { on_session_readable(); });
  if (!watched) {
    log_(log_level::error, fmt::format("{}: {}", name_, watched.error().message()));
    session_.reset();
    return;
  }
  session_watch_ = *watched;
  log_(log_level::notice, fmt::format("{}: QEMU attached (guest CID {})", name_, guest_cid_));
}

void qemu_guest::on_session_readable() {
  auto status = session_->on_readable();
  if (!status) {
    detach("vhost-user protocol error: " + status.error().message());
  } else if (*status == vhost_user::vhost_user_backend::status::peer_closed) {
    detach("QEMU closed the connection");
  }
}

void qemu_guest::detach(const std::string& why) {
  loop_.cancel_timer(std::exchange(detach_timer_, 0));
  loop_.unwatch(session_watch_);
  session_->disconnect();  // stops rings and resets the device through the hooks
  session_.reset();
  log_(log_level::notice, fmt::format("{}: QEMU detached: {}", name_, why));
}

void qemu_guest::on_kick(std::uint32_t index) {
  // A failure has been reported through on_device_fault already.
  (void)(index == virtio::vsock_tx_queue ? device_->on_tx_kick() : device_->on_rx_kick());
}

void qemu_guest::on_device_fault(const failure& why) {
  if (why.code() != errc::io_error) {
    log_(log_level::warning,
         fmt::format("{}: the guest broke the virtqueue rules, device reset: {}", name_,
                     why.message()));
    return;
  }
  // Its memory is gone for good: nothing this front-end sends can work any
  // more. Detaching unmaps it and closes the connection; the socket waits for
  // the next QEMU.
  if (detach_timer_ != 0 || !session_) return;
  auto timer = loop_.add_timer(std::chrono::milliseconds(0), [this] {
    detach_timer_ = 0;
    detach("guest memory is gone (its memory file shrank)");
  });
  if (timer) detach_timer_ = *timer;
}

result<void> qemu_guest::on_ring_started(std::uint32_t index, const vhost_user::ring_info& ring) {
  if (index > virtio::vsock_tx_queue) return {};  // the event queue stays with QEMU
  if (ring.kick_fd < 0)
    return failure(errc::invalid_argument,
                   fmt::format("ring {} has no kick eventfd (polling is not supported)", index));
  virtio::split_virtqueue::config cfg;
  cfg.size = ring.num;
  cfg.addresses = {ring.desc_user_addr, ring.avail_user_addr, ring.used_user_addr};
  cfg.space = virtio::address_space::frontend_virtual;
  cfg.last_avail_idx = ring.base;
  auto queue = virtio::split_virtqueue::create(*ring.memory, cfg);
  if (!queue) return queue.error();
  const int kick = ring.kick_fd;
  auto watched = loop_.watch(kick, EPOLLIN, [this, index, kick](std::uint32_t) {
    std::uint64_t count;
    while (::read(kick, &count, sizeof count) > 0) {
    }
    on_kick(index);
  });
  if (!watched) return watched.error();
  auto started = device_->start_queue(static_cast<std::uint16_t>(index), std::move(*queue));
  if (!started) {
    loop_.unwatch(*watched);
    return started.error();
  }
  kick_watch_[index] = *watched;
  return {};
}

std::uint16_t qemu_guest::on_ring_stopped(std::uint32_t index) {
  if (index > virtio::vsock_tx_queue) return 0;
  if (kick_watch_[index]) loop_.unwatch(*kick_watch_[index]);
  kick_watch_[index].reset();
  return device_->stop_queue(static_cast<std::uint16_t>(index));
}

void qemu_guest::on_reset() { device_->reset(); }

void qemu_guest::connect(std::uint32_t guest_port, unique_fd host_socket, socket_type type,
                         virtio::vsock_device::connect_handler done) {
  if (!session_) {
    done(failure(errc::connection_refused,
                 fmt::format("no QEMU is attached (start QEMU with the vhost-user socket {})",
                             socket_path_)));
    return;
  }
  device_->connect_to_guest(guest_port, std::move(host_socket), vsock_type_of(type),
                            std::move(done));
}

result<unique_fd> qemu_guest::open_to_host(std::uint32_t dst_port, std::uint32_t src_port,
                                           virtio::vsock_type type) {
  return broker_(
      dst_port, src_port,
      type == virtio::vsock_type::seqpacket ? socket_type::seqpacket : socket_type::stream);
}

}  // namespace hvsock::daemon
