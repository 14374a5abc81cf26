// stderr_log into a pipe: the threshold, the "hvsockd: " and "<N>" forms,
// one line per write; and is_journal_stream against real fds.
#include "daemon/stderr_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include <hvsock/unique_fd.hpp>

namespace hvsock::daemon {
namespace {

struct pipe_pair {
  unique_fd read_end;
  unique_fd write_end;
};

pipe_pair make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) ADD_FAILURE() << "pipe2 failed";
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string journal_stream_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

TEST(StderrLog, PlainLinesNameTheDaemonAndDropWhatIsBelowTheThreshold) {
  auto p = make_pipe();
  stderr_log log({.threshold = log_level::notice, .journal = false, .fd = p.write_end.get()});
  log(log_level::error, "disk full");
  log(log_level::notice, "ready");
  log(log_level::info, "listening");
  log(log_level::debug, "connect");
  EXPECT_EQ(drain(p.read_end.get()), "hvsockd: disk full\nhvsockd: ready\n");
  EXPECT_TRUE(log.wants(log_level::warning));
  EXPECT_FALSE(log.wants(log_level::info));
}

TEST(StderrLog, JournalLinesCarryTheirSyslogPriority) {
  auto p = make_pipe();
  stderr_log log({.threshold = log_level::debug, .journal = true, .fd = p.write_end.get()});
  log(log_level::error, "e");
  log(log_level::warning, "w");
  log(log_level::notice, "n");
  log(log_level::info, "i");
  log(log_level::debug, "d");
  EXPECT_EQ(drain(p.read_end.get()), "<3>e\n<4>w\n<5>n\n<6>i\n<7>d\n");
}

TEST(StderrLog, LevelsParseByNameAndNumber) {
  EXPECT_EQ(parse_log_level("error"), log_level::error);
  EXPECT_EQ(parse_log_level("err"), log_level::error);
  EXPECT_EQ(parse_log_level("warn"), log_level::warning);
  EXPECT_EQ(parse_log_level("5"), log_level::notice);
  EXPECT_EQ(parse_log_level("debug"), log_level::debug);
  EXPECT_FALSE(parse_log_level("loud"));
  EXPECT_FALSE(parse_log_level(""));
  EXPECT_FALSE(parse_log_level("8"));
  EXPECT_EQ(to_string(log_level::warning), "warning");
}

TEST(JournalStream, MatchesOnlyTheStreamItNames) {
  auto p = make_pipe();
  auto other = make_pipe();
  const std::string mine = journal_stream_of(p.write_end.get());
  EXPECT_TRUE(is_journal_stream(p.write_end.get(), mine.c_str()));
  EXPECT_FALSE(is_journal_stream(other.write_end.get(), mine.c_str()));  // redirected since
  EXPECT_FALSE(is_journal_stream(p.write_end.get(), nullptr));
  for (const char* bad : {"", ":", "12", "12:", ":34", "x:1", "1:2:3", "1 :2"})
    EXPECT_FALSE(is_journal_stream(p.write_end.get(), bad)) << bad;
}

}  // namespace
}  // namespace hvsock::daemon
