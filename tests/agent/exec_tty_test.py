#!/usr/bin/env python3
"""hvsock exec -t through a real pseudo-terminal: the test holds the master
side of a pty as a user's terminal would, runs `hvsock exec -t web --
/bin/sh` on its slave side, and checks the window size (at start and after a
resize), Ctrl-C interrupting a remote command, and the shell's exit status.

Usage: exec_tty_test.py HVSOCK_CLI RUNTIME_DIR (with an agent already
serving VM web in that runtime directory)."""
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_until(fd, token, limit=20):
    out = b""
    end = time.time() + limit
    while time.time() < end and token not in out:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    if token not in out:
        sys.exit(f"FAIL: waited for {token!r}, got {out!r}")
    return out


def main():
    cli, runtime = sys.argv[1], sys.argv[2]
    master, slave = os.openpty()
    set_size(master, 33, 101)

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([cli, "--runtime-dir", runtime, "exec", "-t", "web", "--", "/bin/sh"],
                            stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=controlling_terminal, close_fds=True)
    os.close(slave)
    os.write(master, b"stty size; echo size-$((40+2))\n")
    seen = read_until(master, b"size-42")
    if b"33 101" not in seen:
        sys.exit(f"FAIL: expected the size 33 101 before size-42, got {seen!r}")
    print("ok: the remote terminal has the local window size (33 101)")

    set_size(master, 40, 120)
    os.killpg(os.getpgid(proc.pid), signal.SIGWINCH)
    time.sleep(0.5)
    os.write(master, b"stty size\n")
    read_until(master, b"40 120")
    print("ok: a resize reaches the remote terminal (40 120)")

    os.write(master, b"sleep 30\n")
    time.sleep(1)
    started = time.time()
    os.write(master, b"\x03")  # Ctrl-C, through the raw local terminal
    time.sleep(0.5)
    os.write(master, b"echo status-$?\n")
    read_until(master, b"status-130", limit=10)
    if time.time() - started > 10:
        sys.exit("FAIL: Ctrl-C did not interrupt the remote sleep")
    print("ok: Ctrl-C interrupted the remote sleep (status 130 there)")

    os.write(master, b"exit 5\n")
    try:
        status = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        sys.exit("FAIL: hvsock exec -t did not end after the shell exited")
    if status != 5:
        sys.exit(f"FAIL: the shell's exit status 5 came back as {status}")
    print("ok: the shell's exit status (5) is hvsock exec's")


if __name__ == "__main__":
    main()
