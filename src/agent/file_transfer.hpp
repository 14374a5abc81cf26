// file_transfer: hvsock cp's two halves, used by both ends (the client for
// cp into a VM sends, the agent receives; out of a VM the other way round).
//
// The sender walks a file or a directory tree and sends, for each entry,
// ENTRY (kind, path relative to the top, mode, size), then for a file its
// bytes as DATA frames and their XXH3-128 digest (DIGEST), then END. Files
// are streamed, never held whole.
//
// The receiver trusts neither the peer nor the destination tree (a VM may
// have planted links in it). The destination follows cp: an existing
// directory (symbolic links in the user's own DESTINATION path are followed,
// as cp does) receives the top entry under the source's name; otherwise the
// top entry takes the destination's name. Below that directory every path
// component is opened relative to its parent's fd with O_NOFOLLOW: a
// symbolic link where a directory or file is to go is refused with an error
// naming it, and nothing is written through it. Each file is written to an
// unnamed O_TMPFILE in its directory (a hidden ".NAME.hvsock-*" name where
// the file system has none), checked against the digest, given its mode on
// the fd (fchmod), fsynced, linked and renamed into place: a file is there
// whole and verified, or not at all. Modes are the peer's without the
// setuid and setgid bits (and without the sticky bit on files), as cp
// without -p creates them for a non-owner. Directories the copy creates get
// their mode through their fd (owner rwx kept until the end, so a read-only
// directory can still be filled); directories that already exist keep
// theirs.
//
// Not thread-safe; one tree_receiver per copy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

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
  using components = std::vector<std::string>;
  result<void> start_entry(const frame& f);
  result<void> finish_file(const frame& f);
  result<void> choose_top();
  // The directory at `path` (components below the base), every component
  // opened without following a symbolic link. O_PATH unless `writable_mode`.
  result<unique_fd> open_directory(const components& path, bool writable_mode = false);
  result<void> make_directory(const components& path, std::uint32_t mode);
  result<void> apply_deferred_modes();
  std::string shown(const components& path) const;

  std::string destination_, source_name_;
  unique_fd base_;                      // the directory the top entry goes in (or is)
  std::string base_path_;               // its path as the user gave it, for messages
  components top_;                      // the top entry below base_: {} (base_ itself) or {name}
  bool top_chosen_ = false;             // decided at the first entry
  bool top_must_be_directory_ = false;  // DESTINATION ended in '/'
  components cached_path_;              // the last directory opened, kept open
  unique_fd cached_fd_;
  std::vector<std::pair<components, std::uint32_t>> deferred_modes_;
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
