// detail::unix_listener_at and its parser of /proc/net/unix: which sockets
// count as a listener at a socket file's path (hybrid vsock's _<port> files
// are checked this way, without connecting to another program's listener).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <hvsock/unique_fd.hpp>

#include "sys/socket_ops.hpp"

namespace hvsock::detail {
namespace {

using state = unix_listener_state;

const std::string header = "Num       RefCount Protocol Flags    Type St Inode Path\n";

// One line of the table as the kernel prints it (unix_seq_show).
std::string line(const char* flags, const char* st, const std::string& path) {
  return std::string("0000000067a14b66: 00000002 00000000 ") + flags + " 0001 " + st + " 12869863" +
         (path.empty() ? "" : " " + path) + "\n";
}

class UnixListenerTable : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hvsock-unix-table-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    std::filesystem::create_directory(dir + "/real");
    std::filesystem::create_directory_symlink(dir + "/real", dir + "/link");
    std::ofstream(dir + "/real/v.sock_5200") << "";
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string dir;
};

TEST_F(UnixListenerTable, AListenerAtThePathIsListening) {
  const std::string path = dir + "/real/v.sock_5200";
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", path), path), state::listening);
  // Bound but not listening, or a connected socket: not a listener.
  EXPECT_EQ(unix_listener_in_table(header + line("00000000", "01", path), path), state::none_seen);
  EXPECT_EQ(unix_listener_in_table(header + line("00000000", "03", path), path), state::none_seen);
  // Other paths, unbound and abstract sockets, a path that only ends alike.
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", dir + "/real/w.sock_5200") +
                                       line("00010000", "01", "") +
                                       line("00010000", "01", "@v.sock_5200") +
                                       line("00010000", "01", dir + "/real/xv.sock_5200"),
                                   path),
            state::none_seen);
  EXPECT_EQ(unix_listener_in_table("", path), state::none_seen);
}

TEST_F(UnixListenerTable, APathWithBlanksIsReadWhole) {
  const std::string path = dir + "/real/a b.sock_1";
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", path), path), state::listening);
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", dir + "/real/b.sock_1"), path),
            state::none_seen);
}

TEST_F(UnixListenerTable, AnotherPathToTheSameFileIsListening) {
  // Bound through a symlinked directory: the table shows that path.
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", dir + "/link/v.sock_5200"),
                                   dir + "/real/v.sock_5200"),
            state::listening);
}

TEST_F(UnixListenerTable, ARelativePathWithTheSameNameIsUnknown) {
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", "v.sock_5200"),
                                   dir + "/real/v.sock_5200"),
            state::unknown);
  EXPECT_EQ(unix_listener_in_table(header + line("00010000", "01", "other.sock"),
                                   dir + "/real/v.sock_5200"),
            state::none_seen);
}

TEST_F(UnixListenerTable, TheKernelsTableShowsAListenerAndNotItsStaleFile) {
  const std::string path = dir + "/live.sock";
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  EXPECT_EQ(unix_listener_at(path), state::none_seen) << "bound, not listening yet";
  ASSERT_EQ(::listen(fd.get(), 4), 0);
  EXPECT_EQ(unix_listener_at(path), state::listening);
  fd.reset();  // the file stays: a stale socket
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(unix_listener_at(path), state::none_seen);
}

}  // namespace
}  // namespace hvsock::detail
