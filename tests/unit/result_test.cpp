// Unit tests for hvsock::result, hvsock::failure and the hvsock error
// category.
#include <hvsock/error.hpp>
#include <hvsock/result.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>

namespace hvsock {
namespace {

// Every errc value, first to last.
constexpr errc kAllCodes[] = {
    errc::invalid_guid,
    errc::invalid_argument,
    errc::broadcast_not_allowed,
    errc::service_not_registered,
    errc::service_disabled,
    errc::connection_refused,
    errc::backlog_full,
    errc::network_unreachable,
    errc::unknown_partition,
    errc::parent_on_host,
    errc::address_in_use,
    errc::timed_out,
    errc::daemon_unavailable,
    errc::protocol_error,
    errc::no_vsock_port,
    errc::already_exists,
    errc::not_found,
    errc::limit_reached,
    errc::permission_denied,
    errc::not_connected,
    errc::would_block,
    errc::io_error,
};

result<int> half(int n) {
  if (n % 2 != 0) return failure(errc::invalid_argument, "half " + std::to_string(n) + ": odd");
  return n / 2;
}

result<void> check(bool ok) {
  if (!ok) return unexpected(make_error(errc::timed_out, "connect parent:x"));
  return {};
}

// --- result<T> ---------------------------------------------------------------------

TEST(Result, HoldsValue) {
  auto r = half(42);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), 21);
  EXPECT_EQ(*r, 21);
  EXPECT_EQ(r.value_or(-1), 21);
  r.value() = 5;
  EXPECT_EQ(*r, 5);
}

TEST(Result, HoldsError) {
  auto r = half(3);
  ASSERT_FALSE(r.has_value());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error().code(), make_error_code(errc::invalid_argument));
  EXPECT_EQ(r.error().message(), "half 3: odd");
  EXPECT_EQ(r.value_or(-1), -1);
}

TEST(Result, ValueThrowsSystemError) {
  const auto r = half(7);
  try {
    (void)r.value();
    FAIL() << "value() did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::invalid_argument));
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("half 7: odd"), std::string::npos) << e.what();
  }
  // Also on an rvalue and a non-const lvalue.
  EXPECT_THROW((void)half(9).value(), std::system_error);
  auto mutable_r = half(11);
  EXPECT_THROW((void)mutable_r.value(), std::system_error);
}

TEST(Result, ArrowAndMoveOnlyValues) {
  result<std::string> s = std::string("hello");
  EXPECT_EQ(s->size(), 5u);
  result<std::unique_ptr<int>> p = std::make_unique<int>(7);
  ASSERT_TRUE(p.has_value());
  std::unique_ptr<int> taken = std::move(p).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 7);
}

TEST(Result, ConstructFromUnexpected) {
  result<std::string> r = unexpected(failure(errc::not_found, "service web: not found"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), make_error_code(errc::not_found));
  EXPECT_EQ(r.error().message(), "service web: not found");
}

// --- result<void> ----------------------------------------------------------------------

TEST(ResultVoid, Success) {
  const auto r = check(true);
  EXPECT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_NO_THROW(r.value());
}

TEST(ResultVoid, Failure) {
  const auto r = check(false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), make_error_code(errc::timed_out));
  EXPECT_EQ(r.error().message(), "connect parent:x: timed out");
  try {
    r.value();
    FAIL() << "value() did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::timed_out));
    EXPECT_EQ(e.code(), std::errc::timed_out);
    EXPECT_NE(std::string(e.what()).find("connect parent:x: timed out"), std::string::npos)
        << e.what();
  }
}

TEST(ResultVoid, FromFailureDirectly) {
  result<void> r = failure(errc::not_connected, "write: not connected");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "write: not connected");
}

// --- the category -------------------------------------------------------------------------

TEST(ErrorCategory, Name) {
  EXPECT_STREQ(hvsock_category().name(), "hvsock");
  EXPECT_EQ(&make_error_code(errc::timed_out).category(), &hvsock_category());
  EXPECT_EQ(make_error_code(errc::timed_out).value(), static_cast<int>(errc::timed_out));
  // errc converts implicitly (is_error_code_enum).
  const std::error_code ec = errc::address_in_use;
  EXPECT_EQ(ec, make_error_code(errc::address_in_use));
  EXPECT_TRUE(ec);
}

TEST(ErrorCategory, EquivalentToPortableConditions) {
  EXPECT_EQ(make_error_code(errc::connection_refused), std::errc::connection_refused);
  EXPECT_EQ(make_error_code(errc::backlog_full), std::errc::connection_refused);
  EXPECT_EQ(make_error_code(errc::daemon_unavailable), std::errc::connection_refused);
  EXPECT_EQ(make_error_code(errc::address_in_use), std::errc::address_in_use);
  EXPECT_EQ(make_error_code(errc::timed_out), std::errc::timed_out);
  EXPECT_EQ(make_error_code(errc::service_disabled), std::errc::permission_denied);
  EXPECT_EQ(make_error_code(errc::service_not_registered), std::errc::permission_denied);
  EXPECT_EQ(make_error_code(errc::permission_denied), std::errc::permission_denied);
  EXPECT_EQ(make_error_code(errc::network_unreachable), std::errc::network_unreachable);
  EXPECT_EQ(make_error_code(errc::invalid_guid), std::errc::invalid_argument);
  EXPECT_EQ(make_error_code(errc::invalid_argument), std::errc::invalid_argument);
  EXPECT_EQ(make_error_code(errc::no_vsock_port), std::errc::invalid_argument);
  EXPECT_EQ(make_error_code(errc::protocol_error), std::errc::protocol_error);
  EXPECT_EQ(make_error_code(errc::not_connected), std::errc::not_connected);
  EXPECT_EQ(make_error_code(errc::would_block), std::errc::operation_would_block);
  EXPECT_EQ(make_error_code(errc::would_block), std::errc::resource_unavailable_try_again);
  EXPECT_EQ(make_error_code(errc::already_exists), std::errc::file_exists);
  EXPECT_EQ(make_error_code(errc::not_found), std::errc::no_such_file_or_directory);
}

