// partition_counters: counting brokered connections per partition.
#include "daemon/partition_counters.hpp"

namespace hvsock::daemon {
namespace {

partition_connection_counts& entry(
    std::map<std::string, partition_connection_counts, std::less<>>& counts,
    std::string_view partition) {
  auto it = counts.find(partition);
  if (it == counts.end())
    it = counts.emplace(std::string(partition), partition_connection_counts{}).first;
  return it->second;
}

}  // namespace

void partition_counters::record_connection(std::string_view from, std::string_view to) {
  ++entry(counts_, from).outbound;
  ++entry(counts_, to).inbound;
}

void partition_counters::forget(std::string_view partition) {
  if (auto it = counts_.find(partition); it != counts_.end()) counts_.erase(it);
}

partition_connection_counts partition_counters::counts(std::string_view partition) const {
  auto it = counts_.find(partition);
  return it == counts_.end() ? partition_connection_counts{} : it->second;
}

}  // namespace hvsock::daemon
