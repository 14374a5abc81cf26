#include "daemon/stderr_log.hpp"

#include <sys/stat.h>

#include <charconv>
#include <cstring>
#include <string_view>

namespace hvsock::daemon {

void stderr_log::operator()(log_level level, const std::string& line) const {
  if (!wants(level)) return;
  std::string text;
  text.reserve(line.size() + 12);
  if (options_.journal) {
    text += '<';
    text += static_cast<char>('0' + static_cast<int>(level));
    text += '>';
  } else {
    text += "hvsockd: ";
  }
  text += line;
  text += '\n';
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(options_.fd, text.data() + done, text.size() - done);
    if (n <= 0) return;  // nowhere left to say it
    done += static_cast<std::size_t>(n);
  }
}

bool is_journal_stream(int fd, const char* journal_stream) {
  if (journal_stream == nullptr) return false;
  const std::string_view text(journal_stream);
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long device = 0;
  unsigned long long inode = 0;
  const auto parse = [](std::string_view part, unsigned long long& out) {
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), out);
    return ec == std::errc() && end == part.data() + part.size() && !part.empty();
  };
  if (!parse(text.substr(0, colon), device) || !parse(text.substr(colon + 1), inode)) return false;
  struct stat st {};
  if (::fstat(fd, &st) < 0) return false;
  return st.st_dev == device && st.st_ino == inode;
}

}  // namespace hvsock::daemon
