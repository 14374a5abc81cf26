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

// A relative path from the peer must stay inside the destination.
bool safe_relative(const std::string& path) {
  if (path.empty()) return true;
  if (path.front() == '/') return false;
  for (const auto& part : fs::path(path))
    if (part == ".." || part == ".") return false;
  return true;
}

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

// The file being received: an unnamed O_TMPFILE in the destination's
// directory where the file system has them (nothing is left behind even if
// the receiver is killed), else a hidden temporary name removed on failure.
struct tree_receiver::open_file {
  std::string temp_path, final_path;  // temp_path empty: unnamed
  unique_fd fd;
  std::uint32_t mode = 0644;
  std::uint64_t size = 0, written = 0;
  XXH3_state_t* state = XXH3_createState();
  ~open_file() {
    XXH3_freeState(state);
    if (fd && !temp_path.empty()) ::unlink(temp_path.c_str());  // not renamed: remove it
  }
};

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
        if (n < 0) return file_error(errno, file_->final_path);
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
      if (top_.empty()) return failure(errc::protocol_error, "an empty tree");
      complete_ = true;
      return {};
    default: return failure(errc::protocol_error, "unexpected frame in a file copy");
  }
}

result<void> tree_receiver::start_entry(const frame& f) {
  if (file_) return failure(errc::protocol_error, "an entry inside a file");
  const auto& p = f.payload;
  if (p.size() < 5) return failure(errc::protocol_error, "short entry");
  const auto kind = std::to_integer<std::uint8_t>(p[0]);
  const std::size_t length = get_le(p, 1, 4);
  if (p.size() != 5 + length + 4 + 8) return failure(errc::protocol_error, "bad entry");
  const std::string relative(reinterpret_cast<const char*>(p.data() + 5), length);
  const auto mode = static_cast<std::uint32_t>(get_le(p, 5 + length, 4)) & 07777;
  const std::uint64_t size = get_le(p, 9 + length, 8);
  if (!safe_relative(relative))
    return failure(errc::protocol_error, "an entry outside the copy: " + relative);
  if (top_.empty()) {
    if (!relative.empty()) return failure(errc::protocol_error, "the first entry must be the top");
    // As cp: into an existing directory under the source's name, else as the destination.
    std::error_code ec;
    top_ = fs::is_directory(destination_, ec) && !source_name_.empty()
               ? (fs::path(destination_) / source_name_).string()
               : destination_;
  }
  const fs::path path = relative.empty() ? fs::path(top_) : fs::path(top_) / relative;
  if (kind == kind_directory) {
    if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) return file_error(errno, path.string());
    ::chmod(path.c_str(), mode);
    return {};
  }
  if (kind != kind_file) return failure(errc::protocol_error, "unknown entry kind");
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return failure(errc::invalid_argument, path.string() + ": is a directory");
  auto file = std::make_unique<open_file>();
  file->final_path = path.string();
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    file->temp_path = (dir / ("." + path.filename().string() + ".hvsock-XXXXXX")).string();
    std::vector<char> name(file->temp_path.begin(), file->temp_path.end());
    name.push_back('\0');
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    file->temp_path = name.data();
  }
  if (fd < 0) return file_error(errno, dir.string());
  file->fd.reset(fd);
  file->mode = mode;
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
    return failure(errc::protocol_error, file_->final_path + ": fewer bytes than announced");
  XXH128_canonical_t mine;
  XXH128_canonicalFromHash(&mine, XXH3_128bits_digest(file_->state));
  if (std::memcmp(mine.digest, f.payload.data(), sizeof mine.digest) != 0)
    return failure(errc::io_error, file_->final_path + ": the digest does not match; not kept");
  if (::fchmod(file_->fd.get(), file_->mode) < 0 || ::fsync(file_->fd.get()) < 0)
    return file_error(errno, file_->final_path);
  if (file_->temp_path.empty()) {
    // Give the unnamed file a hidden name, then rename it over the target.
    const fs::path final_path(file_->final_path);
    const fs::path dir = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
    for (int attempt = 0; file_->temp_path.empty(); ++attempt) {
      const std::string name = (dir / ("." + final_path.filename().string() + ".hvsock-" +
                                       std::to_string(::getpid()) + "-" + std::to_string(attempt)))
                                   .string();
      const std::string self = "/proc/self/fd/" + std::to_string(file_->fd.get());
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0)
        file_->temp_path = name;
      else if (errno != EEXIST || attempt > 100)
        return file_error(errno, file_->final_path);
    }
  }
  if (::rename(file_->temp_path.c_str(), file_->final_path.c_str()) < 0)
    return file_error(errno, file_->final_path);
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
