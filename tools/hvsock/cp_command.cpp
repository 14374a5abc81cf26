// hvsock cp SRC DST: copies a file or a directory tree into a VM
// (DST = VM:PATH) or out of one (SRC = VM:PATH) through its guest agent.
// Files are streamed, checked with an XXH3-128 digest and renamed into place
// on the receiving side, so a destination file is whole or absent; modes are
// kept (src/agent/file_transfer.hpp). A progress line goes to a terminal.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "agent/agent_protocol.hpp"
#include "agent/file_transfer.hpp"
#include "agent_client.hpp"
#include "cli_common.hpp"

namespace hvsock::cli {
namespace {

struct location {
  std::string vm;  // empty: this machine
  std::string path;
};

// VM:PATH when a ':' comes before any '/'; "./a:b" stays local.
location parse_location(const std::string& text) {
  const auto colon = text.find(':');
  const auto slash = text.find('/');
  if (colon != std::string::npos && colon > 0 && (slash == std::string::npos || colon < slash))
    return {text.substr(0, colon), text.substr(colon + 1)};
  return {"", text};
}

std::string last_name(const std::string& path) {
  auto p = std::filesystem::path(path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

// "\r  12.0 MiB / 1.0 GiB  34.5 MB/s" on a terminal, at most 10 times a second.
agent::progress_function progress_line(bool enabled) {
  if (!enabled) return nullptr;
  auto start = std::chrono::steady_clock::now();
  auto last = start - std::chrono::seconds(1);
  return [start, last](std::uint64_t done, std::uint64_t total) mutable {
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(100) && done != total) return;
    last = now;
    const double seconds = std::chrono::duration<double>(now - start).count();
    std::fprintf(stderr, "\r  %.1f MiB / %.1f MiB  %.1f MB/s   ", double(done) / (1 << 20),
                 double(total) / (1 << 20), seconds > 0 ? double(done) / seconds / 1e6 : 0.0);
    if (done == total) std::fprintf(stderr, "\n");
  };
}

// The agent's last word: EXIT 0, or ERROR (the reason) and EXIT.
void expect_success(int sock, const std::string& what) {
  std::string error;
  for (;;) {
    auto f = agent::read_frame(sock);
    if (!f) fail("cp " + what + ": the connection to the agent was lost", exit_agent_lost);
    if (f->type == agent::frame_type::error) {
      error.assign(reinterpret_cast<const char*>(f->payload.data()), f->payload.size());
    } else if (f->type == agent::frame_type::exit) {
      auto st = agent::decode_exit(f->payload);
      if (st && !st->signaled && st->code == 0 && error.empty()) return;
      fail("cp " + what + ": " + (error.empty() ? "the agent refused the copy" : error));
    }
  }
}

}  // namespace

void add_cp_command(CLI::App& app, global_options& options) {
  struct cp_args {
    std::string source, destination;
    bool quiet = false;
  };
  auto args = std::make_shared<cp_args>();
  auto* cp = app.add_subcommand(
      "cp", "Copy a file or directory into a VM (DST = VM:PATH) or out of one (SRC = VM:PATH)");
  completes_file(cp->add_option("SRC", args->source, "a local path, or VM:PATH")->required());
  completes_file(cp->add_option("DST", args->destination, "a local path, or VM:PATH")->required());
  cp->add_flag("-q,--quiet", args->quiet, "no progress line, even on a terminal");
  cp->callback([args, &options] {
    const auto from = parse_location(args->source);
    const auto to = parse_location(args->destination);
    if (from.vm.empty() == to.vm.empty())
      fail("cp: exactly one of SRC and DST is VM:PATH", exit_usage);
    const bool show = !args->quiet && ::isatty(STDERR_FILENO);
    const std::string what = args->source + " -> " + args->destination;
    if (!to.vm.empty()) {
      std::error_code ec;
      if (!std::filesystem::exists(from.path, ec))
        fail("cp: " + from.path + ": no such file or directory");
      auto s = connect_agent(to.vm, std::chrono::seconds(5), "cp", options);
      if (!agent::write_all(s.native_handle(), agent::encode_put(to.path, last_name(from.path))))
        fail("cp " + what + ": the agent went away", exit_agent_lost);
      if (auto sent = agent::send_tree(s.native_handle(), from.path, progress_line(show)); !sent) {
        // The agent may have said why it stopped reading (a full disk, ...).
        (void)s.shutdown(shutdown_how::write);
        expect_success(s.native_handle(), what);
        fail("cp " + what + ": " + sent.error().message());
      }
      expect_success(s.native_handle(), what);
      return;
    }
    auto s = connect_agent(from.vm, std::chrono::seconds(5), "cp", options);
    if (!agent::write_all(s.native_handle(), agent::encode_get(from.path)))
      fail("cp " + what + ": the agent went away", exit_agent_lost);
    agent::tree_receiver receiver(to.path, last_name(from.path), progress_line(show));
    if (auto got = agent::receive_tree(s.native_handle(), receiver); !got)
      fail("cp " + what + ": " + got.error().message());
  });
}

}  // namespace hvsock::cli
