// Clients cannot lock the host out (issue 10, part 5), against a real
// hvsockd: a flood of idle control connections to one partition's socket is
// refused at that socket beyond its own limit while the management socket
// and the other partitions still get in; a control connection that sends
// nothing is closed after 10 s while a bound listener stays; and a burst of
// refused connects is logged at most 10 lines a second per partition, then
// one "... and N more refusals suppressed" line (the counters stay exact).
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr std::size_t flood_size = 4096;
constexpr std::size_t per_partition_limit = 1024;  // hvsockd's default
constexpr auto hang_limit = 10s;

// A raw control connection that sends nothing; invalid when refused.
unique_fd connect_raw(const std::string& path) {
  auto fd = detail::connect_unix(path, SOCK_SEQPACKET);
  return fd ? std::move(*fd) : unique_fd();
}

// Whether the daemon has closed `fd` (a read would return 0), without
// waiting.
bool closed_by_daemon(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Waits for `fd` to be readable and reads it: true when the read returns 0.
bool read_returns_eof(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  while (rc < 0 && errno == EINTR);
  if (rc <= 0) return false;
  char byte;
  return ::recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
}

// Polls `done` until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  while (!done()) {
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class ClientLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    web_id = must(guid::parse(sw.create_vm("web")));
    svc = must(guid::parse(sw.register_service("client limits test")));
  }

  template <class T>
  static T must(result<T> r) {
    if (!r) throw std::runtime_error(r.error().message());
    return std::move(*r);
  }

  listen_options in(const std::string& partition) const {
    return {.backlog = 16, .control_socket = sw.control_socket(partition)};
  }
  connect_options from(const std::string& partition) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(partition)};
  }

  // Connects and checks one byte goes through the accepted stream.
  void expect_connects(listener& l, const std::string& from_partition, const vm_id& target) {
    SCOPED_TRACE(from_partition + " -> " + target.to_string());
    auto s = stream::connect({target, svc}, from(from_partition));
    ASSERT_TRUE(s) << s.error().message();
    auto a = l.accept(5s);
    ASSERT_TRUE(a) << a.error().message();
    ASSERT_TRUE(s->write_all("x"));
    char byte = 0;
    auto n = a->read(&byte, 1);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(byte, 'x');
  }

  // Reads the daemon's stderr until `done(stderr)` holds or `timeout` passes.
  bool wait_for_log(const std::function<bool(const std::string&)>& done,
                    std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (!done(sw.daemon().err())) {
      if (steady::now() >= deadline) return false;
      // A needle never logged: this only reads what is there for a while.
      sw.daemon().wait_for_stderr("\x01", 50ms);
    }
    return true;
  }

  switch_fixture sw;
  vm_id web_id;
  service_id svc;
};

TEST_F(ClientLimitsTest, IdleFloodOfOnePartitionDoesNotLockOutHostOrManagement) {
  // The flood's fds and ours, bounded.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  const rlim_t wanted = flood_size + 1024;
  if (limit.rlim_cur < wanted) {
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted)
      GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit.rlim_max << " is below " << wanted;
    limit.rlim_cur = wanted;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0) << std::strerror(errno);
  }

  // Set up before the flood: a listener in the host and one in web (web's
  // is one of web's clients, so the flood gets one place fewer).
  auto in_host = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(in_host) << in_host.error().message();
  auto in_web = listener::listen({vm_id_parent, svc}, in("web"));
  ASSERT_TRUE(in_web) << in_web.error().message();

  const auto flood_start = steady::now();
  std::vector<unique_fd> flood;
  flood.reserve(flood_size);
  for (std::size_t i = 0; i < flood_size; ++i) {
    unique_fd fd = connect_raw(sw.control_socket("web"));
    ASSERT_TRUE(fd) << "connect " << i << ": " << std::strerror(errno);
    flood.push_back(std::move(fd));
  }
  // Beyond web's limit the daemon closes each connection at once.
  const std::size_t kept = per_partition_limit - 1;  // the listener holds one place
  auto count_closed = [&] {
    return static_cast<std::size_t>(
        std::count_if(flood.begin(), flood.end(),
                      [](const unique_fd& fd) { return closed_by_daemon(fd.get()); }));
  };
  ASSERT_TRUE(wait_until([&] { return count_closed() >= flood_size - kept; }, hang_limit))
      << count_closed() << " closed\n"
      << sw.daemon().err();

  // The management socket answers.
  const auto status = sw.cli({"status"}, {}, hang_limit);
  ASSERT_EQ(status.status.code, 0) << status.err;

  // The host connects to a listener in the host and to one in web.
  expect_connects(*in_host, "host", vm_id_loopback);
  expect_connects(*in_web, "host", web_id);

  // Web itself is refused beyond its limit: a new connection is closed.
  unique_fd over = connect_raw(sw.control_socket("web"));
  ASSERT_TRUE(over);
  EXPECT_TRUE(read_returns_eof(over.get(), hang_limit));
  EXPECT_FALSE(stream::connect({vm_id_parent, svc}, from("web")));
  EXPECT_TRUE(sw.daemon().wait_for_stderr("client limit of the partition (1024) reached", 5s))
      << sw.daemon().err();

  // ...and only beyond it: exactly `kept` of the flood are still open, and
  // once some of them leave, web connects again.
  const std::size_t closed = count_closed();
  EXPECT_EQ(closed, flood_size - kept);
  std::size_t dropped = 0;
  for (auto& fd : flood) {
    if (dropped == 10) break;
    if (!closed_by_daemon(fd.get())) {
      fd.reset();
      ++dropped;
    }
  }
  // The daemon takes the closes in on its next wake-ups: retry until it has.
  result<stream> from_web = failure(errc::connection_refused, "not tried");
  ASSERT_TRUE(wait_until(
      [&] {
        from_web = stream::connect({vm_id_parent, svc}, from("web"));
        return bool(from_web);
      },
      hang_limit))
      << from_web.error().message();
  auto a = in_host->accept(5s);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->peer_endpoint().vm, web_id);
  // All of this happened before the flood's connections time out as silent.
  EXPECT_LT(steady::now() - flood_start, 9s) << "too slow: the silent-client timeout interfered";
}

