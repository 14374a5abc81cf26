// hvsock_bench: measures hvsock next to the kernel transports it stands in
// for, in one run against a private hvsockd.
//
//   1. stream throughput (128 KiB writes): hvsock from partition "bench-vm" to
//      a listener in the host, a raw AF_UNIX socketpair, TCP over 127.0.0.1;
//   2. connect + accept + 1-byte echo + close latency (p50, p99): hvsock, TCP;
//   3. sequential connections per second (connect + accept + close): hvsock, TCP.
//
// Every sender, receiver, client and server is its own forked process; only
// the measured loop runs between the steady_clock reads, never fork/exec or
// set-up. Rounds of the transports are interleaved, so a burst of load from
// other processes on the machine hits all of them alike. The targets from
// issue 2 are printed as PASS/MISS; the program exits 0 whenever the
// measurement ran, 1 when something broke (the daemon, a child, a timeout),
// 2 on bad options. It never opens AF_VSOCK sockets and uses the network only
// on 127.0.0.1.
//
// Boundedness: every wait has a deadline, and an alarm (--time-limit) ends
// the whole run. hvsockd and every child are killed on any exit: by their
// owners on normal and exceptional paths, by the signal handler on
// SIGINT/SIGTERM/SIGHUP/SIGALRM, and by PR_SET_PDEATHSIG if this process dies
// some other way. Single-threaded; children are forked from the main thread.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <hvsock/hvsock.hpp>

#include "protocol/runtime_paths.hpp"

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t chunk_size = 128 * 1024;
constexpr std::uint64_t gib = 1ULL << 30;
constexpr std::uint32_t bench_port = 5001;
constexpr const char* bench_vm_name = "bench-vm";
constexpr const char* bench_service_name = "bench";

struct options {
  std::uint64_t bytes = 2 * gib;
  int rounds = 5;
  int iterations = 5000;
  int warmup = 200;
  double cps_seconds = 3.0;
  unsigned time_limit = 600;
  bool json = false;
  std::string hvsockd = HVSOCKD_PATH;
  std::string cli = HVSOCK_CLI_PATH;
};

class bench_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw bench_failure(what + ": " + std::strerror(errno));
}

// ---------------------------------------------------------------------------
// Process bookkeeping. The pids of hvsockd and of live children sit in a
// lock-free table so that the signal handler can kill them.

constexpr int max_tracked = 32;
std::array<std::atomic<pid_t>, max_tracked> tracked_pids{};
pid_t main_pid = 0;

void track(pid_t pid) {
  for (auto& slot : tracked_pids) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void untrack(pid_t pid) {
  for (auto& slot : tracked_pids) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

constexpr std::array fatal_signals{SIGINT, SIGTERM, SIGHUP, SIGALRM};

void on_fatal_signal(int sig) {
  for (auto& slot : tracked_pids) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  static const char timeout_msg[] =
      "hvsock_bench: time limit reached; killed hvsockd and the children\n";
  static const char signal_msg[] = "hvsock_bench: interrupted; killed hvsockd and the children\n";
  if (sig == SIGALRM)
    (void)!::write(STDERR_FILENO, timeout_msg, sizeof timeout_msg - 1);
  else
    (void)!::write(STDERR_FILENO, signal_msg, sizeof signal_msg - 1);
  ::_exit(sig == SIGALRM ? 1 : 128 + sig);
}

void install_signal_handlers(unsigned time_limit) {
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : fatal_signals) ::sigaction(sig, &sa, nullptr);
  // Data sockets use MSG_NOSIGNAL; this covers the report pipes.
  ::signal(SIGPIPE, SIG_IGN);
  ::alarm(time_limit);
}

// In a freshly forked child: async-signal-safe calls only. Drops the
// parent's handlers (a child must never kill hvsockd) and dies with the
// parent. Exec'd children also get SIGPIPE back.
void become_child(bool will_exec) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig : fatal_signals) ::sigaction(sig, &dfl, nullptr);
  if (will_exec) ::sigaction(SIGPIPE, &dfl, nullptr);
  for (auto& slot : tracked_pids) slot.store(0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != main_pid) ::_exit(1);
}

int remaining_ms(steady::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
  return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, INT_MAX));
}

// True when `fd` is readable (or at EOF) before the deadline.
bool wait_readable(int fd, steady::time_point deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) throw_errno("poll");
  }
}

std::string read_to_eof(int fd, steady::time_point deadline, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    if (!wait_readable(fd, deadline)) throw bench_failure(what + ": timed out");
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what);
    }
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

void write_report(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write report");
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void write_report(int fd, const std::string& text) { write_report(fd, text.data(), text.size()); }

// Tells the parent that a server or receiver is listening.
void note_ready(int report_fd) { write_report(report_fd, "R", 1); }

std::string describe_status(int raw) {
  if (WIFEXITED(raw)) return fmt::format("exit {}", WEXITSTATUS(raw));
  if (WIFSIGNALED(raw)) return fmt::format("killed by signal {}", WTERMSIG(raw));
  return "stopped";
}

// Waits (bounded) for `pid`; kills it when the time runs out. Returns the
// raw wait status, or nullopt on timeout.
std::optional<int> reap(pid_t pid, steady::time_point deadline) {
  int raw = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &raw, WNOHANG);
    if (r == pid) return raw;
    if (r < 0 && errno != EINTR) throw_errno("waitpid");
    if (steady::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &raw, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(1ms);
  }
}

