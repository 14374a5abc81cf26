// systemd_notifier: hvsockd's side of systemd's notify protocol (a unit of
// Type=notify). READY=1 once the daemon serves, STATUS= lines a person sees
// in `systemctl status`, WATCHDOG=1 while the event loop turns (when the
// unit sets WatchdogSec), STOPPING=1 on the way out. libsystemd's
// sd_notify does the talking; without NOTIFY_SOCKET every call does
// nothing, so the daemon behaves the same under any other supervisor.
//
// Thread safety: none; used from the daemon's loop thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace hvsock::daemon {

class systemd_notifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC (for this process only).
  systemd_notifier();

  bool active() const { return active_; }
  // How often to call alive(): half the watchdog timeout, when there is one.
  std::optional<std::chrono::microseconds> keepalive_interval() const { return keepalive_; }

  void ready(const std::string& status);
  void status(const std::string& status);
  void alive();  // WATCHDOG=1
  void stopping(const std::string& status);

 private:
  void send(const std::string& message);

  bool active_ = false;
  std::optional<std::chrono::microseconds> keepalive_;
};

}  // namespace hvsock::daemon
