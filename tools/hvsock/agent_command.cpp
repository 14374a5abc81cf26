// hvsock agent: the guest agent. Listens on the agent service (vsock port
// 0x4856, "hvsock Guest Agent") in its partition (under `hvsock run --vm`)
// or, in a QEMU guest, on the guest kernel's vsock; serves each connection
// in a process of its own (src/agent/exec_session.hpp), so many execs run at
// once and one going wrong touches no other. Protocol: docs/agent-protocol.md.
//
// Who may connect: by default the agent listens on PARENT, so the switch
// itself admits only this partition's parent (the host for a VM, the VM for
// a container; in a QEMU guest the kernel transport admits CID 2 only), as
// PowerShell Direct does. `--allow` widens that: the agent then listens on
// WILDCARD and checks each peer's VmId, as the switch names it on accept
// (PARENT, LOOPBACK, or a child's own VmId), against the list; a refused
// peer gets an ERROR frame and is logged with its VmId.
//
// Limits: at most --max-sessions sessions run at once (the agent counts its
// children, reaping them through a signalfd); one more connection is told
// the agent is busy. Each session closes a peer that has not sent HELLO
// and its request within 10 s.
//
// hvsockd restarted: the agent's listener is a relistening one
// (listen_options::relisten in <hvsock/listener.hpp>): when hvsockd goes away
// the agent says so once, waits for it with the library's back-off (50 ms
// doubling to 1 s, sleeping in poll meanwhile), listens again with the same
// options and says so once more. Sessions already running are direct
// sockets in their own processes and carry on.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/agent_protocol.hpp"
#include "agent/exec_session.hpp"
#include "cli_common.hpp"
#include "protocol/control_client.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {
namespace {

constexpr int default_max_sessions = 256;
constexpr int max_max_sessions = 4096;

struct agent_args {
  std::vector<std::string> allow;
  int max_sessions = default_max_sessions;
};

// A VmId for a person: the GUID, and the relation when it is one.
std::string describe_peer(const vm_id& peer) {
  if (auto known = classify_vm_id(peer))
    return peer.to_string() + " (" + std::string(well_known_name(*known)) + ")";
  return peer.to_string();
}

// The partitions --allow admits, matched against a peer's VmId as the
// switch names it: PARENT for the parent, LOOPBACK for this partition, a
// child's own VmId for a child.
class admission {
 public:
  bool admits(const vm_id& peer) const {
    if (any_ || ids_.count(peer) > 0) return true;
    return children_ && !classify_vm_id(peer);  // a child: a VmId, not a relation
  }

  void add_any() { any_ = true; }
  void add_children() { children_ = true; }
  void add(const vm_id& id) { ids_.insert(id); }

  std::string describe() const {
    if (any_) return "any partition that can reach it";
    std::string out;
    const auto add_part = [&out](const std::string& part) {
      out += (out.empty() ? "" : ", ") + part;
    };
    if (ids_.count(vm_id_parent) > 0) add_part("its parent");
    if (ids_.count(vm_id_loopback) > 0) add_part("its own partition");
    if (children_) add_part("its children");
    for (const auto& id : ids_)
      if (!classify_vm_id(id)) add_part(id.to_string());
    return out;
  }

