// Unit tests for the control protocol's wire format (protocol/control_wire)
// and for passing messages with fds over AF_UNIX SOCK_SEQPACKET
// (sys/fd_passing), on a real socketpair.
#include "protocol/control_wire.hpp"
#include "sys/fd_passing.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace hvsock::detail::wire {
namespace {

const endpoint kLocal{vm_id_parent, service_id_from_port(5000)};
const endpoint kPeer{guid_literal("5b2e1f9c-8d43-4a6e-b1c7-0f9e8d7c6b5a"),
                     guid_literal("3049197c-1234-4a6e-b1c7-0f9e8d7c6b5a")};

template <class Message>
std::vector<std::byte> bytes_of(const Message& m) {
  auto span = as_bytes(m);
  return {span.begin(), span.end()};
}

void set_header(std::vector<std::byte>& data, std::uint32_t m, std::uint16_t v, std::uint16_t t) {
  ASSERT_GE(data.size(), sizeof(header));
  const header h{m, v, t};
  std::memcpy(data.data(), &h, sizeof h);
}

// --- layout and constants -------------------------------------------------------------

TEST(ControlWire, Constants) {
  EXPECT_EQ(magic, 0x4b535648u);
  // "HVSK" in memory on a little-endian machine.
  const header h{magic, version, 0};
  std::array<char, 4> text{};
  std::memcpy(text.data(), &h.magic, 4);
  EXPECT_EQ(std::string(text.data(), 4), "HVSK");
  EXPECT_EQ(version, 2);
  EXPECT_EQ(sizeof(connect_request), 44u);
  EXPECT_EQ(sizeof(bind_request), 48u);
  EXPECT_EQ(sizeof(header), 8u);
  EXPECT_EQ(sizeof(raw_endpoint), 32u);
  EXPECT_EQ(max_message_size, sizeof(reply));
  EXPECT_GE(max_message_size, sizeof(connect_request));
  EXPECT_GE(max_message_size, sizeof(bind_request));
  EXPECT_GE(max_message_size, sizeof(accepted));
  EXPECT_GE(max_message_size, sizeof(incoming));
  EXPECT_EQ(max_reason_length, 480u);
}

TEST(ControlWire, MakeSetsHeader) {
  const auto m = make<bind_request>(message_type::bind_request);
  EXPECT_EQ(m.head.magic, magic);
  EXPECT_EQ(m.head.version, version);
  EXPECT_EQ(m.head.type, 2);
  EXPECT_EQ(m.backlog, 0u);
  EXPECT_EQ(make<connect_request>(message_type::connect_request).head.type, 1);
  EXPECT_EQ(make<accepted>(message_type::accepted).head.type, 3);
  EXPECT_EQ(make<reply>(message_type::reply).head.type, 4);
  EXPECT_EQ(make<incoming>(message_type::incoming).head.type, 5);
}

TEST(ControlWire, RawEndpointIsWindowsLayout) {
  const raw_endpoint raw = to_raw(kLocal);
  EXPECT_EQ(raw.vm, vm_id_parent.to_windows_bytes());
  EXPECT_EQ(raw.service, kLocal.service.to_windows_bytes());
  EXPECT_EQ(raw.service[0], 0x88);  // 5000 = 0x1388, little-endian
  EXPECT_EQ(raw.service[1], 0x13);
  EXPECT_EQ(from_raw(raw), kLocal);
  EXPECT_EQ(from_raw(to_raw(kPeer)), kPeer);
}

// --- round trips -------------------------------------------------------------------------

TEST(ControlWireRoundTrip, ConnectRequest) {
  auto m = make<connect_request>(message_type::connect_request);
  m.target = to_raw(kPeer);
  const auto data = bytes_of(m);
  EXPECT_EQ(peek_type(data), message_type::connect_request);
  auto back = decode<connect_request>(data, message_type::connect_request);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(from_raw(back->target), kPeer);
  EXPECT_EQ(back->head.type, 1);
}

TEST(ControlWireRoundTrip, BindRequest) {
  auto m = make<bind_request>(message_type::bind_request);
  m.local = to_raw(kLocal);
  m.backlog = 128;
  m.socket_type = to_wire(socket_type::seqpacket);
  const auto data = bytes_of(m);
  EXPECT_EQ(peek_type(data), message_type::bind_request);
  auto back = decode<bind_request>(data, message_type::bind_request);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(from_raw(back->local), kLocal);
  EXPECT_EQ(back->backlog, 128u);
  EXPECT_EQ(socket_type_from_wire(back->socket_type), socket_type::seqpacket);
}

TEST(ControlWire, SocketTypes) {
  // A zeroed request is a stream request.
  EXPECT_EQ(make<connect_request>(message_type::connect_request).socket_type, socket_type_stream);
  EXPECT_EQ(socket_type_from_wire(to_wire(socket_type::stream)), socket_type::stream);
  EXPECT_EQ(socket_type_from_wire(to_wire(socket_type::seqpacket)), socket_type::seqpacket);
  EXPECT_FALSE(socket_type_from_wire(2).has_value());
  EXPECT_FALSE(socket_type_from_wire(0xffffffffu).has_value());
}

TEST(ControlWireRoundTrip, LookupRequest) {
  auto m = make<lookup_request>(message_type::lookup_request);
  m.kind = static_cast<std::uint32_t>(lookup_kind::partition);
  m.name_length = 3;
  std::memcpy(m.name, "web", 3);
  const auto data = bytes_of(m);
  EXPECT_EQ(peek_type(data), message_type::lookup_request);
  auto back = decode<lookup_request>(data, message_type::lookup_request);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->kind, 2u);
  EXPECT_EQ(std::string(back->name, back->name_length), "web");
  EXPECT_FALSE(
      decode<lookup_request>(std::span(data).first(data.size() - 1), message_type::lookup_request));
}

