// switch_daemon: start-up checks, wiring of the parts, and shutdown.
#include "daemon/switch_daemon.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "daemon/private_directory.hpp"
#include "protocol/metrics_text.hpp"
#include "protocol/runtime_paths.hpp"
#include "sys/socket_ops.hpp"

#ifndef HVSOCK_VERSION
#define HVSOCK_VERSION "0.1.0"
#endif

namespace hvsock::daemon {
namespace {

result<unique_fd> lock_state_dir(const std::string& state_dir) {
  const std::string path = state_dir + "/lock";
  unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600));
  if (!fd) return make_system_error(errno, "open " + path);
  int rc;
  do {
    rc = ::flock(fd.get(), LOCK_EX | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EWOULDBLOCK)
      return failure(errc::already_exists,
                     fmt::format("another hvsockd is already using the state directory {} (it "
                                 "holds {})",
                                 state_dir, path));
    return make_system_error(errno, "flock " + path);
  }
  return fd;
}

void remove_if_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
}

// Socket files left by a daemon that did not exit cleanly.
void remove_stale_sockets(const std::string& runtime_dir) {
  remove_if_socket(detail::management_socket_path(runtime_dir));
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(detail::partitions_dir(runtime_dir), ec)) {
    if (entry.is_directory(ec))
      remove_if_socket((entry.path() / "control.sock").string());
    else if (entry.path().extension() == ".sock")  // the layout before per-partition dirs
      remove_if_socket(entry.path().string());
  }
}

void raise_fd_limit(std::size_t wanted, const log_function& log) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) < 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
    (void)::getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted)
    log(log_level::warning,
        fmt::format("warning: the file descriptor limit ({}) is below what the configured limits "
                    "may need ({})",
                    limit.rlim_cur, wanted));
}

// The part of the daemon-wide client budget control clients leave to the
// management socket, so that `hvsock status` gets in whatever the
// partitions do.
std::size_t management_reserve(std::size_t max_clients) {
  return std::min<std::size_t>(64, max_clients / 4);
}

}  // namespace

result<std::unique_ptr<switch_daemon>> switch_daemon::start(daemon_options options) {
  if (!options.log) options.log = [](log_level, const std::string&) {};
  const log_function& log = options.log;

  if (auto ok = make_directory(options.state_dir, 0700); !ok) return ok.error();
  // Others can only reach sockets with a wider mode (or another owner)
  // through a directory they may search.
  const bool shared =
      (options.sockets.mode & 077) != 0 || options.sockets.owner_uid || options.sockets.owner_gid;
  const mode_t runtime_mode = shared ? 0755 : 0700;
  if (auto ok = make_directory(options.runtime_dir, runtime_mode); !ok) return ok.error();
  if (auto ok = make_directory(detail::partitions_dir(options.runtime_dir), runtime_mode); !ok)
    return ok.error();
  for (const auto& [path, what] :
       {std::pair{options.state_dir, "state directory"},
        std::pair{options.runtime_dir, "runtime directory"},
        std::pair{detail::partitions_dir(options.runtime_dir), "partition socket directory"}})
    if (auto ok = check_private_directory(path, what); !ok) return ok.error();

  auto lock = lock_state_dir(options.state_dir);
  if (!lock) return lock.error();

  const std::string management_path = detail::management_socket_path(options.runtime_dir);
  if (auto probe = detail::connect_unix(management_path, SOCK_STREAM))
    return failure(errc::already_exists,
                   fmt::format("another hvsockd is serving the runtime directory {} (it answers "
                               "on {})",
                               options.runtime_dir, management_path));
  remove_stale_sockets(options.runtime_dir);

  const state_limits limits{options.limits.max_partitions, options.limits.max_services};
  state_store store(options.state_dir);
  auto loaded = store.load(limits);
  if (!loaded) return loaded.error();
  std::optional<switch_state> state = std::move(*loaded);
  if (!state) {
    state.emplace(switch_state{partition_tree(guid::generate(), limits.max_partitions),
                               service_registry(limits.max_services)});
    if (auto saved = store.save(state->partitions, state->services); !saved) return saved.error();
    log(log_level::notice, fmt::format("created {} (host VmId {})", store.file_path(),
                                       state->partitions.host().id.to_string()));
  }

  raise_fd_limit(options.limits.max_clients + options.limits.max_partitions + 64, log);

  auto loop = event_loop::create();
  if (!loop) return loop.error();
  if (auto ok = (*loop)->stop_on_termination_signals(); !ok) return ok.error();

  std::unique_ptr<switch_daemon> daemon(
      new switch_daemon(std::move(options), std::move(*lock), std::move(*loop), std::move(*state)));
  if (auto ok = daemon->open_sockets(); !ok) return ok.error();
  return daemon;
}

switch_daemon::switch_daemon(daemon_options options, unique_fd lock,
                             std::unique_ptr<event_loop> loop, switch_state state)
    : options_(std::move(options)),
      lock_(std::move(lock)),
      loop_(std::move(loop)),
      budget_(options_.limits.max_clients),
      partitions_(std::make_unique<partition_tree>(std::move(state.partitions))),
      services_(std::make_unique<service_registry>(std::move(state.services))),
      store_(options_.state_dir),
      router_(*partitions_, *services_) {
  control_ = std::make_unique<control_server>(
      *loop_, budget_, *partitions_, *services_, router_, counters_,
      control_server::options{
          .runtime_dir = options_.runtime_dir,
          .sockets = options_.sockets,
          .log_connections = options_.log_connections,
          .max_clients_per_partition = options_.limits.max_clients_per_partition,
          .management_reserve = management_reserve(options_.limits.max_clients)},
      options_.log);
  management_ = std::make_unique<management_server>(
      *loop_, budget_,
      management_server::context{*partitions_, *services_, store_, counters_, *control_,
                                 options_.state_dir, options_.runtime_dir, HVSOCK_VERSION},
      options_.log);
}

switch_daemon::~switch_daemon() {
  // The management socket goes first so that nothing can change the
  // partitions while their sockets are being removed.
  metrics_.reset();
  management_.reset();
  control_.reset();
}

result<void> switch_daemon::open_sockets() {
  for (const partition* p : partitions_->list()) {
    if (auto ok = control_->open_partition(*p); !ok) return ok.error();
  }
  if (auto ok =
          management_->open(detail::management_socket_path(options_.runtime_dir), options_.sockets);
      !ok)
    return ok.error();
  if (options_.metrics_listen) {
    // The same figures as `hvsock stats --format prometheus`: one renderer
    // of the one stats report.
    auto render = [this] {
      return detail::render_prometheus_metrics(nlohmann::json(management_->stats_report()));
    };
    auto metrics = metrics_http_server::open(*loop_, *options_.metrics_listen, std::move(render),
                                             options_.log, metrics_http_server::limits{});
    if (!metrics) return metrics.error().with_context("--metrics-listen");
    metrics_ = std::move(*metrics);
    options_.log(log_level::notice,
                 fmt::format("metrics on http://{}/metrics", metrics_->address()));
  }
  // Last, once nothing can fail: the QMP conversations run once the loop does.
  control_->reattach_qemu_guests();
  return {};
}

result<int> switch_daemon::run() {
  if (auto ok = loop_->run(); !ok) return ok.error();
  return loop_->stop_signal();
}

}  // namespace hvsock::daemon