 private:
  bool any_ = false, children_ = false;
  std::set<vm_id> ids_;
};

// Adds partition `word` (a name or a VmId), named as the switch will name it
// on accept (LOOPBACK, PARENT or its VmId): the switch says, through this
// partition's own control socket, which also works in isolated partitions.
void add_partition(admission& a, const std::string& word, const global_options& options) {
  auto found = detail::look_up_partition(lookup_socket(options), word);
  if (!found)
    fail("agent --allow " + word + ": " + found.error().message() +
         "; give children, any, parent or a partition this one can reach");
  a.add(found->as_peer);
}

admission parse_allow(const std::vector<std::string>& words, const global_options& options) {
  admission a;
  for (const auto& w : words) {
    // The words, or the well-known VmIds they stand for.
    std::optional<well_known_vm_id> known;
    if (auto word = vm_id_from_word(w)) known = classify_vm_id(*word);
    auto id = guid::parse(w);
    if (id && !known) known = classify_vm_id(*id);
    if (known) {
      switch (*known) {
        case well_known_vm_id::wildcard: a.add_any(); continue;
        case well_known_vm_id::children: a.add_children(); continue;
        case well_known_vm_id::parent: a.add(vm_id_parent); continue;
        case well_known_vm_id::loopback: a.add(vm_id_loopback); continue;
        default:
          fail("agent --allow " + w +
                   ": expected children, any, parent, loopback, a partition name or a VmId",
               exit_usage);
      }
    }
    // A VmId, or a partition name; in a QEMU guest (no hvsockd) only the
    // words work.
    add_partition(a, w, options);
  }
  return a;
}

// Says why (ERROR, then EXIT 255, as for any request refused before it
// starts) and closes. The socket is new and empty, so the two small frames
// fit; nothing here waits for the peer.
void turn_away(stream& s, const std::string& why) {
  auto frames = agent::encode_error(why);
  const auto exit_frame = agent::encode_exit({false, 255});
  frames.insert(frames.end(), exit_frame.begin(), exit_frame.end());
  (void)::send(s.native_handle(), frames.data(), frames.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)s.shutdown(shutdown_how::write);
  s.close();
}

// Sessions write to fds 0..2 of the agent and start commands with dup2 onto
// them: make sure they are open, so no socket or pipe ever lands there.
void keep_stdio_open() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int null = ::open("/dev/null", O_RDWR);  // takes the lowest free fd: this one
    if (null >= 0 && null != fd) ::close(null);
  }
}

// What the relistening listener reports, in the words `hvsock forward` uses.
void report_relisten(const listener_event& e) {
  switch (e.what) {
    case listener_event::kind::went_away:
      std::cerr << "hvsock agent: hvsockd went away (" << e.message
                << "); waiting for it to come back, the sessions running carry on" << std::endl;
      break;
    case listener_event::kind::back:
      std::cerr << "hvsock agent: hvsockd is back: " << e.message << std::endl;
      break;
    case listener_event::kind::relisten_failed:
      std::cerr << "hvsock agent: listening again failed (trying every second): " << e.message
                << std::endl;
      break;
  }
}

class agent_loop {
 public:
  agent_loop(listener l, admission allowed, bool filtering, int max_sessions)
      : listener_(std::move(l)),
        allowed_(std::move(allowed)),
        filtering_(filtering),
        max_sessions_(static_cast<std::size_t>(max_sessions)) {
    // Children are counted by reaping them: SIGCHLD arrives on a signalfd
    // the loop polls, next to the listener.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, &saved_mask_);
    ::signal(SIGCHLD, SIG_DFL);
    signals_.reset(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_) fail(std::string("agent: signalfd: ") + std::strerror(errno));
  }

  [[noreturn]] void run() {
    bool pause = false;  // after an accept error: a short wait, never a spin
    for (;;) {
      // While hvsockd is away the listener has no fd (-1: poll skips it) and
      // says when to try listening again; accept_one() then makes the try.
      const auto relisten_in = listener_.relisten_due_in();
      int wait_ms = -1;
      if (pause) wait_ms = 100;
      if (relisten_in) wait_ms = static_cast<int>(relisten_in->count());
      pollfd p[2] = {{signals_.get(), POLLIN, 0}, {listener_.native_handle(), POLLIN, 0}};
      if (pause) p[1].fd = -1;
      const int ready = ::poll(p, 2, wait_ms);
      if (ready < 0 && errno != EINTR) fail(std::string("agent: poll: ") + std::strerror(errno));
      pause = false;
      if (ready > 0 && (p[0].revents & POLLIN)) reap();
      const bool relisten_due =
          relisten_in && listener_.relisten_due_in() == std::chrono::milliseconds(0);
      if ((ready > 0 && p[1].revents != 0) || relisten_due) pause = !accept_one();
    }
  }

