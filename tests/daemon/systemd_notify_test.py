#!/usr/bin/env python3
"""daemon.systemd_notify: hvsockd speaks systemd's notify protocol.

Starts HVSOCKD (the build's, or the installed /usr/sbin/hvsockd of the
package test) with NOTIFY_SOCKET at a datagram socket of this test and a
2 s watchdog, then expects, in order: READY=1 with a STATUS= naming the
partitions and services, only after the management socket answers;
WATCHDOG=1 keep-alives; and STOPPING=1 after SIGTERM, with exit 0.
Without NOTIFY_SOCKET nothing of this is sent (no error either).

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
    print("systemd_notify test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
