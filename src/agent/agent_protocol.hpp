// The guest agent's wire protocol (docs/agent-protocol.md): frames over one
// hvsock stream per request. A frame is a 4-byte little-endian length (of
// what follows), a 1-byte type and the payload. The client opens with HELLO
// (the version), then one request (EXEC); then data frames flow both ways
// until the agent sends EXIT (or ERROR) and closes.
//
// Both ends live here: hvsock exec (the client) and hvsock agent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/service_id.hpp>

namespace hvsock::agent {

// The agent's service: vsock port 0x4856 ("HV"), so that it is reachable in
// QEMU guests too. Registered as agent_service_name.
inline constexpr std::uint32_t agent_port = 0x4856;
inline const service_id agent_service = service_id_from_port(agent_port);
inline constexpr const char* agent_service_name = "hvsock Guest Agent";

inline constexpr std::uint16_t protocol_version = 1;
inline constexpr std::size_t max_frame_payload = 1 << 20;   // larger frames are a protocol error
inline constexpr std::size_t max_data_payload = 64 * 1024;  // what a sender puts in a data frame

enum class frame_type : std::uint8_t {
  hello = 1,       // u16 version, then "hvsock-agent"
  exec = 2,        // exec_request
  stdin_data = 3,  // bytes for the command's stdin
  stdin_eof = 4,   // (empty) the client's stdin ended
  stdout_data = 5,
  stderr_data = 6,
  signal = 7,   // u32 signal number, for the command's process group
  winsize = 8,  // u16 rows, u16 columns (tty execs)
  exit = 9,     // u8 kind (0 exited, 1 killed by a signal), i32 code or signal
  error = 10,   // UTF-8 text: why the request failed (the agent closes next)
  // File copies (file_transfer.hpp): a request, then a tree of entries.
  put = 11,     // string: where in the VM the copy goes (the client sends the tree)
  get = 12,     // string: what in the VM to copy out (the agent sends the tree)
  entry = 13,   // u8 kind (1 file, 2 directory), string relative path, u32 mode, u64 size
  data = 14,    // file bytes, `size` in all after a file entry
  digest = 15,  // 16 bytes: XXH3-128 of the file's bytes, after its data
  end = 16,     // (empty) the tree is complete
};

struct frame {
  frame_type type;
  std::vector<std::byte> payload;
};

struct exec_request {
  std::vector<std::string> argv;  // argv[0] is searched in PATH
  std::vector<std::string> env;   // NAME=VALUE additions to the agent's environment
  std::string cwd;                // empty: the agent's own
  bool tty = false;               // a pseudo-terminal instead of pipes
  std::uint16_t rows = 0, columns = 0;
};

struct exit_status {
  bool signaled = false;
  int code = 0;  // exit code, or the signal number
};

// Encoding. Each returns the whole frame, header included.
std::vector<std::byte> encode(frame_type type, std::span<const std::byte> payload = {});
std::vector<std::byte> encode_hello();
std::vector<std::byte> encode_exec(const exec_request& request);
std::vector<std::byte> encode_signal(int signal_number);
std::vector<std::byte> encode_winsize(std::uint16_t rows, std::uint16_t columns);
std::vector<std::byte> encode_exit(const exit_status& status);
std::vector<std::byte> encode_error(const std::string& message);
std::vector<std::byte> encode_put(const std::string& destination, const std::string& source_name);
std::vector<std::byte> encode_get(const std::string& source);

// Decoding of payloads: protocol_error when malformed.
result<std::uint16_t> decode_hello(std::span<const std::byte> payload);
result<exec_request> decode_exec(std::span<const std::byte> payload);
result<int> decode_signal(std::span<const std::byte> payload);
result<std::pair<std::uint16_t, std::uint16_t>> decode_winsize(std::span<const std::byte> payload);
result<exit_status> decode_exit(std::span<const std::byte> payload);
// PUT: (destination, source name); GET: the source path.
result<std::pair<std::string, std::string>> decode_put(std::span<const std::byte> payload);
result<std::string> decode_get(std::span<const std::byte> payload);

// Collects frames from a byte stream fed in pieces (non-blocking loops).
class frame_reader {
 public:
  void feed(std::span<const std::byte> bytes);
  // The next complete frame, nullopt when more bytes are needed, or
  // protocol_error for an oversized or unknown frame.
  result<std::optional<frame>> next();
  bool empty() const { return buffer_.size() == consumed_; }

 private:
  std::vector<std::byte> buffer_;
  std::size_t consumed_ = 0;
};

// Blocking helpers on a connected fd (EINTR retried, no SIGPIPE).
result<void> write_all(int fd, std::span<const std::byte> bytes);
// Reads one whole frame (blocking); protocol_error on a malformed one,
// not_connected when the peer closed before a frame began.
result<frame> read_frame(int fd);

}  // namespace hvsock::agent
