// Which transport a call uses. Only transport objects are made here: no
// connect is attempted with the kernel transport (no AF_VSOCK socket may be
// opened on the build machine).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <hvsock/hvsock.hpp>

#include "transport/transport.hpp"

namespace hvsock::detail {
namespace {

// Sets HVSOCK_TRANSPORT for one test and restores it after.
class scoped_transport_env {
 public:
  explicit scoped_transport_env(const char* value) {
    if (const char* old = std::getenv(env_transport)) saved_ = old;
    if (value != nullptr) {
      ::setenv(env_transport, value, 1);
    } else {
      ::unsetenv(env_transport);
    }
  }
  ~scoped_transport_env() {
    if (saved_) {
      ::setenv(env_transport, saved_->c_str(), 1);
    } else {
      ::unsetenv(env_transport);
    }
  }

 private:
  std::optional<std::string> saved_;
};

TEST(TransportSelection, AGivenControlSocketIsEmulatedWhateverTheEnvironment) {
  scoped_transport_env env("kernel");
  auto t = select_transport("/tmp/some/partition.sock");
  ASSERT_TRUE(t);
  EXPECT_EQ((*t)->name(), "emulated");
}

TEST(TransportSelection, EnvironmentForcesEither) {
  {
    scoped_transport_env env("kernel");
    auto t = select_transport("");
    ASSERT_TRUE(t);
    EXPECT_EQ((*t)->name(), "kernel");
  }
  {
    scoped_transport_env env("emulated");
    auto t = select_transport("");
    ASSERT_TRUE(t);
    EXPECT_EQ((*t)->name(), "emulated");
  }
}

TEST(TransportSelection, UnknownValueIsAClearErrorBeforeAnySocket) {
  scoped_transport_env env("carrier-pigeon");
  auto t = select_transport("");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), make_error_code(errc::invalid_argument));
  EXPECT_NE(t.error().message().find("HVSOCK_TRANSPORT=carrier-pigeon"), std::string::npos);

  auto s = stream::connect({vm_id_parent, service_id_from_port(1)});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::invalid_argument));
  EXPECT_NE(s.error().message().find("connect parent:"), std::string::npos) << s.error().message();
  auto l = listener::listen({vm_id_wildcard, service_id_from_port(1)});
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), make_error_code(errc::invalid_argument));
}

}  // namespace
}  // namespace hvsock::detail
