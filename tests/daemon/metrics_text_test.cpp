// metrics_text: the Prometheus exposition rendered from a stats result:
// HELP/TYPE for every family, samples with escaped labels, fields missing
// from the result left out.
#include "protocol/metrics_text.hpp"

#include <gtest/gtest.h>

#include <string>

namespace hvsock::detail {
namespace {

using nlohmann::json;

json sample_stats() {
  return json::parse(R"({
    "services": [{"id": "00001388-facb-11e6-bd58-64006a7986d3", "name": "say \"hi\" \\ now",
                  "accepted": 3, "active": 1,
                  "refused": {"disabled": 2, "no_listener": 1, "backlog_full": 0,
                              "unreachable": 0, "type_mismatch": 5, "other": 0}}],
    "unregistered_refused": 4,
    "partitions": [
      {"name": "host", "id": "11111111-2222-3333-4444-555555555555", "kind": "host",
       "backend": "emulated", "connections": {"outbound": 5, "inbound": 6}},
      {"name": "q", "id": "aaaaaaaa-2222-3333-4444-555555555555", "kind": "vm",
       "backend": "qemu", "guest_attached": true, "connections": {"outbound": 0, "inbound": 7}}],
    "switch": {"version": "1.2.3", "uptime_seconds": 12.5, "partitions": 2, "services": 1,
               "control_clients": 8, "management_clients": 1}
  })");
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(MetricsText, EscapesBackslashQuoteAndNewline) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value(R"(a\b)"), R"(a\\b)");
  EXPECT_EQ(escape_label_value(R"(say "hi")"), R"(say \"hi\")");
  EXPECT_EQ(escape_label_value("two\nlines"), R"(two\nlines)");
  EXPECT_EQ(escape_label_value("tab\tstays"), "tab\tstays");
}

TEST(MetricsText, ServiceFamiliesCarryGuidAndEscapedName) {
  const std::string text = render_prometheus_metrics(sample_stats());
  const std::string labels =
      R"(service_id="00001388-facb-11e6-bd58-64006a7986d3",service="say \"hi\" \\ now")";
  EXPECT_TRUE(has_line(text, "# TYPE hvsock_service_connections_accepted_total counter"));
  EXPECT_TRUE(has_line(text, "hvsock_service_connections_accepted_total{" + labels + "} 3"));
  EXPECT_TRUE(has_line(text, "# TYPE hvsock_service_connections_active gauge"));
  EXPECT_TRUE(has_line(text, "hvsock_service_connections_active{" + labels + "} 1"));
  EXPECT_TRUE(has_line(text, "# TYPE hvsock_service_connections_refused_total counter"));
  EXPECT_TRUE(has_line(
      text, "hvsock_service_connections_refused_total{" + labels + R"(,reason="disabled"} 2)"));
  EXPECT_TRUE(has_line(
      text, "hvsock_service_connections_refused_total{" + labels + R"(,reason="other"} 0)"));
  EXPECT_TRUE(has_line(text, "hvsock_service_connections_refused_total{" + labels +
                                 R"(,reason="type_mismatch"} 5)"));
  EXPECT_TRUE(has_line(text, "hvsock_unregistered_service_connections_refused_total 4"));
}

TEST(MetricsText, PartitionAndSwitchFamilies) {
  const std::string text = render_prometheus_metrics(sample_stats());
  EXPECT_TRUE(has_line(
      text,
      R"(hvsock_partition_connections_total{partition="host",partition_id="11111111-2222-3333-4444-555555555555",direction="outbound"} 5)"));
  EXPECT_TRUE(has_line(
      text,
      R"(hvsock_partition_connections_total{partition="q",partition_id="aaaaaaaa-2222-3333-4444-555555555555",direction="inbound"} 7)"));
  EXPECT_TRUE(has_line(
      text,
      R"(hvsock_partition_guest_attached{partition="q",partition_id="aaaaaaaa-2222-3333-4444-555555555555"} 1)"));
  // Only QEMU partitions have the gauge.
  EXPECT_EQ(text.find(R"(hvsock_partition_guest_attached{partition="host")"), std::string::npos);
  EXPECT_TRUE(has_line(text, "hvsock_partitions 2"));
  EXPECT_TRUE(has_line(text, "hvsock_services 1"));
  EXPECT_TRUE(has_line(text, "hvsock_control_clients 8"));
  EXPECT_TRUE(has_line(text, "hvsock_management_clients 1"));
  EXPECT_TRUE(has_line(text, "hvsock_uptime_seconds 12.500"));
  EXPECT_TRUE(has_line(text, R"(hvsock_build_info{version="1.2.3"} 1)"));
}

TEST(MetricsText, EveryFamilyHasHelpThenTypeEvenWithoutSamples) {
  // An older daemon's reply: no partitions, no switch section.
  const std::string text = render_prometheus_metrics(json::parse(R"({"services": []})"));
  for (const char* family :
       {"hvsock_service_connections_accepted_total", "hvsock_service_connections_refused_total",
        "hvsock_service_connections_active",
        "hvsock_unregistered_service_connections_refused_total",
        "hvsock_partition_connections_total", "hvsock_partition_guest_attached",
        "hvsock_partitions", "hvsock_services", "hvsock_control_clients",
        "hvsock_management_clients", "hvsock_uptime_seconds", "hvsock_build_info"}) {
    const std::size_t help = text.find(std::string("# HELP ") + family + " ");
    const std::size_t type = text.find(std::string("# TYPE ") + family + " ");
    ASSERT_NE(help, std::string::npos) << family;
    ASSERT_NE(type, std::string::npos) << family;
    EXPECT_LT(help, type) << family;
  }
  // Nothing but comments: no zeros invented for missing fields.
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    EXPECT_EQ(text[start], '#') << text.substr(start, end - start);
    start = end + 1;
  }
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace hvsock::detail
