// hvsockd under abuse: kill -9 during a burst of registrations, a corrupt
// state file, malformed and hostile messages on the control and management
// sockets, the daemon going away under its clients, and a second daemon on
// the same directories. The daemon must keep its state whole, close only the
// offending client, never leak what a peer sends it, and let clients fail
// promptly with a clear error instead of hanging.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "protocol/control_wire.hpp"
#include "protocol/runtime_paths.hpp"
#include "switch_fixture.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using steady = std::chrono::steady_clock;
namespace wire = hvsock::detail::wire;

// How long anything in these tests may take before it counts as a hang.
constexpr auto hang_limit = 10s;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

unique_fd connect_raw(const std::string& path, int type) {
  unique_fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return unique_fd();
  return fd;
}

// Sends one message with `fds` attached (SCM_RIGHTS). Returns errno or 0.
int send_with_fds(int socket, const void* data, std::size_t size, const std::vector<int>& fds) {
  auto sent = detail::send_message(socket, std::span(static_cast<const std::byte*>(data), size),
                                   std::span(fds));
  if (sent) return 0;
  return sent.error().code().category() == std::system_category() ? sent.error().code().value()
                                                                  : EAGAIN;
}

int send_bytes(int socket, const void* data, std::size_t size) {
  return send_with_fds(socket, data, size, {});
}

enum class peer_state { closed, sent_data, silent };

// What the daemon does on a connection within `timeout`: closes it, sends
// something (kept in `data`), or nothing. Closes of the reading kind
// (ECONNRESET) count as closed.
peer_state watch_peer(int fd, std::chrono::milliseconds timeout, std::string* data = nullptr) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  while (rc < 0 && errno == EINTR);
  if (rc == 0) return peer_state::silent;
  char buf[70000];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno == ECONNRESET)) return peer_state::closed;
  if (n < 0) return peer_state::silent;
  if (data) data->assign(buf, static_cast<std::size_t>(n));
  return peer_state::sent_data;
}

// Reads a stream until the peer closes it (true) or `timeout` passes.
bool read_until_closed(int fd, std::chrono::milliseconds timeout, std::string* got = nullptr) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) return true;
    if (n > 0 && got) got->append(buf, static_cast<std::size_t>(n));
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class RobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    web_id = *guid::parse(sw.create_vm("web"));
    svc = *guid::parse(sw.register_service("robust"));
  }

  listen_options in(const std::string& partition) const {
    return {.backlog = 16, .control_socket = sw.control_socket(partition)};
  }
  connect_options from(const std::string& partition) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(partition)};
  }

  // The daemon still brokers a connection end to end and answers the CLI.
  void expect_daemon_serves() {
    SCOPED_TRACE("the daemon still serves");
    auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
    ASSERT_TRUE(l) << l.error().message();
    auto s = stream::connect({vm_id_parent, svc}, from("web"));
    ASSERT_TRUE(s) << s.error().message();
    auto a = l->accept(5s);
    ASSERT_TRUE(a) << a.error().message();
    ASSERT_TRUE(s->write_all("ok?"));
    char buf[3];
    std::size_t got = 0;
    while (got < sizeof buf) {
      auto n = a->read(buf + got, sizeof buf - got);
      ASSERT_TRUE(n) << n.error().message();
      ASSERT_GT(*n, 0u);
      got += *n;
    }
    EXPECT_EQ(std::string(buf, 3), "ok?");
    const auto status = sw.cli({"status"}, {}, hang_limit);
    EXPECT_EQ(status.status.code, 0) << status.err;
    EXPECT_EQ(::kill(sw.daemon().pid(), 0), 0) << "the daemon is gone";
  }

  // Sends `message` (with `fds`) as the first message on a fresh control
  // connection to the host partition and expects the daemon to close it
  // without an answer.
  void expect_control_closes(const std::string& what, const void* data, std::size_t size,
                             const std::vector<int>& fds = {}) {
    SCOPED_TRACE(what);
    auto fd = connect_raw(sw.control_socket("host"), SOCK_SEQPACKET);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_EQ(send_with_fds(fd.get(), data, size, fds), 0);
    std::string answer;
    const auto state = watch_peer(fd.get(), hang_limit, &answer);
    EXPECT_EQ(state, peer_state::closed)
        << (state == peer_state::silent ? "the connection stayed open"
                                        : "the daemon answered " + std::to_string(answer.size()) +
                                              " bytes instead of closing");
  }

  std::string management_socket() const { return detail::management_socket_path(sw.runtime_dir()); }

  json list_services() const {
    const auto r = sw.cli({"service", "list", "--json"}, {}, hang_limit);
    EXPECT_EQ(r.status.code, 0) << r.err;
    auto parsed = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(parsed.is_array()) << r.out;
    return parsed.is_array() ? parsed : json::array();
  }

  std::string state_file() const { return sw.state_dir() + "/state.json"; }

  switch_fixture sw;
  vm_id web_id;
  service_id svc;
};

