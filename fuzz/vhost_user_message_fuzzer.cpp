// vhost_user_message_fuzzer: arbitrary bytes as what a vhost-user front-end
// (QEMU, or anything that connects to a QEMU partition's vhost-user socket)
// writes to hvsockd, read by a real back-end session (src/vhost_user/
// backend.hpp, message.hpp) over a socketpair, as qemu_guest drives it:
// on_readable() while there is something to read, disconnect() when it
// fails or the front-end goes away. Input format: fuzz_inputs.hpp
// (vhost_input): a flags byte (attach fds as QEMU does, how the stream is
// cut into writes, whether the device refuses rings), then the stream.
//
// Whatever the bytes: no crash, no spin (a closed front-end must end the
// session), every reply well-formed (version 1 with the reply bit, a known
// request, a payload no larger than the largest), the device hooks called
// by their contract (a ring started only once and stopped only while it
// runs, on_reset with no ring running), ring spans that lie in mapped,
// writable memory of exactly the ring's size, and no fd left open once the
// session is gone. Any of these failing aborts with the reason.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_inputs.hpp"
#include "sys/fd_passing.hpp"
#include "vhost_user/backend.hpp"
#include "vhost_user/message.hpp"

namespace {

using namespace hvsock;
using namespace hvsock::vhost_user;
namespace vi = hvsock::fuzz::vhost_input;

// on_readable() calls for one write before the session counts as spinning.
constexpr int max_pumps = 10000;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "vhost_user_message_fuzzer: %s\n", why.c_str());
  std::abort();
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// The guest RAM every SET_MEM_TABLE region maps, made once.
int ram_fd = -1;

// The device: checks the session keeps the hooks' contract and that every
// ring it hands over is real memory.
class checking_device : public device_hooks {
 public:
  explicit checking_device(bool refuse) : refuse_(refuse) {}

  result<void> on_ring_started(std::uint32_t index, const ring_info& ring) override {
    if (index >= running_.size() || running_[index])
      die("on_ring_started for ring " + std::to_string(index) + ", running or out of range");
    if (ring.index != index) die("ring_info.index differs from the started ring");
    if (ring.num == 0 || (ring.num & (ring.num - 1)) != 0 || ring.num > max_ring_size)
      die("a ring started with size " + std::to_string(ring.num));
    if (ring.desc.size() != 16u * ring.num || ring.avail.size() != 6u + 2u * ring.num ||
        ring.used.size() != 6u + 8u * ring.num)
      die("ring spans of the wrong size for ring size " + std::to_string(ring.num));
    if (ring.memory == nullptr || ring.memory->region_count() == 0)
      die("a ring started without guest memory");
    if (ring.kick_fd >= 0 && ::fcntl(ring.kick_fd, F_GETFD) < 0)
      die("a ring started with a closed kick fd");
    // A span outside the mappings faults here; the used ring is written.
    touch(ring.desc, false);
    touch(ring.avail, false);
    touch(ring.used, true);
    if (refuse_) return failure(errc::io_error, "the device refuses the ring");
    running_[index] = true;
    return {};
  }

  std::uint16_t on_ring_stopped(std::uint32_t index) override {
    if (index >= running_.size() || !running_[index])
      die("on_ring_stopped for ring " + std::to_string(index) + ", which is not running");
    running_[index] = false;
    return static_cast<std::uint16_t>(index * 7);
  }

  void on_reset() override {
    if (any_running()) die("on_reset with a ring running");
    ++resets_;
  }

  bool any_running() const {
    return std::find(running_.begin(), running_.end(), true) != running_.end();
  }
  int resets() const { return resets_; }

 private:
  static void touch(std::span<std::byte> span, bool write) {
    volatile std::byte* p = span.data();
    for (std::size_t at = 0; at < span.size(); at += 4096) {
      const std::byte b = p[at];
      if (write) p[at] = b;
    }
    const std::byte last = p[span.size() - 1];
    if (write) p[span.size() - 1] = last;
  }

  std::array<bool, vsock_queue_count> running_{};
  bool refuse_;
  int resets_ = 0;
};

