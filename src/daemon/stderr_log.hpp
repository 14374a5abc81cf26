// stderr_log: where hvsockd's lines go. Each line is one write(2), so lines
// from two daemons, or from a crash, never interleave mid-line. Lines below
// the threshold (--log-level) are dropped. On a terminal or a file a line
// reads "hvsockd: <text>"; when stderr is systemd's journal it reads
// "<N><text>", N being the syslog priority, which journald strips and keeps
// as the entry's PRIORITY (so `journalctl -p err` works) and the unit's
// name already says who spoke.
//
// Thread safety: operator() may run on any thread (one write per line).
#pragma once

#include <unistd.h>

#include <string>

#include "daemon/log.hpp"

namespace hvsock::daemon {

class stderr_log {
 public:
  struct options {
    log_level threshold = log_level::info;
    bool journal = false;  // "<N>" prefixes instead of "hvsockd: "
    int fd = STDERR_FILENO;
  };

  explicit stderr_log(options o) : options_(o) {}

  bool wants(log_level level) const { return level <= options_.threshold; }
  void operator()(log_level level, const std::string& line) const;

 private:
  options options_;
};

// Whether `fd` is the stream systemd connected to the journal:
// `journal_stream` is $JOURNAL_STREAM ("DEVICE:INODE", decimal), which names
// that stream; a process whose stderr was redirected since no longer
// matches it. False when journal_stream is null or malformed.
bool is_journal_stream(int fd, const char* journal_stream);

}  // namespace hvsock::daemon
