// qemu_replug: the QMP conversation that re-plugs a QEMU's vhost-user-vsock
// device, step by step; each step's reply handler starts the next one.
#include "daemon/qemu_replug.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

namespace hvsock::daemon {

using json = nlohmann::json;

namespace qmp_parse {

std::vector<std::pair<std::string, std::string>> vsock_children(const json& qom_list) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!qom_list.is_array()) return out;
  constexpr std::string_view prefix = "child<";
  for (const json& entry : qom_list) {
    if (!entry.is_object()) continue;
    auto name = entry.find("name");
    auto type = entry.find("type");
    if (name == entry.end() || type == entry.end() || !name->is_string() || !type->is_string())
      continue;
    const std::string& t = type->get_ref<const std::string&>();
    if (!t.starts_with(prefix) || !t.ends_with('>')) continue;
    std::string driver = t.substr(prefix.size(), t.size() - prefix.size() - 1);
    if (!driver.starts_with("vhost-user-vsock")) continue;
    out.emplace_back(name->get<std::string>(), std::move(driver));
  }
  return out;
}

std::optional<std::string> chardev_socket_path(std::string_view filename) {
  constexpr std::string_view disconnected = "disconnected:", unix_prefix = "unix:";
  if (filename.starts_with(disconnected)) filename.remove_prefix(disconnected.size());
  if (!filename.starts_with(unix_prefix)) return std::nullopt;
  filename.remove_prefix(unix_prefix.size());
  filename = filename.substr(0, filename.find(','));  // ",server=on" and the like
  if (filename.empty()) return std::nullopt;
  return std::string(filename);
}

std::string last_component(std::string_view qom_path) {
  const auto slash = qom_path.rfind('/');
  return std::string(slash == std::string_view::npos ? qom_path : qom_path.substr(slash + 1));
}

std::string pci_addr(std::uint32_t devfn) {
  return fmt::format("{:02x}.{:x}", (devfn >> 3) & 0x1f, devfn & 7);
}

}  // namespace qmp_parse

namespace {

constexpr std::string_view named_devices = "/machine/peripheral";
constexpr std::string_view anonymous_devices = "/machine/peripheral-anon";

std::string seconds(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1000.0);
}

}  // namespace

qemu_replug::qemu_replug(event_loop& loop, target t, std::function<bool()> attached,
                         log_function log, options opts)
    : loop_(loop),
      target_(std::move(t)),
      attached_(std::move(attached)),
      log_(std::move(log)),
      options_(opts) {}

qemu_replug::~qemu_replug() {
  loop_.cancel_timer(retry_timer_);
  loop_.cancel_timer(unplug_timer_);
}

void qemu_replug::start() {
  if (running_) return;
  running_ = true;
  attempts_ = 0;
  device_.reset();
  started_ = event_loop::clock::now();
  begin_attempt();
}

void qemu_replug::begin_attempt() {
  retry_timer_ = 0;
  ++attempts_;
  if (attached_()) {
    finish(outcome::already_attached);
    return;
  }
  candidates_.clear();
  waiting_for_deleted_ = device_deleted_ = device_del_answered_ = false;
  auto client = qmp_client::connect(
      loop_, target_.qmp_socket,
      qmp_client::callbacks{.ready = [this] { list_devices(); },
                            .on_event = [this](const json& event) { on_event(event); },
                            .on_failure = [this](const failure& why) { step_failed("QMP", why); }},
      options_.qmp);
  if (!client) {
    step_failed("QMP", client.error());
    return;
  }
  qmp_ = std::move(*client);
}

void qemu_replug::list_devices() {
  list_container({std::string(named_devices), std::string(anonymous_devices)}, 0);
}

void qemu_replug::list_container(std::vector<std::string> containers, std::size_t index) {
  if (index == containers.size()) {
    describe_device(0);
    return;
  }
  const std::string path = containers[index];
  qmp_->execute("qom-list", json{{"path", path}},
                [this, path, containers = std::move(containers), index](result<json> reply) {
                  // A QEMU without anonymous devices has no such container.
                  if (reply) {
                    for (auto& [name, driver] : qmp_parse::vsock_children(*reply)) {
                      qemu_vsock_device d;
                      d.qom_path = path + "/" + name;
                      d.driver = std::move(driver);
                      if (path == named_devices) d.id = name;
                      candidates_.push_back(std::move(d));
                    }
                  }
                  list_container(std::move(containers), index + 1);
                });
}

