// hvsock stats: per-service counters, by ElementName; as a table, the
// daemon's JSON, or Prometheus text (the same as hvsockd's GET /metrics).
#include <iostream>

#include "cli_common.hpp"
#include "protocol/metrics_text.hpp"

namespace hvsock::cli {

void add_stats_command(CLI::App& app, global_options& options) {
  auto json = std::make_shared<bool>(false);
  auto format = std::make_shared<std::string>("table");
  auto* stats = app.add_subcommand("stats", "Per-service connection counters, by ElementName");
  stats
      ->add_option("--format", *format,
                   "table, json, or prometheus (the text hvsockd --metrics-listen serves)")
      ->check(CLI::IsMember({"table", "json", "prometheus"}))
      ->capture_default_str();
  stats->add_flag("--json", *json, "print JSON (--format json)");
  stats->callback([json, format, &options] {
    auto client = open_management(options);
    const auto s = must(client.call("stats"));
    if (*json || *format == "json") {
      std::cout << s.dump(2) << "\n";
      return;
    }
    if (*format == "prometheus") {
      std::cout << detail::render_prometheus_metrics(s);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& svc : s.value("services", nlohmann::json::array())) {
      const auto refused = svc.value("refused", nlohmann::json::object());
      auto count = [&](const char* key) { return std::to_string(refused.value(key, 0)); };
      rows.push_back({svc.value("name", ""), std::to_string(svc.value("accepted", 0)),
                      std::to_string(svc.value("accepted_seqpacket", 0)),
                      std::to_string(svc.value("active", 0)), count("disabled"),
                      count("no_listener"), count("backlog_full"), count("unreachable"),
                      count("type_mismatch")});
    }
    print_table({"SERVICE", "ACCEPTED", "SEQPACKET", "ACTIVE", "REFUSED:DISABLED", "NO-LISTENER",
                 "BACKLOG-FULL", "UNREACHABLE", "TYPE-MISMATCH"},
                rows);
    std::cout << "refused for unregistered services: " << s.value("unregistered_refused", 0)
              << "\n";
  });
}

}  // namespace hvsock::cli