// A forked child running `body(report_fd)`; the parent reads what it writes
// to report_fd. An exception in the body is printed and becomes exit 1.
class child {
 public:
  child(std::string name, const std::function<void(int)>& body) : name_(std::move(name)) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno("pipe2");
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      throw_errno("fork " + name_);
    }
    if (pid_ == 0) {
      become_child(false);
      ::close(fds[0]);
      int code = 0;
      try {
        body(fds[1]);
      } catch (const std::exception& e) {
        fmt::print(stderr, "hvsock_bench: {}: {}\n", name_, e.what());
        code = 1;
      } catch (...) {
        code = 1;
      }
      ::_exit(code);
    }
    ::close(fds[1]);
    report_.reset(fds[0]);
    track(pid_);
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() { stop(); }

  // Waits for the child's note_ready().
  void wait_ready(steady::time_point deadline) {
    if (!wait_readable(report_.get(), deadline))
      throw bench_failure(name_ + " was not ready in time");
    char c = 0;
    if (::read(report_.get(), &c, 1) != 1) {
      join(steady::now() + 5s);  // throws with the exit status
      throw bench_failure(name_ + " stopped before it was ready");
    }
  }

  // Everything the child writes to its report fd, up to its exit.
  std::string read_report(steady::time_point deadline) {
    return read_to_eof(report_.get(), deadline, "waiting for " + name_);
  }

  // Waits for a normal exit; anything else is an error.
  void join(steady::time_point deadline) {
    if (pid_ <= 0) return;
    const auto raw = reap(pid_, deadline);
    untrack(pid_);
    pid_ = -1;
    if (!raw) throw bench_failure(name_ + " did not finish in time (killed)");
    if (!WIFEXITED(*raw) || WEXITSTATUS(*raw) != 0)
      throw bench_failure(name_ + " failed (" + describe_status(*raw) + ")");
  }

  // Kills a child that loops forever (a server) and reaps it.
  void stop() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int raw = 0;
    while (::waitpid(pid_, &raw, 0) < 0 && errno == EINTR) {
    }
    untrack(pid_);
    pid_ = -1;
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
  hvsock::unique_fd report_;
};

// Forks and execs argv with stdout/stderr on the given fds (stdin /dev/null).
pid_t spawn_exec(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork " + argv[0]);
  if (pid == 0) {
    become_child(true);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    ::execv(args[0], args.data());
    static const char msg[] = "hvsock_bench: exec failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  track(pid);
  return pid;
}

// ---------------------------------------------------------------------------
// The private switch: a temporary directory and an hvsockd in it.

class temp_dir {
 public:
  temp_dir() {
    // Short: AF_UNIX socket paths are limited to 107 bytes.
    char tmpl[] = "/tmp/hvb-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw_errno("mkdtemp /tmp/hvb-XXXXXX");
    path_ = tmpl;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A process that outlives this one: when every holder of the pipe's write
// end is gone (this process and its forked children, however they ended,
// SIGKILL included), it kills hvsockd and removes the temporary directory.
// The destructors and the signal handler do the same on the paths they see;
// this covers the ones they cannot.
class cleanup_guardian {
 public:
  explicit cleanup_guardian(const std::string& dir) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno("pipe2");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork cleanup guardian");
    if (pid == 0) {
      ::close(fds[1]);
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      sigemptyset(&ignore.sa_mask);
      for (int sig : fatal_signals) ::sigaction(sig, &ignore, nullptr);
      const int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(null_fd, STDOUT_FILENO);
      }
      pid_t daemon = 0;
      for (;;) {
        pid_t note = 0;
        const ssize_t n = ::read(fds[0], &note, sizeof note);
        if (n == static_cast<ssize_t>(sizeof note)) daemon = note;
        if (n == 0 || (n < 0 && errno != EINTR)) break;
      }
      if (daemon > 0) ::kill(daemon, SIGKILL);
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
      if (daemon > 0) {  // a dying daemon may still have been writing
        std::this_thread::sleep_for(200ms);
        std::filesystem::remove_all(dir, ignored);
      }
      ::_exit(0);
    }
    ::close(fds[0]);
    write_fd_.reset(fds[1]);
  }

  // The daemon's pid once started, 0 once it has been reaped.
  void note_daemon(pid_t pid) { (void)!::write(write_fd_.get(), &pid, sizeof pid); }

 private:
  hvsock::unique_fd write_fd_;
};

class switch_daemon {
 public:
  switch_daemon(const options& opt, const std::string& root, cleanup_guardian& guardian)
      : guardian_(guardian),
        state_dir_(root + "/state"),
        runtime_dir_(root + "/run"),
        log_path_(root + "/hvsockd.log") {
    // A file, not a pipe: a daemon that logs every connection must never
    // block on a pipe nobody drains.
    hvsock::unique_fd log(
        ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!log) throw_errno("open " + log_path_);
    pid_ = spawn_exec({opt.hvsockd, "--state-dir", state_dir_, "--runtime-dir", runtime_dir_},
                      log.get(), log.get());
    guardian_.note_daemon(pid_);
  }
  switch_daemon(const switch_daemon&) = delete;
  switch_daemon& operator=(const switch_daemon&) = delete;
  ~switch_daemon() { stop(); }

  const std::string& runtime_dir() const { return runtime_dir_; }

  void wait_ready(std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (log().find("ready") == std::string::npos) {
      check_alive();
      if (steady::now() >= deadline)
        throw bench_failure("hvsockd did not report ready within " +
                            std::to_string(timeout.count()) + " ms; its log:\n" + log());
      std::this_thread::sleep_for(10ms);
    }
  }

  // Throws when the daemon has exited (crashed) since it started.
  void check_alive() {
    if (pid_ <= 0) throw bench_failure("hvsockd is not running");
    int raw = 0;
    if (::waitpid(pid_, &raw, WNOHANG) == pid_) {
      untrack(pid_);
      guardian_.note_daemon(0);
      pid_ = -1;
      throw bench_failure("hvsockd exited (" + describe_status(raw) + "); its log:\n" + log());
    }
  }

  // SIGTERM, then SIGKILL if it lingers. Idempotent.
  void stop() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    try {
      (void)reap(pid_, steady::now() + 5s);  // kills on timeout
    } catch (...) {
      ::kill(pid_, SIGKILL);
    }
    untrack(pid_);
    guardian_.note_daemon(0);
    pid_ = -1;
  }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  cleanup_guardian& guardian_;
  std::string state_dir_;
  std::string runtime_dir_;
  std::string log_path_;
  pid_t pid_ = -1;
};