void qemu_replug::describe_device(std::size_t index) {
  if (index == candidates_.size()) {
    query_chardevs();
    return;
  }
  const std::string path = candidates_[index].qom_path;
  qmp_->execute(
      "qom-get", json{{"path", path}, {"property", "chardev"}}, [this, path, index](auto chardev) {
        if (!chardev || !chardev->is_string()) {
          step_failed(fmt::format("qom-get {} chardev", path),
                      chardev ? failure(errc::protocol_error, "not a string: " + chardev->dump())
                              : chardev.error());
          return;
        }
        candidates_[index].chardev = chardev->template get<std::string>();
        qmp_->execute(
            "qom-get", json{{"path", path}, {"property", "parent_bus"}},
            [this, path, index](auto bus) {
              if (!bus || !bus->is_string()) {
                step_failed(fmt::format("qom-get {} parent_bus", path),
                            bus ? failure(errc::protocol_error, "not a string: " + bus->dump())
                                : bus.error());
                return;
              }
              candidates_[index].bus =
                  qmp_parse::last_component(bus->template get_ref<const std::string&>());
              // Only PCI devices have an addr; others are plugged without one.
              qmp_->execute("qom-get", json{{"path", path}, {"property", "addr"}},
                            [this, index](auto addr) {
                              if (addr && addr->is_number_integer() && *addr >= 0 && *addr < 256)
                                candidates_[index].addr =
                                    qmp_parse::pci_addr(addr->template get<std::uint32_t>());
                              describe_device(index + 1);
                            });
            });
      });
}

void qemu_replug::query_chardevs() {
  qmp_->execute("query-chardev", json(nullptr), [this](result<json> reply) {
    if (!reply) {
      step_failed("query-chardev", reply.error());
      return;
    }
    choose_device(*reply);
  });
}

void qemu_replug::choose_device(const json& chardevs) {
  std::map<std::string, std::string> path_by_label;
  if (chardevs.is_array())
    for (const json& c : chardevs)
      if (c.is_object() && c.contains("label") && c["label"].is_string() &&
          c.contains("filename") && c["filename"].is_string())
        if (auto path = qmp_parse::chardev_socket_path(c["filename"].get<std::string>()))
          path_by_label[c["label"].get<std::string>()] = *path;

  const auto mine = std::find_if(candidates_.begin(), candidates_.end(), [&](const auto& d) {
    auto it = path_by_label.find(d.chardev);
    return it != path_by_label.end() && it->second == target_.vhost_user_socket;
  });
  if (mine != candidates_.end()) {
    device_ = *mine;
  } else if (candidates_.size() == 1) {
    // QEMU shows no path for a connected socket, and a path given to QEMU
    // in another spelling (a symlink, a relative path) would not match.
    device_ = candidates_.front();
  } else if (device_) {
    // Unplugged by an earlier attempt that failed further on.
    remove_chardev();
    return;
  } else {
    step_failed("finding the device",
                failure(errc::not_found,
                        candidates_.empty()
                            ? "this QEMU has no vhost-user-vsock device"
                            : fmt::format("none of this QEMU's {} vhost-user-vsock devices uses "
                                          "the socket {}",
                                          candidates_.size(), target_.vhost_user_socket)));
    return;
  }
  unplug();
}

void qemu_replug::unplug() {
  if (attached_()) {  // a new QEMU came meanwhile
    finish(outcome::already_attached);
    return;
  }
  waiting_for_deleted_ = true;
  const std::string which = device_->id.empty() ? device_->qom_path : device_->id;
  qmp_->execute("device_del", json{{"id", which}}, [this](result<json> reply) {
    if (!reply) {
      waiting_for_deleted_ = false;
      step_failed("device_del", reply.error());
      return;
    }
    device_del_answered_ = true;
    if (device_deleted_) {
      remove_chardev();
      return;
    }
    auto timer = loop_.add_timer(options_.unplug_timeout, [this] {
      unplug_timer_ = 0;
      waiting_for_deleted_ = false;
      step_failed("device_del",
                  failure(errc::timed_out,
                          fmt::format("the guest did not release the device within {} (does its "
                                      "kernel handle PCI hot-unplug? acpiphp or pciehp)",
                                      seconds(options_.unplug_timeout))));
    });
    if (!timer) {
      step_failed("device_del", timer.error());
      return;
    }
    unplug_timer_ = *timer;
  });
}