TEST_F(ClientLimitsTest, SilentControlConnectionIsClosedAfterTenSecondsButListenersStay) {
  auto bound = listener::listen({vm_id_parent, svc}, in("web"));
  ASSERT_TRUE(bound) << bound.error().message();
  const auto start = steady::now();
  unique_fd silent = connect_raw(sw.control_socket("host"));
  ASSERT_TRUE(silent);

  ASSERT_TRUE(read_returns_eof(silent.get(), 20s)) << "not closed within 20 s";
  const auto took = steady::now() - start;
  EXPECT_GE(took, 9s) << "closed too early";
  EXPECT_TRUE(sw.daemon().wait_for_stderr("sent nothing", 5s)) << sw.daemon().err();

  // The listener has been idle as long, and longer: it still takes a
  // connection.
  std::this_thread::sleep_until(start + 12s);
  auto s = stream::connect({web_id, svc}, from("host"));
  ASSERT_TRUE(s) << s.error().message();
  auto a = bound->accept(5s);
  ASSERT_TRUE(a) << a.error().message();
}

// One summary line per window: "host: ... and N more refusals suppressed".
struct refusal_log {
  std::size_t lines = 0;               // refusal lines logged
  std::size_t lines_before_first = 0;  // ...before the first summary
  std::size_t summaries = 0;
  std::size_t suppressed = 0;  // the Ns, summed
};

refusal_log parse_refusal_log(const std::string& err, const std::string& service) {
  refusal_log log;
  static const std::regex summary(R"(hvsockd: host: \.\.\. and (\d+) more refusals suppressed)");
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, summary)) {
      ++log.summaries;
      log.suppressed += std::stoul(m[1].str());
    } else if (line.find("host: connect ") != std::string::npos &&
               line.find(service) != std::string::npos &&
               line.find(": refused:") != std::string::npos) {
      ++log.lines;
      if (log.summaries == 0) ++log.lines_before_first;
    }
  }
  return log;
}

TEST_F(ClientLimitsTest, RefusalBurstIsLoggedRateLimitedWithExactCounters) {
  const service_id unregistered = must(guid::parse("5a1e5a1e-0000-4000-8000-00000000c0de"));
  constexpr std::size_t burst = 200;
  for (std::size_t i = 0; i < burst; ++i)
    ASSERT_FALSE(stream::connect({vm_id_loopback, unregistered}, from("host")));

  const std::string service = unregistered.to_string();
  ASSERT_TRUE(wait_for_log(
      [&](const std::string& err) {
        const auto log = parse_refusal_log(err, service);
        return log.summaries > 0 && log.lines + log.suppressed >= burst;
      },
      hang_limit))
      << sw.daemon().err();
  const auto log = parse_refusal_log(sw.daemon().err(), service);
  EXPECT_EQ(log.lines + log.suppressed, burst);
  EXPECT_LE(log.lines_before_first, 10u);
  // A burst that straddles windows gets 10 more lines per window.
  EXPECT_LE(log.lines, 10 * (log.summaries + 1));

  // The counters count every refusal.
  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}), nullptr, false);
  ASSERT_FALSE(stats.is_discarded());
  EXPECT_EQ(stats.value("unregistered_refused", std::size_t{0}), burst);
}

}  // namespace
}  // namespace hvsock::test