 private:
  // Takes one connection; false after an error worth pausing for.
  bool accept_one() {
    auto s = listener_.accept(std::chrono::milliseconds(0));
    if (!s) {
      const auto code = s.error().code();
      if (code == make_error_code(errc::timed_out) || code == make_error_code(errc::would_block))
        return true;  // taken by nobody else, but gone (the peer gave up): fine
      if (listener_.relisten_due_in()) return true;  // hvsockd went away: waiting for it
      if (code == make_error_code(errc::daemon_unavailable) ||
          code == std::errc::connection_aborted)
        fail(s.error());  // the kernel transport's listener is gone: nothing to serve
      std::cerr << "hvsock agent: " << s.error().message() << std::endl;
      return false;
    }
    const vm_id peer = s->peer_endpoint().vm;
    if (filtering_ && !allowed_.admits(peer)) {
      std::cerr << "hvsock agent: refused a connection from " << describe_peer(peer)
                << ": not admitted (this agent admits " << allowed_.describe() << "; see --allow)"
                << std::endl;
      turn_away(*s, "partition " + describe_peer(peer) + " may not use this agent (it admits " +
                        allowed_.describe() + "; hvsock agent --allow widens that)");
      return true;
    }
    if (sessions_.size() >= max_sessions_) {
      const std::string why =
          "agent busy: " + std::to_string(sessions_.size()) + " sessions running";
      std::cerr << "hvsock agent: turned away a connection from " << describe_peer(peer) << ": "
                << why << std::endl;
      turn_away(*s, why);
      return true;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      listener_.close();
      signals_.reset();
      ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);  // the session waits for its command
      ::_exit(agent::run_exec_session(s->native_handle()));
    }
    if (pid < 0) {
      std::perror("hvsock agent: fork");
      turn_away(*s, std::string("the agent cannot start a session: ") + std::strerror(errno));
      return false;
    }
    sessions_.insert(pid);
    return true;
  }

  void reap() {
    signalfd_siginfo info;
    while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
    }
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) sessions_.erase(pid);
  }

  listener listener_;
  admission allowed_;
  bool filtering_;
  std::size_t max_sessions_;
  unique_fd signals_;
  sigset_t saved_mask_{};
  std::set<pid_t> sessions_;
};

}  // namespace

void add_agent_command(CLI::App& app, global_options& options) {
  auto args = std::make_shared<agent_args>();
  auto* agent = app.add_subcommand(
      "agent", "Run the guest agent (serves hvsock exec and cp) in this partition or QEMU guest");
  completes_partition(agent
                          ->add_option("--allow", args->allow,
                                       "admit: children, any, parent, loopback, a partition "
                                       "NAME or a VmId (repeatable; default: the parent "
                                       "partition only)")
                          ->type_name("WHO"),
                      {"children", "any", "parent", "loopback"});
  agent
      ->add_option("--max-sessions", args->max_sessions,
                   "sessions at once; more connections are told the agent is busy")
      ->check(CLI::Range(1, max_max_sessions))
      ->capture_default_str();
  agent->callback([args, &options] {
    keep_stdio_open();
    const bool filtering = !args->allow.empty();
    admission allowed = parse_allow(args->allow, options);
    if (!filtering) allowed.add(vm_id_parent);
    // Without --allow the switch does the filtering: only the parent can
    // reach a PARENT listener (the kernel transport drops other CIDs).
    const vm_id bound = filtering ? vm_id_wildcard : vm_id_parent;
    auto l =
        listener::listen({bound, agent::agent_service}, {.backlog = 64,
                                                         .control_socket = control_socket(options),
                                                         .relisten = true,
                                                         .on_event = report_relisten});
    if (!l && l.error().code() == make_error_code(errc::parent_on_host))
      fail(
          "agent: the host partition has no parent to serve; run the agent in a partition "
          "(hvsock run --vm NAME -- hvsock agent), or say who may connect with --allow");
    if (!l) fail(l.error());
    std::cerr << "hvsock agent: listening on " << l->local_endpoint().to_string() << " (\""
              << agent::agent_service_name << "\", vsock port " << agent::agent_port << "); admits "
              << allowed.describe() << "; at most " << args->max_sessions << " sessions"
              << std::endl;
    agent_loop(std::move(*l), std::move(allowed), filtering, args->max_sessions).run();
  });
}

}  // namespace hvsock::cli