// --- (a) the registry survives kill -9 --------------------------------------

TEST_F(RobustnessTest, RegistrySurvivesKillDuringRegistrationBurst) {
  constexpr int burst = 200;
  std::map<std::string, std::string> confirmed;  // name -> id, over all rounds
  confirmed["robust"] = svc.to_string();

  // Each round kills the daemon at a different point of the burst.
  for (const int kill_after : {20, 90, 160}) {
    SCOPED_TRACE("kill after " + std::to_string(kill_after) + " registrations");
    const std::string log = sw.root() + "/registered-" + std::to_string(kill_after) + ".txt";
    const std::string runtime = sw.runtime_dir();
    const pid_t child = fork_child([&] {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (out < 0) return 2;
      for (int i = 0; i < burst; ++i) {
        const std::string name = "burst-" + std::to_string(kill_after) + "-" + std::to_string(i);
        const auto r =
            run({hvsock_cli_path, "--runtime-dir", runtime, "service", "register", "--name", name},
                {}, {}, hang_limit);
        if (r.status.code != 0) continue;
        // Only what the CLI reported as done is recorded.
        const std::string record = name + " " + r.out;
        if (::write(out, record.data(), record.size()) != static_cast<ssize_t>(record.size()))
          return 3;
      }
      ::close(out);
      return 0;
    });

    const auto deadline = steady::now() + 60s;
    while (count_lines(read_file(log)) < static_cast<std::size_t>(kill_after) &&
           steady::now() < deadline)
      std::this_thread::sleep_for(1ms);
    const auto before_kill = count_lines(read_file(log));
    sw.kill_daemon();
    ASSERT_EQ(wait_child(child, 120s), 0);
    ASSERT_GE(before_kill, static_cast<std::size_t>(kill_after)) << "the burst never got that far";
    ASSERT_LT(before_kill, static_cast<std::size_t>(burst)) << "the kill came after the burst";

    std::size_t this_round = 0;
    for (const auto& line : lines_of(read_file(log))) {
      const auto space = line.find(' ');
      ASSERT_NE(space, std::string::npos) << line;
      confirmed[line.substr(0, space)] = line.substr(space + 1);
      ++this_round;
    }
    EXPECT_LT(this_round, static_cast<std::size_t>(burst)) << "registrations after the kill";

    // The state file is whole: valid JSON, never a partial write.
    const auto text = read_file(state_file());
    const auto state = json::parse(text, nullptr, false);
    ASSERT_FALSE(state.is_discarded()) << "state.json is not valid JSON after kill -9:\n"
                                       << text.substr(0, 2000);
    ASSERT_TRUE(state.is_object());

    ASSERT_NO_THROW(sw.start_daemon()) << "hvsockd would not start after kill -9";
    const auto services = list_services();
    std::map<std::string, std::string> listed;
    for (const auto& s : services) listed[s.value("name", "")] = s.value("id", "");
    for (const auto& [name, id] : confirmed) {
      ASSERT_TRUE(listed.contains(name)) << "lost a confirmed registration: " << name;
      EXPECT_EQ(listed[name], id) << name;
    }
    // At most the one registration in flight at the kill may have landed
    // without being confirmed.
    EXPECT_LE(listed.size(), confirmed.size() + 1);
  }
  expect_daemon_serves();
  EXPECT_EQ(sw.cli({"service", "register", "--name", "after the storm"}).status.code, 0);
}

