#!/usr/bin/env python3
"""daemon.systemd_notify: hvsockd speaks systemd's notify protocol.

Starts HVSOCKD (the build's, or the installed /usr/sbin/hvsockd of the
package test) with NOTIFY_SOCKET at a datagram socket of this test and a
2 s watchdog, then expects, in order: READY=1 with a STATUS= naming the
partitions and services, only after the management socket answers;
WATCHDOG=1 keep-alives; and STOPPING=1 after SIGTERM, with exit 0.
Without NOTIFY_SOCKET nothing of this is sent (no error either).

Then the logs: with stderr a file that JOURNAL_STREAM names (as systemd
sets it), every line starts with its syslog priority ("<5>ready ...",
"<4>" for a misbehaving client); --log-level warning keeps the warning and
drops the notices; a bad --log-level, or one with -v, exits 2 with one line.

Usage: systemd_notify_test.py HVSOCKD HVSOCK_CLI
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(message, log=None):
    print(f"FAIL: {message}")
    if log:
        print("---- hvsockd log\n" + open(log).read())
    sys.exit(1)


def run_daemon_logging_to_journal(hvsockd, cli, work, extra_args):
    """Starts hvsockd as systemd would (stderr a stream JOURNAL_STREAM names),
    registers a service, makes a management client misbehave, stops the
    daemon, and returns its log lines."""
    log = os.path.join(work, "journal.log")
    runtime = os.path.join(work, "run")
    with open(log, "w") as log_file:
        st = os.fstat(log_file.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        env.pop("NOTIFY_SOCKET", None)
        daemon = subprocess.Popen(
            [hvsockd, "--state-dir", os.path.join(work, "state"), "--runtime-dir", runtime]
            + extra_args, env=env, stderr=log_file)
    try:
        answer = subprocess.run([cli, "--runtime-dir", runtime, "status", "--wait", "20"],
                                capture_output=True, text=True, timeout=30)
        if answer.returncode != 0:
            fail(f"hvsock status --wait: {answer.stderr.strip()}", log)
        added = subprocess.run([cli, "--runtime-dir", runtime, "service", "register", "--name", "Journal Demo",
                                "--port", "5001"], capture_output=True, text=True, timeout=10)
        if added.returncode != 0:
            fail(f"hvsock service register: {added.stderr.strip()}", log)
        # A management line over the 64 KiB limit: the daemon closes that
        # client and says so at warning level.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rude:
            rude.connect(os.path.join(runtime, "hvsockd.sock"))
            try:
                rude.sendall(b"x" * (70 * 1024))
                rude.settimeout(10)
                while rude.recv(4096):
                    pass
            except OSError:
                pass  # closed on us: what we wanted
        daemon.send_signal(signal.SIGTERM)
        if daemon.wait(timeout=20) != 0:
            fail(f"hvsockd exited {daemon.returncode} after SIGTERM", log)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    return open(log).read().splitlines(), log


def check_log_levels(hvsockd, cli):
    with tempfile.TemporaryDirectory(prefix="hvjournal-") as work:
        lines, log = run_daemon_logging_to_journal(hvsockd, cli, work, [])
        unprefixed = [l for l in lines if len(l) < 3 or l[0] != "<" or l[2] != ">"
                      or l[1] not in "34567"]
        if unprefixed:
            fail(f"lines without a syslog priority under the journal: {unprefixed}", log)
        expected = [("<5>ready (pid", "ready"), ("<5>service registered: \"Journal Demo\"",
                                                  "service registered"),
                    ("<4>management client sent a line longer than", "the rude client"),
                    ("<5>stopped (", "stopped")]
        for prefix, what in expected:
            if not any(l.startswith(prefix) for l in lines):
                fail(f"no {what} line starting {prefix!r}", log)
        print(f"ok: {len(lines)} journal lines, each with its priority")

    with tempfile.TemporaryDirectory(prefix="hvjournal-") as work:
        lines, log = run_daemon_logging_to_journal(hvsockd, cli, work, ["--log-level", "warning"])
        if not any(l.startswith("<4>management client sent a line longer") for l in lines):
            fail("--log-level warning dropped the warning", log)
        if any(l[:3] in ("<5>", "<6>", "<7>") for l in lines):
            fail(f"--log-level warning kept lines below warning: {lines}", log)
        print("ok: --log-level warning keeps warnings only")

    for args, expect in ((["--log-level", "loud"], "--log-level: expected error, warning"),
                         (["-v", "--log-level", "info"], "excludes")):
        bad = subprocess.run([hvsockd] + args, capture_output=True, text=True, timeout=10)
        if bad.returncode != 2 or expect not in bad.stderr or bad.stderr.count("\n") != 1:
            fail(f"hvsockd {' '.join(args)}: exit {bad.returncode}, stderr {bad.stderr!r}")
    print("ok: a bad --log-level exits 2 with one line")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    hvsockd, cli = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="hvnotify-") as work:
        notify_path = os.path.join(work, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(20)
        log = os.path.join(work, "hvsockd.log")
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000")
        env.pop("WATCHDOG_PID", None)
        runtime = os.path.join(work, "run")
        with open(log, "w") as log_file:
            daemon = subprocess.Popen(
                [hvsockd, "--state-dir", os.path.join(work, "state"), "--runtime-dir", runtime],
                env=env, stderr=log_file)
        try:
            messages = []

            def receive(what):
                while True:
                    try:
                        data = notify.recv(4096).decode()
                    except socket.timeout:
                        fail(f"no {what} within 20 s; got {messages}", log)
                    fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
                    messages.append(fields)
                    if what in fields:
                        return fields

            ready = receive("READY")
            if ready["READY"] != "1":
                fail(f"READY={ready['READY']}", log)
            status = ready.get("STATUS", "")
            if "1 partitions" not in status or "0 services" not in status:
                fail(f"READY came with STATUS={status!r}", log)
            # READY means it serves: the management socket answers at once.
            answer = subprocess.run([cli, "--runtime-dir", runtime, "status"],
                                    capture_output=True, text=True, timeout=10)
            if answer.returncode != 0:
                fail(f"hvsock status after READY=1: {answer.stderr.strip()}", log)
            print(f"ok: READY=1, STATUS={status!r}; hvsock status answers")

            start = time.monotonic()
            receive("WATCHDOG")
            receive("WATCHDOG")
            print(f"ok: two WATCHDOG=1 keep-alives within {time.monotonic() - start:.1f} s"
                  " (watchdog 2 s)")

            daemon.send_signal(signal.SIGTERM)
            stopping = receive("STOPPING")
            if stopping["STOPPING"] != "1":
                fail(f"STOPPING={stopping['STOPPING']}", log)
            if daemon.wait(timeout=20) != 0:
                fail(f"hvsockd exited {daemon.returncode} after SIGTERM", log)
            print(f"ok: STOPPING=1 (STATUS={stopping.get('STATUS')!r}), exit 0")
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    check_log_levels(hvsockd, cli)
    print("systemd_notify test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