// `hvsock --runtime-dir R args...`; returns its stdout+stderr, throws on a
// non-zero exit.
std::string run_cli(const options& opt, const std::string& runtime_dir,
                    const std::vector<std::string>& args) {
  std::vector<std::string> argv{opt.cli, "--runtime-dir", runtime_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string command = "hvsock";
  for (const auto& a : args) command += " " + a;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno("pipe2");
  hvsock::unique_fd read_end(fds[0]);
  pid_t pid = -1;
  {
    hvsock::unique_fd write_end(fds[1]);
    pid = spawn_exec(argv, write_end.get(), write_end.get());
  }
  const auto deadline = steady::now() + 30s;
  std::string out;
  try {
    out = read_to_eof(read_end.get(), deadline, command);
  } catch (...) {
    ::kill(pid, SIGKILL);
    (void)reap(pid, deadline);
    untrack(pid);
    throw;
  }
  const auto raw = reap(pid, deadline);
  untrack(pid);
  if (!raw) throw bench_failure(command + ": timed out");
  if (!WIFEXITED(*raw) || WEXITSTATUS(*raw) != 0)
    throw bench_failure(command + " failed (" + describe_status(*raw) + "): " + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------
// Transports. hvsock goes through libhvsock's public API; the kernel
// transports through the same send/recv calls libhvsock's stream makes.

enum class transport_kind { hvsock, unix_pair, tcp };

std::string_view label(transport_kind kind) {
  switch (kind) {
    case transport_kind::hvsock: return "hvsock";
    case transport_kind::unix_pair: return "AF_UNIX socketpair";
    case transport_kind::tcp: return "TCP loopback";
  }
  return "?";
}

std::string_view json_key(transport_kind kind) {
  switch (kind) {
    case transport_kind::hvsock: return "hvsock";
    case transport_kind::unix_pair: return "unix_socketpair";
    case transport_kind::tcp: return "tcp_loopback";
  }
  return "?";
}

struct bench_context {
  const options* opt = nullptr;
  std::string host_socket;  // the listener side: the host partition
  std::string vm_socket;    // the connecting side: bench-vm
  hvsock::service_id service;
};

// Blocking socket I/O on a plain fd.
struct fd_io {
  int fd;
  std::size_t read(void* buf, std::size_t n) {
    for (;;) {
      const ssize_t r = ::recv(fd, buf, n, 0);
      if (r >= 0) return static_cast<std::size_t>(r);
      if (errno != EINTR) throw_errno("recv");
    }
  }
  void write_all(const void* buf, std::size_t n) {
    const auto* p = static_cast<const char*>(buf);
    while (n > 0) {
      const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno("send");
      }
      p += r;
      n -= static_cast<std::size_t>(r);
    }
  }
  void shutdown_write() {
    if (::shutdown(fd, SHUT_WR) < 0) throw_errno("shutdown");
  }
};

// The same through an hvsock::stream.
struct stream_io {
  hvsock::stream& s;
  std::size_t read(void* buf, std::size_t n) { return s.read(buf, n).value(); }
  void write_all(const void* buf, std::size_t n) { s.write_all(buf, n).value(); }
  void shutdown_write() { s.shutdown(hvsock::shutdown_how::write).value(); }
};

hvsock::unique_fd tcp_listen(std::uint16_t& port) {
  hvsock::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket AF_INET");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // ephemeral
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
    throw_errno("bind 127.0.0.1:0");
  if (::listen(fd.get(), 128) < 0) throw_errno("listen");
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) < 0)
    throw_errno("getsockname");
  port = ntohs(addr.sin_port);
  return fd;
}

