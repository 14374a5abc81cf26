// file_transfer: walking and sending a tree; receiving it atomically.
#include "agent/file_transfer.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <hvsock/unique_fd.hpp>

namespace hvsock::agent {
namespace fs = std::filesystem;
namespace {

constexpr std::uint8_t kind_file = 1, kind_directory = 2;

void put_u8(std::vector<std::byte>& out, std::uint8_t v) { out.push_back(std::byte{v}); }
void put_le(std::vector<std::byte>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) put_u8(out, static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get_le(std::span<const std::byte> in, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | std::to_integer<std::uint64_t>(in[at + static_cast<std::size_t>(i)]);
  return v;
}

std::vector<std::byte> entry_frame(std::uint8_t kind, const std::string& path, std::uint32_t mode,
                                   std::uint64_t size) {
  std::vector<std::byte> p;
  put_u8(p, kind);
  put_le(p, path.size(), 4);
  for (char c : path) p.push_back(static_cast<std::byte>(c));
  put_le(p, mode, 4);
  put_le(p, size, 8);
  return encode(frame_type::entry, p);
}

failure file_error(int err, const std::string& path) { return make_system_error(err, path); }

result<void> send_file(int socket, const fs::path& path, const std::string& relative,
                       std::uint32_t mode, std::uint64_t& done, std::uint64_t total,
                       const progress_function& progress) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return file_error(errno, path.string());
  struct stat st {};
  ::fstat(fd.get(), &st);
  if (auto w = write_all(
          socket, entry_frame(kind_file, relative, mode, static_cast<std::uint64_t>(st.st_size)));
      !w)
    return w;
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  std::vector<std::byte> buf(max_data_payload);
  std::uint64_t left = static_cast<std::uint64_t>(st.st_size);
  while (left > 0) {
    const ssize_t n = ::read(fd.get(), buf.data(), std::min<std::uint64_t>(buf.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      XXH3_freeState(state);
      return failure(errc::io_error, path.string() + ": changed size while being copied");
    }
    XXH3_128bits_update(state, buf.data(), static_cast<std::size_t>(n));
    if (auto w = write_all(
            socket, encode(frame_type::data, std::span(buf).first(static_cast<std::size_t>(n))));
        !w) {
      XXH3_freeState(state);
      return w;
    }
    left -= static_cast<std::uint64_t>(n);
    done += static_cast<std::uint64_t>(n);
    if (progress) progress(done, total);
  }
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
  XXH3_freeState(state);
  return write_all(socket, encode(frame_type::digest, std::as_bytes(std::span(canonical.digest))));
}

}  // namespace

result<void> send_tree(int socket, const std::string& source, const progress_function& progress) {
  std::error_code ec;
  const fs::path top(source);
  const auto status = fs::status(top, ec);
  if (ec) return file_error(ec.value(), source);
  std::uint64_t total = 0, done = 0;
  auto mode_of = [](const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint32_t>(st.st_mode & 07777) : 0644u;
  };
  if (fs::is_regular_file(status)) {
    total = fs::file_size(top, ec);
    if (auto r = send_file(socket, top, "", mode_of(top), done, total, progress); !r) return r;
  } else if (fs::is_directory(status)) {
    for (auto it = fs::recursive_directory_iterator(top, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file()) total += it->file_size();
    if (ec) return file_error(ec.value(), source);
    if (auto w = write_all(socket, entry_frame(kind_directory, "", mode_of(top), 0)); !w) return w;
    for (auto it = fs::recursive_directory_iterator(top, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      const std::string relative = fs::relative(it->path(), top).string();
      if (it->is_directory()) {
        if (auto w =
                write_all(socket, entry_frame(kind_directory, relative, mode_of(it->path()), 0));
            !w)
          return w;
      } else if (it->is_regular_file()) {
        if (auto r =
                send_file(socket, it->path(), relative, mode_of(it->path()), done, total, progress);
            !r)
          return r;
      }  // other kinds (sockets, devices, links to nowhere) are skipped, as with cp -r of data
    }
    if (ec) return file_error(ec.value(), source);
  } else {
    return failure(errc::invalid_argument, source + ": not a regular file or directory");
  }
  return write_all(socket, encode(frame_type::end));
}

// The file being received: an unnamed O_TMPFILE in its directory where the
// file system has them (nothing is left behind even if the receiver is
// killed), else a hidden temporary name removed on failure.
struct tree_receiver::open_file {
  unique_fd directory;    // where it goes
  std::string name;       // its final name in `directory`
  std::string temp_name;  // empty: still unnamed
  std::string shown;      // its path, for messages
  unique_fd fd;
  std::uint32_t mode = 0600;
  std::uint64_t size = 0, written = 0;
  XXH3_state_t* state = XXH3_createState();
  ~open_file() {
    XXH3_freeState(state);
    if (fd && !temp_name.empty()) ::unlinkat(directory.get(), temp_name.c_str(), 0);
  }
};

namespace {

constexpr std::uint32_t file_mode_bits = 0777;        // no setuid, setgid, sticky
constexpr std::uint32_t directory_mode_bits = 01777;  // no setuid, setgid

failure link_refused(const std::string& shown) {
  return failure(
      errc::permission_denied,
      shown + ": a symbolic link in the destination; not followed, nothing copied there");
}

// Splits a path from the peer into its components; false when one would
// leave the tree ("..", "."), or for an absolute path, empty components or NUL.
bool split_relative(const std::string& path, std::vector<std::string>& out) {
  if (path.empty()) return true;
  if (path.front() == '/' || path.find('\0') != std::string::npos) return false;
  for (std::size_t at = 0;;) {
    const auto slash = path.find('/', at);
    std::string part = path.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part.empty() || part == "." || part == "..") return false;
    out.push_back(std::move(part));
    if (slash == std::string::npos) return true;
    at = slash + 1;
  }
}

bool is_symlink_at(int directory, const std::string& name) {
  struct stat st {};
  return ::fstatat(directory, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

// A hidden name beside `name` for the file while it is not yet in place,
// short enough for NAME_MAX whatever the length of `name`.
std::string temporary_name(const std::string& name, int attempt) {
  return "." + name.substr(0, 200) + ".hvsock-" + std::to_string(::getpid()) + "-" +
         std::to_string(attempt);
}

}  // namespace

tree_receiver::tree_receiver(std::string destination, std::string source_name,
                             progress_function progress)
    : destination_(std::move(destination)),
      source_name_(std::move(source_name)),
      progress_(std::move(progress)) {}

tree_receiver::~tree_receiver() = default;

result<void> tree_receiver::on_frame(const frame& f) {
  switch (f.type) {
    case frame_type::entry: return start_entry(f);
    case frame_type::data: {
      if (!file_) return failure(errc::protocol_error, "file data without a file entry");
      if (file_->written + f.payload.size() > file_->size)
        return failure(errc::protocol_error, "more file data than announced");
      for (std::size_t at = 0; at < f.payload.size();) {
        const ssize_t n = ::write(file_->fd.get(), f.payload.data() + at, f.payload.size() - at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return file_error(errno, file_->shown);
        at += static_cast<std::size_t>(n);
      }
      XXH3_128bits_update(file_->state, f.payload.data(), f.payload.size());
      file_->written += f.payload.size();
      bytes_ += f.payload.size();
      if (progress_) progress_(file_->written, file_->size);
      return {};
    }
    case frame_type::digest: return finish_file(f);
    case frame_type::end:
      if (file_) return failure(errc::protocol_error, "the tree ended inside a file");
      if (!top_chosen_) return failure(errc::protocol_error, "an empty tree");
      if (auto r = apply_deferred_modes(); !r) return r;
      complete_ = true;
      return {};
    default: return failure(errc::protocol_error, "unexpected frame in a file copy");
  }
}

// As cp: into an existing directory under the source's name, else as the
// destination. Only the user's DESTINATION is resolved by path (following
// links, as cp does); everything below base_ is opened without following.
result<void> tree_receiver::choose_top() {
  if (source_name_.find('/') != std::string::npos || source_name_ == ".." ||
      source_name_.find('\0') != std::string::npos)
    return failure(errc::protocol_error, "a source name that is not one name: " + source_name_);
  struct stat st {};
  if (::stat(destination_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    base_path_ = destination_;
    if (!source_name_.empty() && source_name_ != ".") top_ = {source_name_};
  } else {
    std::string path = destination_;
    top_must_be_directory_ = path.size() > 1 && path.back() == '/';
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const auto slash = path.rfind('/');
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    base_path_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (name.empty() || name == "." || name == "..")
      return failure(errc::invalid_argument, destination_ + ": not a name to copy to");
    top_ = {name};
  }
  base_.reset(::open(base_path_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!base_) return file_error(errno, base_path_);
  top_chosen_ = true;
  return {};
}

std::string tree_receiver::shown(const components& path) const {
  std::string text = base_path_ == "." && !path.empty() ? "" : base_path_;
  for (const auto& part : path) {
    if (!text.empty() && text.back() != '/') text += '/';
    text += part;
  }
  return text;
}

result<unique_fd> tree_receiver::open_directory(const components& path, bool writable_mode) {
  const bool cached = !writable_mode && cached_fd_ && cached_path_ == path;
  unique_fd current(::fcntl(cached ? cached_fd_.get() : base_.get(), F_DUPFD_CLOEXEC, 0));
  if (!current) return file_error(errno, shown(path));
  if (cached) return current;
  components walked;
  for (std::size_t i = 0; i < path.size(); ++i) {
    walked.push_back(path[i]);
    const int flags = (writable_mode && i + 1 == path.size()) ? O_RDONLY : O_PATH;
    unique_fd next(
        ::openat(current.get(), path[i].c_str(), flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      const int err = errno;
      if ((err == ELOOP || err == ENOTDIR) && is_symlink_at(current.get(), path[i]))
        return link_refused(shown(walked));
      return file_error(err, shown(walked));
    }
    current = std::move(next);
  }
  if (!writable_mode) {
    cached_path_ = path;
    cached_fd_.reset(::fcntl(current.get(), F_DUPFD_CLOEXEC, 0));
  }
  return current;
}

// Creates the directory at `path` unless it exists (then it keeps its mode,
// as with cp), refusing a symbolic link in its place; the mode goes on the
// new directory's fd, owner rwx kept until the end of the copy.
result<void> tree_receiver::make_directory(const components& path, std::uint32_t mode) {
  if (path.empty()) return {};  // the destination directory itself: it exists
  const components parent_path(path.begin(), path.end() - 1);
  auto parent = open_directory(parent_path);
  if (!parent) return parent.error();
  const std::string& name = path.back();
  const bool created = ::mkdirat(parent->get(), name.c_str(), 0700) == 0;
  if (!created && errno != EEXIST) return file_error(errno, shown(path));
  if (!created) {
    // Exists: it must be a directory, not a link to one.
    if (auto opened = open_directory(path); !opened) return opened.error();
    return {};
  }
  unique_fd fd(
      ::openat(parent->get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if ((err == ELOOP || err == ENOTDIR) && is_symlink_at(parent->get(), name))
      return link_refused(shown(path));
    return file_error(err, shown(path));
  }
  if (::fchmod(fd.get(), mode | 0700) < 0) return file_error(errno, shown(path));
  if ((mode & 0700) != 0700) deferred_modes_.emplace_back(path, mode);
  return {};
}

// Directories created without owner rwx get their own mode last, deepest
// first (they arrived parents first), each through its fd.
result<void> tree_receiver::apply_deferred_modes() {
  cached_fd_.reset();
  cached_path_.clear();
  for (auto it = deferred_modes_.rbegin(); it != deferred_modes_.rend(); ++it) {
    auto fd = open_directory(it->first, true);
    if (!fd) return fd.error();
    if (::fchmod(fd->get(), it->second) < 0) return file_error(errno, shown(it->first));
  }
  deferred_modes_.clear();
  return {};
}

result<void> tree_receiver::start_entry(const frame& f) {
  if (file_) return failure(errc::protocol_error, "an entry inside a file");
  const auto& p = f.payload;
  if (p.size() < 5) return failure(errc::protocol_error, "short entry");
  const auto kind = std::to_integer<std::uint8_t>(p[0]);
  const std::size_t length = get_le(p, 1, 4);
  if (p.size() != 5 + length + 4 + 8) return failure(errc::protocol_error, "bad entry");
  const std::string relative(reinterpret_cast<const char*>(p.data() + 5), length);
  const auto mode = static_cast<std::uint32_t>(get_le(p, 5 + length, 4));
  const std::uint64_t size = get_le(p, 9 + length, 8);
  components below;
  if (!split_relative(relative, below))
    return failure(errc::protocol_error, "an entry outside the copy: " + relative);
  if (!top_chosen_) {
    if (!relative.empty()) return failure(errc::protocol_error, "the first entry must be the top");
    if (auto r = choose_top(); !r) return r;
  } else if (relative.empty()) {
    return failure(errc::protocol_error, "a second top entry");
  }
  components path = top_;
  path.insert(path.end(), below.begin(), below.end());
  if (kind == kind_directory) return make_directory(path, mode & directory_mode_bits);
  if (kind != kind_file) return failure(errc::protocol_error, "unknown entry kind");

  if (path.empty()) return failure(errc::invalid_argument, shown(path) + ": is a directory");
  if (top_must_be_directory_ && relative.empty()) return file_error(ENOTDIR, destination_);
  auto file = std::make_unique<open_file>();
  file->shown = shown(path);
  file->name = path.back();
  auto directory = open_directory(components(path.begin(), path.end() - 1));
  if (!directory) return directory.error();
  file->directory = std::move(*directory);
  struct stat st {};
  if (::fstatat(file->directory.get(), file->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return link_refused(file->shown);
    if (S_ISDIR(st.st_mode))
      return failure(errc::invalid_argument, file->shown + ": is a directory");
  }
  int fd = ::openat(file->directory.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    for (int attempt = 0; fd < 0; ++attempt) {
      file->temp_name = temporary_name(file->name, attempt);
      fd = ::openat(file->directory.get(), file->temp_name.c_str(),
                    O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0 && (errno != EEXIST || attempt > 100)) {
        file->temp_name.clear();
        break;
      }
    }
  }
  if (fd < 0) return file_error(errno, shown(components(path.begin(), path.end() - 1)));
  file->fd.reset(fd);
  file->mode = mode & file_mode_bits;
  file->size = size;
  XXH3_128bits_reset(file->state);
  file_ = std::move(file);
  if (progress_) progress_(0, size);
  return {};
}

result<void> tree_receiver::finish_file(const frame& f) {
  if (!file_) return failure(errc::protocol_error, "a digest without a file");
  if (f.payload.size() != sizeof(XXH128_canonical_t))
    return failure(errc::protocol_error, "a digest of the wrong size");
  if (file_->written != file_->size)
    return failure(errc::protocol_error, file_->shown + ": fewer bytes than announced");
  XXH128_canonical_t mine;
  XXH128_canonicalFromHash(&mine, XXH3_128bits_digest(file_->state));
  if (std::memcmp(mine.digest, f.payload.data(), sizeof mine.digest) != 0)
    return failure(errc::io_error, file_->shown + ": the digest does not match; not kept");
  // The mode goes on the open file, before it has a name anyone could use.
  if (::fchmod(file_->fd.get(), file_->mode) < 0 || ::fsync(file_->fd.get()) < 0)
    return file_error(errno, file_->shown);
  const int dir = file_->directory.get();
  if (file_->temp_name.empty()) {
    // Give the unnamed file a hidden name, then rename it over the target.
    const std::string self = "/proc/self/fd/" + std::to_string(file_->fd.get());
    for (int attempt = 0; file_->temp_name.empty(); ++attempt) {
      const std::string name = temporary_name(file_->name, attempt);
      int rc = ::linkat(AT_FDCWD, self.c_str(), dir, name.c_str(), AT_SYMLINK_FOLLOW);
      if (rc < 0 && errno == ENOENT)  // no /proc: needs CAP_DAC_READ_SEARCH
        rc = ::linkat(file_->fd.get(), "", dir, name.c_str(), AT_EMPTY_PATH);
      if (rc == 0)
        file_->temp_name = name;
      else if (errno != EEXIST || attempt > 100)
        return file_error(errno, file_->shown);
    }
  }
  // A link planted meanwhile is refused too (rename would replace, not follow, it).
  if (is_symlink_at(dir, file_->name)) return link_refused(file_->shown);
  if (::renameat(dir, file_->temp_name.c_str(), dir, file_->name.c_str()) < 0)
    return file_error(errno, file_->shown);
  file_->fd.reset();  // renamed: nothing to clean up
  file_.reset();
  ++files_;
  return {};
}

result<void> receive_tree(int socket, tree_receiver& receiver) {
  frame_reader reader;
  std::vector<std::byte> buf(256 * 1024);
  while (!receiver.complete()) {
    auto f = reader.next();
    if (!f) return f.error();
    if (!*f) {
      const ssize_t n = ::recv(socket, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_system_error(errno, "the copy's connection");
      if (n == 0) return failure(errc::not_connected, "the connection ended during the copy");
      reader.feed(std::span(buf).first(static_cast<std::size_t>(n)));
      continue;
    }
    if ((*f)->type == frame_type::error)
      return failure(
          errc::io_error,
          std::string(reinterpret_cast<const char*>((*f)->payload.data()), (*f)->payload.size()));
    if (auto r = receiver.on_frame(**f); !r) return r;
  }
  return {};
}

}  // namespace hvsock::agent
