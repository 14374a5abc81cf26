// agent_frame_fuzzer: arbitrary bytes as what a client sends `hvsock
// agent` on one connection (docs/agent-protocol.md), read by the agent's
// real code over a socketpair: read_frame for HELLO and the request, the
// request's decoder, and then
//   PUT:  run_copy_session, i.e. decode_put, a tree_receiver and
//         receive_tree writing the client's tree into a fresh temporary
//         directory (the PUT's destination is the user's trusted path, so
//         it is replaced by one of fuzz_inputs.hpp's agent_input
//         destinations in that directory, picked by the input's first byte);
//   EXEC: decode_exec (the command is never started), then the frames that
//         follow, through a frame_reader fed in small pieces, as an exec
//         session reads them;
//   GET:  decode_get (sending files is not input handling).
// The agent's session dispatch (exec_session.cpp) also starts commands and
// takes its paths from the client, so the fuzzer does its few steps itself.
//
// The fresh directory holds inside/ (where copies go: a directory sub/ with
// a file, a file, and symbolic links evil -> ../outside, evilfile ->
// ../outside/victim and sub/up -> ../../outside, as a hostile VM could
// plant) and outside/ (a file victim). After each input, whatever the
// bytes: nothing but inside/ may have changed (outside/ exactly as it was,
// nothing new beside the two), nothing inside/ may have the setuid or setgid
// bit or be a leftover temporary file, and no fd may be left open; any of
// these failing aborts with the reason. The directory is removed after each
// input; it lives in /dev/shm when there is one (fsync is free there).
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <hvsock/unique_fd.hpp>

#include "agent/agent_protocol.hpp"
#include "agent/copy_session.hpp"
#include "fuzz_inputs.hpp"

namespace {

using namespace hvsock;
using namespace hvsock::agent;
namespace fs = std::filesystem;
namespace ai = hvsock::fuzz::agent_input;

// More than the socket buffers comfortably take in one go is not needed to
// reach any code; the rest of a longer input is ignored.
constexpr std::size_t max_stream = 64 * 1024;
// The pieces an exec's frames are fed to the frame_reader in.
constexpr std::size_t exec_piece = 7;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "agent_frame_fuzzer: %s\n", why.c_str());
  std::abort();
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

void write_text(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    die("cannot write " + path);
  ::fchmod(fd, mode);
  ::close(fd);
}

std::string read_text(const std::string& path) {
  std::string text;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return "(unreadable)";
  char buf[256];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, std::size_t(n));
  ::close(fd);
  return text;
}

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename());
  if (ec) die("cannot list " + dir + ": " + ec.message());
  return names;
}

// The directory every input gets afresh: <parent>/run.
std::string parent_dir;

std::string run_dir() { return parent_dir + "/run"; }

void make_sandbox() {
  const std::string root = run_dir();
  for (const auto* dir : {"", "/inside", "/inside/sub", "/outside"})
    if (::mkdir((root + dir).c_str(), 0755) != 0) die("cannot make " + root + dir);
  write_text(root + "/inside/sub/old", "old\n", 0644);
  write_text(root + "/inside/file", "file\n", 0644);
  write_text(root + "/outside/victim", "victim\n", 0644);
  if (::symlink("../outside", (root + "/inside/evil").c_str()) != 0 ||
      ::symlink("../outside/victim", (root + "/inside/evilfile").c_str()) != 0 ||
      ::symlink("../../outside", (root + "/inside/sub/up").c_str()) != 0)
    die("cannot make the planted links");
}

// Walks `dir` without following links: no setuid/setgid bits, no
// temporary files left behind.
void check_inside(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string path = e.path();
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) die("lstat " + path);
    if (S_ISLNK(st.st_mode)) continue;
    if (st.st_mode & (S_ISUID | S_ISGID))
      die(path + " has mode " + std::to_string(st.st_mode & 07777) + " (setuid or setgid)");
    if (S_ISREG(st.st_mode) && (st.st_mode & S_ISVTX)) die(path + ": a sticky file");
    if (e.path().filename().string().find(".hvsock-") != std::string::npos)
      die(path + ": a temporary file left behind");
    if (S_ISDIR(st.st_mode)) {
      // A directory the copy made without owner rwx must still be walkable.
      ::chmod(path.c_str(), (st.st_mode & 07777) | 0700);
      check_inside(path);
    }
  }
  if (ec) die("cannot list " + dir + ": " + ec.message());
}