TEST_F(RobustnessTest, LeftoverTempFilesDoNotBreakRestart) {
  sw.register_service("second");
  sw.kill_daemon();
  const auto good = read_file(state_file());
  ASSERT_FALSE(good.empty());
  // What a crash halfway through a save leaves: a partial temp file.
  write_file(state_file() + ".tmp", good.substr(0, good.size() / 2));
  write_file(sw.state_dir() + "/state.json.tmp.12345", "{\"format\": 1, \"serv");

  ASSERT_NO_THROW(sw.start_daemon()) << "a leftover temp file stopped hvsockd";
  auto services = list_services();
  EXPECT_EQ(services.size(), 2u) << services.dump();
  EXPECT_EQ(read_file(state_file()), good) << "starting must not rewrite the state";

  // Saving over the leftover works, and the result is what the next start sees.
  EXPECT_EQ(sw.cli({"service", "register", "--name", "third"}).status.code, 0);
  sw.kill_daemon();
  EXPECT_FALSE(json::parse(read_file(state_file()), nullptr, false).is_discarded());
  ASSERT_NO_THROW(sw.start_daemon());
  services = list_services();
  EXPECT_EQ(services.size(), 3u) << services.dump();
  expect_daemon_serves();
}

// --- (b) a corrupt state file stops the daemon, untouched -------------------

TEST_F(RobustnessTest, CorruptStateFileStopsDaemonAndIsNotOverwritten) {
  ASSERT_EQ(sw.stop_daemon().code, 0) << sw.daemon().err();
  const auto good = read_file(state_file());
  ASSERT_FALSE(json::parse(good, nullptr, false).is_discarded());

  const std::vector<std::pair<std::string, std::string>> corruptions = {
      {"garbage", std::string("this is not a state file {{{\x01\xff\xfe")},
      {"truncated", good.substr(0, good.size() / 2)},
      {"empty", ""},
      {"wrong shape", R"({"format": 1, "host": 7, "partitions": "none", "services": {}})"},
      {"future format", R"({"format": 999, "host": {}, "partitions": [], "services": []})"},
      {"duplicate service",
       [&] {
         auto j = json::parse(good);
         j["services"].push_back(j["services"][0]);
         return j.dump(2);
       }()},
  };
  for (const auto& [what, bytes] : corruptions) {
    SCOPED_TRACE(what);
    write_file(state_file(), bytes);
    const auto r =
        run({hvsockd_path, "--state-dir", sw.state_dir(), "--runtime-dir", sw.runtime_dir()}, {},
            {}, hang_limit);
    EXPECT_TRUE(r.status.exited_normally()) << "signal " << r.status.signal << "\n" << r.err;
    EXPECT_NE(r.status.code, 0) << "hvsockd started on a corrupt state file";
    EXPECT_TRUE(contains(r.err, state_file())) << "the message should name the file:\n" << r.err;
    EXPECT_FALSE(contains(r.err, "hvsockd: ready")) << r.err;
    EXPECT_TRUE(read_file(state_file()) == bytes) << "the corrupt file was changed";
    EXPECT_NE(sw.cli({"status"}, {}, hang_limit).status.code, 0) << "something is serving";
  }

  // Put the good file back: the daemon starts with everything in it.
  write_file(state_file(), good);
  ASSERT_NO_THROW(sw.start_daemon());
  EXPECT_EQ(list_services().size(), 1u);
  expect_daemon_serves();
}

// --- (c) hostile control messages -------------------------------------------

TEST_F(RobustnessTest, GarbageControlMessageClosesOnlyThatClient) {
  std::mt19937 random(20240611);
  for (const std::size_t size : {1u, 7u, 64u, 200u, 1000u}) {
    std::string junk(size, '\0');
    for (auto& c : junk) c = static_cast<char>(random());
    expect_control_closes("random " + std::to_string(size) + " bytes", junk.data(), junk.size());
  }
  // A connection that stays open while the daemon deals with the others.
  auto bystander = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(bystander) << bystander.error().message();
  const std::string junk = "GET / HTTP/1.1\r\n\r\n";
  expect_control_closes("text", junk.data(), junk.size());
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_TRUE(bystander->accept(5s));
  bystander->close();
  expect_daemon_serves();
}

TEST_F(RobustnessTest, OversizedControlMessageClosesOnlyThatClient) {
  std::string big(64 * 1024, '\0');
  auto request = wire::make<wire::connect_request>(wire::message_type::connect_request);
  request.target = wire::to_raw({vm_id_parent, svc});
  std::memcpy(big.data(), &request, sizeof request);
  expect_control_closes("64 KiB", big.data(), big.size());
  expect_control_closes("one byte too many", big.data(), wire::max_message_size + 1);
  expect_daemon_serves();
}

