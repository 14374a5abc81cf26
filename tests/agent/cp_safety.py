#!/usr/bin/env python3
"""The hvsock cp receiver against a hostile peer and a booby-trapped
destination, with real processes (hvsockd, the agent, the CLI) and raw
protocol frames.

Into the VM (the agent receives; the frames come over `hvsock connect`):
setuid, setgid and sticky bits are dropped from files (setuid and setgid
from directories), other modes kept, a read-only directory still filled;
a source name with a '/' or "..", a path with a NUL and a second top entry
are refused; a symbolic link already in the destination tree (a directory
link pointing at a stand-in for /etc, a dangling link where a file goes,
the top entry itself) is refused naming it, and nothing appears where it
points.

Out of the VM (the CLI receives): a fake agent in VM web2 (`hvsock listen`
fed canned frames) sends the same trees to `hvsock cp web2:... LOCAL`.

Usage: cp_safety.py HVSOCKD HVSOCK_CLI"""
import ctypes
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

from agent_frames import HELLO, frame, parse, string

AGENT_PORT = "18518"


class XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


_xxhash = ctypes.CDLL("libxxhash.so.0")
_xxhash.XXH3_128bits.restype = XXH128
_xxhash.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def digest(data):
    """XXH3-128 in canonical form (big-endian high, then low)."""
    h = _xxhash.XXH3_128bits(data, len(data))
    return struct.pack(">QQ", h.high64, h.low64)




END = frame(16)


def put(dest, name):
    return frame(11, string(dest.encode()) + string(name.encode()))


def directory(path, mode):
    return frame(13, b"\x02" + string(path.encode()) + struct.pack("<IQ", mode, 0))


def file(path, mode, data):
    return (frame(13, b"\x01" + string(path.encode()) + struct.pack("<IQ", mode, len(data))) +
            (frame(14, data) if data else b"") + frame(15, digest(data)))


class Harness:
    def __init__(self, hvsockd, cli):
        self.cli = cli
        self.work = tempfile.mkdtemp(prefix="hvtest-")
        self.run_dir = os.path.join(self.work, "run")
        os.environ.update(HVSOCK_TRANSPORT="emulated", HVSOCK_RUNTIME_DIR=self.run_dir)
        self.processes = []
        self.daemon = self.spawn([hvsockd, "--state-dir", os.path.join(self.work, "state"),
                                  "--runtime-dir", self.run_dir], "hvsockd.log")
        for _ in range(100):
            if subprocess.run(self.hv("status"), capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            self.fail("hvsockd did not start")

    def hv(self, *words):
        return [self.cli, "--runtime-dir", self.run_dir, *words]

    def spawn(self, argv, log, stdin=subprocess.DEVNULL):
        with open(os.path.join(self.work, log), "ab") as err:
            p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err)
        self.processes.append(p)
        return p

    def must(self, *words):
        r = subprocess.run(self.hv(*words), capture_output=True, timeout=30)
        if r.returncode != 0:
            self.fail(f"hvsock {' '.join(words)}: {r.stderr.decode()}")
        return r.stdout.decode()

    def wait_for_line(self, log, text, seconds=10):
        path = os.path.join(self.work, log)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.path.exists(path) and text in open(path, errors="replace").read():
                return
            time.sleep(0.05)
        self.fail(f"no line with {text!r} in {log} after {seconds}s")

    def fail(self, message):
        print(f"FAIL: {message}")
        for name in sorted(os.listdir(self.work)):
            if name.endswith(".log"):
                print(f"---- {name} (last lines)")
                print("".join(open(os.path.join(self.work, name), errors="replace")
                              .readlines()[-25:]))
        self.cleanup()
        sys.exit(1)

    def cleanup(self):
        for p in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def expect_modes(h, what, root, wanted):
    for relative, mode in wanted.items():
        path = os.path.join(root, relative) if relative else root
        if not os.path.exists(path):
            h.fail(f"{what}: {path} was not created")
        if mode_of(path) != mode:
            h.fail(f"{what}: {relative or 'the top'} has mode {oct(mode_of(path))}, "
                   f"expected {oct(mode)}")
    print(f"ok: {what}: " + ", ".join(f"{k or 'top'} {oct(v)}" for k, v in wanted.items()))


# The tree both directions send: modes as the sender says, and as they land.
MODE_TREE = [directory("", 0o2755), file("suid", 0o4755, b"#!/bin/sh\nid\n"),
             file("sgid", 0o2711, b"x" * 70000), file("sticky", 0o1644, b""),
             file("plain", 0o640, b"plain\n"), directory("shared", 0o1777),
             directory("ro", 0o555), file("ro/f", 0o444, b"read only\n")]
MODE_WANTED = {"": 0o755, "suid": 0o755, "sgid": 0o711, "sticky": 0o644, "plain": 0o640,
               "shared": 0o1777, "ro": 0o555, "ro/f": 0o444}


def plant_links(h, root):
    """A destination tree `root` holding links to a stand-in for /etc."""
    etc = os.path.join(h.work, "etc")
    os.makedirs(etc, exist_ok=True)
    os.makedirs(root)
    os.symlink(etc, os.path.join(root, "sub"))  # a directory link
    os.symlink(os.path.join(etc, "hosts"), os.path.join(root, "hosts"))  # dangling, a file's place
    return etc


def expect_untouched(h, what, etc, root):
    if os.listdir(etc):
        h.fail(f"{what}: something was written through the link: {os.listdir(etc)}")
    for name in ("sub", "hosts"):
        if not os.path.islink(os.path.join(root, name)):
            h.fail(f"{what}: the planted link {name} was replaced or removed")


