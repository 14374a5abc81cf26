// hvsockd: the emulated Hyper-V switch. Runs in the foreground and logs one
// line per event to stderr ("hvsockd: ..."); prints "hvsockd: ready" once it
// serves (and tells systemd READY=1 under a Type=notify unit), and exits 0
// on SIGINT/SIGTERM, 1 when it cannot start or fails, 2 for a bad command
// line (one "hvsockd: ..." line).
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "daemon/stderr_log.hpp"
#include "daemon/switch_daemon.hpp"
#include "daemon/systemd_notifier.hpp"
#include "man_page.hpp"
#include "protocol/runtime_paths.hpp"

namespace {

using hvsock::daemon::daemon_options;

using hvsock::daemon::log_level;

// Where every line goes; --log-level changes the threshold once parsed.
hvsock::daemon::stderr_log log_sink({
    .threshold = log_level::info,
    .journal = hvsock::daemon::is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM")),
});

// A line the user must see whatever the level: a bad command line or a
// failure to start.
void log_line(const std::string& line) { log_sink(log_level::error, line); }

std::string status_line(const hvsock::daemon::switch_daemon& daemon) {
  return fmt::format("serving {} partitions, {} services, {} clients connected",
                     daemon.partition_count(), daemon.service_count(), daemon.client_count());
}

// Every `interval` on the switch's thread: STATUS= and, with a watchdog,
// WATCHDOG=1 (a stuck event loop then misses it and systemd restarts us).
void keep_systemd_informed(hvsock::daemon::switch_daemon& daemon,
                           hvsock::daemon::systemd_notifier& notifier,
                           std::chrono::microseconds interval) {
  (void)daemon.loop().add_timer(interval, [&daemon, &notifier, interval] {
    if (notifier.keepalive_interval()) notifier.alive();
    notifier.status(status_line(daemon));
    keep_systemd_informed(daemon, notifier, interval);
  });
}

std::optional<unsigned long> parse_number(const std::string& text, int base) {
  unsigned long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// USER, USER:GROUP or :GROUP, by name or number (chown's syntax).
std::string parse_owner(const std::string& text, daemon_options& options) {
  const auto colon = text.find(':');
  const std::string user_name = text.substr(0, colon);
  const std::string group_name =
      colon == std::string::npos ? std::string() : text.substr(colon + 1);
  if (!user_name.empty()) {
    if (const passwd* pw = ::getpwnam(user_name.c_str())) {
      options.sockets.owner_uid = pw->pw_uid;
    } else if (auto n = parse_number(user_name, 10)) {
      options.sockets.owner_uid = static_cast<uid_t>(*n);
    } else {
      return "--socket-owner: no user named \"" + user_name + "\"";
    }
  }
  if (!group_name.empty()) {
    if (const group* gr = ::getgrnam(group_name.c_str())) {
      options.sockets.owner_gid = gr->gr_gid;
    } else if (auto n = parse_number(group_name, 10)) {
      options.sockets.owner_gid = static_cast<gid_t>(*n);
    } else {
      return "--socket-owner: no group named \"" + group_name + "\"";
    }
  }
  if (!options.sockets.owner_uid && !options.sockets.owner_gid)
    return "--socket-owner: expected USER, USER:GROUP or :GROUP";
  return {};
}

int print_man_page(CLI::App& app, const std::string& template_path) {
  std::ifstream in(template_path);
  if (!in) {
    log_line("--man: cannot read " + template_path);
    return 1;
  }
  std::ostringstream page_template;
  page_template << in.rdbuf();
  try {
    std::cout << hvsock::cli_reference::render_man_page(hvsock::cli_reference::describe(app),
                                                        "hvsockd", page_template.str());
  } catch (const std::exception& e) {
    log_line(std::string("--man: ") + e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "hvsockd: the emulated Hyper-V switch. Owns the partitions (host, VMs, containers), the "
      "service registry and the routing rules, and brokers hvsock connections between "
      "partitions. Runs in the foreground and logs to stderr."};
  daemon_options options;
  options.state_dir = hvsock::detail::default_state_dir();
  options.runtime_dir = hvsock::detail::default_runtime_dir();
  std::string socket_mode = "0600";
  std::string socket_owner;
  std::size_t max_clients = options.limits.max_clients;
  bool verbose = false;
  std::string log_level_name = "info";
  std::string metrics_listen;

  // The defaults depend on who runs hvsockd, so they are described, not
  // shown: the man page is generated from these lines at build time.
  app.add_option("--state-dir", options.state_dir,
                 "Where the registry and partitions are kept (state.json); default: "
                 "$HVSOCK_STATE_DIR, else /var/lib/hvsock for root, else "
                 "$XDG_STATE_HOME/hvsock or ~/.local/state/hvsock")
      ->type_name("DIR");
  app.add_option("--runtime-dir", options.runtime_dir,
                 "Where the management socket and the partitions' control sockets live; "
                 "default: $HVSOCK_RUNTIME_DIR, else /run/hvsock for root, else "
                 "$XDG_RUNTIME_DIR/hvsock or /tmp/hvsock-UID")
      ->type_name("DIR");
  app.add_option("--socket-mode", socket_mode, "Octal mode of every socket file")
      ->type_name("MODE")
      ->capture_default_str();
  app.add_option("--socket-owner", socket_owner,
                 "Owner of every socket file: USER, USER:GROUP or :GROUP")
      ->type_name("OWNER");
  app.add_option("--max-clients", max_clients,
                 "Most control and management connections open at once")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  app.add_option("--max-clients-per-partition", options.limits.max_clients_per_partition,
                 "Most control connections open at once through one partition's socket")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  auto* metrics_option = app.add_option(
      "--metrics-listen", metrics_listen,
      "Serve Prometheus metrics at http://ADDR:PORT/metrics: IPV4:PORT, [IPV6]:PORT, "
      "or :PORT for 127.0.0.1 (loopback unless an address is given)");
  metrics_option->type_name("ADDRESS");
  auto* log_level_option =
      app.add_option("--log-level", log_level_name,
                     "Least severe lines logged: error, warning, notice, info or debug (under "
                     "systemd every line carries its syslog priority, for journalctl -p)")
          ->type_name("LEVEL")
          ->capture_default_str();
  app.add_flag("-v,--verbose", verbose,
               "Also log every brokered connection (the same as --log-level debug)")
      ->excludes(log_level_option);
  // Hidden (group ""): prints the man page hvsockd(8) from a template
  // (packaging/man/hvsockd.8.in) and these definitions; the build runs it.
  std::string man_template;
  app.add_option("--man", man_template, "Print the man page")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // As hvsock answers: one line, then where to look; exit 2.
    log_line(std::string(e.what()) + " (see: hvsockd --help)");
    return 2;
  }

  if (!man_template.empty()) return print_man_page(app, man_template);

  const auto threshold =
      verbose ? log_level::debug : hvsock::daemon::parse_log_level(log_level_name);
  if (!threshold) {
    log_line("--log-level: expected error, warning, notice, info or debug, got \"" +
             log_level_name + "\" (see: hvsockd --help)");
    return 2;
  }
  log_sink = hvsock::daemon::stderr_log({
      .threshold = *threshold,
      .journal = hvsock::daemon::is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM")),
  });

  const auto mode = parse_number(socket_mode, 8);
  if (!mode || *mode > 0777) {
    log_line("--socket-mode: expected an octal mode 0..0777 such as 0600 or 0660, got \"" +
             socket_mode + "\" (see: hvsockd --help)");
    return 2;
  }
  options.sockets.mode = static_cast<mode_t>(*mode);
  if (!socket_owner.empty()) {
    if (auto problem = parse_owner(socket_owner, options); !problem.empty()) {
      log_line(problem);
      return 2;
    }
  }
  if (metrics_option->count() > 0) {
    auto address = hvsock::daemon::parse_tcp_listen_address(metrics_listen);
    if (!address) {
      log_line("--metrics-listen: " + address.error().message() + " (see: hvsockd --help)");
      return 2;
    }
    options.metrics_listen = *address;
  }
  options.limits.max_clients = max_clients;
  options.log_connections = log_sink.wants(log_level::debug);
  options.log = [](log_level level, const std::string& line) { log_sink(level, line); };

  auto daemon = hvsock::daemon::switch_daemon::start(options);
  if (!daemon) {
    log_line(daemon.error().message());
    return 1;
  }
  log_sink(log_level::notice,
           fmt::format("ready (pid {}, state {}, runtime {}, {} partitions, {} services)",
                       ::getpid(), options.state_dir, options.runtime_dir,
                       (*daemon)->partition_count(), (*daemon)->service_count()));
  hvsock::daemon::systemd_notifier notifier;
  if (notifier.active()) {
    notifier.ready(status_line(**daemon));
    constexpr std::chrono::microseconds status_every = std::chrono::seconds(10);
    keep_systemd_informed(
        **daemon, notifier,
        std::min(status_every, notifier.keepalive_interval().value_or(status_every)));
  }
  auto stopped = (*daemon)->run();
  if (!stopped) {
    notifier.stopping("failed: " + stopped.error().message());
    log_line(stopped.error().message());
    return 1;
  }
  notifier.stopping("stopping");
  daemon->reset();  // removes the socket files
  log_sink(log_level::notice,
           fmt::format("stopped ({})", *stopped != 0 ? ::strsignal(*stopped) : "requested"));
  return 0;
}
