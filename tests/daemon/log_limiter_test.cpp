// log_limiter with an injected clock: the per-key budget, the summary line
// when a window ends (by flush or by the key's next line), and keys that do
// not share budgets. No sleeps: time moves only when the test moves it.
#include "daemon/log_limiter.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hvsock::daemon {
namespace {

using namespace std::chrono_literals;
using clock_type = log_limiter::clock;

class LogLimiterTest : public ::testing::Test {
 protected:
  log_limiter make(std::size_t lines = 10, clock_type::duration window = 1s) {
    return log_limiter(
        "refusals suppressed", log_level::info,
        [this](log_level level, const std::string& line) {
          levels.push_back(level);
          logged.push_back(line);
        },
        {lines, window}, [this] { return now; });
  }

  clock_type::time_point now{std::chrono::hours(1)};
  std::vector<std::string> logged;
  std::vector<log_level> levels;  // one per logged line
};

TEST_F(LogLimiterTest, LogsUpToTheBudgetThenCounts) {
  auto limiter = make();
  for (int i = 0; i < 200; ++i) limiter.log("web", "web: refused " + std::to_string(i));
  ASSERT_EQ(logged.size(), 10u);
  EXPECT_EQ(logged.front(), "web: refused 0");
  EXPECT_EQ(logged.back(), "web: refused 9");
  ASSERT_TRUE(limiter.next_flush());
  EXPECT_EQ(*limiter.next_flush(), now + 1s);
}

TEST_F(LogLimiterTest, FlushLogsTheSummaryOnlyWhenTheWindowEnds) {
  auto limiter = make();
  for (int i = 0; i < 25; ++i) limiter.log("web", "web: refused");
  now += 999ms;
  limiter.flush();
  EXPECT_EQ(logged.size(), 10u);
  now += 1ms;
  limiter.flush();
  ASSERT_EQ(logged.size(), 11u);
  EXPECT_EQ(logged.back(), "web: ... and 15 more refusals suppressed");
  EXPECT_EQ(levels, std::vector<log_level>(11, log_level::info));  // summaries too
  EXPECT_EQ(limiter.keys(), 0u);
  EXPECT_FALSE(limiter.next_flush());
  limiter.flush();  // said once
  EXPECT_EQ(logged.size(), 11u);
}

TEST_F(LogLimiterTest, NextLineAfterTheWindowLogsTheSummaryFirst) {
  auto limiter = make(2);
  for (int i = 0; i < 5; ++i) limiter.log("web", "old");
  now += 2s;
  EXPECT_TRUE(limiter.log("web", "new"));
  EXPECT_EQ(logged, (std::vector<std::string>{"old", "old",
                                              "web: ... and 3 more refusals suppressed", "new"}));
}

TEST_F(LogLimiterTest, NoSummaryWithoutSuppressedLines) {
  auto limiter = make();
  for (int i = 0; i < 10; ++i) limiter.log("web", "line");
  EXPECT_FALSE(limiter.next_flush());
  now += 5s;
  limiter.flush();
  EXPECT_EQ(logged.size(), 10u);
  EXPECT_EQ(limiter.keys(), 0u);  // forgotten
}

TEST_F(LogLimiterTest, KeysHaveTheirOwnBudgetsAndWindows) {
  auto limiter = make(1);
  EXPECT_TRUE(limiter.log("web", "web 1"));
  EXPECT_FALSE(limiter.log("web", "web 2"));
  now += 500ms;
  EXPECT_TRUE(limiter.log("db", "db 1"));
  EXPECT_FALSE(limiter.log("db", "db 2"));
  EXPECT_FALSE(limiter.log("db", "db 3"));
  EXPECT_EQ(*limiter.next_flush(), now + 500ms);  // web's window ends first
  now += 500ms;
  limiter.flush();
  EXPECT_EQ(logged.back(), "web: ... and 1 more refusals suppressed");
  EXPECT_EQ(*limiter.next_flush(), now + 500ms);
  now += 500ms;
  limiter.flush();
  EXPECT_EQ(logged.back(), "db: ... and 2 more refusals suppressed");
  EXPECT_EQ(logged.size(), 4u);
}

}  // namespace
}  // namespace hvsock::daemon
