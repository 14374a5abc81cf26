// Three processes make the sandbox:
//   outer    `hvsock run` itself: unshares the mount, UTS, IPC and PID
//            namespaces (and a user namespace when not root), covers the
//            runtime and state directories, forks `init`, passes signals on
//            and ends as the command ended.
//   init     PID 1 of the partition: mounts its procfs and the read-only
//            covers, forks the command, writes the command's id maps, passes
//            signals on, reaps orphans and reports the command's wait status
//            to outer. Not dumpable, so the command (same uid) cannot ptrace
//            it back into the more privileged namespaces.
//   command  unshares a user and a mount namespace (locking every mount
//            made above) and the network namespace if asked, then execs.
#include "partition_sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <hvsock/unique_fd.hpp>

#include "cli_common.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {

namespace {

// Signals passed on to the command. Ones the terminal sends (si_code
// SI_KERNEL) reach the command's process group directly and are not passed
// on again.
constexpr std::array forwarded_signals{SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

volatile sig_atomic_t forward_to = 0;

void forward_signal(int sig, siginfo_t* info, void*) {
  if (info != nullptr && info->si_code == SI_KERNEL) return;
  if (forward_to > 0) ::kill(forward_to, sig);
}

void install_forwarding(pid_t to) {
  forward_to = to;
  struct sigaction action {};
  action.sa_sigaction = forward_signal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int sig : forwarded_signals) ::sigaction(sig, &action, nullptr);
}

void reset_signals() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  for (int sig : forwarded_signals) ::sigaction(sig, &action, nullptr);
  ::sigaction(SIGPIPE, &action, nullptr);  // the CLI ignores it; the command must not
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

std::string errno_text(int err) { return std::strerror(err); }

// In the forked processes there is no cli_exit to throw: say it and go.
[[noreturn]] void die(const std::string& partition, const std::string& what, int err) {
  std::string line = "hvsock: cannot isolate partition \"" + partition + "\": " + what;
  if (err != 0) line += ": " + errno_text(err);
  line += "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  ::_exit(exit_sandbox_failed);
}

struct setup_error {
  std::string what;
  int err;
};

void check(bool ok, std::string what) {
  if (!ok) throw setup_error{std::move(what), errno};
}

void write_file(const std::string& path, const std::string& text) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  check(fd.valid(), "open " + path);
  check(::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()),
        "write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Whether `path` is `dir` or below it (both absolute, no trailing slash).
bool is_within(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string absolute(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return path;
  std::string result(real);
  std::free(real);
  return result;
}

struct mount_entry {
  std::string point;
  std::string type;
};

// The mounts of this process's mount namespace, from /proc/self/mountinfo
// (octal escapes in mount points decoded).
std::vector<mount_entry> mounts() {
  std::vector<mount_entry> result;
  std::istringstream lines(read_file("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point, options, field;
    fields >> id >> parent >> devno >> root >> point >> options;
    while (fields >> field && field != "-") {
    }
    std::string type;
    fields >> type;
    std::string decoded;
    for (std::size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        decoded += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += point[i];
      }
    }
    result.push_back({decoded, type});
  }
  return result;
}

void make_read_only(const std::string& path) {
  check(::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0,
        "bind " + path);
  check(::mount(nullptr, path.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0,
        "make " + path + " read-only");
}

// An empty tmpfs over `dir` (made read-only once filled).
void cover_with_tmpfs(const std::string& dir, const char* size) {
  const std::string options = std::string("mode=0755,size=") + size;
  check(::mount("hvsock-partition", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                options.c_str()) == 0,
        "cover " + dir);
}

void remount_read_only(const std::string& dir) {
  check(::mount(nullptr, dir.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "make " + dir + " read-only");
}

void make_directories(const std::string& path) {
  std::string sofar;
  std::istringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    sofar += "/" + part;
    if (::mkdir(sofar.c_str(), 0755) < 0) check(errno == EEXIST, "mkdir " + sofar);
  }
}

// Runs in outer, after unshare: covers the state and runtime directories.
void cover_directories(const sandbox_options& options, int partition_dir) {
  const std::string runtime = absolute(options.runtime_dir);
  const std::string state = options.state_dir.empty() ? "" : absolute(options.state_dir);
  const bool cover_state = !state.empty() && is_directory(state) && !is_within(state, runtime);
  if (cover_state) {
    cover_with_tmpfs(state, "16k");
    // A runtime dir kept inside the state dir needs a place to be covered.
    if (is_within(runtime, state)) make_directories(runtime);
  }
  cover_with_tmpfs(runtime, "64k");
  const std::string partitions = detail::partitions_dir(runtime);
  check(::mkdir(partitions.c_str(), 0755) == 0, "mkdir " + partitions);
  // The partition's directory, not just its socket: a restarted hvsockd
  // makes a new socket there, which the bind shows. Read-only, so nothing
  // can be planted in the host's runtime dir through it.
  const std::string dir = detail::partition_dir(runtime, options.partition);
  check(::mkdir(dir.c_str(), 0700) == 0, "mkdir " + dir);
  const std::string source = "/proc/self/fd/" + std::to_string(partition_dir);
  check(::mount(source.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) == 0,
        "bind the partition's directory to " + dir);
  remount_read_only(dir);
  const std::string marker = detail::isolation_marker_path(runtime);
  {
    unique_fd fd(::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    check(fd.valid(), "create " + marker);
    const std::string text = options.partition + "\n";
    check(::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()),
          "write " + marker);
  }
  remount_read_only(runtime);
  if (cover_state) remount_read_only(state);
}

// Runs in init (PID 1 of the new PID namespace), before the command's user
// namespace locks the mounts.
void set_up_proc_and_sys() {
  const auto before = mounts();
  // Every procfs shows the PID namespace it was mounted in: the host's.
  check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "mount /proc");
  for (const auto& m : before) {
    if (m.type != "proc" || is_within(m.point, "/proc")) continue;
    if (::umount2(m.point.c_str(), MNT_DETACH) == 0) continue;
    if (::mount("/proc", m.point.c_str(), nullptr, MS_BIND, nullptr) == 0) continue;
    // EACCES: a path this user cannot search, and so neither can the
    // command, which runs as the same user.
    check(errno == EACCES, "cover the procfs at " + m.point);
  }
  // The kernel's own switches stay the host's: read-only or hidden, as
  // container runtimes do.
  for (const char* path :
       {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/acpi"})
    if (::access(path, F_OK) == 0) make_read_only(path);
  for (const char* path :
       {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kmsg"})
    if (::access(path, F_OK) == 0)
      check(::mount("/dev/null", path, nullptr, MS_BIND, nullptr) == 0,
            std::string("hide ") + path);
  for (const auto& m : mounts())
    if (is_within(m.point, "/sys") && m.type != "proc")
      check(::mount(nullptr, m.point.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    nullptr) == 0 ||
                errno == EINVAL,
            "make " + m.point + " read-only");
}

// The command's id maps: every id init has, mapped to itself.
std::string identity_map(const std::string& own_map) {
  std::istringstream lines(own_map);
  std::string out;
  unsigned long inside = 0, outside = 0, count = 0;
  while (lines >> inside >> outside >> count)
    out +=
        std::to_string(inside) + " " + std::to_string(inside) + " " + std::to_string(count) + "\n";
  return out;
}

void write_id_maps(pid_t child) {
  const std::string proc = "/proc/" + std::to_string(child);
  if (read_file("/proc/self/setgroups").rfind("deny", 0) == 0)
    write_file(proc + "/setgroups", "deny");
  write_file(proc + "/uid_map", identity_map(read_file("/proc/self/uid_map")));
  write_file(proc + "/gid_map", identity_map(read_file("/proc/self/gid_map")));
}

void bring_loopback_up() {
  unique_fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  check(fd.valid(), "socket for loopback");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  check(::ioctl(fd.get(), SIOCGIFFLAGS, &request) == 0, "read loopback's flags");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP | IFF_RUNNING);
  check(::ioctl(fd.get(), SIOCSIFFLAGS, &request) == 0, "bring loopback up");
}

// Inherited descriptors of directories (and O_PATH ones) were opened in the
// host's mount namespace: paths relative to them walk the host's mounts,
// below the covers.
void close_inherited_directories() {
  std::vector<int> to_close;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) throw setup_error{"list /proc/self/fd", errno};
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] == '.' || fd == own) continue;
    struct stat st {};
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fstat(fd, &st) < 0) continue;
    if (S_ISDIR(st.st_mode) || (flags & O_PATH) == O_PATH) to_close.push_back(fd);
  }
  ::closedir(dir);
  for (int fd : to_close) ::close(fd);
}

