// hvsock: the management and everyday CLI for hvsockd.
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "cli_common.hpp"

int main(int argc, char** argv) {
  using namespace hvsock::cli;
  // Writes to a closed socket or pipe must be errors, not a silent death.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{
      "hvsock: Hyper-V sockets on Linux. Manages hvsockd's partitions and services, "
      "and connects, listens and runs programs inside partitions."};
  app.require_subcommand(1);
  app.fallthrough();  // --runtime-dir is accepted after the subcommand too
  app.set_version_flag("--version", "hvsock 0.1.0");
  global_options options;
  app.add_option("--runtime-dir", options.runtime_dir,
                 "hvsockd's runtime directory (default: $HVSOCK_RUNTIME_DIR, else /run/hvsock "
                 "for root, else $XDG_RUNTIME_DIR/hvsock)")
      ->envname("HVSOCK_RUNTIME_DIR")
      ->type_name("DIR");

  auto* status = app.add_subcommand("status", "Exit 0 when hvsockd answers; print what it reports");
  double wait_seconds = 0;
  status
      ->add_option("--wait", wait_seconds,
                   "wait up to this many seconds for hvsockd to answer (one just started)")
      ->check(CLI::Range(0.0, 600.0));
  status->callback([&] {
    // A daemon started a moment ago may not serve yet: try again until it
    // does or the wait is over (every 50 ms: no busy loop).
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<long>(wait_seconds * 1000));
    auto opened = hvsock::detail::management_client::open(runtime_dir(options));
    while (!opened && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      opened = hvsock::detail::management_client::open(runtime_dir(options));
    }
    auto client = must(std::move(opened));
    const auto s = must(client.call("status"));
    std::cout << "hvsockd " << s.value("version", "?") << " is running (pid " << s.value("pid", 0)
              << "): " << s.value("partitions", 0) << " partitions, " << s.value("services", 0)
              << " services\n  state   " << s.value("state_dir", "?") << "\n  runtime "
              << s.value("runtime_dir", "?") << "\n";
  });
  add_service_commands(app, options);
  add_vm_commands(app, options);
  add_run_command(app, options);
  add_stream_commands(app, options);
  add_stats_command(app, options);
  add_agent_command(app, options);
  add_exec_command(app, options);
  add_forward_command(app, options);
  add_cp_command(app, options);
  add_reference_commands(app, options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // One line for the reason, then where to look for usage: the help of the
    // subcommand being parsed.
    return report_parse_error(app, e, "hvsock");
  } catch (const cli_exit& e) {
    if (!e.message.empty()) std::cerr << "hvsock: " << e.message << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "hvsock: " << e.what() << "\n";
    return exit_failure;
  }
  return 0;
}