TEST(ControlWireRoundTrip, Accepted) {
  const auto data = bytes_of(make<accepted>(message_type::accepted));
  EXPECT_EQ(data.size(), sizeof(header));
  EXPECT_EQ(peek_type(data), message_type::accepted);
  auto back = decode<accepted>(data, message_type::accepted);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->head.magic, magic);
}

TEST(ControlWireRoundTrip, Incoming) {
  auto m = make<incoming>(message_type::incoming);
  m.local = to_raw(kLocal);
  m.peer = to_raw(kPeer);
  const auto data = bytes_of(m);
  EXPECT_EQ(peek_type(data), message_type::incoming);
  auto back = decode<incoming>(data, message_type::incoming);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(from_raw(back->local), kLocal);
  EXPECT_EQ(from_raw(back->peer), kPeer);
}

TEST(ControlWireRoundTrip, SuccessReply) {
  const reply m = make_reply(kLocal, kPeer);
  EXPECT_EQ(m.status, 0);
  EXPECT_EQ(m.reason_length, 0);
  const auto data = bytes_of(m);
  EXPECT_EQ(peek_type(data), message_type::reply);
  auto back = decode<reply>(data, message_type::reply);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->status, 0);
  EXPECT_EQ(from_raw(back->local), kLocal);
  EXPECT_EQ(from_raw(back->peer), kPeer);
  EXPECT_EQ(reply_reason(*back), "");
}

TEST(ControlWireRoundTrip, FailureReply) {
  const failure f(errc::service_not_registered,
                  "connect parent:00001388-facb-11e6-bd58-64006a7986d3: service not registered");
  const reply m = make_reply(f);
  EXPECT_EQ(m.head.type, 4);
  EXPECT_EQ(m.status, static_cast<std::int32_t>(errc::service_not_registered));
  EXPECT_EQ(m.reason_length, f.message().size());
  auto back = decode<reply>(bytes_of(m), message_type::reply);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->status, 4);
  EXPECT_EQ(reply_reason(*back), f.message());
}

TEST(ControlWireReply, ReasonTruncatedToMaxLength) {
  std::string long_text(max_reason_length + 100, 'x');
  for (std::size_t i = 0; i < long_text.size(); ++i) long_text[i] = static_cast<char>('a' + i % 26);
  const reply m = make_reply(failure(errc::protocol_error, long_text));
  EXPECT_EQ(m.status, static_cast<std::int32_t>(errc::protocol_error));
  EXPECT_EQ(m.reason_length, max_reason_length);
  EXPECT_EQ(reply_reason(m), long_text.substr(0, max_reason_length));
  // Exactly max_reason_length fits untouched.
  const std::string exact = long_text.substr(0, max_reason_length);
  EXPECT_EQ(reply_reason(make_reply(failure(errc::timed_out, exact))), exact);
}

TEST(ControlWireReply, ReasonLengthFromPeerIsClamped) {
  reply m = make_reply(failure(errc::timed_out, "timed out"));
  m.reason_length = 0xffff;  // a lying peer
  EXPECT_EQ(reply_reason(m).size(), max_reason_length);
}

