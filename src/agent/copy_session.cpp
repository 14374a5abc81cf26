// copy_session: PUT and GET for hvsock cp, on top of file_transfer.
#include "agent/copy_session.hpp"

#include <string>

#include "agent/file_transfer.hpp"

namespace hvsock::agent {
namespace {

// The copy failed: say why, then EXIT 1 (docs/agent-protocol.md).
int refuse(int sock, const std::string& why) {
  (void)write_all(sock, encode_error(why));
  (void)write_all(sock, encode_exit({false, 1}));
  return 1;
}

}  // namespace

int run_copy_session(int sock, const frame& request) {
  result<void> done;
  if (request.type == frame_type::put) {
    auto put = decode_put(request.payload);
    if (!put) return refuse(sock, put.error().message());
    tree_receiver receiver(put->first, put->second, nullptr);
    done = receive_tree(sock, receiver);
  } else if (request.type == frame_type::get) {
    auto source = decode_get(request.payload);
    if (!source) return refuse(sock, source.error().message());
    done = send_tree(sock, *source, nullptr);
  } else {
    return refuse(sock, "expected a PUT or GET request");
  }
  if (!done) return refuse(sock, done.error().message());
  return write_all(sock, encode_exit({false, 0})) ? 0 : 1;
}

}  // namespace hvsock::agent
