// partition_counters: per-partition connection counts for the metrics:
// brokered connections a partition made (outbound) and took (inbound).
// A connection within one partition counts once each way. Keyed by the
// partition's name, which is unique while it exists; forget() drops a
// deleted partition so a later one of the same name starts from zero.
//
// Thread safety: none; used from the daemon's loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace hvsock::daemon {

struct partition_connection_counts {
  std::uint64_t outbound = 0;  // connects this partition made that a listener took
  std::uint64_t inbound = 0;   // connections its listeners took
};

class partition_counters {
 public:
  void record_connection(std::string_view from, std::string_view to);
  void forget(std::string_view partition);
  partition_connection_counts counts(std::string_view partition) const;

 private:
  std::map<std::string, partition_connection_counts, std::less<>> counts_;
};

}  // namespace hvsock::daemon