TEST_F(RobustnessTest, RightHeaderWrongSizeClosesOnlyThatClient) {
  auto connect = wire::make<wire::connect_request>(wire::message_type::connect_request);
  connect.target = wire::to_raw({web_id, svc});
  std::string longer(reinterpret_cast<const char*>(&connect), sizeof connect);
  longer += "extra";
  expect_control_closes("connect + 5 bytes", longer.data(), longer.size());
  expect_control_closes("connect - 1 byte", &connect, sizeof connect - 1);
  expect_control_closes("header only", &connect.head, sizeof connect.head);

  auto bind = wire::make<wire::bind_request>(wire::message_type::bind_request);
  bind.local = wire::to_raw({vm_id_wildcard, svc});
  bind.backlog = 4;
  expect_control_closes("bind as a connect", &bind, sizeof bind - 4);

  auto bad_magic = connect;
  bad_magic.head.magic ^= 1;
  expect_control_closes("bad magic", &bad_magic, sizeof bad_magic);
  auto bad_version = connect;
  bad_version.head.version = 99;
  expect_control_closes("bad version", &bad_version, sizeof bad_version);
  auto bad_type = connect;
  bad_type.head.type = 77;
  expect_control_closes("unknown type", &bad_type, sizeof bad_type);
  auto bad_socket_type = connect;
  bad_socket_type.socket_type = 2;
  expect_control_closes("connect of an unknown socket type", &bad_socket_type,
                        sizeof bad_socket_type);
  auto bind_bad_socket_type = bind;
  bind_bad_socket_type.socket_type = 0x7fffffff;
  expect_control_closes("bind of an unknown socket type", &bind_bad_socket_type,
                        sizeof bind_bad_socket_type);
  expect_control_closes("empty message", "", 0);
  expect_daemon_serves();
}

TEST_F(RobustnessTest, MessagesOnlyTheDaemonSendsCloseTheClient) {
  const auto accepted = wire::make<wire::accepted>(wire::message_type::accepted);
  expect_control_closes("accepted on a non-listener", &accepted, sizeof accepted);
  const auto reply = wire::make_reply({vm_id_parent, svc}, {vm_id_loopback, svc});
  expect_control_closes("reply from a client", &reply, sizeof reply);
  auto incoming = wire::make<wire::incoming>(wire::message_type::incoming);
  expect_control_closes("incoming from a client", &incoming, sizeof incoming);
  expect_daemon_serves();
}

TEST_F(RobustnessTest, AcceptedWithNothingPendingOnListenerIsHarmless) {
  auto fd = connect_raw(sw.control_socket("host"), SOCK_SEQPACKET);
  ASSERT_TRUE(fd);
  auto bind = wire::make<wire::bind_request>(wire::message_type::bind_request);
  bind.local = wire::to_raw({vm_id_wildcard, service_id_from_port(7)});
  bind.backlog = 2;
  ASSERT_EQ(send_bytes(fd.get(), &bind, sizeof bind), 0);
  std::string answer;
  ASSERT_EQ(watch_peer(fd.get(), hang_limit, &answer), peer_state::sent_data);
  // Acknowledging connections that never came: the daemon may close this
  // listener or ignore it, but its accounting must not go wrong for others.
  const auto accepted = wire::make<wire::accepted>(wire::message_type::accepted);
  for (int i = 0; i < 10; ++i) (void)send_bytes(fd.get(), &accepted, sizeof accepted);
  (void)watch_peer(fd.get(), 200ms);
  fd.reset();
  expect_daemon_serves();
}

TEST_F(RobustnessTest, SecondRequestOnAConnectConnectionIsRejected) {
  auto fd = connect_raw(sw.control_socket("web"), SOCK_SEQPACKET);
  ASSERT_TRUE(fd);
  auto connect = wire::make<wire::connect_request>(wire::message_type::connect_request);
  connect.target = wire::to_raw({vm_id_parent, svc});  // no listener: refused
  ASSERT_EQ(send_bytes(fd.get(), &connect, sizeof connect), 0);
  // These may already find the connection closed (EPIPE), which is fine.
  (void)send_bytes(fd.get(), &connect, sizeof connect);
  (void)send_bytes(fd.get(), &connect, sizeof connect);
  // At most one answer, then (eventually) the connection ends or stays quiet;
  // either way the daemon keeps serving.
  std::string answer;
  (void)watch_peer(fd.get(), 1s, &answer);
  fd.reset();
  expect_daemon_serves();
}

