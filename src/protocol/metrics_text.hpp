// metrics_text: hvsockd's metrics in the Prometheus text exposition format
// (version 0.0.4), rendered from the management "stats" result
// (docs/management-protocol.md). The one renderer behind both
// `hvsock stats --format prometheus` and hvsockd's `GET /metrics`, so the two
// always print the same families; docs/operations.md lists them.
//
// Every family gets its HELP and TYPE lines, even with no samples; label
// values are escaped as the format requires. Fields missing from `stats`
// (an older daemon) leave their samples out rather than inventing zeros.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hvsock::detail {

inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

// A label value as it goes between the double quotes: backslash, double
// quote and line feed escaped (\\, \", \n); everything else as is.
std::string escape_label_value(std::string_view value);

// The whole exposition, ending with a newline.
std::string render_prometheus_metrics(const nlohmann::json& stats);

}  // namespace hvsock::detail
