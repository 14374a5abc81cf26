// The agent protocol's frames and payloads: round trips, and every kind of
// malformed input refused as a protocol error (an agent or client must never
// trust the other side's lengths).
#include <gtest/gtest.h>

#include <cstring>

#include "agent/agent_protocol.hpp"

namespace hvsock::agent {
namespace {

std::vector<frame> frames_of(const std::vector<std::byte>& bytes, std::size_t piece) {
  frame_reader reader;
  std::vector<frame> out;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    reader.feed(std::span(bytes).subspan(at, std::min(piece, bytes.size() - at)));
    for (;;) {
      auto f = reader.next();
      EXPECT_TRUE(f) << f.error().message();
      if (!f || !*f) break;
      out.push_back(std::move(**f));
    }
  }
  return out;
}

TEST(AgentProtocol, ExecRequestRoundTripsEvenOneByteAtATime) {
  exec_request r{{"sh", "-c", "echo hi"}, {"A=1", "B=two words"}, "/tmp", true, 24, 80};
  auto bytes = encode_exec(r);
  const auto more = encode(frame_type::stdin_data, std::as_bytes(std::span("xyz", 3)));
  bytes.insert(bytes.end(), more.begin(), more.end());
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, bytes.size()}) {
    const auto frames = frames_of(bytes, piece);
    ASSERT_EQ(frames.size(), 2u) << piece;
    ASSERT_EQ(frames[0].type, frame_type::exec);
    auto back = decode_exec(frames[0].payload);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(back->argv, r.argv);
    EXPECT_EQ(back->env, r.env);
    EXPECT_EQ(back->cwd, "/tmp");
    EXPECT_TRUE(back->tty);
    EXPECT_EQ(back->rows, 24);
    EXPECT_EQ(back->columns, 80);
    EXPECT_EQ(frames[1].type, frame_type::stdin_data);
    EXPECT_EQ(frames[1].payload.size(), 3u);
  }
}

TEST(AgentProtocol, SmallPayloadsRoundTrip) {
  auto hello = frames_of(encode_hello(), 3);
  ASSERT_EQ(hello.size(), 1u);
  EXPECT_EQ(decode_hello(hello[0].payload).value_or(0), protocol_version);
  auto sig = frames_of(encode_signal(15), 2);
  EXPECT_EQ(decode_signal(sig[0].payload).value_or(0), 15);
  auto ws = frames_of(encode_winsize(50, 132), 1);
  ASSERT_TRUE(decode_winsize(ws[0].payload));
  EXPECT_EQ(decode_winsize(ws[0].payload)->second, 132);
  auto ex = frames_of(encode_exit({true, 9}), 4);
  auto status = decode_exit(ex[0].payload);
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->signaled);
  EXPECT_EQ(status->code, 9);
}

TEST(AgentProtocol, MalformedFramesAreProtocolErrors) {
  auto refused = [](std::vector<std::byte> bytes) {
    frame_reader reader;
    reader.feed(bytes);
    auto f = reader.next();
    return !f && f.error().code() == make_error_code(errc::protocol_error);
  };
  // Length 0, an oversized length, and an unknown type.
  EXPECT_TRUE(refused({std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}}));
  EXPECT_TRUE(
      refused({std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0x7f}, std::byte{3}}));
  EXPECT_TRUE(refused({std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{99}}));
  // A partial frame is not an error yet.
  frame_reader partial;
  const auto whole = encode_signal(2);
  partial.feed(std::span(whole).first(whole.size() - 1));
  auto f = partial.next();
  ASSERT_TRUE(f);
  EXPECT_FALSE(*f);
}

TEST(AgentProtocol, MalformedPayloadsAreRefused) {
  const auto exec = frames_of(encode_exec({{"true"}, {}, "", false, 0, 0}), 64)[0].payload;
  for (std::size_t cut = 0; cut < exec.size(); ++cut)
    EXPECT_FALSE(decode_exec(std::span(exec).first(cut))) << cut;
  EXPECT_FALSE(decode_exec(frames_of(encode_exec({{}, {}, "", false, 0, 0}), 64)[0].payload));
  EXPECT_FALSE(
      decode_exec(frames_of(encode_exec({{"env"}, {"NOEQUALS"}, "", false, 0, 0}), 64)[0].payload));
  EXPECT_FALSE(decode_signal(frames_of(encode_signal(0), 8)[0].payload));
  EXPECT_FALSE(decode_signal(frames_of(encode_signal(65), 8)[0].payload));
  EXPECT_FALSE(decode_hello(std::as_bytes(std::span("\x01\x00nope", 6))));
  EXPECT_FALSE(decode_exit(std::as_bytes(std::span("\x02\x00\x00\x00\x00", 5))));
}

}  // namespace
}  // namespace hvsock::agent