TEST(ErrorCategory, NotEquivalentToOtherConditions) {
  EXPECT_NE(make_error_code(errc::connection_refused), std::errc::timed_out);
  EXPECT_NE(make_error_code(errc::timed_out), std::errc::connection_refused);
  EXPECT_NE(make_error_code(errc::service_disabled), std::errc::connection_refused);
  EXPECT_NE(make_error_code(errc::address_in_use), std::errc::invalid_argument);
  // Two hvsock codes that share a condition are still different codes.
  EXPECT_NE(make_error_code(errc::connection_refused), make_error_code(errc::backlog_full));
}

TEST(ErrorCategory, EveryCodeHasItsOwnMessage) {
  std::set<std::string> seen;
  for (errc e : kAllCodes) {
    const std::string message = make_error_code(e).message();
    EXPECT_FALSE(message.empty()) << static_cast<int>(e);
    EXPECT_EQ(message.find("unknown hvsock error"), std::string::npos)
        << static_cast<int>(e) << ": " << message;
    EXPECT_TRUE(seen.insert(message).second) << "duplicate message: " << message;
  }
  EXPECT_EQ(seen.size(), std::size(kAllCodes));
  // The list above is complete: it runs 1..io_error without gaps.
  EXPECT_EQ(static_cast<int>(kAllCodes[0]), 1);
  EXPECT_EQ(static_cast<int>(std::size(kAllCodes)), static_cast<int>(errc::io_error));
  for (std::size_t i = 0; i < std::size(kAllCodes); ++i)
    EXPECT_EQ(static_cast<int>(kAllCodes[i]), static_cast<int>(i) + 1);
}

TEST(ErrorCategory, EveryCodeMapsToAPortableCondition) {
  for (errc e : kAllCodes) {
    const std::error_condition cond = make_error_code(e).default_error_condition();
    EXPECT_EQ(&cond.category(), &std::generic_category()) << make_error_code(e).message();
  }
}

TEST(ErrorCategory, SpecificMessages) {
  EXPECT_EQ(make_error_code(errc::service_not_registered).message(), "service not registered");
  EXPECT_EQ(make_error_code(errc::timed_out).message(), "timed out");
  EXPECT_EQ(make_error_code(errc::invalid_guid).message(), "invalid GUID");
}

TEST(ErrorCategory, UnknownValueSaysSo) {
  const std::error_code ec(999, hvsock_category());
  EXPECT_NE(ec.message().find("999"), std::string::npos) << ec.message();
}

// --- failure and the helpers ---------------------------------------------------------------

TEST(Failure, DefaultIsNoError) {
  const failure f;
  EXPECT_FALSE(f.code());
  EXPECT_TRUE(f.message().empty());
}

TEST(Failure, WithContext) {
  const failure f(errc::timed_out, "timed out");
  const failure g = f.with_context("connect web:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ(g.message(), "connect web:00001388-facb-11e6-bd58-64006a7986d3: timed out");
  EXPECT_EQ(g.code(), make_error_code(errc::timed_out));
  // The original is unchanged; contexts stack outermost first.
  EXPECT_EQ(f.message(), "timed out");
  EXPECT_EQ(g.with_context("demo").message(),
            "demo: connect web:00001388-facb-11e6-bd58-64006a7986d3: timed out");
}

TEST(Failure, MakeErrorFormat) {
  const failure f = make_error(errc::service_not_registered,
                               "connect parent:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ(f.code(), make_error_code(errc::service_not_registered));
  EXPECT_EQ(f.message(),
            "connect parent:00001388-facb-11e6-bd58-64006a7986d3: service not registered");
  // No context: just the code's message, no leading ": ".
  EXPECT_EQ(make_error(errc::timed_out, "").message(), "timed out");
  // With a std::error_code.
  const failure g = make_error(std::make_error_code(std::errc::connection_reset), "read");
  EXPECT_EQ(g.code(), std::errc::connection_reset);
  EXPECT_EQ(g.message(), "read: " + std::make_error_code(std::errc::connection_reset).message());
}

TEST(Failure, MakeSystemErrorFormat) {
  const failure f = make_system_error(ENOENT, "connect /run/hvsock/host.sock");
  EXPECT_EQ(f.code(), std::error_code(ENOENT, std::system_category()));
  EXPECT_EQ(f.code(), std::errc::no_such_file_or_directory);
  EXPECT_EQ(f.message(), std::string("connect /run/hvsock/host.sock: ") + std::strerror(ENOENT));
  const failure g = make_system_error(EACCES, "bind");
  EXPECT_EQ(g.code(), std::errc::permission_denied);
  EXPECT_EQ(g.message(), std::string("bind: ") + std::strerror(EACCES));
}

TEST(Failure, ThrownSystemErrorKeepsCodeAndMessage) {
  const failure f = make_error(errc::address_in_use, "bind loopback:x");
  try {
    throw_error(f);
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::address_in_use));
    EXPECT_EQ(e.code(), std::errc::address_in_use);
    EXPECT_NE(std::string(e.what()).find("bind loopback:x: address already in use"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace hvsock
