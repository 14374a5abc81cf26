#include "virtio/guest_memory_guard.hpp"

#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

namespace hvsock::virtio {
namespace {

// The innermost guarded region of this thread, or null outside any.
thread_local sigjmp_buf* active_guard = nullptr;
thread_local bool fault_seen = false;
struct sigaction previous_action {};

void on_sigbus(int, siginfo_t* info, void*) {
  if (sigjmp_buf* guard = active_guard) siglongjmp(*guard, 1);
  // Not a guarded guest access: hand SIGBUS back to whoever had it (the
  // default action: a crash with a core). A hardware fault recurs when we
  // return; a SIGBUS sent by kill() would not, so it is raised again.
  ::sigaction(SIGBUS, &previous_action, nullptr);
  if (info == nullptr || info->si_code <= 0) ::raise(SIGBUS);
}

// Runs `access` (plain, trivially destructible work only) in a guarded
// region. sigsetjmp(…, 0) does not save the signal mask: SA_NODEFER keeps
// SIGBUS unblocked in the handler, so there is no mask to restore after the
// jump, and no system call is made on this path.
template <class Access>
bool guarded(Access access) noexcept {
  sigjmp_buf env;
  sigjmp_buf* const outer = active_guard;
  if (sigsetjmp(env, 0) != 0) {
    active_guard = outer;
    fault_seen = true;
    return false;
  }
  active_guard = &env;
  // Keep the compiler from moving the access out of the guarded window.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  access();
  std::atomic_signal_fence(std::memory_order_seq_cst);
  active_guard = outer;
  return true;
}

template <class T>
T load(const T* p) noexcept {
  T v = 0;
  // volatile: the value written in the region must survive a jump.
  volatile T out = 0;
  if (guarded([&] { out = __atomic_load_n(p, __ATOMIC_RELAXED); })) v = out;
  return v;
}

template <class T>
void store(T* p, T v) noexcept {
  (void)guarded([&] { __atomic_store_n(p, v, __ATOMIC_RELAXED); });
}

}  // namespace

void install_guest_memory_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &previous_action);
  });
}

bool guarded_copy(void* dst, const void* src, std::size_t n) noexcept {
  if (n == 0) return true;
  return guarded([&] { std::memcpy(dst, src, n); });
}

std::uint16_t guarded_load(const std::uint16_t* p) noexcept { return load(p); }
std::uint32_t guarded_load(const std::uint32_t* p) noexcept { return load(p); }
std::uint64_t guarded_load(const std::uint64_t* p) noexcept { return load(p); }
void guarded_store(std::uint16_t* p, std::uint16_t v) noexcept { store(p, v); }
void guarded_store(std::uint32_t* p, std::uint32_t v) noexcept { store(p, v); }

void note_guest_memory_fault() noexcept { fault_seen = true; }

bool guest_memory_faulted() noexcept { return fault_seen; }

bool take_guest_memory_fault() noexcept {
  const bool seen = fault_seen;
  fault_seen = false;
  return seen;
}

}  // namespace hvsock::virtio
