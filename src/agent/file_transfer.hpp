// file_transfer: hvsock cp's two halves, used by both ends (the client for
// cp into a VM sends, the agent receives; out of a VM the other way round).
//
// The sender walks a file or a directory tree and sends, for each entry,
// ENTRY (kind, path relative to the top, mode, size), then for a file its
// bytes as DATA frames and their XXH3-128 digest (DIGEST), then END. Files
// are streamed, never held whole.
//
// The receiver writes each file to a temporary name beside its destination
// (".NAME.hvsock-XXXXXX"), checks the digest, sets the mode, fsyncs and
// renames: a file is there whole and verified, or not at all. Directories
// are created as they come (mode applied). The destination follows cp: an
// existing directory receives the top entry under its own name; otherwise
// the top entry takes the destination's name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <hvsock/result.hpp>

#include "agent/agent_protocol.hpp"

namespace hvsock::agent {

// Called as bytes go by: (bytes done, bytes in all). In all is known to the
// sender from the start, to the receiver per file.
using progress_function = std::function<void(std::uint64_t done, std::uint64_t total)>;

// Sends the tree at `source` on `socket` (blocking). Errors name the path
// (missing, unreadable, not a file or directory).
result<void> send_tree(int socket, const std::string& source, const progress_function& progress);

class tree_receiver {
 public:
  // `destination`: the path the copy goes to; `source_name`: the last part
  // of the source's path (the name it takes inside an existing directory).
  tree_receiver(std::string destination, std::string source_name, progress_function progress);
  tree_receiver(const tree_receiver&) = delete;
  tree_receiver& operator=(const tree_receiver&) = delete;
  // Removes a temporary file still open (a copy that failed midway).
  ~tree_receiver();

  // One frame of the tree; an error ends the copy (the caller reports it).
  result<void> on_frame(const frame& f);
  bool complete() const { return complete_; }
  std::uint64_t files() const { return files_; }
  std::uint64_t bytes() const { return bytes_; }

 private:
  struct open_file;
  result<void> start_entry(const frame& f);
  result<void> finish_file(const frame& f);

  std::string destination_, source_name_;
  std::string top_;  // where the top entry goes, decided at the first entry
  progress_function progress_;
  std::unique_ptr<open_file> file_;
  bool complete_ = false;
  std::uint64_t files_ = 0, bytes_ = 0;
};

// Reads frames from `socket` into `receiver` until END (blocking, in large
// reads: whatever the peer sends after END is not for the caller); an ERROR
// frame from the peer comes back as a failure with its text.
result<void> receive_tree(int socket, tree_receiver& receiver);

}  // namespace hvsock::agent
