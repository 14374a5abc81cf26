// service_counters: counting, and the /proc/net/unix scan behind "active".
#include "daemon/service_counters.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <string_view>
#include <utility>

#include <hvsock/error.hpp>
#include <hvsock/unique_fd.hpp>

#include "sys/file_io.hpp"

namespace hvsock::daemon {

refusal_reason refusal_reason_for(const std::error_code& code) {
  if (code.category() != hvsock_category()) return refusal_reason::other;
  switch (static_cast<errc>(code.value())) {
    case errc::service_disabled: return refusal_reason::disabled;
    case errc::connection_refused: return refusal_reason::no_listener;
    case errc::backlog_full: return refusal_reason::backlog_full;
    case errc::network_unreachable:
    case errc::unknown_partition:
    case errc::parent_on_host: return refusal_reason::unreachable;
    default: return refusal_reason::other;
  }
}

service_counters::service_counters(std::string proc_net_unix)
    : proc_net_unix_(std::move(proc_net_unix)) {}

void service_counters::record_accepted(const service_id& service, ino_t a, ino_t b,
                                       socket_type type) {
  service_stats& s = stats_[service];
  ++s.accepted;
  if (type == socket_type::seqpacket) ++s.accepted_seqpacket;
  ++s.active;
  tracked_.push_back({service, a, b});
  if (tracked_.size() > max_tracked) {
    untrack(tracked_.front());
    tracked_.pop_front();
  }
  if (++since_prune_ >= prune_interval) (void)refresh_active();
}

void service_counters::record_refused(const service_id& service, refusal_reason reason) {
  service_stats& s = stats_[service];
  switch (reason) {
    case refusal_reason::disabled: ++s.refused_disabled; break;
    case refusal_reason::no_listener: ++s.refused_no_listener; break;
    case refusal_reason::backlog_full: ++s.refused_backlog_full; break;
    case refusal_reason::unreachable: ++s.refused_unreachable; break;
    case refusal_reason::type_mismatch: ++s.refused_type_mismatch; break;
    case refusal_reason::other: ++s.refused_other; break;
  }
}

void service_counters::forget(const service_id& service) {
  stats_.erase(service);
  std::erase_if(tracked_, [&](const tracked_pair& t) { return t.service == service; });
}

void service_counters::untrack(const tracked_pair& t) {
  if (auto it = stats_.find(t.service); it != stats_.end() && it->second.active > 0)
    --it->second.active;
}

result<void> service_counters::refresh_active() {
  since_prune_ = 0;
  auto live = read_unix_inodes(proc_net_unix_);
  if (!live) return live.error();
  prune(*live);
  return {};
}

void service_counters::prune(const std::unordered_set<ino_t>& live) {
  std::erase_if(tracked_, [&](const tracked_pair& t) {
    if (live.contains(t.a) || live.contains(t.b)) return false;
    untrack(t);
    return true;
  });
}

service_stats service_counters::stats(const service_id& service) const {
  auto it = stats_.find(service);
  return it == stats_.end() ? service_stats{} : it->second;
}

result<std::unordered_set<ino_t>> service_counters::read_unix_inodes(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_system_error(errno, "open " + path);
  auto text = detail::read_to_end(fd.get(), path);
  if (!text) return text.error();
  // "Num RefCount Protocol Flags Type St Inode [Path]": the inode is the
  // seventh field. The first line is the header.
  std::unordered_set<ino_t> inodes;
  std::string_view rest(*text);
  bool header = true;
  while (!rest.empty()) {
    const std::size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    if (std::exchange(header, false)) continue;
    std::string_view field;
    for (int i = 0; i < 7; ++i) {
      const std::size_t start = line.find_first_not_of(' ');
      if (start == std::string_view::npos) {
        field = {};
        break;
      }
      line.remove_prefix(start);
      const std::size_t end = std::min(line.find(' '), line.size());
      field = line.substr(0, end);
      line.remove_prefix(end);
    }
    unsigned long long inode = 0;
    auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), inode);
    if (ec == std::errc() && ptr == field.data() + field.size() && !field.empty())
      inodes.insert(static_cast<ino_t>(inode));
  }
  return inodes;
}

}  // namespace hvsock::daemon