hvsock::unique_fd tcp_connect(std::uint16_t port) {
  hvsock::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket AF_INET");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  while (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    if (errno != EINTR) throw_errno(fmt::format("connect 127.0.0.1:{}", port));
  }
  return fd;
}

hvsock::unique_fd tcp_accept(int listen_fd) {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return hvsock::unique_fd(fd);
    if (errno != EINTR && errno != ECONNABORTED) throw_errno("accept4");
  }
}

// Listens for the bench service in the host, from any partition. A listener
// of the previous phase may still be unbinding in hvsockd (its process was
// just killed), so address_in_use is retried for a few seconds.
hvsock::listener hvsock_listen(const bench_context& ctx, int backlog) {
  const auto deadline = steady::now() + 5s;
  for (;;) {
    auto l = hvsock::listener::listen({hvsock::vm_id_wildcard, ctx.service},
                                      {.backlog = backlog, .control_socket = ctx.host_socket});
    if (l) return std::move(*l);
    if (l.error().code() != hvsock::errc::address_in_use || steady::now() >= deadline)
      hvsock::throw_error(l.error());
    std::this_thread::sleep_for(10ms);
  }
}

// From bench-vm to its parent, the host.
hvsock::stream hvsock_connect(const bench_context& ctx) {
  return hvsock::stream::connect({hvsock::vm_id_parent, ctx.service},
                                 {.timeout = 5s, .control_socket = ctx.vm_socket})
      .value();
}

// ---------------------------------------------------------------------------
// 1. Throughput

template <class Io>
void receive_all(Io io, std::uint64_t expected) {
  std::vector<char> buf(chunk_size);
  std::uint64_t total = 0;
  for (;;) {
    const std::size_t n = io.read(buf.data(), buf.size());
    if (n == 0) break;
    total += n;
  }
  if (total != expected)
    throw bench_failure(fmt::format("received {} bytes, expected {}", total, expected));
  const char ack = 'k';
  io.write_all(&ack, 1);
}

// Times from the first write to the receiver's acknowledgement, which it
// sends after it has read everything: the figure is end to end.
template <class Io>
void send_all(Io io, std::uint64_t bytes, int report_fd) {
  std::vector<char> buf(chunk_size, static_cast<char>(0xa5));
  const auto t0 = steady::now();
  for (std::uint64_t left = bytes; left > 0;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk_size));
    io.write_all(buf.data(), n);
    left -= n;
  }
  io.shutdown_write();
  char ack = 0;
  if (io.read(&ack, 1) != 1) throw bench_failure("no acknowledgement from the receiver");
  const auto t1 = steady::now();
  write_report(report_fd, std::to_string(std::chrono::nanoseconds(t1 - t0).count()));
}

// One transfer of opt.bytes; returns GiB/s.
double measure_throughput(transport_kind kind, const bench_context& ctx) {
  const std::uint64_t bytes = ctx.opt->bytes;
  // Generous: 60 s plus 32 MiB/s.
  const auto deadline =
      steady::now() + 60s + std::chrono::seconds(static_cast<std::int64_t>(bytes >> 25));
  hvsock::unique_fd pair_rx, pair_tx, listen_fd;
  std::uint16_t port = 0;
  std::function<void(int)> receiver, sender;
  switch (kind) {
    case transport_kind::unix_pair: {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("socketpair");
      pair_rx.reset(sv[0]);
      pair_tx.reset(sv[1]);
      receiver = [&](int report) {
        pair_tx.reset();
        note_ready(report);
        receive_all(fd_io{pair_rx.get()}, bytes);
      };
      sender = [&](int report) {
        pair_rx.reset();
        send_all(fd_io{pair_tx.get()}, bytes, report);
      };
      break;
    }
    case transport_kind::tcp:
      listen_fd = tcp_listen(port);
      receiver = [&](int report) {
        note_ready(report);
        auto conn = tcp_accept(listen_fd.get());
        listen_fd.reset();
        receive_all(fd_io{conn.get()}, bytes);
      };
      sender = [&](int report) {
        listen_fd.reset();
        auto conn = tcp_connect(port);
        send_all(fd_io{conn.get()}, bytes, report);
      };
      break;
    case transport_kind::hvsock:
      receiver = [&](int report) {
        auto l = hvsock_listen(ctx, 4);
        note_ready(report);
        auto s = l.accept(30s).value();
        l.close();
        receive_all(stream_io{s}, bytes);
      };
      sender = [&](int report) {
        auto s = hvsock_connect(ctx);
        send_all(stream_io{s}, bytes, report);
      };
      break;
  }
  const std::string name{label(kind)};
  child rx(name + " receiver", receiver);
  rx.wait_ready(steady::now() + 10s);
  child tx(name + " sender", sender);
  pair_rx.reset();
  pair_tx.reset();
  listen_fd.reset();
  const std::string report = tx.read_report(deadline);
  tx.join(deadline);
  rx.join(deadline);
  const double ns = std::stod(report);
  return static_cast<double>(bytes) / static_cast<double>(gib) / (ns / 1e9);
}