void check_sandbox() {
  const std::string root = run_dir();
  if (names_in(parent_dir) != std::set<std::string>{"run"})
    die("something was written beside the fuzzer's directory " + root);
  if (names_in(root) != std::set<std::string>{"inside", "outside"})
    die("something was written beside " + root + "/inside");
  if (names_in(root + "/outside") != std::set<std::string>{"victim"})
    die("something was written into " + root + "/outside (through a link?)");
  struct stat st {};
  if (::lstat((root + "/outside/victim").c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      (st.st_mode & 07777) != 0644 || st.st_nlink != 1 ||
      read_text(root + "/outside/victim") != "victim\n")
    die(root + "/outside/victim was changed (through a link?)");
  if (::lstat((root + "/outside").c_str(), &st) != 0 || (st.st_mode & 07777) != 0755)
    die(root + "/outside changed its mode");
  check_inside(root + "/inside");
}

void remove_sandbox() {
  std::error_code ec;
  fs::remove_all(run_dir(), ec);
  if (ec) die("cannot remove " + run_dir() + ": " + ec.message());
}

// The frames that follow an EXEC, as an exec session takes them: fed in
// pieces, stopping at the first malformed or unexpected one.
void read_exec_frames(int socket) {
  frame_reader reader;
  std::vector<std::byte> buf(4096);
  for (;;) {
    const ssize_t n = ::recv(socket, buf.data(), buf.size(), 0);
    if (n <= 0) return;
    for (std::size_t at = 0; at < std::size_t(n); at += exec_piece) {
      reader.feed(std::span(buf).subspan(at, std::min(exec_piece, std::size_t(n) - at)));
      for (;;) {
        auto f = reader.next();
        if (!f) return;
        if (!*f) break;
        switch ((*f)->type) {
          case frame_type::stdin_data:
          case frame_type::stdin_eof: break;
          case frame_type::signal: (void)decode_signal((*f)->payload); break;
          case frame_type::winsize: (void)decode_winsize((*f)->payload); break;
          default: return;  // the session refuses it and ends
        }
      }
    }
  }
}

// The agent's side of the connection, up to and including the request.
void serve(int socket, std::uint8_t choice) {
  auto hello = read_frame(socket);
  if (!hello || hello->type != frame_type::hello) return;
  auto version = decode_hello(hello->payload);
  if (!version || *version != protocol_version) return;
  if (!write_all(socket, encode_hello())) return;
  auto request = read_frame(socket);
  if (!request) return;
  switch (request->type) {
    case frame_type::put: {
      frame put = std::move(*request);
      if (auto decoded = decode_put(put.payload)) {
        const std::string destination =
            run_dir() + "/inside/" +
            std::string(ai::destinations[choice % std::size(ai::destinations)]);
        auto encoded = encode_put(destination, decoded->second);
        put.payload.assign(encoded.begin() + 5, encoded.end());  // past the frame header
      }
      (void)run_copy_session(socket, put);
      return;
    }
    case frame_type::exec:
      if (decode_exec(request->payload)) read_exec_frames(socket);
      return;
    case frame_type::get: (void)decode_get(request->payload); return;
    default: return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* base = "/dev/shm";
  if (::access(base, W_OK) != 0) {
    base = std::getenv("TMPDIR");
    if (base == nullptr || *base == '\0') base = "/tmp";
  }
  std::string tmpl = std::string(base) + "/hvsock-agent-fuzz-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp in " + std::string(base) + " failed");
  parent_dir = tmpl;
  std::atexit([] {
    std::error_code ignored;
    fs::remove_all(parent_dir, ignored);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t choice = data[0];
  const auto stream = std::as_bytes(std::span(data + 1, std::min(size - 1, max_stream)));
  const std::size_t fds_before = open_fd_count();
  make_sandbox();
  {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) die("socketpair failed");
    hvsock::unique_fd client(ends[0]), agent_end(ends[1]);
    // Room for everything either side writes, as nobody reads the agent's answers.
    const int room = 1 << 20;
    ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    ::setsockopt(agent_end.get(), SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    if (!write_all(client.get(), stream)) die("cannot write the input to the socket");
    ::shutdown(client.get(), SHUT_WR);
    serve(agent_end.get(), choice);
  }
  check_sandbox();
  remove_sandbox();
  if (const std::size_t after = open_fd_count(); after != fds_before)
    die("the agent's code left fds open: " + std::to_string(after) + " after, " +
        std::to_string(fds_before) + " before");
  return 0;
}