std::uint32_t get_u32(std::span<const std::uint8_t> bytes, std::size_t at) {
  std::uint32_t v = 0;
  if (bytes.size() >= at + 4) std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

class fuzz_run {
 public:
  explicit fuzz_run(std::uint8_t flags) : device_(flags & vi::device_refuses) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) die("socketpair failed");
    front_.reset(ends[0]);
    if (::fcntl(ends[1], F_SETFL, O_NONBLOCK) != 0 || ::fcntl(ends[0], F_SETFL, O_NONBLOCK) != 0)
      die("fcntl failed");
    backend_options options;
    options.config = vsock_config(3);
    options.device_features = std::uint64_t{1} << 28;  // VIRTIO_RING_F_INDIRECT_DESC
    session_.emplace(unique_fd(ends[1]), device_, std::move(options));
  }

  ~fuzz_run() {
    if (session_) {
      session_->disconnect();
      if (device_.any_running()) die("a ring still runs after disconnect()");
      if (device_.resets() == 0) die("disconnect() did not reset the device");
    }
  }

  // Sends one piece (with `fds`) and lets the session read it. False once
  // the session has ended.
  bool write(std::span<const std::uint8_t> bytes, std::span<const int> fds = {}) {
    for (int tries = 0; session_ && !bytes.empty(); ++tries) {
      if (tries > max_pumps) die("the session does not read what the front-end sends");
      auto sent = detail::send_message(front_.get(), std::as_bytes(bytes), fds, MSG_DONTWAIT);
      if (!sent && sent.error().code() != errc::would_block)
        die("send to the session: " + sent.error().message());
      if (sent) bytes = {};
      // A full buffer: the session reads (or has ended) before the retry.
      if (!pump()) return false;
    }
    return session_.has_value();
  }

  // The front-end closes its side: the session must see it and end.
  void close_front() {
    if (!session_) return;
    ::shutdown(front_.get(), SHUT_WR);
    if (pump()) die("the session stays open after the front-end closed the connection");
  }

 private:
  // Lets the session handle what is readable; reads its replies. False when
  // it ended (then it has been disconnected).
  bool pump() {
    for (int i = 0; i < max_pumps; ++i) {
      auto status = session_->on_readable();
      read_replies();
      if (!status || *status == vhost_user_backend::status::peer_closed) {
        end_session();
        return false;
      }
      int pending = 0;
      if (::ioctl(session_->fd(), FIONREAD, &pending) != 0) die("FIONREAD failed");
      if (pending == 0) {
        // At EOF the socket reads 0 bytes, and a session that stays open
        // would be woken again and again by its level-triggered owner.
        char probe;
        const ssize_t n = ::recv(session_->fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != 0) return true;
      }
    }
    die("the session keeps reporting itself open with input pending");
  }

  void end_session() {
    session_->disconnect();
    if (device_.any_running()) die("a ring still runs after disconnect()");
    session_.reset();
  }

  // Every reply is a version-1 reply to a known request, payload included.
  void read_replies() {
    for (;;) {
      std::array<std::uint8_t, 4096> buf;
      const ssize_t n = ::recv(front_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      replies_.insert(replies_.end(), buf.begin(), buf.begin() + n);
    }
    while (replies_.size() >= header_size) {
      header h;
      std::memcpy(&h, replies_.data(), sizeof h);
      if (h.flags != (version_1 | flag_reply)) die("a reply with flags " + std::to_string(h.flags));
      if (request_name(h.request).starts_with("request "))
        die("a reply to unknown request " + std::to_string(h.request));
      if (h.size > max_payload_size) die("a reply of " + std::to_string(h.size) + " bytes");
      if (replies_.size() < header_size + h.size) break;
      replies_.erase(replies_.begin(),
                     replies_.begin() + static_cast<std::ptrdiff_t>(header_size + h.size));
    }
  }

  checking_device device_;
  unique_fd front_;
  std::optional<vhost_user_backend> session_;
  std::vector<std::uint8_t> replies_;
};

// The fds QEMU would attach to the message starting at `m`: a memfd per
// SET_MEM_TABLE region, an eventfd for SET_VRING_KICK/CALL/ERR unless the
// no-fd flag is set.
std::vector<unique_fd> fds_for(std::span<const std::uint8_t> m) {
  std::vector<unique_fd> fds;
  const std::uint32_t code = get_u32(m, 0);
  if (code == static_cast<std::uint32_t>(request::set_mem_table)) {
    const std::uint32_t regions = std::min<std::uint32_t>(get_u32(m, header_size), max_regions);
    for (std::uint32_t i = 0; i < regions; ++i) {
      fds.emplace_back(::fcntl(ram_fd, F_DUPFD_CLOEXEC, 0));
      if (!fds.back()) die("dup failed");
    }
  } else if (code == static_cast<std::uint32_t>(request::set_vring_kick) ||
             code == static_cast<std::uint32_t>(request::set_vring_call) ||
             code == static_cast<std::uint32_t>(request::set_vring_err)) {
    if ((get_u32(m, header_size) & vring_invalid_fd_flag) == 0) {
      fds.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!fds.back()) die("eventfd failed");
    }
  }
  return fds;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ram_fd = ::memfd_create("vhost-user-fuzz-ram", MFD_CLOEXEC);
  if (ram_fd < 0 || ::ftruncate(ram_fd, vi::ram_size) != 0) die("memfd_create failed");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  std::span<const std::uint8_t> stream(data + 1, size - 1);
  const std::size_t fds_before = open_fd_count();
  {
    fuzz_run run(flags);
    bool open = true;
    if (flags & vi::attach_fds) {
      // One message at a time, cut where each header says it ends.
      while (open && !stream.empty()) {
        const std::size_t length =
            std::min(stream.size(), header_size + std::size_t{get_u32(stream, 8)});
        const auto message = stream.first(length);
        const auto fds = fds_for(message);
        std::vector<int> raw;
        for (const auto& fd : fds) raw.push_back(fd.get());
        open = run.write(message, raw);
        stream = stream.subspan(length);
      }
    } else {
      const std::size_t piece = vi::piece_sizes[(flags >> vi::piece_shift) & 3];
      while (open && !stream.empty()) {
        const std::size_t n = piece == 0 ? stream.size() : std::min(piece, stream.size());
        open = run.write(stream.first(n));
        stream = stream.subspan(n);
      }
    }
    if (open) run.close_front();
  }
  if (const std::size_t after = open_fd_count(); after != fds_before)
    die("the session left fds open: " + std::to_string(after) + " after, " +
        std::to_string(fds_before) + " before");
  return 0;
}
