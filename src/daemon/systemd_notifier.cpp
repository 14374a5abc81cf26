#include "daemon/systemd_notifier.hpp"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstdlib>

namespace hvsock::daemon {

systemd_notifier::systemd_notifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us.
  if (active_ && ::sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
    keepalive_ = std::chrono::microseconds(usec / 2);
}

void systemd_notifier::send(const std::string& message) {
  // Best effort, like any other supervisor hint: a failure here must not
  // stop the switch (systemd reports a unit that never got READY=1).
  if (active_) (void)::sd_notify(0, message.c_str());
}

void systemd_notifier::ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }

void systemd_notifier::status(const std::string& status) { send("STATUS=" + status); }

void systemd_notifier::alive() { send("WATCHDOG=1"); }

void systemd_notifier::stopping(const std::string& status) { send("STOPPING=1\nSTATUS=" + status); }

}  // namespace hvsock::daemon
