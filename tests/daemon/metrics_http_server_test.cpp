// metrics_http_server: the HTTP answers (respond_to), and on a real event
// loop with loopback TCP clients in a thread: a response larger than the
// socket buffers arrives whole, a silent client is closed at the timeout,
// and connections over the cap get 503.
#include "daemon/metrics_http_server.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace hvsock::daemon {
namespace {

using namespace std::chrono_literals;

std::string status_of(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void open(metrics_http_server::limits lim, std::string body = "hvsock_up 1\n") {
    loop_ = std::move(*event_loop::create());
    auto where = parse_tcp_listen_address("127.0.0.1:0");
    ASSERT_TRUE(where);
    auto server = metrics_http_server::open(
        *loop_, *where, [body] { return body; },
        [this](log_level, const std::string& line) { log_ += line + "\n"; }, lim);
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    auto bound = parse_tcp_listen_address(server_->address());
    ASSERT_TRUE(bound);
    address_ = *bound;
  }

  // Runs the loop until `client` (on another thread) returns, or 20 s.
  void run_with(const std::function<void()>& client) {
    std::atomic<bool> done = false;
    std::thread t([&] {
      client();
      done = true;
    });
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    std::function<void()> poll = [&] {
      if (done || std::chrono::steady_clock::now() > give_up) return loop_->stop();
      (void)loop_->add_timer(5ms, poll);
    };
    poll();
    ASSERT_TRUE(loop_->run());
    t.join();
    ASSERT_TRUE(done) << "the client did not finish within 20 s";
  }

  int connect_client() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&address_.address), address_.length),
              0);
    return fd;
  }

  static std::string read_all(int fd) {
    std::string out;
    char chunk[65536];
    ssize_t n;
    while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) out.append(chunk, n);
    return out;
  }

  std::unique_ptr<event_loop> loop_;
  std::unique_ptr<metrics_http_server> server_;
  tcp_listen_address address_;
  std::string log_;
};

TEST_F(MetricsHttpServerTest, Answers) {
  open({});
  const std::string ok = server_->respond_to("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(ok), "HTTP/1.1 200 OK");
  EXPECT_NE(ok.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(ok.find("\r\nContent-Length: 12\r\n"), std::string::npos);
  EXPECT_NE(ok.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_TRUE(ok.ends_with("\r\n\r\nhvsock_up 1\n"));

  const std::string head = server_->respond_to("HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(status_of(head), "HTTP/1.1 200 OK");
  EXPECT_NE(head.find("Content-Length: 12\r\n"), std::string::npos);
  EXPECT_TRUE(head.ends_with("\r\n\r\n"));  // no body

  EXPECT_EQ(status_of(server_->respond_to("GET /metrics?x=1 HTTP/1.1\n\n")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status_of(server_->respond_to("GET / HTTP/1.1\r\n\r\n")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_of(server_->respond_to("GET /metricsx HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 404 Not Found");
  const std::string post = server_->respond_to("POST /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(post), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  for (const char* bad :
       {"\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/1.1 extra\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n"})
    EXPECT_EQ(status_of(server_->respond_to(bad)), "HTTP/1.1 400 Bad Request") << bad;
}

TEST_F(MetricsHttpServerTest, ResponseLargerThanTheSocketBuffersArrivesWhole) {
  // More than loopback TCP's send and receive buffers together can hold
  // (tcp_wmem and tcp_rmem top out at a few MiB), so the server must stop
  // at EAGAIN and continue on EPOLLOUT. (A tiny SO_RCVBUF would do it too,
  // but makes loopback TCP so slow that the 5 s deadline cuts it off.)
  const std::string body(32 << 20, 'x');
  open({}, body);
  std::string received;
  run_with([&] {
    const int fd = connect_client();
    const std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::this_thread::sleep_for(50ms);  // let the server fill the buffers first
    received = read_all(fd);
    ::close(fd);
  });
  EXPECT_EQ(status_of(received), "HTTP/1.1 200 OK");
  EXPECT_TRUE(received.ends_with("\r\n\r\n" + body));
}

TEST_F(MetricsHttpServerTest, SilentClientIsClosedAtTheTimeout) {
  open({.timeout = 300ms});
  std::chrono::steady_clock::duration waited{};
  std::string received;
  run_with([&] {
    const int fd = connect_client();
    const auto start = std::chrono::steady_clock::now();
    received = read_all(fd);  // sends nothing: EOF when the server gives up
    waited = std::chrono::steady_clock::now() - start;
    ::close(fd);
  });
  EXPECT_EQ(received, "");
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 10s);
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(MetricsHttpServerTest, OversizeHeadGets431) {
  open({.max_request_head = 1024});
  std::string received;
  run_with([&] {
    const int fd = connect_client();
    const std::string junk = "GET /metrics HTTP/1.1\r\nX-Junk: " + std::string(4096, 'a');
    ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    received = read_all(fd);
    ::close(fd);
  });
  EXPECT_EQ(status_of(received), "HTTP/1.1 431 Request Header Fields Too Large");
}

TEST_F(MetricsHttpServerTest, ConnectionsOverTheCapGet503) {
  open({.max_connections = 1});
  std::string second;
  run_with([&] {
    const int first = connect_client();  // holds the only slot, silent
    // The first is admitted before the second is accepted: same listener,
    // accepted in order.
    const int fd = connect_client();
    second = read_all(fd);
    ::close(fd);
    ::close(first);
  });
  EXPECT_EQ(status_of(second), "HTTP/1.1 503 Service Unavailable");
  EXPECT_NE(log_.find("answering 503"), std::string::npos) << log_;
}

}  // namespace
}  // namespace hvsock::daemon