TEST(ControlWireReply, ForeignCategoryBecomesProtocolError) {
  const reply m = make_reply(make_system_error(ECONNRESET, "recvmsg"));
  EXPECT_EQ(m.status, static_cast<std::int32_t>(errc::protocol_error));
  EXPECT_NE(m.status, 0);
  EXPECT_EQ(reply_reason(m).rfind("recvmsg: ", 0), 0u) << reply_reason(m);
}

// --- rejects -------------------------------------------------------------------------

TEST(ControlWireDecode, RejectsWrongSize) {
  auto m = make<connect_request>(message_type::connect_request);
  auto data = bytes_of(m);
  std::span<const std::byte> all(data);
  EXPECT_FALSE(decode<connect_request>(all.first(data.size() - 1), message_type::connect_request));
  EXPECT_FALSE(decode<connect_request>(all.first(0), message_type::connect_request));
  EXPECT_FALSE(decode<connect_request>(all.first(sizeof(header)), message_type::connect_request));
  data.push_back(std::byte{0});
  EXPECT_FALSE(decode<connect_request>(data, message_type::connect_request));
  // A reply of the wrong size (e.g. an older, shorter layout).
  const auto r = bytes_of(make_reply(kLocal, kPeer));
  EXPECT_FALSE(
      decode<reply>(std::span<const std::byte>(r).first(r.size() - 4), message_type::reply));
  // An accepted with trailing bytes.
  auto acc = bytes_of(make<accepted>(message_type::accepted));
  acc.resize(acc.size() + 8);
  EXPECT_FALSE(decode<accepted>(acc, message_type::accepted));
  // But the header alone still peeks.
  EXPECT_EQ(peek_type(acc), message_type::accepted);
}

TEST(ControlWireDecode, PeekRejectsShortHeader) {
  const auto data = bytes_of(make<accepted>(message_type::accepted));
  EXPECT_FALSE(peek_type(std::span<const std::byte>(data).first(sizeof(header) - 1)));
  EXPECT_FALSE(peek_type({}));
}

TEST(ControlWireDecode, RejectsWrongMagic) {
  auto data = bytes_of(make<bind_request>(message_type::bind_request));
  set_header(data, magic ^ 1u, version, 2);
  EXPECT_FALSE(peek_type(data));
  EXPECT_FALSE(decode<bind_request>(data, message_type::bind_request));
  set_header(data, 0x48564b53, version, 2);  // byte-swapped
  EXPECT_FALSE(decode<bind_request>(data, message_type::bind_request));
  set_header(data, 0, version, 2);
  EXPECT_FALSE(decode<bind_request>(data, message_type::bind_request));
  set_header(data, magic, version, 2);  // sanity: restored, accepted
  EXPECT_TRUE(decode<bind_request>(data, message_type::bind_request));
}

TEST(ControlWireDecode, RejectsWrongVersion) {
  auto data = bytes_of(make<incoming>(message_type::incoming));
  for (int v : {0, 1, 3, 0x100, 0xffff}) {
    set_header(data, magic, static_cast<std::uint16_t>(v), 5);
    EXPECT_FALSE(peek_type(data)) << v;
    EXPECT_FALSE(decode<incoming>(data, message_type::incoming)) << v;
  }
}

TEST(ControlWireDecode, RejectsWrongType) {
  // The bytes of a connect_request, asked for as a bind_request type.
  const auto data = bytes_of(make<connect_request>(message_type::connect_request));
  EXPECT_FALSE(decode<connect_request>(data, message_type::bind_request));
  EXPECT_FALSE(decode<connect_request>(data, message_type::reply));
  // A header that says bind_request on a connect_request-sized message.
  auto relabelled = data;
  set_header(relabelled, magic, version, 2);
  EXPECT_EQ(peek_type(relabelled), message_type::bind_request);
  EXPECT_FALSE(decode<connect_request>(relabelled, message_type::connect_request));
  // A reply labelled incoming.
  auto r = bytes_of(make_reply(kLocal, kPeer));
  set_header(r, magic, version, 5);
  EXPECT_FALSE(decode<reply>(r, message_type::reply));
}

TEST(ControlWireDecode, RejectsUnknownTypeValues) {
  auto data = bytes_of(make<accepted>(message_type::accepted));
  for (int t : {0, 9, 10, 0x100, 0x8000, 0xffff}) {
    set_header(data, magic, version, static_cast<std::uint16_t>(t));
    EXPECT_FALSE(peek_type(data)) << t;
    EXPECT_FALSE(decode<accepted>(data, message_type::accepted)) << t;
    EXPECT_FALSE(decode<accepted>(data, static_cast<message_type>(t))) << t;
  }
}

}  // namespace
}  // namespace hvsock::detail::wire

