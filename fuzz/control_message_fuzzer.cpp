// control_message_fuzzer: arbitrary bytes as what clients write to hvsockd's
// partition control sockets (src/protocol/control_wire.hpp), served by a
// real daemon core built in this process for each input: a partition tree
// (host; VM web; container box in web; container lone on the host; the
// QEMU VM guest, with no QEMU attached), a registry, the router, counters,
// an event loop and the control_server with its socket files in a
// temporary runtime directory. The input is a list of records (format:
// fuzz_inputs.hpp): up to four client connections, each connected through a
// partition's control socket, send messages (with or without fds attached),
// read what the daemon sends back, shut down or close. Between records the
// daemon's event loop runs until it is idle.
//
// HVSOCK_FUZZ_LOG=1 prints the daemon's log lines (to see what an input does).
//
// Whatever the bytes: the daemon must not crash, hang or spin (its loop goes
// idle after each record), must only ever send well-formed replies and
// incoming messages, must have closed every client once all the
// connections are closed, and must leave no fd open, during the run or
// after the core is torn down. Any of these failing aborts with the reason.
//
// How "idle" is known: an always-readable eventfd is watched by the loop; on
// each of its turns it asks the loop's own epoll fd (epoll_wait with no
// timeout, level-triggered, so nothing is consumed) whether anything but
// itself is ready. Only then does it play the next record, so the whole run
// is one call to event_loop::run() on this thread.
#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "daemon/control_server.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/partition_tree.hpp"
#include "daemon/router.hpp"
#include "daemon/service_counters.hpp"
#include "daemon/service_registry.hpp"
#include "fuzz_inputs.hpp"
#include "protocol/control_wire.hpp"
#include "protocol/runtime_paths.hpp"
#include "sys/fd_passing.hpp"

namespace {

using namespace hvsock;
using namespace hvsock::daemon;
namespace wire = hvsock::detail::wire;
namespace ci = hvsock::fuzz::control_input;

// Turns of the loop without it going idle before this counts as a spin.
constexpr unsigned max_busy_turns = 100000;
// Clients admitted at once: fewer than the slots, so every limit is reached:
// two per partition, three in all (four, less one kept for the management
// socket).
constexpr std::size_t client_budget_size = 4;
constexpr std::size_t management_reserve = 1;
constexpr std::size_t clients_per_partition = 2;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "control_message_fuzzer: %s\n", why.c_str());
  std::abort();
}

// The open fds of this process, as "N -> what" lines.
std::vector<std::string> open_fds() {
  std::vector<std::string> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) die("cannot list /proc/self/fd");
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.' || std::atoi(e->d_name) == ::dirfd(dir)) continue;
    char target[256] = {};
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    (void)!::readlink(path.c_str(), target, sizeof target - 1);
    fds.push_back(std::string(e->d_name) + " -> " + target);
  }
  ::closedir(dir);
  return fds;
}

[[noreturn]] void die_with_fds(const std::string& why) {
  std::string text = why + "; open fds:";
  for (const auto& fd : open_fds()) text += "\n  " + fd;
  die(text);
}

// The switch every input runs against, set up once.
struct switch_setup {
  std::string runtime_dir;
  bool log = std::getenv("HVSOCK_FUZZ_LOG") != nullptr;  // the daemon's lines on stderr
  partition_tree partitions{ci::host_id};
  service_registry services;

  switch_setup() {
    // Short: AF_UNIX socket paths are limited to 107 bytes.
    char tmpl[] = "/tmp/hvsock-cfuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) die("mkdtemp failed");
    runtime_dir = tmpl;
    if (::mkdir(detail::partitions_dir(runtime_dir).c_str(), 0700) != 0)
      die("cannot make the partitions directory");
    auto must = [](const auto& made, const char* what) {
      if (!made) die(std::string(what) + ": " + made.error().message());
    };
    must(partitions.create({.name = "web", .kind = partition_kind::vm, .id = ci::web_id}), "web");
    must(partitions.create(
             {.name = "box", .kind = partition_kind::container, .parent = "web", .id = ci::box_id}),
         "box");
    must(partitions.create({.name = "lone", .kind = partition_kind::container, .id = ci::lone_id}),
         "lone");
    must(partitions.create(
             {.name = "guest", .kind = partition_kind::vm, .id = ci::guest_id, .qemu = true}),
         "guest");
    must(services.register_service(service_id_from_port(ci::echo_port), "echo"), "echo");
    must(services.register_service(service_id_from_port(ci::off_port), "off", false), "off");
    must(services.register_service(service_id_from_port(ci::partly_port), "partly"), "partly");
    must(services.set_enabled_for(service_id_from_port(ci::partly_port), ci::web_id, false),
         "partly for web");
    must(services.register_service(ci::named_service, "named"), "named");
  }
  ~switch_setup() {
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir, ignored);
  }
};

switch_setup* setup = nullptr;

