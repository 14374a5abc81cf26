#!/usr/bin/env python3
"""Bad input to the guest agent over a real connection (`hvsock connect`
carries the bytes): a wrong protocol version, garbage, and a copy whose
entries try to leave the destination. Each must end with an ERROR that says
why, and the escape must write nothing outside.

Usage: agent_misuse.py HVSOCK_CLI RUNTIME_DIR WORK_DIR (an agent serving VM web)."""
import os
import struct
import subprocess
import sys

from agent_frames import HELLO, frame, parse, string






def exchange(cli, runtime, data):
    """Sends `data`, half-closes, returns the frame types the agent sent."""
    out = subprocess.run([cli, "--runtime-dir", runtime, "connect", "web", "18518"],
                         input=data, capture_output=True, timeout=30).stdout
    return parse(out)


def expect_refusal(what, result, wanted):
    types, texts = result
    # ERROR says why; the agent then closes (EXIT follows where a request is
    # refused before it starts, docs/agent-protocol.md).
    if 10 not in types or not any(wanted in t for t in texts):
        sys.exit(f"FAIL: {what}: expected ERROR mentioning {wanted!r}, got {types} {texts}")
    print(f"ok: {what}: {texts[0]}")


def main():
    cli, runtime, work = sys.argv[1:4]
    wrong_version = frame(1, struct.pack("<H", 99) + b"hvsock-agent")
    expect_refusal("a wrong protocol version", exchange(cli, runtime, wrong_version), "version 99")
    expect_refusal("a first frame that is not HELLO", exchange(cli, runtime, frame(3, b"x")),
                   "HELLO")
    expect_refusal("an EXEC without arguments",
                   exchange(cli, runtime, HELLO + frame(2, b"\0\0\0\0\0" + string(b"") +
                                                        struct.pack("<I", 0))),
                   "1 to 4096 arguments")
    expect_refusal("a frame of an unknown type after EXEC",
                   exchange(cli, runtime, HELLO + frame(2, b"\0\0\0\0\0" + string(b"") +
                                                        struct.pack("<I", 1) + string(b"cat") +
                                                        struct.pack("<I", 0)) + frame(99)),
                   "unknown frame type")

    dest = os.path.join(work, "vm", "misuse")
    os.makedirs(dest, exist_ok=True)
    escape = os.path.join(work, "vm", "escaped")
    put = frame(11, string(dest.encode()) + string(b"tree"))
    top = frame(13, b"\x02" + string(b"") + struct.pack("<IQ", 0o755, 0))
    outside = frame(13, b"\x01" + string(b"../../escaped") + struct.pack("<IQ", 0o644, 1))
    expect_refusal("a copy entry leaving the destination",
                   exchange(cli, runtime, HELLO + put + top + outside + frame(14, b"x")),
                   "outside the copy")
    if os.path.exists(escape):
        sys.exit("FAIL: the escaping entry was written")
    bad_digest = frame(13, b"\x01" + string(b"f") + struct.pack("<IQ", 0o644, 1))
    expect_refusal("a file whose digest does not match",
                   exchange(cli, runtime, HELLO + put + top + bad_digest + frame(14, b"x") +
                            frame(15, b"\0" * 16)),
                   "digest does not match")
    leftovers = os.listdir(os.path.join(dest, "tree"))
    if leftovers:
        sys.exit(f"FAIL: a refused file left {leftovers}")
    print("ok: nothing was written outside, and the refused file left nothing")


if __name__ == "__main__":
    main()