// --- fd passing over a real SOCK_SEQPACKET socketpair -------------------------------

namespace hvsock::detail {
namespace {

struct socket_pair {
  unique_fd a;
  unique_fd b;
};

socket_pair make_pair(int extra_type = 0) {
  int fds[2];
  const int rc = ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | extra_type, 0, fds);
  EXPECT_EQ(rc, 0) << std::strerror(errno);
  if (rc != 0) return {};
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// Number of open fds in this process, from /proc/self/fd (not counting the
// directory's own fd).
int open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;
}

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

std::span<const std::byte> text_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(FdPassing, MessageWithFdArrivesWrappedAndCloexec) {
  auto pair = make_pair();
  ASSERT_TRUE(pair.a && pair.b);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);  // deliberately without O_CLOEXEC
  unique_fd pipe_read(p[0]);
  unique_fd pipe_write(p[1]);
  ASSERT_EQ(::fcntl(pipe_read.get(), F_GETFD) & FD_CLOEXEC, 0);

  const std::string payload = "hello with an fd";
  ASSERT_TRUE(send_message(pair.a.get(), text_bytes(payload), pipe_read.get()).has_value());

  std::array<std::byte, 64> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_EQ(got->size, payload.size());
  EXPECT_FALSE(got->truncated);
  EXPECT_FALSE(got->control_truncated);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), got->size), payload);
  EXPECT_EQ(got->fd_count, 1u);
  ASSERT_TRUE(got->fd.valid());
  EXPECT_NE(got->fd.get(), pipe_read.get());
  const int fd_flags = ::fcntl(got->fd.get(), F_GETFD);
  ASSERT_NE(fd_flags, -1);
  EXPECT_NE(fd_flags & FD_CLOEXEC, 0) << "received fd is not CLOEXEC";

  // It is the same pipe: what goes into the write end comes out of it.
  ASSERT_EQ(::write(pipe_write.get(), "z", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(got->fd.get(), &c, 1), 1);
  EXPECT_EQ(c, 'z');

  // unique_fd closes it on destruction.
  const int received = got->fd.get();
  got->fd.reset();
  EXPECT_FALSE(is_open(received));
}

TEST(FdPassing, MessageWithoutFd) {
  auto pair = make_pair();
  const std::string payload = "plain";
  ASSERT_TRUE(send_message(pair.a.get(), text_bytes(payload)).has_value());
  std::array<std::byte, 16> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_EQ(got->size, 5u);
  EXPECT_EQ(got->fd_count, 0u);
  EXPECT_FALSE(got->fd.valid());
}

TEST(FdPassing, WireMessageEndToEnd) {
  auto pair = make_pair();
  const wire::reply sent = wire::make_reply(failure(errc::backlog_full, "backlog full"));
  ASSERT_TRUE(send_message(pair.a.get(), wire::as_bytes(sent)).has_value());
  std::array<std::byte, wire::max_message_size + 1> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_FALSE(got->truncated);
  ASSERT_EQ(got->size, sizeof(wire::reply));
  auto r = wire::decode<wire::reply>(std::span<const std::byte>(buffer).first(got->size),
                                     wire::message_type::reply);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, static_cast<std::int32_t>(errc::backlog_full));
  EXPECT_EQ(wire::reply_reason(*r), "backlog full");
}

TEST(FdPassing, BiggerThanBufferIsTruncated) {
  auto pair = make_pair();
  const std::string payload(100, 'q');
  ASSERT_TRUE(send_message(pair.a.get(), text_bytes(payload)).has_value());
  std::array<std::byte, 10> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_TRUE(got->truncated);
  EXPECT_EQ(got->size, 10u);
  // The rest of the datagram is gone, not delivered as a next message.
  ASSERT_TRUE(send_message(pair.a.get(), text_bytes("next")).has_value());
  auto next = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->size, 4u);
  EXPECT_FALSE(next->truncated);
}