// Enters the working directory again by path, so that it is the covered
// view; "/" when it is gone from that view.
void reenter_working_directory() {
  char* cwd = ::getcwd(nullptr, 0);
  const bool back = cwd != nullptr && ::chdir(cwd) == 0;
  std::free(cwd);
  if (!back) check(::chdir("/") == 0, "chdir /");
}

[[noreturn]] void run_command(const sandbox_options& options,
                              const std::vector<std::string>& command, int unshared_write,
                              int mapped_read) {
  try {
    int flags = CLONE_NEWUSER | CLONE_NEWNS;
    if (options.no_network) flags |= CLONE_NEWNET;
    check(::unshare(flags) == 0, "unshare the command's namespaces");
    const char byte = 1;
    check(::write(unshared_write, &byte, 1) == 1, "tell init");
    ::close(unshared_write);
    char answer = 0;
    if (::read(mapped_read, &answer, 1) != 1)
      throw setup_error{"init did not map the command's ids", 0};
    ::close(mapped_read);
    if (options.no_network) bring_loopback_up();
    reenter_working_directory();
    close_inherited_directories();
  } catch (const setup_error& e) {
    die(options.partition, e.what, e.err);
  }
  reset_signals();
  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  const int err = errno;
  const std::string line = "hvsock: cannot run " + command[0] + ": " + errno_text(err) + "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  ::_exit(err == ENOENT ? 127 : 126);
}