void qemu_replug::on_event(const json& event) {
  if (!waiting_for_deleted_ || event.value("event", "") != "DEVICE_DELETED") return;
  auto data = event.find("data");
  if (data == event.end() || !data->is_object()) return;
  // QEMU also announces the device's virtio-backend child; only the device
  // itself counts.
  const bool same_path = data->value("path", "") == device_->qom_path;
  const bool same_id = !device_->id.empty() && data->value("device", "") == device_->id;
  if (!same_path && !same_id) return;
  waiting_for_deleted_ = false;
  device_deleted_ = true;
  if (!device_del_answered_) return;  // the reply comes next
  loop_.cancel_timer(std::exchange(unplug_timer_, 0));
  remove_chardev();
}

void qemu_replug::remove_chardev() {
  // A failure here is not fatal: the chardev may be gone already (an earlier
  // attempt), and if it is still there chardev-add says so clearly.
  qmp_->execute("chardev-remove", json{{"id", device_->chardev}},
                [this](result<json>) { add_chardev(); });
}

void qemu_replug::add_chardev() {
  const json backend{
      {"type", "socket"},
      {"data",
       {{"addr", {{"type", "unix"}, {"data", {{"path", target_.vhost_user_socket}}}}},
        {"server", false}}}};
  qmp_->execute("chardev-add", json{{"id", device_->chardev}, {"backend", backend}},
                [this](result<json> reply) {
                  if (!reply) {
                    step_failed("chardev-add", reply.error());
                    return;
                  }
                  add_device();
                });
}

void qemu_replug::add_device() {
  json arguments{{"driver", device_->driver}, {"chardev", device_->chardev}, {"bus", device_->bus}};
  if (!device_->id.empty()) arguments["id"] = device_->id;
  if (device_->addr) arguments["addr"] = *device_->addr;
  qmp_->execute("device_add", std::move(arguments), [this](result<json> reply) {
    if (!reply) {
      step_failed("device_add", reply.error());
      return;
    }
    if (!attached_()) {
      step_failed("device_add",
                  failure(errc::not_connected,
                          fmt::format("QEMU plugged the device in but did not attach to {}",
                                      target_.vhost_user_socket)));
      return;
    }
    finish(outcome::reattached);
  });
}

void qemu_replug::step_failed(std::string_view step, const failure& why) {
  qmp_.reset();  // may be running one of its callbacks: it allows that
  loop_.cancel_timer(std::exchange(unplug_timer_, 0));
  if (why.code() == errc::daemon_unavailable) {
    log_(log_level::info, fmt::format("{}: {}; its QEMU attaches by itself when it starts",
                                      target_.vm_name, why.message()));
    finish(outcome::qemu_not_running);
    return;
  }
  if (attempts_ >= options_.max_attempts) {
    log_(log_level::error,
         fmt::format("{}: reattaching through QMP: {}: {}; giving up after {} attempts (restart "
                     "its QEMU to attach it)",
                     target_.vm_name, step, why.message(), attempts_));
    finish(outcome::gave_up);
    return;
  }
  auto delay = options_.first_retry;
  for (int i = 1; i < attempts_ && delay < options_.max_retry; ++i) delay *= 2;
  delay = std::min(delay, options_.max_retry);
  log_(log_level::warning,
       fmt::format("{}: reattaching through QMP: {}: {}; retrying in {} (attempt {} of {})",
                   target_.vm_name, step, why.message(), seconds(delay), attempts_,
                   options_.max_attempts));
  auto timer = loop_.add_timer(delay, [this] { begin_attempt(); });
  if (!timer) {
    log_(log_level::error,
         fmt::format("{}: reattaching through QMP: {}", target_.vm_name, timer.error().message()));
    finish(outcome::gave_up);
    return;
  }
  retry_timer_ = *timer;
}

void qemu_replug::finish(outcome result) {
  qmp_.reset();
  loop_.cancel_timer(std::exchange(retry_timer_, 0));
  loop_.cancel_timer(std::exchange(unplug_timer_, 0));
  running_ = false;
  if (result == outcome::reattached) {
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(event_loop::clock::now() - started_);
    log_(log_level::notice,
         fmt::format("{}: QEMU reattached through QMP ({}): {} {} re-plugged in {} ms",
                     target_.vm_name, target_.qmp_socket, device_->driver,
                     device_->id.empty() ? device_->qom_path : device_->id, took.count()));
  }
  if (on_finished_) on_finished_(result);
}

}  // namespace hvsock::daemon