TEST_F(RobustnessTest, PassedFdsAreNotLeaked) {
  const pid_t daemon = sw.daemon().pid();
  const int baseline = count_open_fds(daemon);
  ASSERT_GT(baseline, 0);

  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  unique_fd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
  const std::vector<int> three{pipe_read.get(), pipe_write.get(), pipe_read.get()};

  for (int round = 0; round < 10; ++round) {
    // Garbage with fds: closed.
    const std::string junk = "junk with fds " + std::to_string(round);
    expect_control_closes("garbage + 3 fds", junk.data(), junk.size(), three);
    // A well-formed connect request carrying fds it should not have: the
    // daemon may refuse or serve it, but must not keep the fds.
    auto fd = connect_raw(sw.control_socket("web"), SOCK_SEQPACKET);
    ASSERT_TRUE(fd);
    auto connect = wire::make<wire::connect_request>(wire::message_type::connect_request);
    connect.target = wire::to_raw({vm_id_parent, svc});
    ASSERT_EQ(send_with_fds(fd.get(), &connect, sizeof connect, three), 0);
    (void)watch_peer(fd.get(), hang_limit);
    // A bind carrying fds, held open a moment, then closed.
    auto lfd = connect_raw(sw.control_socket("host"), SOCK_SEQPACKET);
    ASSERT_TRUE(lfd);
    auto bind = wire::make<wire::bind_request>(wire::message_type::bind_request);
    bind.local = wire::to_raw({vm_id_wildcard, service_id_from_port(1000 + round)});
    bind.backlog = 1;
    ASSERT_EQ(send_with_fds(lfd.get(), &bind, sizeof bind, three), 0);
    (void)watch_peer(lfd.get(), hang_limit);
  }

  // The daemon closes what it was given; allow it a moment to notice our
  // closes, and then its fd table must be back where it started.
  const auto deadline = steady::now() + hang_limit;
  int now = count_open_fds(daemon);
  while (now > baseline && steady::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    now = count_open_fds(daemon);
  }
  EXPECT_LE(now, baseline) << "hvsockd holds " << now - baseline << " more fds than before";
  expect_daemon_serves();
}

// --- (c) hostile management clients ------------------------------------------

// A management client that sent `line` gets an error answer or is closed;
// never a success, never silence forever.
void expect_management_rejects(const std::string& socket, const std::string& line) {
  SCOPED_TRACE(line.substr(0, 80));
  auto fd = connect_raw(socket, SOCK_STREAM);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(send_bytes(fd.get(), line.data(), line.size()), 0);
  std::string answer;
  const auto state = watch_peer(fd.get(), hang_limit, &answer);
  ASSERT_NE(state, peer_state::silent) << "no answer and not closed";
  if (state == peer_state::sent_data) {
    // Wait for the whole line.
    const auto deadline = steady::now() + hang_limit;
    while (answer.find('\n') == std::string::npos && steady::now() < deadline) {
      std::string more;
      if (watch_peer(fd.get(), 1s, &more) != peer_state::sent_data) break;
      answer += more;
    }
    const auto reply = json::parse(answer.substr(0, answer.find('\n')), nullptr, false);
    ASSERT_FALSE(reply.is_discarded()) << "not a JSON answer: " << answer;
    EXPECT_EQ(reply.value("ok", true), false) << answer;
    EXPECT_FALSE(reply.value("error", "").empty()) << "an error without a message: " << answer;
  }
}

TEST_F(RobustnessTest, ManagementRejectsNonJsonAndUnknownOps) {
  expect_management_rejects(management_socket(), "this is not json\n");
  expect_management_rejects(management_socket(), "{\"op\": \"frobnicate\"}\n");
  expect_management_rejects(management_socket(), "[1, 2, 3]\n");
  expect_management_rejects(management_socket(), "{\"op\": 42}\n");
  expect_management_rejects(management_socket(), "{\"no_op\": true}\n");
  expect_management_rejects(management_socket(),
                            "{\"op\": \"service.register\", \"name\": [\"not\", \"a\", "
                            "\"string\"]}\n");
  expect_management_rejects(management_socket(),
                            "{\"op\": \"vm.create\", \"name\": \"x\", \"cid\": -5}\n");
  expect_management_rejects(management_socket(), std::string("{\"op\": \"st\0atus\"}\n", 19));
  EXPECT_EQ(list_services().size(), 1u);
  expect_daemon_serves();
}

