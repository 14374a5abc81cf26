#include "preload_setup.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include <hvsock/unique_fd.hpp>

namespace hvsock::cli {
namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool read_at(int fd, void* buf, std::size_t size, off_t offset) {
  return ::pread(fd, buf, size, offset) == static_cast<ssize_t>(size);
}

}  // namespace

std::optional<std::string> find_preload_library(std::vector<std::string>& searched) {
  constexpr const char* name = "libhvsock-preload.so";
  if (const char* env = std::getenv("HVSOCK_PRELOAD_LIBRARY"); env != nullptr && *env != '\0') {
    searched.emplace_back(env);
    return is_file(env) ? std::optional<std::string>(env) : std::nullopt;
  }
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  if (ec) return std::nullopt;
  // The build tree keeps it next to hvsock; an installation in LIBDIR/hvsock.
  for (const auto& candidate :
       {self / name, self.parent_path() / HVSOCK_INSTALL_LIBDIR / "hvsock" / name}) {
    searched.push_back(candidate.string());
    if (is_file(candidate.string())) return candidate.lexically_normal().string();
  }
  return std::nullopt;
}

std::optional<std::string> resolve_command(const std::string& command) {
  if (command.find('/') != std::string::npos)
    return is_file(command) ? std::optional(command) : std::nullopt;
  const char* env = std::getenv("PATH");
  std::string_view dirs = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  for (;;) {
    const std::size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    const std::filesystem::path candidate =
        std::filesystem::path(dir.empty() ? std::string_view(".") : dir) / command;
    if (is_file(candidate.string()) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate.string();
    if (colon == std::string_view::npos) return std::nullopt;
    dirs.remove_prefix(colon + 1);
  }
}

bool is_static_executable(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  Elf64_Ehdr header{};
  if (!read_at(fd.get(), &header, sizeof header, 0)) return false;
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64)
    return false;  // a script, or not a 64-bit ELF: not ours to judge
  if (header.e_phentsize != sizeof(Elf64_Phdr)) return false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (!read_at(fd.get(), &ph, sizeof ph,
                 static_cast<off_t>(header.e_phoff + i * sizeof(Elf64_Phdr))))
      return false;
    if (ph.p_type == PT_INTERP) return false;
  }
  return true;
}

}  // namespace hvsock::cli
