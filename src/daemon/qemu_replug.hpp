// qemu_replug: brings a running QEMU's vhost-user-vsock device back to
// hvsockd through QEMU's QMP socket, after hvsockd restarted.
//
// Why: QEMU (7.2, and later versions alike) does not reconnect a
// vhost-user-vsock device to a back-end that went away; the device stays
// dead until QEMU restarts. QEMU can, however, unplug the device and plug in
// a fresh one: the guest's driver then drops its stale connections and
// probes a new device, which connects to hvsockd's socket.
//
// One attempt, each step one QMP command (qmp_client):
//   1. find the device: qom-list /machine/peripheral and
//      /machine/peripheral-anon for children of a vhost-user-vsock type;
//      qom-get each one's chardev, parent_bus and addr; query-chardev for
//      the chardevs' socket paths; take the device whose chardev points at
//      this partition's vhost-user socket (or the only vhost-user-vsock
//      device there is);
//   2. device_del, and wait for the DEVICE_DELETED event of that device (the
//      guest's kernel ejects it through ACPI hotplug: 0.03-0.5 s under TCG);
//   3. chardev-remove, then chardev-add of a client socket chardev with the
//      same id on the vhost-user socket;
//   4. device_add with the same driver, id, chardev, bus and addr; QEMU
//      speaks vhost-user to hvsockd before it answers, so the guest is
//      attached when the reply arrives.
// A guest that is attached already is left alone. A failed step ends the
// attempt with one log line (naming the VM, the step and QEMU's reason) and
// a retry after a back-off (first_retry, doubling up to max_retry), at most
// max_attempts attempts. A device unplugged by an earlier attempt is
// remembered, so a retry plugs it back in even though QEMU no longer lists
// it. Nobody answering on the QMP socket means QEMU is not running: nothing
// to do, as a QEMU that starts attaches by itself.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/event_loop.hpp"
#include "daemon/qmp_client.hpp"

namespace hvsock::daemon {

// One vhost-user-vsock device of a QEMU, as QMP describes it.
struct qemu_vsock_device {
  std::string qom_path;             // /machine/peripheral/ID or /machine/peripheral-anon/device[N]
  std::string driver;               // vhost-user-vsock-pci, ...
  std::string id;                   // empty for a device created without one
  std::string chardev;              // the chardev's id
  std::string bus;                  // the bus's name (pci.0, a root port's id, ...)
  std::optional<std::string> addr;  // "SS.F" (hex) for a PCI device
};

namespace qmp_parse {

// The children of a qom-list reply whose type is a vhost-user-vsock device:
// (name, driver) pairs.
std::vector<std::pair<std::string, std::string>> vsock_children(const nlohmann::json& qom_list);
// The socket path of a query-chardev "filename" ("disconnected:unix:PATH",
// "unix:PATH,server=on"), or nullopt for other chardevs or a connected
// client socket (QEMU then shows "unix:" without the path).
std::optional<std::string> chardev_socket_path(std::string_view filename);
// The last component of a QOM path: the bus name device_add takes.
std::string last_component(std::string_view qom_path);
// A PCI devfn as device_add's addr: "SS.F" in hex.
std::string pci_addr(std::uint32_t devfn);

}  // namespace qmp_parse

class qemu_replug {
 public:
  enum class outcome { reattached, already_attached, qemu_not_running, gave_up };

  struct target {
    std::string vm_name;
    std::string vhost_user_socket;
    std::string qmp_socket;
  };

  struct options {
    qmp_client::options qmp;
    std::chrono::milliseconds unplug_timeout{10000};
    std::chrono::milliseconds first_retry{500};
    std::chrono::milliseconds max_retry{30000};
    int max_attempts = 8;
  };

  // `attached` says whether QEMU is attached to the vhost-user socket now.
  qemu_replug(event_loop& loop, target t, std::function<bool()> attached, log_function log,
              options opts);
  qemu_replug(event_loop& loop, target t, std::function<bool()> attached, log_function log)
      : qemu_replug(loop, std::move(t), std::move(attached), std::move(log), options{}) {}
  qemu_replug(const qemu_replug&) = delete;
  qemu_replug& operator=(const qemu_replug&) = delete;
  ~qemu_replug();

  // Starts reattaching (a no-op while an attempt or a retry is pending).
  void start();
  bool running() const { return running_; }
  // Called when a start() has run its course (tests, logs).
  void on_finished(std::function<void(outcome)> done) { on_finished_ = std::move(done); }

 private:
  void begin_attempt();
  void list_devices();
  void list_container(std::vector<std::string> containers, std::size_t index);
  void describe_device(std::size_t index);
  void query_chardevs();
  void choose_device(const nlohmann::json& chardevs);
  void unplug();
  void on_event(const nlohmann::json& event);
  void remove_chardev();
  void add_chardev();
  void add_device();
  void step_failed(std::string_view step, const failure& why);
  void finish(outcome result);

  event_loop& loop_;
  target target_;
  std::function<bool()> attached_;
  log_function log_;
  options options_;
  std::function<void(outcome)> on_finished_;

  bool running_ = false;
  int attempts_ = 0;
  event_loop::clock::time_point started_;
  std::unique_ptr<qmp_client> qmp_;
  event_loop::timer_id retry_timer_ = 0;
  event_loop::timer_id unplug_timer_ = 0;
  std::vector<qemu_vsock_device> candidates_;
  // The device this start() unplugs (or unplugged in an earlier attempt).
  std::optional<qemu_vsock_device> device_;
  bool waiting_for_deleted_ = false;
  bool device_deleted_ = false;
  bool device_del_answered_ = false;
};

}  // namespace hvsock::daemon