TEST_F(RobustnessTest, ManagementDeeplyNestedJsonIsHarmless) {
  const std::string nested = std::string(30000, '[') + std::string(30000, ']') + "\n";
  expect_management_rejects(management_socket(), nested);
  expect_daemon_serves();
}

TEST_F(RobustnessTest, ManagementHugeLineWithoutNewlineIsClosed) {
  auto fd = connect_raw(management_socket(), SOCK_STREAM);
  ASSERT_TRUE(fd);
  ASSERT_EQ(::fcntl(fd.get(), F_SETFL, O_NONBLOCK), 0);
  const std::string chunk(64 * 1024, 'x');
  std::size_t sent = 0;
  bool closed_while_sending = false;
  const auto deadline = steady::now() + hang_limit;
  while (sent < 1024 * 1024 && steady::now() < deadline) {
    const ssize_t n =
        ::send(fd.get(), chunk.data(), std::min(chunk.size(), 1024 * 1024 - sent), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      closed_while_sending = true;
      break;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) FAIL() << std::strerror(errno);
    pollfd p{fd.get(), POLLOUT, 0};
    (void)::poll(&p, 1, 100);
    if (p.revents & (POLLHUP | POLLERR)) {
      closed_while_sending = true;
      break;
    }
  }
  if (!closed_while_sending) {
    EXPECT_TRUE(read_until_closed(fd.get(), hang_limit))
        << "the daemon kept a client that sent " << sent << " bytes without a newline";
  }
  fd.reset();
  expect_daemon_serves();
}

TEST_F(RobustnessTest, ManagementClientsThatVanishMidRequestAreHarmless) {
  for (int i = 0; i < 20; ++i) {
    auto fd = connect_raw(management_socket(), SOCK_STREAM);
    ASSERT_TRUE(fd);
    const std::string partial = "{\"op\": \"service.register\", \"name\": \"half";
    (void)send_bytes(fd.get(), partial.data(), partial.size());
  }
  // A request whose answer nobody reads.
  for (int i = 0; i < 20; ++i) {
    auto fd = connect_raw(management_socket(), SOCK_STREAM);
    ASSERT_TRUE(fd);
    const std::string request = "{\"op\": \"vm.list\"}\n{\"op\": \"status\"}\n";
    (void)send_bytes(fd.get(), request.data(), request.size());
  }
  expect_daemon_serves();
  EXPECT_EQ(list_services().size(), 1u);
}

// --- (d) the daemon gone ----------------------------------------------------

void expect_daemon_unavailable(const failure& f, const std::string& socket_path) {
  EXPECT_EQ(f.code(), make_error_code(errc::daemon_unavailable)) << f.message();
  EXPECT_TRUE(contains(f.message(), socket_path))
      << "the message should name " << socket_path << ": " << f.message();
}

TEST_F(RobustnessTest, ConnectAndListenFailPromptlyWhenDaemonStopped) {
  sw.stop_daemon();
  const auto start = steady::now();
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_FALSE(s);
  expect_daemon_unavailable(s.error(), sw.control_socket("web"));
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_FALSE(l);
  expect_daemon_unavailable(l.error(), sw.control_socket("host"));
  // Loose: only that nothing waited for a timeout.
  EXPECT_LT(steady::now() - start, 3s);
}

TEST_F(RobustnessTest, ConnectAndListenFailPromptlyWhenDaemonKilled) {
  sw.kill_daemon();  // leaves the socket files behind
  const auto start = steady::now();
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_FALSE(s);
  expect_daemon_unavailable(s.error(), sw.control_socket("web"));
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_FALSE(l);
  expect_daemon_unavailable(l.error(), sw.control_socket("host"));
  EXPECT_LT(steady::now() - start, 3s);
}

TEST_F(RobustnessTest, ListenerSeesDaemonDeathInsteadOfHanging) {
  for (const bool graceful : {false, true}) {
    SCOPED_TRACE(graceful ? "SIGTERM" : "SIGKILL");
    auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
    ASSERT_TRUE(l) << l.error().message();
    // One connection queued before the daemon goes: it was brokered, so it
    // is still delivered; after it, accept reports the daemon gone.
    auto s = stream::connect({vm_id_parent, svc}, from("web"));
    ASSERT_TRUE(s) << s.error().message();
    if (graceful)
      sw.stop_daemon();
    else
      sw.kill_daemon();

    auto first = l->accept(hang_limit);
    ASSERT_TRUE(first) << first.error().message();
    ASSERT_TRUE(s->write_all("still here"));
    char buf[16];
    auto n = first->read(buf, sizeof buf);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(std::string(buf, *n), "still here");

    pollfd p{l->native_handle(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(hang_limit).count())), 1)
        << "the listener's fd never became readable";
    auto next = l->accept(hang_limit);
    ASSERT_FALSE(next);
    EXPECT_EQ(next.error().code(), make_error_code(errc::daemon_unavailable))
        << next.error().message();
    ASSERT_NO_THROW(sw.start_daemon());
  }
}

