#include "virtio/vsock_device.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <string>
#include <utility>

#include "virtio/guest_memory_guard.hpp"

namespace hvsock::virtio {
namespace {

constexpr std::uint16_t op_value(vsock_op op) { return static_cast<std::uint16_t>(op); }

void make_non_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace

vsock_device::vsock_device(const vsock_device_options& options, vsock_host_side& host,
                           fd_watcher& watcher, notify_function notify)
    : options_(options),
      settings_{options.guest_cid, options.buf_alloc, options.seqpacket_buf_alloc,
                options.max_payload},
      host_(host),
      watcher_(watcher),
      notify_(std::move(notify)),
      next_port_(options.first_ephemeral_port) {}

vsock_device::~vsock_device() {
  for (auto& [id, e] : entries_)
    if (e.watch != 0) watcher_.unwatch(e.watch);
  if (resume_watch_ != 0) watcher_.unwatch(resume_watch_);
}

bool vsock_device::queue_running(std::uint16_t index) const {
  if (index == vsock_rx_queue) return rx_.has_value();
  if (index == vsock_tx_queue) return tx_.has_value();
  return false;
}

vsock_device::entry* vsock_device::find(std::uint64_t id) {
  const auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

vsock_device::entry& vsock_device::add(vsock_connection conn) {
  const std::uint64_t id = next_id_++;
  const connection_key key = conn.key();
  auto [it, inserted] = entries_.emplace(id, entry{id, std::move(conn)});
  by_key_[key] = id;
  ++stats_.connections_opened;
  return it->second;
}

void vsock_device::destroy(entry& e) {
  if (e.watch != 0) watcher_.unwatch(e.watch);
  if (e.keyed) {
    const auto it = by_key_.find(e.conn.key());
    if (it != by_key_.end() && it->second == e.id) by_key_.erase(it);
  }
  // Forget queued ids now: a guest churning connections while it posts no
  // rx buffers must not grow these queues beyond max_connections.
  const std::uint64_t id = e.id;
  if (e.in_control) std::erase(control_ready_, id);
  if (e.in_rx_ready) std::erase(rx_ready_, id);
  entries_.erase(id);  // closes the host fd
}

void vsock_device::queue_stateless(const virtio_vsock_hdr& h) {
  if (stateless_.size() >= options_.max_pending_control) {
    ++stats_.control_dropped;
    return;
  }
  if (h.op == op_value(vsock_op::rst)) ++stats_.resets_sent;
  stateless_.push_back(h);
}

void vsock_device::complete(entry& e, result<std::uint32_t> outcome) {
  if (!e.done) return;
  completions_.push_back([done = std::move(e.done), outcome = std::move(outcome)]() mutable {
    done(std::move(outcome));
  });
  e.done = nullptr;
}

void vsock_device::settle(entry& e) {
  if (e.conn.has_control() && !e.in_control) {
    e.in_control = true;
    control_ready_.push_back(e.id);
  }
  // A message read already needs no readable fd to go on.
  if (e.conn.has_message_for_guest() && e.conn.wants_read() && !e.in_rx_ready) {
    e.in_rx_ready = true;
    rx_ready_.push_back(e.id);
  }
  std::uint32_t want = e.conn.wanted_events();
  // While queued as readable, the fd is read by pump_rx: watching EPOLLIN
  // meanwhile would only spin the loop when the guest has no rx buffers.
  if (e.in_rx_ready) want &= ~static_cast<std::uint32_t>(EPOLLIN);
  if (want == e.watched_events && (want == 0) == (e.watch == 0)) return;
  if (want == 0) {
    watcher_.unwatch(e.watch);
    e.watch = 0;
    e.watched_events = 0;
    return;
  }
  result<void> ok;
  if (e.watch == 0) {
    const std::uint64_t id = e.id;
    auto w = watcher_.watch(e.conn.host_fd(), want,
                            [this, id](std::uint32_t events) { on_host_event(id, events); });
    if (w) {
      e.watch = *w;
    } else {
      ok = w.error();
    }
  } else {
    ok = watcher_.modify(e.watch, want);
  }
  if (!ok) {
    // The loop cannot watch it (out of memory, fd gone bad): this connection
    // cannot make progress, so it ends like any host-side failure.
    apply(e, vsock_connection::verdict::reset);
    return;
  }
  e.watched_events = want;
}

void vsock_device::apply(entry& e, vsock_connection::verdict v) {
  using verdict = vsock_connection::verdict;
  switch (v) {
    case verdict::keep: settle(e); return;
    case verdict::connected:
      complete(e, e.conn.key().local_port);
      settle(e);
      return;
    case verdict::refused:
      complete(
          e, failure(errc::connection_refused,
                     "guest port " + std::to_string(e.conn.key().peer_port) +
                         ": refused by the guest (nothing listens there, or its backlog is full)"));
      destroy(e);
      return;
    case verdict::reset:
      queue_stateless(e.conn.rst());
      complete(e, failure(errc::connection_refused, "guest port " +
                                                        std::to_string(e.conn.key().peer_port) +
                                                        ": protocol error from the guest"));
      destroy(e);
      return;
    case verdict::finished: destroy(e); return;
    case verdict::guest_closed:
      queue_stateless(e.conn.rst());
      if (e.conn.buffered_bytes() == 0) {
        destroy(e);
        return;
      }
      by_key_.erase(e.conn.key());
      e.keyed = false;
      e.conn.start_draining();
      e.deadline = std::chrono::steady_clock::now() + options_.drain_timeout;
      settle(e);
      return;
  }
}

void vsock_device::on_host_event(std::uint64_t id, std::uint32_t events) {
  begin_entry();
  entry* e = find(id);
  if (e == nullptr) return;
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && e->conn.buffered_bytes() > 0) {
    const auto v = e->conn.on_host_writable();
    if (v != vsock_connection::verdict::keep) {
      apply(*e, v);
      (void)pump_rx();
      finish();
      return;
    }
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && e->conn.wants_read() && !e->in_rx_ready) {
    e->in_rx_ready = true;
    rx_ready_.push_back(id);
  }
  settle(*e);
  (void)pump_rx();  // a failure has reset the device already
  finish();
}

result<void> vsock_device::start_queue(std::uint16_t index, split_virtqueue queue) {
  if (index == vsock_rx_queue) {
    rx_.emplace(std::move(queue));
  } else if (index == vsock_tx_queue) {
    tx_.emplace(std::move(queue));
  } else {
    return failure(errc::invalid_argument,
                   "vsock device: queue " + std::to_string(index) + " is not rx or tx");
  }
  begin_entry();
  auto r = process_tx();
  if (r) r = pump_rx();
  finish();
  return r;
}

std::uint16_t vsock_device::stop_queue(std::uint16_t index) {
  std::optional<split_virtqueue>* q = index == vsock_rx_queue   ? &rx_
                                      : index == vsock_tx_queue ? &tx_
                                                                : nullptr;
  if (q == nullptr || !q->has_value()) return 0;
  const std::uint16_t last = (*q)->last_avail_idx();
  q->reset();
  return last;
}

void vsock_device::reset() {
  std::vector<std::uint64_t> ids;
  ids.reserve(entries_.size());
  for (auto& [id, e] : entries_) ids.push_back(id);
  for (const auto id : ids) {
    entry* e = find(id);
    complete(*e, failure(errc::connection_refused, "guest port " +
                                                       std::to_string(e->conn.key().peer_port) +
                                                       ": the guest's vsock device was reset"));
    destroy(*e);
  }
  by_key_.clear();
  stateless_.clear();
  control_ready_.clear();
  rx_ready_.clear();
  rx_.reset();
  tx_.reset();
  rx_pushed_ = tx_pushed_ = false;
  if (resume_watch_ != 0) watcher_.unwatch(resume_watch_);
  resume_watch_ = 0;
  tx_chains_spent_ = tx_bytes_spent_ = rx_chains_spent_ = 0;
  finish();
}

result<void> vsock_device::fault(const failure& f) {
  reset();
  if (on_fault_) on_fault_(f);
  return f;
}

void vsock_device::begin_entry() {
  // A fault flag left by someone else's access is not this call's business,
  // and each wake-up gets a fresh allowance.
  (void)take_guest_memory_fault();
  tx_chains_spent_ = tx_bytes_spent_ = rx_chains_spent_ = 0;
}

result<void> vsock_device::check_memory() {
  if (!take_guest_memory_fault()) return {};
  // What was computed from the faulting access is garbage: the reset drops
  // it (buffered payloads included) before any of it reaches a host stream.
  return fault(failure(errc::io_error,
                       "guest memory is gone: touching it faulted (the front-end shrank or "
                       "unmapped its memory file)"));
}

bool vsock_device::yield_to_loop() {
  ++stats_.budget_yields;
  if (resume_watch_ != 0) return true;
  if (!resume_fd_) resume_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (resume_fd_) {
    auto w = watcher_.watch(resume_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_resume(); });
    const std::uint64_t one = 1;
    if (w && ::write(resume_fd_.get(), &one, sizeof one) == sizeof one) {
      resume_watch_ = *w;
      return true;
    }
    if (w) watcher_.unwatch(*w);
  }
  // No way to be woken again: carrying on unbounded beats stalling the guest.
  tx_chains_spent_ = tx_bytes_spent_ = rx_chains_spent_ = 0;
  return false;
}

void vsock_device::on_resume() {
  watcher_.unwatch(resume_watch_);
  resume_watch_ = 0;
  std::uint64_t count;
  (void)::read(resume_fd_.get(), &count, sizeof count);
  begin_entry();
  if (process_tx()) (void)pump_rx();  // a failure has reset the device and told the owner
  finish();
}

result<void> vsock_device::on_tx_kick() {
  begin_entry();
  auto r = process_tx();
  if (r) r = pump_rx();
  finish();
  return r;
}

result<void> vsock_device::on_rx_kick() {
  begin_entry();
  auto r = pump_rx();
  finish();
  return r;
}

result<void> vsock_device::process_tx() {
  if (!tx_) return {};
  for (;;) {
    if ((tx_chains_spent_ >= options_.tx_budget_chains ||
         tx_bytes_spent_ >= options_.tx_budget_bytes) &&
        yield_to_loop())
      return {};
    auto popped = tx_->pop();
    if (auto ok = check_memory(); !ok) return ok;
    if (!popped) return fault(popped.error());
    if (!popped->has_value()) return {};
    const descriptor_chain& chain = **popped;
    ++tx_chains_spent_;
    tx_bytes_spent_ += chain.readable_length;
    handle_tx(chain);
    if (auto ok = check_memory(); !ok) return ok;
    // The payload has been written or copied: the buffers go back now.
    if (auto pushed = tx_->push_used(chain.head, 0); !pushed) return fault(pushed.error());
    if (auto ok = check_memory(); !ok) return ok;
    tx_pushed_ = true;
  }
}

void vsock_device::handle_tx(const descriptor_chain& chain) {
  const parsed_packet p = parse_packet(chain, options_.max_payload);
  // A header read from vanished memory is not acted on (process_tx resets).
  if (guest_memory_faulted()) return;
  const virtio_vsock_hdr& h = p.header;
  if (p.status == packet_status::malformed || h.src_cid != options_.guest_cid ||
      h.dst_cid != vmaddr_cid_host || p.status == packet_status::ignore) {
    ++stats_.packets_dropped;
    return;
  }
  if (p.status == packet_status::reply_rst) {
    queue_stateless(make_rst_reply(h));
    return;
  }
  const auto it = by_key_.find({h.dst_port, h.src_port});
  if (it == by_key_.end()) {
    if (h.op == op_value(vsock_op::request)) {
      accept_request(h);
    } else if (h.op != op_value(vsock_op::rst)) {
      queue_stateless(make_rst_reply(h));
    }
    return;
  }
  entry* e = find(it->second);
  if (h.type != static_cast<std::uint16_t>(e->conn.type())) {
    if (h.op != op_value(vsock_op::rst)) queue_stateless(make_rst_reply(h));
    return;
  }
  apply(*e, e->conn.on_guest_packet(p));
}

void vsock_device::accept_request(const virtio_vsock_hdr& h) {
  if (entries_.size() >= options_.max_connections) {
    ++stats_.connections_refused;
    queue_stateless(make_rst_reply(h));
    return;
  }
  auto host = host_.open_to_host(h.dst_port, h.src_port, static_cast<vsock_type>(h.type));
  if (!host || !host->valid()) {
    ++stats_.connections_refused;
    queue_stateless(make_rst_reply(h));
    return;
  }
  make_non_blocking(host->get());
  entry& e = add(vsock_connection::accept(settings_, h, std::move(*host)));
  settle(e);
}

void vsock_device::connect_to_guest(std::uint32_t guest_port, unique_fd host_stream,
                                    vsock_type type, connect_handler done) {
  const std::string what = "guest port " + std::to_string(guest_port);
  if (entries_.size() >= options_.max_connections) {
    done(failure(errc::limit_reached, what + ": the VM has " +
                                          std::to_string(options_.max_connections) +
                                          " vsock connections open"));
    return;
  }
  // A host-side port not in use towards this guest port.
  std::optional<std::uint32_t> port;
  for (std::size_t tries = 0; tries <= options_.max_connections && !port; ++tries) {
    const std::uint32_t candidate = next_port_;
    next_port_ = next_port_ >= 0xfffffffeu ? options_.first_ephemeral_port : next_port_ + 1;
    if (!by_key_.contains({candidate, guest_port})) port = candidate;
  }
  if (!port) {
    done(failure(errc::limit_reached, what + ": no free host-side port"));
    return;
  }
  make_non_blocking(host_stream.get());
  entry& e =
      add(vsock_connection::connect(settings_, *port, guest_port, type, std::move(host_stream)));
  e.done = std::move(done);
  e.deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
  settle(e);
  begin_entry();
  (void)pump_rx();
  finish();
}

void vsock_device::on_tick(std::chrono::steady_clock::time_point now) {
  begin_entry();
  std::vector<std::uint64_t> expired;
  for (auto& [id, e] : entries_) {
    const auto st = e.conn.current_state();
    if ((st == vsock_connection::state::connecting || st == vsock_connection::state::draining) &&
        e.deadline <= now)
      expired.push_back(id);
  }
  for (const auto id : expired) {
    entry* e = find(id);
    if (e->conn.current_state() == vsock_connection::state::connecting) {
      // The guest may still answer a REQUEST it got late: RST makes it drop it.
      queue_stateless(e->conn.rst());
      complete(*e,
               failure(errc::timed_out, "guest port " + std::to_string(e->conn.key().peer_port) +
                                            ": no answer from the guest"));
    }
    destroy(*e);
  }
  (void)pump_rx();
  finish();
}

result<void> vsock_device::pump_rx() {
  if (!rx_) return {};
  while (!stateless_.empty() || !control_ready_.empty() || !rx_ready_.empty()) {
    if (rx_chains_spent_ >= options_.rx_budget_chains && yield_to_loop()) return {};
    auto popped = rx_->pop();
    if (auto ok = check_memory(); !ok) return ok;
    if (!popped) return fault(popped.error());
    if (!popped->has_value()) return {};  // starved: on_rx_kick resumes
    const descriptor_chain& chain = **popped;
    if (chain.writable_length <= vsock_header_size) {
      // Too small for any packet: a broken driver. Give it back empty
      // rather than loop on it.
      if (auto r = rx_->push_used(chain.head, 0); !r) return fault(r.error());
      rx_pushed_ = true;
      ++stats_.packets_dropped;
      continue;
    }
    std::uint32_t used = 0;
    if (!stateless_.empty()) {
      auto w = write_packet(chain, stateless_.front(), {});
      stateless_.pop_front();
      used = w ? *w : 0;
    } else if (!control_ready_.empty()) {
      const std::uint64_t id = control_ready_.front();
      control_ready_.pop_front();
      entry* e = find(id);
      if (e != nullptr) e->in_control = false;
      if (e == nullptr || !e->conn.has_control()) {
        if (auto r = rx_->unpop(); !r) return fault(r.error());
        continue;
      }
      auto w = write_packet(chain, e->conn.take_control(), {});
      used = w ? *w : 0;
      settle(*e);
    } else {
      const std::uint64_t id = rx_ready_.front();
      rx_ready_.pop_front();
      entry* e = find(id);
      if (e == nullptr) {
        if (auto r = rx_->unpop(); !r) return fault(r.error());
        continue;
      }
      const auto fill = e->conn.fill_rx(chain);
      used = fill.used;
      if (used == 0) {
        if (auto r = rx_->unpop(); !r) return fault(r.error());
      }
      if (fill.next == vsock_connection::verdict::keep && !fill.would_block &&
          e->conn.wants_read()) {
        rx_ready_.push_back(id);  // more may be there: round robin
      } else {
        e->in_rx_ready = false;
      }
      apply(*e, fill.next);
      if (used == 0) continue;
    }
    if (auto ok = check_memory(); !ok) return ok;
    if (auto r = rx_->push_used(chain.head, used); !r) return fault(r.error());
    if (auto ok = check_memory(); !ok) return ok;
    ++rx_chains_spent_;
    rx_pushed_ = true;
  }
  return {};
}

void vsock_device::finish() {
  if (rx_pushed_ && rx_ && rx_->needs_notification() && notify_) notify_(vsock_rx_queue);
  if (tx_pushed_ && tx_ && tx_->needs_notification() && notify_) notify_(vsock_tx_queue);
  rx_pushed_ = tx_pushed_ = false;
  (void)check_memory();    // needs_notification reads the guest's ring
  if (finishing_) return;  // the outer finish() runs what a handler added
  finishing_ = true;
  while (!completions_.empty()) {
    auto batch = std::move(completions_);
    completions_.clear();
    for (auto& c : batch) c();
  }
  finishing_ = false;
}

}  // namespace hvsock::virtio
