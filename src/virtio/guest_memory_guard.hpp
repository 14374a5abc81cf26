// guest_memory_guard: reading and writing guest memory without letting the
// guest kill hvsockd. Guest RAM is a shared mapping of a file the front-end
// owns (a memfd). If the front-end shrinks that file (ftruncate) after
// SET_MEM_TABLE, touching the pages beyond its new end raises SIGBUS, whose
// default action ends the whole daemon, every other guest included.
//
// Every user-space access hvsockd makes to guest memory goes through the
// functions below. Each one runs a single plain copy, load or store inside a
// "guarded region": a thread-local sigjmp_buf that the process-wide SIGBUS
// handler jumps back to. Nothing in a guarded region owns a resource (no
// allocation, no C++ object with a destructor), so the jump skips nothing.
// A fault is turned into a sticky per-thread flag (take_guest_memory_fault)
// and a zero / unchanged result; the device checks the flag after each
// packet, throws away what it computed from the bad access and reports the
// memory as gone, so the owner can detach that one guest.
//
// Kernel accesses (sendmsg/recvmsg on guest buffers) do not raise SIGBUS:
// they fail with EFAULT, which callers report with note_guest_memory_fault().
//
// A SIGBUS outside a guarded region (a bug elsewhere, or kill -BUS) is not
// ours: the handler restores the previous disposition (the default, or a
// sanitizer's) and the fault happens again under it, as if we were not here.
//
// Thread safety: the flag and the guard are per thread; install is once per
// process and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hvsock::virtio {

// Installs the SIGBUS handler (SA_SIGINFO | SA_NODEFER) once per process.
// guest_memory::add_region calls it before the first mapping of a
// front-end's file; other callers need not.
void install_guest_memory_fault_handler();

// memcpy(dst, src, n) where either side may be guest memory. False if the
// copy faulted: then dst holds an unspecified mix and must not be used.
bool guarded_copy(void* dst, const void* src, std::size_t n) noexcept;

// One relaxed atomic load or store of a naturally aligned ring field. A
// faulting load returns 0; a faulting store does nothing.
std::uint16_t guarded_load(const std::uint16_t* p) noexcept;
std::uint32_t guarded_load(const std::uint32_t* p) noexcept;
std::uint64_t guarded_load(const std::uint64_t* p) noexcept;
void guarded_store(std::uint16_t* p, std::uint16_t v) noexcept;
void guarded_store(std::uint32_t* p, std::uint32_t v) noexcept;

// The kernel reported EFAULT on guest buffers: the same as a SIGBUS fault.
void note_guest_memory_fault() noexcept;
// Whether any guarded access on this thread faulted since the last take;
// take_ clears the flag.
bool guest_memory_faulted() noexcept;
bool take_guest_memory_fault() noexcept;

}  // namespace hvsock::virtio
