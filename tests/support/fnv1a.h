/* FNV-1a over a byte stream: how the tests compare what was sent with what
 * arrived without keeping either. C (echo_fnv, for the guest programs) and
 * C++ (fnv_checksum, which also counts the bytes). */
#ifndef HVSOCK_TESTS_SUPPORT_FNV1A_H
#define HVSOCK_TESTS_SUPPORT_FNV1A_H

#include <stddef.h>
#include <stdint.h>

#define ECHO_FNV_INIT 1469598103934665603ull

static inline uint64_t echo_fnv(uint64_t hash, const unsigned char* data, size_t size) {
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 1099511628211ull;
  return hash;
}

#ifdef __cplusplus
#include <cstddef>
#include <span>

struct fnv_checksum {
  uint64_t h = ECHO_FNV_INIT;
  size_t n = 0;
  void add(std::span<const std::byte> b) {
    h = echo_fnv(h, reinterpret_cast<const unsigned char*>(b.data()), b.size());
    n += b.size();
  }
  bool operator==(const fnv_checksum&) const = default;
};
#endif

#endif
