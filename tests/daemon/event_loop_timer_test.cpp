// event_loop's timers: order, cancellation (also from a callback), and a
// callback adding a timer. Short real deadlines; the loop stops itself from
// the last timer, so nothing here waits longer than it must.
#include "daemon/event_loop.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace hvsock::daemon {
namespace {

using namespace std::chrono_literals;

TEST(EventLoopTimerTest, FiresInDeadlineOrderAndSkipsCancelled) {
  auto loop = event_loop::create();
  ASSERT_TRUE(loop) << loop.error().message();
  event_loop& l = **loop;
  std::vector<int> fired;
  ASSERT_TRUE(l.add_timer(30ms, [&] { fired.push_back(3); }));
  auto cancelled = l.add_timer(10ms, [&] { fired.push_back(99); });
  ASSERT_TRUE(cancelled);
  ASSERT_TRUE(l.add_timer(20ms, [&] { fired.push_back(2); }));
  ASSERT_TRUE(l.add_timer(5ms, [&] { fired.push_back(1); }));
  ASSERT_TRUE(l.add_timer(40ms, [&] { l.stop(); }));
  l.cancel_timer(*cancelled);
  const auto start = event_loop::clock::now();
  ASSERT_TRUE(l.run());
  EXPECT_GE(event_loop::clock::now() - start, 40ms);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(l.timer_count(), 0u);
}

TEST(EventLoopTimerTest, CallbacksMayCancelAndAddTimers) {
  auto loop = event_loop::create();
  ASSERT_TRUE(loop) << loop.error().message();
  event_loop& l = **loop;
  std::vector<int> fired;
  event_loop::timer_id later = 0;
  ASSERT_TRUE(l.add_timer(1ms, [&] {
    fired.push_back(1);
    l.cancel_timer(later);
    ASSERT_TRUE(l.add_timer(5ms, [&] {
      fired.push_back(2);
      l.stop();
    }));
  }));
  later = *l.add_timer(3ms, [&] { fired.push_back(99); });
  ASSERT_TRUE(l.run());
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace hvsock::daemon