TEST_F(RobustnessTest, EstablishedStreamOutlivesTheDaemon) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(s);
  auto a = l->accept(5s);
  ASSERT_TRUE(a);
  sw.kill_daemon();
  ASSERT_TRUE(a->write_all("from host"));
  ASSERT_TRUE(a->shutdown(shutdown_how::write));
  std::string got;
  char buf[64];
  for (;;) {
    auto n = s->read(buf, sizeof buf);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    got.append(buf, *n);
  }
  EXPECT_EQ(got, "from host");
}

TEST_F(RobustnessTest, CliPrintsOneLineErrorWhenDaemonGone) {
  sw.stop_daemon();
  const std::vector<std::vector<std::string>> commands = {
      {"status"},
      {"service", "list"},
      {"service", "register", "--name", "x"},
      {"vm", "create", "x"},
      {"vm", "list", "--json"},
      {"stats"},
      {"run", "--vm", "web", "--", "/bin/true"},
      {"connect", "parent", svc.to_string()},
      {"listen", svc.to_string()},
  };
  for (const auto& command : commands) {
    std::string joined = "hvsock";
    for (const auto& word : command) joined += " " + word;
    SCOPED_TRACE(joined);
    const auto r = sw.cli(command, {}, hang_limit);
    EXPECT_TRUE(r.status.exited_normally()) << r.err;
    EXPECT_EQ(r.status.code, 1) << r.err;
    const auto lines = lines_of(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_EQ(lines[0].rfind("hvsock: ", 0), 0u) << lines[0];
    EXPECT_TRUE(contains(lines[0], sw.runtime_dir())) << "should say where it looked: " << lines[0];
  }
}

TEST_F(RobustnessTest, CliListenEndsWhenDaemonDies) {
  auto listener_cli = sw.cli_async({"listen", "robust"});
  ASSERT_TRUE(listener_cli->wait_for_stderr("listening", hang_limit)) << listener_cli->err();
  sw.kill_daemon();
  const auto status = listener_cli->wait(hang_limit);
  EXPECT_TRUE(status.exited_normally()) << "listen hung or crashed: " << listener_cli->err();
  EXPECT_EQ(status.code, 1) << listener_cli->err();
  const auto lines = lines_of(listener_cli->err());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back().rfind("hvsock: ", 0), 0u) << listener_cli->err();
}

// --- (e) one daemon per directory -------------------------------------------

TEST_F(RobustnessTest, SecondDaemonOnSameDirectoriesRefuses) {
  const std::string other_state = sw.root() + "/state2";
  const std::string other_runtime = sw.root() + "/run2";
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> attempts = {
      {"same state and runtime dirs", {sw.state_dir(), sw.runtime_dir()}},
      {"same state dir", {sw.state_dir(), other_runtime}},
      {"same runtime dir", {other_state, sw.runtime_dir()}},
  };
  const auto state_before = read_file(state_file());
  for (const auto& [what, dirs] : attempts) {
    SCOPED_TRACE(what);
    const auto r = run({hvsockd_path, "--state-dir", dirs.first, "--runtime-dir", dirs.second}, {},
                       {}, hang_limit);
    EXPECT_TRUE(r.status.exited_normally())
        << "the second hvsockd did not exit by itself (signal " << r.status.signal << "):\n"
        << r.err;
    EXPECT_NE(r.status.code, 0) << r.err;
    EXPECT_FALSE(lines_of(r.err).empty());
    const bool names_dir = contains(r.err, dirs.first) || contains(r.err, dirs.second);
    EXPECT_TRUE(names_dir) << "the refusal should say which directory is taken:\n" << r.err;
    // The first one is untouched and still serving through its sockets.
    expect_daemon_serves();
    EXPECT_EQ(read_file(state_file()), state_before);
  }
  EXPECT_EQ(list_services().size(), 1u);
}

}  // namespace
}  // namespace hvsock::test