def into_the_vm(h):
    def exchange(data):
        out = subprocess.run(h.hv("connect", "web", AGENT_PORT), input=HELLO + data,
                             capture_output=True, timeout=30).stdout
        return parse(out)

    def refused(what, data, *wanted):
        types, texts = exchange(data)
        if 10 not in types or not all(any(w in t for t in texts) for w in wanted):
            h.fail(f"{what}: expected ERROR mentioning {wanted}, got {types} {texts}")
        print(f"ok: {what}: {texts[0]}")

    vm = os.path.join(h.work, "vm")
    os.makedirs(vm)
    types, texts = exchange(put(vm, "modes") + b"".join(MODE_TREE) + END)
    if 10 in types or 9 not in types:
        h.fail(f"into the VM: the mode tree was refused: {texts}")
    expect_modes(h, "into the VM, setuid/setgid/sticky dropped from files, other modes kept",
                 os.path.join(vm, "modes"), MODE_WANTED)

    refused("a source name with a '/'", put(vm, "../up") + directory("", 0o755) + END,
            "not one name")
    refused("a source name '..'", put(vm, "..") + directory("", 0o755) + END, "not one name")
    if os.path.exists(os.path.join(h.work, "up")):
        h.fail("a source name with '..' escaped the destination")
    refused("a path with a NUL", put(vm, "nul") + directory("", 0o755) +
            file("a\0b", 0o644, b"") + END, "outside the copy")
    refused("a second top entry", put(vm, "twice") + directory("", 0o755) +
            directory("", 0o755) + END, "second top entry")

    planted = os.path.join(vm, "planted")
    etc = plant_links(h, planted)
    refused("a directory entry onto a planted directory link",
            put(vm, "planted") + directory("", 0o755) + directory("sub", 0o755) +
            file("sub/passwd", 0o644, b"root::0:0::/:/bin/sh\n") + END,
            planted + "/sub", "symbolic link")
    refused("a file below a planted directory link, with no directory entry",
            put(vm, "planted") + directory("", 0o755) +
            file("sub/passwd", 0o644, b"root::0:0::/:/bin/sh\n") + END,
            planted + "/sub", "symbolic link")
    refused("a file onto a planted dangling link",
            put(vm, "planted") + directory("", 0o755) + file("hosts", 0o644, b"evil\n") + END,
            planted + "/hosts", "symbolic link")
    os.symlink(etc, os.path.join(vm, "linked"))
    refused("the top directory onto a planted link",
            put(vm, "linked") + directory("", 0o755) + file("passwd", 0o644, b"x\n") + END,
            vm + "/linked", "symbolic link")
    os.symlink(os.path.join(etc, "shadow"), os.path.join(vm, "shadow"))
    refused("the top file onto a planted dangling link",
            put(vm, "shadow") + file("", 0o644, b"x\n") + END, vm + "/shadow", "symbolic link")
    expect_untouched(h, "into the VM", etc, planted)
    if os.path.lexists(os.path.join(etc, "shadow")):
        h.fail("the top file was written through the link")
    print("ok: into the VM, nothing was written through a planted link")


def out_of_the_vm(h):
    """A fake agent in web2 answers one cp with canned frames."""
    local = os.path.join(h.work, "local")
    os.makedirs(local)

    def copy_out(what, frames, source, destination):
        canned = os.path.join(h.work, "canned")
        with open(canned, "wb") as f:
            f.write(HELLO + frames)
        log = f"fake-agent-{what.replace(' ', '-')}.log"
        with open(canned, "rb") as stdin:
            fake = h.spawn(h.hv("run", "--vm", "web2", "--", h.cli, "listen", AGENT_PORT), log,
                           stdin=stdin)
        h.wait_for_line(log, "listening")
        r = subprocess.run(h.hv("cp", "-q", f"web2:{source}", destination), capture_output=True,
                           timeout=30)
        fake.wait(30)
        return r.returncode, r.stderr.decode()

    status, err = copy_out("modes", b"".join(MODE_TREE) + END, "/anywhere/modes", local + "/")
    if status != 0:
        h.fail(f"out of the VM: the mode tree was refused ({status}): {err}")
    expect_modes(h, "out of the VM, setuid/setgid/sticky dropped from files, other modes kept",
                 os.path.join(local, "modes"), MODE_WANTED)

    planted = os.path.join(local, "planted")
    etc = plant_links(h, planted)
    for what, frames, wanted in [
            ("a planted directory link", directory("", 0o755) + directory("sub", 0o755) +
             file("sub/passwd", 0o644, b"x\n") + END, planted + "/sub"),
            ("a planted dangling link", directory("", 0o755) + file("hosts", 0o644, b"x\n") + END,
             planted + "/hosts")]:
        status, err = copy_out(what, frames, "/anywhere/planted", local)
        if status != 1 or wanted not in err or "symbolic link" not in err:
            h.fail(f"out of the VM onto {what}: status {status}, {err!r}")
        print(f"ok: out of the VM onto {what}: {err.strip()}")
    expect_untouched(h, "out of the VM", etc, planted)
    print("ok: out of the VM, nothing was written through a planted link")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cp_safety.py HVSOCKD HVSOCK_CLI")
    h = Harness(*sys.argv[1:3])
    try:
        h.must("vm", "create", "web")
        h.must("vm", "create", "web2")
        h.must("service", "register", "--name", "hvsock Guest Agent", "--port", AGENT_PORT)
        h.spawn(h.hv("run", "--vm", "web", "--", h.cli, "agent"), "agent.log")
        h.wait_for_line("agent.log", "hvsock agent: listening")
        into_the_vm(h)
        out_of_the_vm(h)
    finally:
        h.cleanup()
    print("cp safety test passed")


if __name__ == "__main__":
    main()
