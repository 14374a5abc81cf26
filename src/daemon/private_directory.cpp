#include "daemon/private_directory.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace hvsock::daemon {

result<void> make_directory(const std::string& path, mode_t mode) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir(path);
  if (dir.has_parent_path() && !dir.parent_path().empty()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec)
      return failure(ec, "create directory " + dir.parent_path().string() + ": " + ec.message());
  }
  if (::mkdir(path.c_str(), mode) == 0) {
    if (::chmod(path.c_str(), mode) < 0) return make_system_error(errno, "chmod " + path);
    return {};
  }
  if (errno != EEXIST) return make_system_error(errno, "create directory " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return make_system_error(errno, "stat " + path);
  if (!S_ISDIR(st.st_mode)) return failure(errc::invalid_argument, path + " is not a directory");
  return {};
}

result<void> check_private_directory(const std::string& path, const char* what) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) return make_system_error(errno, "stat " + path);
  const std::string refuse = std::string("refusing to use ") + what + " " + path + ": ";
  if (S_ISLNK(st.st_mode))
    return failure(errc::permission_denied, refuse + "it is a symbolic link; give the real path");
  if (!S_ISDIR(st.st_mode)) return failure(errc::invalid_argument, refuse + "not a directory");
  if (st.st_uid != ::geteuid())
    return failure(errc::permission_denied, refuse + "it belongs to uid " +
                                                std::to_string(st.st_uid) + ", not to uid " +
                                                std::to_string(::geteuid()) + " (hvsockd's)");
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return failure(errc::permission_denied, refuse + "it is writable by " +
                                                ((st.st_mode & 002) != 0 ? "others" : "its group") +
                                                " (mode " + mode + "); run chmod go-w " + path +
                                                ", or remove it and let hvsockd create it");
  }
  return {};
}

}  // namespace hvsock::daemon