// ---------------------------------------------------------------------------
// 2. and 3. Connect latency and connection rate

enum class server_mode { echo, accept_close };

// A server in its own process: accept; for echo, read one byte and write it
// back; close. Loops until killed. Returns the TCP port in `port`.
std::unique_ptr<child> start_server(transport_kind kind, server_mode mode, const bench_context& ctx,
                                    std::uint16_t& port) {
  const bool echo = mode == server_mode::echo;
  const std::string name = fmt::format("{} {} server", label(kind), echo ? "echo" : "accept-close");
  std::unique_ptr<child> server;
  if (kind == transport_kind::tcp) {
    auto listen_fd = tcp_listen(port);
    server = std::make_unique<child>(name, [&](int report) {
      note_ready(report);
      for (;;) {
        auto conn = tcp_accept(listen_fd.get());
        if (echo) {
          fd_io io{conn.get()};
          char b = 0;
          if (io.read(&b, 1) == 1) io.write_all(&b, 1);
        }
      }
    });
  } else {
    server = std::make_unique<child>(name, [&](int report) {
      auto l = hvsock_listen(ctx, 64);
      note_ready(report);
      for (;;) {
        auto s = l.accept().value();
        if (echo) {
          char b = 0;
          if (s.read(&b, 1).value() == 1) s.write_all(&b, 1).value();
        }
      }
    });
  }
  server->wait_ready(steady::now() + 10s);
  return server;
}

// One echo connection: connect, write one byte, read it back, close.
// `connected` is set when connect() has returned.
void echo_once_tcp(std::uint16_t port, steady::time_point& connected) {
  auto fd = tcp_connect(port);
  connected = steady::now();
  fd_io io{fd.get()};
  char b = 'x';
  io.write_all(&b, 1);
  if (io.read(&b, 1) != 1) throw bench_failure("TCP echo: no reply");
}

void echo_once_hvsock(const bench_context& ctx, steady::time_point& connected) {
  auto s = hvsock_connect(ctx);
  connected = steady::now();
  char b = 'x';
  s.write_all(&b, 1).value();
  if (s.read(&b, 1).value() != 1) throw bench_failure("hvsock echo: no reply");
}

// One connection for the rate: connect, wait for the server's close, close.
void accept_close_once_tcp(std::uint16_t port) {
  auto fd = tcp_connect(port);
  char b = 0;
  if (fd_io{fd.get()}.read(&b, 1) != 0) throw bench_failure("TCP: unexpected data");
}

void accept_close_once_hvsock(const bench_context& ctx) {
  auto s = hvsock_connect(ctx);
  char b = 0;
  if (s.read(&b, 1).value() != 0) throw bench_failure("hvsock: unexpected data");
}

// Per echo connection: the whole exchange, and connect() alone.
struct echo_sample {
  std::int64_t total_ns = 0;
  std::int64_t connect_ns = 0;
};

// Runs `count` timed echo connections after `warmup` untimed ones, in a
// client process.
std::vector<echo_sample> run_echo_client(transport_kind kind, const bench_context& ctx,
                                         std::uint16_t port, int warmup, int count) {
  std::function<void(steady::time_point&)> once = [&](steady::time_point& connected) {
    echo_once_hvsock(ctx, connected);
  };
  if (kind == transport_kind::tcp)
    once = [port](steady::time_point& connected) { echo_once_tcp(port, connected); };
  child client(fmt::format("{} echo client", label(kind)), [&](int report) {
    std::vector<echo_sample> samples;
    samples.reserve(static_cast<std::size_t>(count));
    steady::time_point connected;
    for (int i = 0; i < warmup; ++i) once(connected);
    for (int i = 0; i < count; ++i) {
      const auto t0 = steady::now();
      once(connected);
      const auto t1 = steady::now();
      samples.push_back({std::chrono::nanoseconds(t1 - t0).count(),
                         std::chrono::nanoseconds(connected - t0).count()});
    }
    write_report(report, samples.data(), samples.size() * sizeof(echo_sample));
  });
  // Generous: 30 s plus 20 ms a connection.
  const auto deadline = steady::now() + 30s + std::chrono::milliseconds(20) * (warmup + count);
  const std::string raw = client.read_report(deadline);
  client.join(deadline);
  if (raw.size() != static_cast<std::size_t>(count) * sizeof(echo_sample))
    throw bench_failure(fmt::format("{} echo client: short report", label(kind)));
  std::vector<echo_sample> samples(static_cast<std::size_t>(count));
  std::memcpy(samples.data(), raw.data(), raw.size());
  return samples;
}

struct rate_sample {
  std::int64_t connections = 0;
  std::int64_t ns = 0;
};