// One input against a fresh daemon core.
class fuzz_run {
 public:
  explicit fuzz_run(std::span<const std::uint8_t> input)
      : at_(input.data()), end_(input.data() + input.size()) {
    // event_loop::create opens its epoll fd first, so it gets the lowest
    // free number: find that number now and check it afterwards.
    const int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (lowest < 0) die("open /dev/null failed");
    ::close(lowest);
    auto loop = event_loop::create();
    if (!loop) die("event_loop::create: " + loop.error().message());
    loop_ = std::move(*loop);
    epoll_fd_ = lowest;
    char target[64] = {};
    const std::string link = "/proc/self/fd/" + std::to_string(lowest);
    if (::readlink(link.c_str(), target, sizeof target - 1) < 0 ||
        std::string_view(target) != "anon_inode:[eventpoll]")
      die("could not find the event loop's epoll fd");

    server_ = std::make_unique<control_server>(
        *loop_, budget_, setup->partitions, setup->services, routes_, counters_,
        // A first-message timeout of 0 fires on the loop's next turn, the
        // same way in every run.
        control_server::options{.runtime_dir = setup->runtime_dir,
                                .log_connections = true,
                                .max_clients_per_partition = clients_per_partition,
                                .management_reserve = management_reserve,
                                .first_message_timeout = std::chrono::milliseconds(0)},
        [](log_level, const std::string& line) {
          if (setup->log) std::fprintf(stderr, "hvsockd: %s\n", line.c_str());
        });
    for (const partition* p : setup->partitions.list())
      if (auto opened = server_->open_partition(*p); !opened)
        die("open_partition " + p->name + ": " + opened.error().message());

    turn_fd_.reset(::eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));  // readable until read: always
    if (!turn_fd_) die("eventfd failed");
    auto watched = loop_->watch(turn_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_turn(); });
    if (!watched) die("watch: " + watched.error().message());
    turn_watch_ = *watched;
    fds_after_setup_ = open_fds().size();
  }

  ~fuzz_run() {
    for (auto& s : slots_) s.reset();
    if (loop_) loop_->unwatch(turn_watch_);
    server_.reset();  // before the loop it watches with
  }

  void run() {
    if (auto ran = loop_->run(); !ran) die("event_loop::run: " + ran.error().message());
    if (!finished_) die("the event loop stopped by itself");
  }

 private:
  enum class phase { records, closing };

  // Nothing but the turn eventfd is ready: every handler has done its work.
  bool loop_idle() const {
    std::array<epoll_event, 16> events;
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
    if (n < 0) die(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i)
      if (events[static_cast<std::size_t>(i)].data.u64 != turn_watch_) return false;
    return true;
  }

  void on_turn() {
    if (++busy_turns_ > max_busy_turns)
      die("the daemon's event loop never went idle (" + std::to_string(max_busy_turns) +
          " turns with work ready)");
    if (!loop_idle()) return;
    busy_turns_ = 0;
    if (phase_ == phase::records) {
      if (at_ != end_) {
        while (play_record() && at_ != end_) {
        }
        return;
      }
      // Every client goes away; the daemon must notice each one.
      for (auto& s : slots_) s.reset();
      phase_ = phase::closing;
      return;
    }
    check_all_closed();
    finished_ = true;
    loop_->stop();
  }

  void check_all_closed() {
    if (server_->client_count() != 0)
      die(std::to_string(server_->client_count()) +
          " control clients still open after every connection closed");
    if (routes_.listener_count() != 0)
      die(std::to_string(routes_.listener_count()) +
          " listeners still bound after every connection closed");
    // The socket broker, opened at the first connect_socket_request, is the
    // one fd the daemon may have gained.
    struct stat st {};
    const bool broker = ::stat((setup->runtime_dir + "/broker.sock").c_str(), &st) == 0;
    const std::size_t now = open_fds().size();
    if (now != fds_after_setup_ + (broker ? 1 : 0))
      die_with_fds("the daemon holds " + std::to_string(now) + " fds with every client gone, " +
                   std::to_string(fds_after_setup_) + " after set-up" +
                   (broker ? " (+1 socket broker)" : ""));
  }

  // Plays one record; true when the next one belongs to the same batch
  // (the daemon does not run in between).
  bool play_record() {
    const std::uint8_t op = *at_++;
    const std::size_t slot = op & 3;
    const std::size_t partition = (op >> 2) & 3;
    const auto act = static_cast<ci::action>((op >> 4) & 7);
    std::span<const std::byte> bytes;
    if (ci::carries_bytes(act)) {
      std::size_t n = 0;
      if (end_ - at_ >= 2) {
        n = at_[0] | (std::size_t{at_[1]} << 8);
        at_ += 2;
      } else {
        at_ = end_;
      }
      n = std::min(n, static_cast<std::size_t>(end_ - at_));
      bytes = std::as_bytes(std::span(at_, n));
      at_ += n;
    }
    switch (act) {
      case ci::action::drain: drain(slot); break;
      case ci::action::close: slots_[slot].reset(); break;
      case ci::action::shutdown_write:
        if (slots_[slot]) ::shutdown(slots_[slot].get(), SHUT_WR);
        break;
      default: send(slot, partition, act, bytes); break;
    }
    return (op & ci::batch_bit) != 0;
  }

  void send(std::size_t slot, std::size_t partition, ci::action act,
            std::span<const std::byte> bytes) {
    if (!slots_[slot]) {
      unique_fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (!fd) die("socket failed");
      auto addr = server_->socket_path(ci::partition_names[partition]);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, addr.c_str(), sizeof sa.sun_path - 1);
      // A full accept queue (EAGAIN) leaves the slot closed.
      if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return;
      slots_[slot] = std::move(fd);
    }
    std::vector<unique_fd> attached;
    auto add_socket = [&](int type) {
      attached.emplace_back(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
      if (!attached.back()) die("socket failed");
    };
    switch (act) {
      case ci::action::send_unix_socket: add_socket(SOCK_STREAM); break;
      case ci::action::send_two_sockets:
        add_socket(SOCK_STREAM);
        add_socket(SOCK_STREAM);
        break;
      case ci::action::send_pipe: {
        int ends[2];
        if (::pipe2(ends, O_CLOEXEC) != 0) die("pipe2 failed");
        attached.emplace_back(ends[0]);
        ::close(ends[1]);
        break;
      }
      case ci::action::send_connected_socket: {
        int ends[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
          die("socketpair failed");
        attached.emplace_back(ends[0]);
        attached.emplace_back(ends[1]);  // kept here until the send is done
        break;
      }
      default: break;
    }
    if (bytes.empty() && attached.empty()) return;  // connected, and silent
    std::vector<int> raw;
    for (const auto& fd : attached) raw.push_back(fd.get());
    if (act == ci::action::send_connected_socket) raw.resize(1);
    // May fail (the daemon closed the connection, its queue is full): as for
    // any client, that is the client's problem.
    (void)detail::send_message(slots_[slot].get(), bytes, std::span<const int>(raw), MSG_DONTWAIT);
  }

  // Reads everything the daemon has sent on `slot`, checking each message.
  void drain(std::size_t slot) {
    if (!slots_[slot]) return;
    for (;;) {
      std::array<std::byte, wire::max_message_size + 1> buffer{};
      std::vector<unique_fd> fds;  // closed at the end of each message
      auto got = detail::receive_message(slots_[slot].get(), buffer, MSG_DONTWAIT, &fds);
      if (!got) return;                           // nothing more now, or a reset
      if (got->size == 0 && fds.empty()) return;  // the daemon closed it
      check_daemon_message(std::span<const std::byte>(buffer.data(), got->size), fds.size(),
                           got->truncated || got->control_truncated);
    }
  }

  // The daemon sends only replies (with at most one fd) and incoming
  // messages (with exactly one), each well-formed.
  static void check_daemon_message(std::span<const std::byte> data, std::size_t fd_count,
                                   bool truncated) {
    if (truncated) die("the daemon sent a message longer than max_message_size");
    const auto type = wire::peek_type(data);
    if (type == wire::message_type::reply) {
      auto r = wire::decode<wire::reply>(data, *type);
      if (!r) die("the daemon sent a reply of " + std::to_string(data.size()) + " bytes");
      if (r->reason_length > wire::max_reason_length) die("a reply's reason_length is too long");
      if (fd_count > 1 || (r->status != 0 && fd_count != 0))
        die("a reply with " + std::to_string(fd_count) + " fds (status " +
            std::to_string(r->status) + ")");
    } else if (type == wire::message_type::incoming) {
      if (!wire::decode<wire::incoming>(data, *type))
        die("the daemon sent an incoming of " + std::to_string(data.size()) + " bytes");
      if (fd_count != 1) die("an incoming with " + std::to_string(fd_count) + " fds");
    } else {
      die("the daemon sent a " + std::to_string(data.size()) +
          "-byte message that is neither a reply nor an incoming");
    }
  }

  const std::uint8_t* at_;
  const std::uint8_t* end_;
  std::unique_ptr<event_loop> loop_;
  int epoll_fd_ = -1;
  client_budget budget_{client_budget_size};
  router routes_{setup->partitions, setup->services};
  service_counters counters_;
  std::unique_ptr<control_server> server_;
  unique_fd turn_fd_;
  event_loop::watch_id turn_watch_ = 0;
  std::array<unique_fd, ci::slot_count> slots_;
  phase phase_ = phase::records;
  unsigned busy_turns_ = 0;
  bool finished_ = false;
  std::size_t fds_after_setup_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setup = new switch_setup;
  std::atexit([] { delete setup; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::size_t fds_before = open_fds().size();
  {
    fuzz_run run(std::span(data, size));
    run.run();
  }
  if (const std::size_t after = open_fds().size(); after != fds_before)
    die_with_fds("after the daemon core was torn down " + std::to_string(after) +
                 " fds are open, " + std::to_string(fds_before) + " before it was built");
  return 0;
}
