#!/usr/bin/env python3
"""daemon.metrics: hvsockd --metrics-listen serves GET /metrics, and
`hvsock stats --format prometheus` prints the same families.

A real hvsockd on 127.0.0.1, port picked by the kernel (read from its
"metrics on http://ADDR:PORT/metrics" log line). A service whose
ElementName needs escaping (a double quote and a backslash) gets one
accepted connection (hvsock listen / hvsock connect loopback) and one
refused (no listener); then /metrics is scraped with urllib and parsed by
prometheus_client's own parser: types, label values and counts checked.
Bad requests (garbage, POST, unknown path, an oversize head) get an HTTP
error; silent clients fill the connection cap (the next one gets 503)
while `hvsock status` and the management socket still answer, and are
closed at the 5 s timeout. Bad --metrics-listen values: one line, exit 2;
a port already taken: one line, exit 1.

Usage: metrics_test.py HVSOCKD HVSOCK_CLI
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, seen from a python3 that is not
    # Debian's own (pyenv, a venv); the module is pure Python.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        print("FAIL: no prometheus_client module: install python3-prometheus-client "
              "(scripts/install-deps.sh)")
        sys.exit(1)

SERVICE_NAME = 'Demo "quoted" \\ back'
MAX_CONNECTIONS = 16  # metrics_http_server::limits
TIMEOUT = 5.0


def fail(message, log=None):
    print(f"FAIL: {message}")
    if log and os.path.exists(log):
        print("---- hvsockd log\n" + open(log).read())
    sys.exit(1)


def wait_for_line(path, pattern, seconds, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            match = re.search(pattern, open(path).read())
            if match:
                return match
        if process is not None and process.poll() is not None:
            fail(f"exited {process.returncode} before logging {pattern!r}", path)
        time.sleep(0.02)
    fail(f"no line matching {pattern!r} within {seconds} s", path)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def families_of(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families, family, **labels):
    found = [s for s in families[family].samples
             if all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        fail(f"{family}{labels}: {len(found)} samples; family has {families[family].samples}")
    return found[0].value


def raw_request(address, data, seconds=10):
    """Sends `data`, half-closes, returns everything the server answers."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=seconds) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def check_bad_listen_values(hvsockd, work):
    for value in ["nonsense", "127.0.0.1:99999", "::1:9731", "[::1]", "127.0.0.1:"]:
        r = subprocess.run([hvsockd, "--state-dir", os.path.join(work, "bad-state"),
                            "--runtime-dir", os.path.join(work, "bad-run"),
                            "--metrics-listen", value],
                           capture_output=True, text=True, timeout=20)
        lines = r.stderr.splitlines()
        if r.returncode != 2 or len(lines) != 1 or \
                not lines[0].startswith("hvsockd: --metrics-listen: "):
            fail(f"--metrics-listen {value!r}: exit {r.returncode}, stderr {r.stderr!r}")
    print(f"ok: bad --metrics-listen values: exit 2 with one line, e.g. {lines[0]!r}")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    hvsockd, cli = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="hvmetrics-") as work:
        check_bad_listen_values(hvsockd, work)
        runtime = os.path.join(work, "run")
        log = os.path.join(work, "hvsockd.log")
        env = dict(os.environ, HVSOCK_TRANSPORT="emulated")
        env.pop("NOTIFY_SOCKET", None)
        with open(log, "w") as log_file:
            daemon = subprocess.Popen(
                [hvsockd, "--state-dir", os.path.join(work, "state"), "--runtime-dir", runtime,
                 "--metrics-listen", "127.0.0.1:0"], env=env, stderr=log_file)
        helpers = []
        try:
            address = wait_for_line(log, r"metrics on http://(127\.0\.0\.1:\d+)/metrics\n", 20,
                                    daemon).group(1)
            wait_for_line(log, r"hvsockd: ready", 20, daemon)
            url = f"http://{address}/metrics"
            print(f"ok: hvsockd serves {url}")

            def hv(*args, check=True, timeout=20, **kw):
                r = subprocess.run([cli, "--runtime-dir", runtime, *args], env=env,
                                   capture_output=True, text=True, timeout=timeout, **kw)
                if check and r.returncode != 0:
                    fail(f"hvsock {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}", log)
                return r

            # The same port for a second daemon: one line, exit 1.
            r = subprocess.run([hvsockd, "--state-dir", os.path.join(work, "state2"),
                                "--runtime-dir", os.path.join(work, "run2"),
                                "--metrics-listen", address],
                               capture_output=True, text=True, timeout=20, env=env)
            # (A fresh state directory logs "created ..." first.)
            last = (r.stderr.splitlines() or [""])[-1]
            if r.returncode != 1 or "hvsockd: ready" in r.stderr or \
                    not last.startswith(f"hvsockd: --metrics-listen: bind {address}: "):
                fail(f"a second daemon on {address}: exit {r.returncode}, {r.stderr!r}")
            print(f"ok: port taken: exit 1, {last!r}")

            service_id = hv("service", "register", "--name", SERVICE_NAME,
                            "--port", "5000").stdout.strip()
            # One accepted connection...
            listen_log = os.path.join(work, "listen.log")
            with open(listen_log, "w") as listen_err:
                listener = subprocess.Popen([cli, "--runtime-dir", runtime, "listen", "5000"],
                                            env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=listen_err, text=True)
            helpers.append(listener)
            wait_for_line(listen_log, "listening", 20, listener)
            hv("connect", "loopback", "5000", input="hello\n")
            received, _ = listener.communicate(timeout=20)
            if received != "hello\n" or listener.returncode != 0:
                fail(f"hvsock listen got {received!r}, exit {listener.returncode}", log)
            # ...and one refused: nobody listens any more.
            r = hv("connect", "loopback", "5000", check=False, input="")
            if r.returncode == 0:
                fail("connect without a listener succeeded", log)
            print(f"ok: one connection accepted and one refused for {SERVICE_NAME!r}")

            with urllib.request.urlopen(url, timeout=10) as response:
                content_type = response.headers["Content-Type"]
                scraped = response.read().decode()
            if content_type != "text/plain; version=0.0.4; charset=utf-8":
                fail(f"Content-Type {content_type!r}")
            http = families_of(scraped)
            expected_types = {
                "hvsock_service_connections_accepted": "counter",
                "hvsock_service_seqpacket_connections_accepted": "counter",
                "hvsock_service_connections_refused": "counter",
                "hvsock_service_connections_active": "gauge",
                "hvsock_unregistered_service_connections_refused": "counter",
                "hvsock_partition_connections": "counter",
                "hvsock_partition_guest_attached": "gauge",
                "hvsock_partitions": "gauge",
                "hvsock_services": "gauge",
                "hvsock_control_clients": "gauge",
                "hvsock_management_clients": "gauge",
                "hvsock_uptime_seconds": "gauge",
                "hvsock_build_info": "gauge",
            }
            got_types = {name: f.type for name, f in http.items()}
            if got_types != expected_types:
                fail(f"families and types: {got_types}")
            svc = {"service_id": service_id, "service": SERVICE_NAME}
            checks = [
                ("hvsock_service_connections_accepted", svc, 1),
                ("hvsock_service_seqpacket_connections_accepted", svc, 0),
                ("hvsock_service_connections_refused", dict(svc, reason="no_listener"), 1),
                ("hvsock_service_connections_refused", dict(svc, reason="disabled"), 0),
                ("hvsock_unregistered_service_connections_refused", {}, 0),
                ("hvsock_partition_connections", {"partition": "host", "direction": "outbound"}, 1),
                ("hvsock_partition_connections", {"partition": "host", "direction": "inbound"}, 1),
                ("hvsock_partitions", {}, 1),
                ("hvsock_services", {}, 1),
            ]
            for family, labels, value in checks:
                got = sample(http, family, **labels)
                if got != value:
                    fail(f"{family}{labels} = {got}, expected {value}\n{scraped}")
            active = sample(http, "hvsock_service_connections_active", **svc)
            if active not in (0, 1):
                fail(f"active = {active}")
            if not sample(http, "hvsock_uptime_seconds") > 0:
                fail("uptime is not positive")
            for s in http["hvsock_service_connections_accepted"].samples:
                if s.name != "hvsock_service_connections_accepted_total":
                    fail(f"counter sample named {s.name}")
            print("ok: GET /metrics parsed by prometheus_client: "
                  f"{len(http)} families, types and values as expected, "
                  f"service label {SERVICE_NAME!r} round-trips")

            text = hv("stats", "--format", "prometheus").stdout
            cli_families = families_of(text)
            if {n: f.type for n, f in cli_families.items()} != expected_types:
                fail(f"hvsock stats --format prometheus families: {cli_families.keys()}")
            for family, labels, value in checks:
                if sample(cli_families, family, **labels) != value:
                    fail(f"hvsock stats --format prometheus: {family}{labels}\n{text}")
            print("ok: hvsock stats --format prometheus parses to the same families and counts")

            # Bad requests get an HTTP error and are closed.
            fds_before = open_fds(daemon.pid)
            for what, data, status in [
                    ("garbage", b"\x16\x03\x01hello\r\n\r\n", b"400"),
                    ("POST", b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
                    ("an unknown path", b"GET /secrets HTTP/1.1\r\n\r\n", b"404"),
                    ("a 9000-byte head", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000, b"431")]:
                answer = raw_request(address, data)
                if not answer.startswith(b"HTTP/1.1 " + status):
                    fail(f"{what}: answered {answer[:80]!r}", log)
            print("ok: garbage 400, POST 405, unknown path 404, oversize head 431")
            # hvsockd half-closes after its answer and waits for the client's
            # close: wait until it took in the last one, or a silent client
            # below could be answered 503 for it.
            deadline = time.monotonic() + 20
            while open_fds(daemon.pid) > fds_before:
                if time.monotonic() > deadline:
                    fail("hvsockd kept the bad requests' connections open", log)
                time.sleep(0.02)

            # Silent clients: the cap, then the switch still serves.
            host, port = address.rsplit(":", 1)
            silent = []
            opened = time.monotonic()
            for _ in range(MAX_CONNECTIONS):
                silent.append(socket.create_connection((host, int(port)), timeout=15))
            over = raw_request(address, b"")
            if not over.startswith(b"HTTP/1.1 503"):
                fail(f"connection {MAX_CONNECTIONS + 1} got {over[:80]!r}", log)
            start = time.monotonic()
            hv("status", timeout=10)
            hv("stats", "--json", timeout=10)
            served_in = time.monotonic() - start
            if served_in > 2:
                fail(f"hvsock status took {served_in:.1f} s with silent metrics clients", log)
            for s in silent:
                if s.recv(1) != b"":  # blocks until the server closes it
                    fail("a silent client was sent data", log)
            closed_after = time.monotonic() - opened
            if closed_after < TIMEOUT - 0.5:
                fail(f"silent clients closed after {closed_after:.1f} s, before the timeout")
            for s in silent:
                s.close()
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status != 200:
                    fail(f"after the silent clients: {response.status}")
            print(f"ok: {MAX_CONNECTIONS} silent clients: the next got 503, hvsock status "
                  f"answered in {served_in:.2f} s meanwhile, all closed after "
                  f"{closed_after:.1f} s, then /metrics serves again")

            daemon.send_signal(signal.SIGTERM)
            if daemon.wait(timeout=20) != 0:
                fail(f"hvsockd exited {daemon.returncode} after SIGTERM", log)
        finally:
            for p in helpers + [daemon]:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    print("metrics test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