// Sequential connections for `duration` after `warmup` untimed ones.
rate_sample run_rate_client(transport_kind kind, const bench_context& ctx, std::uint16_t port,
                            int warmup, std::chrono::nanoseconds duration) {
  std::function<void()> once = [&] { accept_close_once_hvsock(ctx); };
  if (kind == transport_kind::tcp) once = [port] { accept_close_once_tcp(port); };
  child client(fmt::format("{} connect client", label(kind)), [&](int report) {
    for (int i = 0; i < warmup; ++i) once();
    rate_sample r;
    const auto t0 = steady::now();
    const auto end = t0 + duration;
    do {
      once();
      ++r.connections;
    } while (steady::now() < end);
    r.ns = std::chrono::nanoseconds(steady::now() - t0).count();
    write_report(report, &r, sizeof r);
  });
  const auto deadline = steady::now() + 60s + duration;
  const std::string raw = client.read_report(deadline);
  client.join(deadline);
  if (raw.size() != sizeof(rate_sample))
    throw bench_failure(fmt::format("{} connect client: short report", label(kind)));
  rate_sample r;
  std::memcpy(&r, raw.data(), sizeof r);
  return r;
}

// ---------------------------------------------------------------------------
// Statistics and output

// The order of the transports in round r: each round starts with the next
// one, so none always runs first (just after a phase change) or last.
template <std::size_t N>
std::array<transport_kind, N> rotated(std::array<transport_kind, N> kinds, int round) {
  std::rotate(kinds.begin(), kinds.begin() + static_cast<std::ptrdiff_t>(round % int{N}),
              kinds.end());
  return kinds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct latency_stats {
  std::size_t samples = 0;
  double p50_us = 0, p99_us = 0, mean_us = 0, min_us = 0, max_us = 0;
};

// Nearest-rank percentiles.
latency_stats summarize(std::vector<std::int64_t> ns) {
  std::sort(ns.begin(), ns.end());
  latency_stats s;
  s.samples = ns.size();
  if (ns.empty()) return s;
  auto rank = [&](double p) {
    const auto r = static_cast<std::size_t>(std::ceil(p * static_cast<double>(ns.size())));
    return static_cast<double>(ns[std::clamp<std::size_t>(r, 1, ns.size()) - 1]) / 1e3;
  };
  s.p50_us = rank(0.50);
  s.p99_us = rank(0.99);
  double sum = 0;
  for (auto v : ns) sum += static_cast<double>(v);
  s.mean_us = sum / static_cast<double>(ns.size()) / 1e3;
  s.min_us = static_cast<double>(ns.front()) / 1e3;
  s.max_us = static_cast<double>(ns.back()) / 1e3;
  return s;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string load_average() {
  const std::string line = read_first_line("/proc/loadavg");
  std::istringstream in(line);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

std::string kernel_release() {
  utsname u{};
  if (::uname(&u) < 0) return "unknown";
  return u.release;
}

struct target {
  std::string text;  // "throughput ≥ 0.95× socketpair"
  std::string key;   // JSON name
  double value = 0;  // the measured ratio
  double limit = 0;
  bool higher_is_better = true;
  bool pass() const { return higher_is_better ? value >= limit : value <= limit; }
};

int run(const options& opt) {
  temp_dir root;  // destroyed last, after the daemon is gone
  cleanup_guardian guardian(root.path());
  const std::string load_before = load_average();
  switch_daemon daemon(opt, root.path(), guardian);
  daemon.wait_ready(10s);
  const std::string& runtime = daemon.runtime_dir();
  run_cli(opt, runtime, {"vm", "create", bench_vm_name});
  run_cli(
      opt, runtime,
      {"service", "register", "--name", bench_service_name, "--port", std::to_string(bench_port)});

  bench_context ctx;
  ctx.opt = &opt;
  ctx.host_socket = hvsock::detail::partition_socket_path(
      runtime, std::string(hvsock::detail::host_partition_name));
  ctx.vm_socket = hvsock::detail::partition_socket_path(runtime, bench_vm_name);
  ctx.service = hvsock::service_id_from_port(bench_port);
  for (const auto& path : {ctx.host_socket, ctx.vm_socket})
    if (!std::filesystem::exists(path))
      throw bench_failure("hvsockd made no control socket at " + path);

  auto progress = [](const std::string& what) { fmt::print(stderr, "hvsock_bench: {}\n", what); };
  progress(fmt::format("hvsockd in {}, service {} ({}) registered, partition {}", root.path(),
                       bench_service_name, ctx.service.to_string(), bench_vm_name));

  const std::array<transport_kind, 3> stream_kinds{transport_kind::unix_pair,
                                                   transport_kind::hvsock, transport_kind::tcp};
  const std::array<transport_kind, 2> connect_kinds{transport_kind::hvsock, transport_kind::tcp};
  const int rounds = opt.rounds;

  // 1. Throughput, rounds interleaved.
  std::map<transport_kind, std::vector<double>> gibps;
  for (int r = 0; r < rounds; ++r) {
    for (auto kind : rotated(stream_kinds, r)) {
      progress(fmt::format("throughput {} round {}/{} ({:.2f} GiB)", label(kind), r + 1, rounds,
                           static_cast<double>(opt.bytes) / static_cast<double>(gib)));
      gibps[kind].push_back(measure_throughput(kind, ctx));
      daemon.check_alive();
    }
  }

  // 2. Connect + echo latency: one server per transport, client rounds
  // interleaved, each client process warming up before it measures.
  const int per_round = (opt.iterations + rounds - 1) / rounds;
  std::map<transport_kind, std::vector<echo_sample>> latency_samples;
  {
    std::map<transport_kind, std::unique_ptr<child>> servers;
    std::map<transport_kind, std::uint16_t> ports;
    for (auto kind : connect_kinds)
      servers[kind] = start_server(kind, server_mode::echo, ctx, ports[kind]);
    for (int r = 0; r < rounds; ++r) {
      for (auto kind : rotated(connect_kinds, r)) {
        progress(fmt::format("connect+echo latency {} round {}/{} ({} + {} warm-up)", label(kind),
                             r + 1, rounds, per_round, opt.warmup));
        auto s = run_echo_client(kind, ctx, ports[kind], opt.warmup, per_round);
        latency_samples[kind].insert(latency_samples[kind].end(), s.begin(), s.end());
        daemon.check_alive();
      }
    }
  }  // servers killed here

  // 3. Connections per second.
  std::map<transport_kind, rate_sample> rates;
  {
    std::map<transport_kind, std::unique_ptr<child>> servers;
    std::map<transport_kind, std::uint16_t> ports;
    for (auto kind : connect_kinds)
      servers[kind] = start_server(kind, server_mode::accept_close, ctx, ports[kind]);
    const auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(opt.cps_seconds / rounds));
    for (int r = 0; r < rounds; ++r) {
      for (auto kind : rotated(connect_kinds, r)) {
        progress(fmt::format("connections/s {} round {}/{}", label(kind), r + 1, rounds));
        const auto s = run_rate_client(kind, ctx, ports[kind], opt.warmup, slice);
        rates[kind].connections += s.connections;
        rates[kind].ns += s.ns;
        daemon.check_alive();
      }
    }
  }
  daemon.check_alive();
  daemon.stop();
  const std::string load_after = load_average();

  // Results.
  std::map<transport_kind, double> tput;
  for (auto& [kind, v] : gibps) tput[kind] = median(v);
  std::map<transport_kind, latency_stats> lat, lat_connect;
  for (auto& [kind, v] : latency_samples) {
    std::vector<std::int64_t> total, connect_only;
    for (const auto& e : v) {
      total.push_back(e.total_ns);
      connect_only.push_back(e.connect_ns);
    }
    lat[kind] = summarize(std::move(total));
    lat_connect[kind] = summarize(std::move(connect_only));
  }
  std::map<transport_kind, double> cps;
  for (auto& [kind, r] : rates)
    cps[kind] = static_cast<double>(r.connections) / (static_cast<double>(r.ns) / 1e9);

  const auto H = transport_kind::hvsock;
  const auto U = transport_kind::unix_pair;
  const auto T = transport_kind::tcp;
  const double tput_unix = tput[H] / tput[U];
  const double tput_tcp = tput[H] / tput[T];
  const double p50_ratio = lat[H].p50_us / lat[T].p50_us;
  const double p99_ratio = lat[H].p99_us / lat[T].p99_us;
  const double cps_ratio = cps[H] / cps[T];
  const std::vector<target> targets{
      {"throughput ≥ 0.95× socketpair", "throughput_vs_socketpair", tput_unix, 0.95, true},
      {"connect p50 ≤ 1.5× TCP", "connect_p50_vs_tcp", p50_ratio, 1.5, false},
  };

  const unsigned cpus = std::thread::hardware_concurrency();
  if (opt.json) {
    nlohmann::json j;
    j["machine"] = {{"cpus", cpus},
                    {"cpu", cpu_model()},
                    {"kernel", kernel_release()},
                    {"load_average_before", load_before},
                    {"load_average_after", load_after}};
    j["config"] = {{"bytes", opt.bytes},
                   {"write_size", chunk_size},
                   {"rounds", rounds},
                   {"iterations", per_round * rounds},
                   {"warmup_per_client", opt.warmup},
                   {"cps_seconds", opt.cps_seconds}};
    for (auto kind : stream_kinds)
      j["throughput"][std::string(json_key(kind))] = {{"gib_per_s", tput[kind]},
                                                      {"runs_gib_per_s", gibps[kind]}};
    j["throughput"]["ratio_hvsock_unix"] = tput_unix;
    j["throughput"]["ratio_hvsock_tcp"] = tput_tcp;
    auto stats_json = [](const latency_stats& s) {
      return nlohmann::json{{"samples", s.samples}, {"p50_us", s.p50_us}, {"p99_us", s.p99_us},
                            {"mean_us", s.mean_us}, {"min_us", s.min_us}, {"max_us", s.max_us}};
    };
    for (auto kind : connect_kinds) {
      auto entry = stats_json(lat[kind]);
      entry["connect_call_only"] = stats_json(lat_connect[kind]);
      j["connect_latency"][std::string(json_key(kind))] = entry;
      j["connections_per_second"][std::string(json_key(kind))] = {
          {"per_second", cps[kind]},
          {"connections", rates[kind].connections},
          {"seconds", static_cast<double>(rates[kind].ns) / 1e9}};
    }
    j["connect_latency"]["ratio_p50_hvsock_tcp"] = p50_ratio;
    j["connect_latency"]["ratio_p99_hvsock_tcp"] = p99_ratio;
    j["connections_per_second"]["ratio_hvsock_tcp"] = cps_ratio;
    for (const auto& t : targets)
      j["targets"].push_back({{"name", t.key},
                              {"text", t.text},
                              {"value", t.value},
                              {"limit", t.limit},
                              {"pass", t.pass()}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }

  fmt::print("hvsock_bench: {} CPUs ({}), Linux {}\n", cpus, cpu_model(), kernel_release());
  fmt::print("load average {} before, {} after (other processes share this machine)\n\n",
             load_before, load_after);

  fmt::print(
      "Stream throughput: {} KiB writes, {:.2f} GiB per run, median of {} interleaved rounds\n",
      chunk_size / 1024, static_cast<double>(opt.bytes) / static_cast<double>(gib), rounds);
  fmt::print("  {:<34} {:>8}   {}\n", "transport", "GiB/s", "runs");
  for (auto kind : stream_kinds) {
    std::string runs;
    for (double v : gibps[kind]) runs += fmt::format("{:.2f} ", v);
    std::string name{label(kind)};
    if (kind == H) name += " (bench-vm → host)";
    fmt::print("  {:<34} {:>8.2f}   {}\n", name, tput[kind], runs);
  }
  fmt::print("  {:<34} {:>7.2f}×\n", "hvsock / socketpair", tput_unix);
  fmt::print("  {:<34} {:>7.2f}×\n\n", "hvsock / TCP", tput_tcp);

  fmt::print(
      "Connect + accept + 1-byte echo + close, per connection ({} samples each, {} warm-up "
      "per client)\n",
      per_round * rounds, opt.warmup);
  fmt::print("  {:<20} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "transport", "p50 µs", "p99 µs", "mean µs",
             "min µs", "max µs");
  auto print_stats = [](std::string_view name, const latency_stats& s) {
    fmt::print("  {:<20} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n", name, s.p50_us, s.p99_us,
               s.mean_us, s.min_us, s.max_us);
  };
  for (auto kind : connect_kinds) {
    print_stats(label(kind), lat[kind]);
    print_stats("  of which connect()", lat_connect[kind]);
  }
  fmt::print("  {:<20} {:>8.2f}× {:>8.2f}×\n\n", "hvsock / TCP", p50_ratio, p99_ratio);

  fmt::print("Connections per second: sequential connect + accept + close, {:.1f} s each\n",
             opt.cps_seconds);
  for (auto kind : connect_kinds)
    fmt::print("  {:<20} {:>9.0f} /s  ({} connections)\n", label(kind), cps[kind],
               rates[kind].connections);
  fmt::print("  {:<20} {:>8.2f}×\n\n", "hvsock / TCP", cps_ratio);

  fmt::print("Targets (issue 2)\n");
  for (const auto& t : targets)
    fmt::print("  {}: {:.2f}× {}\n", t.text, t.value, t.pass() ? "PASS" : "MISS");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{
      "hvsock_bench: stream throughput, connect latency and connections/s of hvsock, next to "
      "an AF_UNIX socketpair and TCP loopback. Starts its own hvsockd in a temporary "
      "directory. Exits 0 when the measurement ran, whatever the figures."};
  app.option_defaults()->always_capture_default();
  app.add_option("--bytes", opt.bytes, "bytes per throughput run")
      ->check(CLI::Range(std::uint64_t{1} << 20, std::uint64_t{1} << 40));
  app.add_option("--rounds", opt.rounds, "interleaved rounds per measurement")
      ->check(CLI::Range(1, 100));
  app.add_option("--iterations", opt.iterations, "timed connections per transport (latency)")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--warmup", opt.warmup, "untimed connections before each client measures")
      ->check(CLI::Range(0, 1'000'000));
  app.add_option("--cps-seconds", opt.cps_seconds, "seconds of connections/s per transport")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--time-limit", opt.time_limit, "seconds before the whole run is abandoned")
      ->check(CLI::Range(1U, 86400U));
  app.add_flag("--json", opt.json, "print the results as JSON instead of the table");
  app.add_option("--hvsockd", opt.hvsockd, "hvsockd executable");
  app.add_option("--hvsock-cli", opt.cli, "hvsock CLI executable");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  main_pid = ::getpid();
  ::unsetenv(hvsock::detail::env_control_socket);
  install_signal_handlers(opt.time_limit);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    fmt::print(stderr, "hvsock_bench: {}\n", e.what());
    return 1;
  }
}
