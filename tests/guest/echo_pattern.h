/* The byte stream the echo test programs send and check (echo_peer.cpp on
 * libhvsock, raw_vsock_peer.c on raw AF_VSOCK): connection `seed`, byte
 * `offset`. Not periodic over short spans, so a dropped, repeated or
 * reordered chunk anywhere in 64 MiB shows. Plus FNV-1a (../support/fnv1a.h),
 * for the checksum lines both sides print. C and C++. */
#ifndef HVSOCK_TESTS_GUEST_ECHO_PATTERN_H
#define HVSOCK_TESTS_GUEST_ECHO_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "../support/fnv1a.h"

static inline unsigned char echo_pattern_byte(uint64_t seed, uint64_t offset) {
  return (unsigned char)((offset * 31u) ^ (offset >> 11) ^ (seed * 151u + 7u));
}

#endif
