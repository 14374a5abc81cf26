// metrics_text: the stats result as Prometheus text. No fmt here: the
// static CLI links this too.
#include "protocol/metrics_text.hpp"

#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

namespace hvsock::detail {
namespace {

using json = nlohmann::json;
using labels = std::vector<std::pair<std::string_view, std::string>>;

// One metric family: HELP and TYPE once, then its samples.
class family {
 public:
  family(std::string& out, std::string_view name, std::string_view type, std::string_view help)
      : out_(out), name_(name) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  void sample(const labels& l, std::string_view value) {
    out_.append(name_);
    if (!l.empty()) {
      out_.push_back('{');
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (i > 0) out_.push_back(',');
        out_.append(l[i].first).append("=\"").append(escape_label_value(l[i].second)).append("\"");
      }
      out_.push_back('}');
    }
    out_.append(" ").append(value).append("\n");
  }

 private:
  std::string& out_;
  std::string_view name_;
};

// Counts are unsigned integers in the reply; anything else is left out.
bool count_of(const json& object, const char* key, std::string& text) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) return false;
  text = std::to_string(it->get<std::uint64_t>());
  return true;
}

std::string string_of(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& member(const json& object, const char* key, const json& fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it == object.end() ? fallback : *it;
}

void render_services(std::string& out, const json& stats) {
  static const json none = json::array();
  const json& services = member(stats, "services", none);
  auto service_labels = [](const json& s) {
    return labels{{"service_id", string_of(s, "id")}, {"service", string_of(s, "name")}};
  };
  std::string value;
  {
    family f(out, "hvsock_service_connections_accepted_total", "counter",
             "Connections to the service that a listener took, by service GUID and ElementName.");
    for (const json& s : services)
      if (count_of(s, "accepted", value)) f.sample(service_labels(s), value);
  }
  {
    family f(out, "hvsock_service_seqpacket_connections_accepted_total", "counter",
             "Of the accepted connections, those of type seqpacket (message boundaries kept).");
    for (const json& s : services)
      if (count_of(s, "accepted_seqpacket", value)) f.sample(service_labels(s), value);
  }
  {
    family f(out, "hvsock_service_connections_refused_total", "counter",
             "Connections to the service that were refused, by reason (disabled, no_listener, "
             "backlog_full, unreachable, type_mismatch, other).");
    for (const json& s : services) {
      static const json no_refusals = json::object();
      const json& refused = member(s, "refused", no_refusals);
      for (const char* reason :
           {"disabled", "no_listener", "backlog_full", "unreachable", "type_mismatch", "other"}) {
        if (!refused.is_object() || !count_of(refused, reason, value)) continue;
        labels l = service_labels(s);
        l.emplace_back("reason", reason);
        f.sample(l, value);
      }
    }
  }
  {
    family f(out, "hvsock_service_connections_active", "gauge",
             "Brokered connections to the service of which at least one end is still open.");
    for (const json& s : services)
      if (count_of(s, "active", value)) f.sample(service_labels(s), value);
  }
  {
    family f(out, "hvsock_unregistered_service_connections_refused_total", "counter",
             "Connections refused because their service is not registered (all such services "
             "together).");
    if (stats.is_object() && count_of(stats, "unregistered_refused", value)) f.sample({}, value);
  }
}

void render_partitions(std::string& out, const json& stats) {
  static const json none = json::array();
  const json& partitions = member(stats, "partitions", none);
  auto partition_labels = [](const json& p) {
    return labels{{"partition", string_of(p, "name")}, {"partition_id", string_of(p, "id")}};
  };
  std::string value;
  {
    family f(out, "hvsock_partition_connections_total", "counter",
             "Brokered connections a partition made (direction=\"outbound\") and its listeners "
             "took (direction=\"inbound\").");
    for (const json& p : partitions) {
      static const json no_counts = json::object();
      const json& connections = member(p, "connections", no_counts);
      for (const char* direction : {"outbound", "inbound"}) {
        if (!connections.is_object() || !count_of(connections, direction, value)) continue;
        labels l = partition_labels(p);
        l.emplace_back("direction", direction);
        f.sample(l, value);
      }
    }
  }
  {
    family f(out, "hvsock_partition_guest_attached", "gauge",
             "1 when a QEMU is attached to the QEMU partition's vhost-user socket, else 0 (QEMU "
             "partitions only).");
    for (const json& p : partitions) {
      auto it = p.is_object() ? p.find("guest_attached") : p.end();
      if (p.is_object() && it != p.end() && it->is_boolean())
        f.sample(partition_labels(p), it->get<bool>() ? "1" : "0");
    }
  }
}

void render_switch(std::string& out, const json& stats) {
  static const json none = json::object();
  const json& sw = member(stats, "switch", none);
  const bool present = sw.is_object();
  std::string value;
  const struct {
    const char* name;
    const char* key;
    const char* help;
  } gauges[] = {
      {"hvsock_partitions", "partitions", "Partitions the switch has, the host included."},
      {"hvsock_services", "services", "Services in the registry."},
      {"hvsock_control_clients", "control_clients",
       "Control connections open now (listeners, connects, lookups)."},
      {"hvsock_management_clients", "management_clients", "Management connections open now."},
  };
  for (const auto& g : gauges) {
    family f(out, g.name, "gauge", g.help);
    if (present && count_of(sw, g.key, value)) f.sample({}, value);
  }
  {
    family f(out, "hvsock_uptime_seconds", "gauge", "Seconds since hvsockd started.");
    auto it = present ? sw.find("uptime_seconds") : sw.end();
    if (present && it != sw.end() && it->is_number()) {
      char text[64];
      std::snprintf(text, sizeof text, "%.3f", it->get<double>());
      f.sample({}, text);
    }
  }
  {
    family f(out, "hvsock_build_info", "gauge", "Always 1; the label is hvsockd's version.");
    if (present && sw.contains("version")) f.sample({{"version", string_of(sw, "version")}}, "1");
  }
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_prometheus_metrics(const nlohmann::json& stats) {
  std::string out;
  render_services(out, stats);
  render_partitions(out, stats);
  render_switch(out, stats);
  return out;
}

}  // namespace hvsock::detail