[[noreturn]] void run_init(const sandbox_options& options, const std::vector<std::string>& command,
                           int status_write) {
  // Dies with outer, and then the kernel ends every process in the partition.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  pollfd lifeline{status_write, 0, 0};  // POLLERR once outer (the reader) is gone
  if (::poll(&lifeline, 1, 0) > 0) ::_exit(exit_sandbox_failed);
  ::prctl(PR_SET_DUMPABLE, 0);
  int unshared[2], mapped[2];
  try {
    set_up_proc_and_sys();
    check(::pipe2(unshared, O_CLOEXEC) == 0 && ::pipe2(mapped, O_CLOEXEC) == 0, "pipe2");
  } catch (const setup_error& e) {
    die(options.partition, e.what, e.err);
  }
  const pid_t child = ::fork();
  if (child < 0) die(options.partition, "fork", errno);
  if (child == 0) {
    // Only init stays undumpable: init (not root when run by a user) writes
    // this process's id maps through its /proc entries.
    ::prctl(PR_SET_DUMPABLE, 1);
    ::close(status_write);
    ::close(unshared[0]);
    ::close(mapped[1]);
    run_command(options, command, unshared[1], mapped[0]);
  }
  ::close(unshared[1]);
  ::close(mapped[0]);
  install_forwarding(child);
  char byte = 0;
  if (::read(unshared[0], &byte, 1) == 1) {
    try {
      write_id_maps(child);
    } catch (const setup_error& e) {
      ::kill(child, SIGKILL);
      die(options.partition, e.what, e.err);
    }
    (void)!::write(mapped[1], &byte, 1);
  }
  ::close(unshared[0]);
  ::close(mapped[1]);
  // Reap everything (orphans are re-parented to PID 1) until the command ends.
  int status = 0;
  for (;;) {
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid == child) break;
    if (pid < 0 && errno != EINTR) die(options.partition, "waitpid", errno);
  }
  (void)!::write(status_write, &status, sizeof status);
  ::_exit(0);
}

// Ends outer as the command ended. _exit, not exit: outer's PID namespace
// is gone with init, so nothing at exit may fork (LeakSanitizer's check
// would), and there is nothing left to clean up but stdio.
[[noreturn]] void end_like(int status) {
  std::fflush(nullptr);
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
  ::signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  ::_exit(128 + sig);
}

}  // namespace

void run_isolated(const sandbox_options& options, const std::vector<std::string>& command) {
  const std::string where = "cannot isolate partition \"" + options.partition + "\": ";
  const uid_t uid = ::getuid();
  const gid_t gid = ::getgid();
  const bool root = ::geteuid() == 0;
  const std::string socket_path =
      detail::partition_socket_path(options.runtime_dir, options.partition);
  if (struct stat st{}; ::stat(socket_path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode))
    fail(where + "no control socket at " + socket_path);
  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID;
  if (!root) flags |= CLONE_NEWUSER;
  if (::unshare(flags) < 0) {
    const int err = errno;
    if (!root && (err == EPERM || err == EINVAL || err == ENOSPC || err == EUSERS))
      fail(where + "this kernel does not let unprivileged users create user namespaces (" +
           errno_text(err) +
           "; see sysctls kernel.unprivileged_userns_clone and user.max_user_namespaces); run "
           "as root, or use --no-isolate");
    fail(where + "unshare: " + errno_text(err));
  }
  try {
    if (!root) {
      write_file("/proc/self/setgroups", "deny");
      write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1\n");
      write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
    }
    // Nothing done here may reach the host's mount namespace.
    check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
          "make the mounts private");
    // Opened in this mount namespace (a bind needs that) before the runtime
    // dir is covered; bind-mounted into the cover.
    const std::string dir = detail::partition_dir(options.runtime_dir, options.partition);
    unique_fd partition_dir(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    check(partition_dir.valid(), "open " + dir);
    cover_directories(options, partition_dir.get());
    check(::sethostname(options.partition.data(), options.partition.size()) == 0, "sethostname");
  } catch (const setup_error& e) {
    fail(where + e.what + (e.err != 0 ? ": " + errno_text(e.err) : ""), exit_sandbox_failed);
  }
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) < 0) fail(where + "pipe2: " + errno_text(errno));
  std::fflush(nullptr);
  const pid_t init = ::fork();
  if (init < 0) fail(where + "fork: " + errno_text(errno));
  if (init == 0) {
    ::close(status_pipe[0]);
    run_init(options, command, status_pipe[1]);
  }
  ::close(status_pipe[1]);
  install_forwarding(init);
  int init_status = 0;
  while (::waitpid(init, &init_status, 0) < 0 && errno == EINTR) {
  }
  int status = 0;
  const bool reported = ::read(status_pipe[0], &status, sizeof status) == sizeof status;
  if (reported) end_like(status);
  // init died before the command ended (killed, or a failed set-up it reported).
  end_like(init_status);
}

}  // namespace hvsock::cli
