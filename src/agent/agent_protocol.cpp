// agent_protocol: frames and payloads, little-endian on the wire.
#include "agent/agent_protocol.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <hvsock/error.hpp>

namespace hvsock::agent {
namespace {

constexpr std::string_view hello_magic = "hvsock-agent";
constexpr std::size_t header_size = 5;

void put_u8(std::vector<std::byte>& out, std::uint8_t v) { out.push_back(std::byte{v}); }
void put_u16(std::vector<std::byte>& out, std::uint16_t v) {
  put_u8(out, static_cast<std::uint8_t>(v));
  put_u8(out, static_cast<std::uint8_t>(v >> 8));
}
void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  put_u16(out, static_cast<std::uint16_t>(v));
  put_u16(out, static_cast<std::uint16_t>(v >> 16));
}
void put_string(std::vector<std::byte>& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  for (char c : s) out.push_back(static_cast<std::byte>(c));
}

failure malformed(const std::string& what) {
  return failure(errc::protocol_error, "agent protocol: " + what);
}

// Reads fields off a payload, failing once anything is short.
class cursor {
 public:
  explicit cursor(std::span<const std::byte> data) : data_(data) {}
  bool u8(std::uint8_t& v) {
    if (data_.size() < 1) return false;
    v = std::to_integer<std::uint8_t>(data_[0]);
    data_ = data_.subspan(1);
    return true;
  }
  bool u16(std::uint16_t& v) {
    std::uint8_t a, b;
    if (!u8(a) || !u8(b)) return false;
    v = static_cast<std::uint16_t>(a | (b << 8));
    return true;
  }
  bool u32(std::uint32_t& v) {
    std::uint16_t a, b;
    if (!u16(a) || !u16(b)) return false;
    v = a | (std::uint32_t{b} << 16);
    return true;
  }
  bool string(std::string& s) {
    std::uint32_t n;
    if (!u32(n) || data_.size() < n) return false;
    s.assign(reinterpret_cast<const char*>(data_.data()), n);
    data_ = data_.subspan(n);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::span<const std::byte> data_;
};

bool known(std::uint8_t type) {
  return type >= static_cast<std::uint8_t>(frame_type::hello) &&
         type <= static_cast<std::uint8_t>(frame_type::end);
}

}  // namespace

std::vector<std::byte> encode(frame_type type, std::span<const std::byte> payload) {
  std::vector<std::byte> out;
  out.reserve(header_size + payload.size());
  put_u32(out, static_cast<std::uint32_t>(payload.size() + 1));
  put_u8(out, static_cast<std::uint8_t>(type));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::byte> encode_hello() {
  std::vector<std::byte> p;
  put_u16(p, protocol_version);
  for (char c : hello_magic) p.push_back(static_cast<std::byte>(c));
  return encode(frame_type::hello, p);
}

std::vector<std::byte> encode_exec(const exec_request& r) {
  std::vector<std::byte> p;
  put_u8(p, r.tty ? 1 : 0);
  put_u16(p, r.rows);
  put_u16(p, r.columns);
  put_string(p, r.cwd);
  put_u32(p, static_cast<std::uint32_t>(r.argv.size()));
  for (const auto& a : r.argv) put_string(p, a);
  put_u32(p, static_cast<std::uint32_t>(r.env.size()));
  for (const auto& e : r.env) put_string(p, e);
  return encode(frame_type::exec, p);
}

std::vector<std::byte> encode_signal(int signal_number) {
  std::vector<std::byte> p;
  put_u32(p, static_cast<std::uint32_t>(signal_number));
  return encode(frame_type::signal, p);
}

std::vector<std::byte> encode_winsize(std::uint16_t rows, std::uint16_t columns) {
  std::vector<std::byte> p;
  put_u16(p, rows);
  put_u16(p, columns);
  return encode(frame_type::winsize, p);
}

std::vector<std::byte> encode_exit(const exit_status& status) {
  std::vector<std::byte> p;
  put_u8(p, status.signaled ? 1 : 0);
  put_u32(p, static_cast<std::uint32_t>(status.code));
  return encode(frame_type::exit, p);
}

std::vector<std::byte> encode_error(const std::string& message) {
  return encode(frame_type::error, std::as_bytes(std::span(message)));
}

std::vector<std::byte> encode_put(const std::string& destination, const std::string& source_name) {
  std::vector<std::byte> p;
  put_string(p, destination);
  put_string(p, source_name);
  return encode(frame_type::put, p);
}

std::vector<std::byte> encode_get(const std::string& source) {
  std::vector<std::byte> p;
  put_string(p, source);
  return encode(frame_type::get, p);
}

result<std::pair<std::string, std::string>> decode_put(std::span<const std::byte> payload) {
  cursor c(payload);
  std::pair<std::string, std::string> r;
  if (!c.string(r.first) || !c.string(r.second) || !c.done() || r.first.empty())
    return malformed("bad PUT");
  return r;
}

result<std::string> decode_get(std::span<const std::byte> payload) {
  cursor c(payload);
  std::string path;
  if (!c.string(path) || !c.done() || path.empty()) return malformed("bad GET");
  return path;
}

result<std::uint16_t> decode_hello(std::span<const std::byte> payload) {
  cursor c(payload);
  std::uint16_t version;
  if (!c.u16(version)) return malformed("short HELLO");
  const auto rest = payload.subspan(2);
  if (std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()) != hello_magic)
    return malformed("HELLO from something that is not an hvsock agent client");
  return version;
}

result<exec_request> decode_exec(std::span<const std::byte> payload) {
  cursor c(payload);
  exec_request r;
  std::uint8_t tty;
  std::uint32_t argc, envc;
  if (!c.u8(tty) || !c.u16(r.rows) || !c.u16(r.columns) || !c.string(r.cwd) || !c.u32(argc))
    return malformed("short EXEC");
  if (argc == 0 || argc > 4096) return malformed("EXEC needs 1 to 4096 arguments");
  r.tty = tty != 0;
  r.argv.resize(argc);
  for (auto& a : r.argv)
    if (!c.string(a)) return malformed("short EXEC argument");
  if (!c.u32(envc) || envc > 4096) return malformed("bad EXEC environment count");
  r.env.resize(envc);
  for (auto& e : r.env)
    if (!c.string(e) || e.find('=') == std::string::npos)
      return malformed("EXEC environment entries are NAME=VALUE");
  if (!c.done()) return malformed("trailing bytes after EXEC");
  return r;
}

result<int> decode_signal(std::span<const std::byte> payload) {
  cursor c(payload);
  std::uint32_t n;
  if (!c.u32(n) || !c.done() || n == 0 || n > 64) return malformed("bad SIGNAL");
  return static_cast<int>(n);
}

result<std::pair<std::uint16_t, std::uint16_t>> decode_winsize(std::span<const std::byte> payload) {
  cursor c(payload);
  std::uint16_t rows, columns;
  if (!c.u16(rows) || !c.u16(columns) || !c.done()) return malformed("bad WINSIZE");
  return std::pair{rows, columns};
}

result<exit_status> decode_exit(std::span<const std::byte> payload) {
  cursor c(payload);
  std::uint8_t kind;
  std::uint32_t code;
  if (!c.u8(kind) || !c.u32(code) || !c.done() || kind > 1) return malformed("bad EXIT");
  return exit_status{kind == 1, static_cast<int>(code)};
}

void frame_reader::feed(std::span<const std::byte> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

result<std::optional<frame>> frame_reader::next() {
  const std::size_t available = buffer_.size() - consumed_;
  if (available < header_size) return std::optional<frame>{};
  const std::byte* p = buffer_.data() + consumed_;
  std::uint32_t length = 0;
  for (int i = 3; i >= 0; --i) length = (length << 8) | std::to_integer<std::uint32_t>(p[i]);
  if (length == 0 || length - 1 > max_frame_payload)
    return malformed("a frame of " + std::to_string(length) + " bytes");
  const auto type = std::to_integer<std::uint8_t>(p[4]);
  if (!known(type)) return malformed("unknown frame type " + std::to_string(type));
  if (available < 4 + std::size_t{length}) return std::optional<frame>{};
  frame f{static_cast<frame_type>(type), std::vector<std::byte>(p + header_size, p + 4 + length)};
  consumed_ += 4 + length;
  // Keep the buffer from growing without bound over a long session.
  if (consumed_ > (1u << 20) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  return std::optional<frame>{std::move(f)};
}

result<void> write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_system_error(errno, "agent connection");
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return {};
}

namespace {

// Reads exactly `out.size()` bytes: 0 at a clean EOF before the first byte.
result<std::size_t> read_exact(int fd, std::span<std::byte> out) {
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::recv(fd, out.data() + got, out.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_system_error(errno, "agent connection");
    if (n == 0) {
      if (got == 0) return std::size_t{0};
      return malformed("the connection ended inside a frame");
    }
    got += static_cast<std::size_t>(n);
  }
  return got;
}

}  // namespace

result<frame> read_frame(int fd) {
  // The header, then exactly its payload: nothing after this frame is read.
  std::vector<std::byte> bytes(header_size);
  auto head = read_exact(fd, bytes);
  if (!head) return head.error();
  if (*head == 0) return failure(errc::not_connected, "the agent connection closed");
  std::uint32_t length = 0;
  for (int i = 3; i >= 0; --i)
    length = (length << 8) | std::to_integer<std::uint32_t>(bytes[static_cast<std::size_t>(i)]);
  if (length == 0 || length - 1 > max_frame_payload)
    return malformed("a frame of " + std::to_string(length) + " bytes");
  bytes.resize(4 + std::size_t{length});
  if (length > 1) {
    auto rest = read_exact(fd, std::span(bytes).subspan(header_size));
    if (!rest) return rest.error();
    if (*rest == 0) return malformed("the connection ended inside a frame");
  }
  frame_reader reader;  // the same checks as every other frame
  reader.feed(bytes);
  auto f = reader.next();
  if (!f) return f.error();
  return std::move(**f);
}

}  // namespace hvsock::agent