void send_raw_with_fds(int socket, const std::vector<int>& fds) {
  char data = 'm';
  iovec iov{&data, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  ASSERT_EQ(::sendmsg(socket, &msg, MSG_NOSIGNAL), 1) << std::strerror(errno);
}

std::vector<unique_fd> open_dev_null(int n) {
  std::vector<unique_fd> out;
  for (int i = 0; i < n; ++i) out.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return out;
}

TEST(FdPassing, ExtraFdsAreClosed) {
  auto pair = make_pair();
  auto originals = open_dev_null(3);
  std::vector<int> raw;
  for (auto& fd : originals) {
    ASSERT_TRUE(fd.valid());
    raw.push_back(fd.get());
  }
  const int before = open_fd_count();
  ASSERT_GT(before, 0);
  send_raw_with_fds(pair.a.get(), raw);
  // In flight, the fds are not in our table; received, only the first stays.
  std::array<std::byte, 16> buffer{};
  {
    auto got = receive_message(pair.b.get(), buffer);
    ASSERT_TRUE(got.has_value()) << got.error().message();
    EXPECT_EQ(got->size, 1u);
    EXPECT_EQ(got->fd_count, 3u);
    EXPECT_FALSE(got->control_truncated);
    ASSERT_TRUE(got->fd.valid());
    EXPECT_NE(::fcntl(got->fd.get(), F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(open_fd_count(), before + 1);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(FdPassing, TooManyFdsAreAllClosed) {
  // More fds than the receiver makes room for: the kernel drops the excess
  // (MSG_CTRUNC) and the receiver closes all but the first it got.
  auto pair = make_pair();
  auto originals = open_dev_null(12);
  std::vector<int> raw;
  for (auto& fd : originals) raw.push_back(fd.get());
  const int before = open_fd_count();
  send_raw_with_fds(pair.a.get(), raw);
  std::array<std::byte, 16> buffer{};
  {
    auto got = receive_message(pair.b.get(), buffer);
    ASSERT_TRUE(got.has_value()) << got.error().message();
    EXPECT_TRUE(got->control_truncated);
    EXPECT_GE(got->fd_count, 1u);
    EXPECT_LT(got->fd_count, 12u);
    EXPECT_TRUE(got->fd.valid());
    EXPECT_EQ(open_fd_count(), before + 1);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(FdPassing, WouldBlockOnEmptyNonBlockingSocket) {
  auto pair = make_pair(SOCK_NONBLOCK);
  std::array<std::byte, 16> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), make_error_code(errc::would_block));
  EXPECT_NE(got.error().message().find("recvmsg"), std::string::npos) << got.error().message();
}

TEST(FdPassing, WouldBlockWithDontwaitFlag) {
  auto pair = make_pair();  // blocking socket, non-blocking call
  std::array<std::byte, 16> buffer{};
  auto got = receive_message(pair.b.get(), buffer, MSG_DONTWAIT);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), make_error_code(errc::would_block));
}

TEST(FdPassing, SizeZeroOnPeerClose) {
  auto pair = make_pair();
  pair.a.reset();
  std::array<std::byte, 16> buffer{};
  auto got = receive_message(pair.b.get(), buffer);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_EQ(got->size, 0u);
  EXPECT_FALSE(got->truncated);
  EXPECT_EQ(got->fd_count, 0u);
  EXPECT_FALSE(got->fd.valid());
}

TEST(FdPassing, SendToClosedPeerIsAnErrorNotSigpipe) {
  // A stream socket is the kind that raises SIGPIPE (a seqpacket one only
  // returns EPIPE): without MSG_NOSIGNAL this kills the test process.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  unique_fd a(fds[0]);
  unique_fd b(fds[1]);
  b.reset();
  auto sent = send_message(a.get(), text_bytes("x"));
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error().code(), std::errc::broken_pipe);
  EXPECT_NE(sent.error().message().find("sendmsg"), std::string::npos) << sent.error().message();
  // Same on the seqpacket sockets the control protocol uses.
  auto pair = make_pair();
  pair.b.reset();
  auto seq = send_message(pair.a.get(), text_bytes("x"));
  ASSERT_FALSE(seq.has_value());
  EXPECT_EQ(seq.error().code(), std::errc::broken_pipe);
}

TEST(FdPassing, SendWouldBlockWhenFull) {
  auto pair = make_pair(SOCK_NONBLOCK);
  const std::string payload(1024, 'f');
  result<void> last;
  for (int i = 0; i < 100000 && last.has_value(); ++i)
    last = send_message(pair.a.get(), text_bytes(payload));
  ASSERT_FALSE(last.has_value()) << "socket never filled up";
  EXPECT_EQ(last.error().code(), make_error_code(errc::would_block));
}

TEST(FdPassing, BadSocketIsSystemError) {
  std::array<std::byte, 16> buffer{};
  auto got = receive_message(-1, buffer);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), std::error_code(EBADF, std::system_category()));
  auto sent = send_message(-1, text_bytes("x"));
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error().code(), std::error_code(EBADF, std::system_category()));
}

}  // namespace
}  // namespace hvsock::detail
