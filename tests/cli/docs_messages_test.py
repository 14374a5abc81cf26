#!/usr/bin/env python3
"""Runs the examples docs/cli.md quotes and fails when their output drifts.

The convention (also written at the top of docs/cli.md): a fenced block whose
first line starts with `$ ` is an example. Each `$ COMMAND` line in it is run
with bash, and the lines after it, up to the next `$ ` line or the end of the
block, are what it prints: stdout and stderr together, line for line, where
`...` matches anything within a line (GUIDs, paths, pids). A command whose
output is an error line (`hvsock: ...` or `hvsockd: ...`) must fail; any
other must exit 0. Blocks that start otherwise (synopses, `guest$ ...`) are
not run.

The commands run in a directory of this run's own, with `hvsock` and
`hvsockd` on PATH being the build's, against an hvsockd started here
(HVSOCK_RUNTIME_DIR) that has what the examples name: a VM `web`, a service
`echo` (vsock port 5000) and a service `billing`
(1f0c7d2e-5a4b-4c3d-9e8f-0a1b2c3d4e5f), disabled for `web`. Each example
starts from that state: the setup is checked, and redone, before every one.

Usage: docs_messages_test.py HVSOCKD HVSOCK_CLI"""
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "cli.md")
BILLING = "1f0c7d2e-5a4b-4c3d-9e8f-0a1b2c3d4e5f"


def extract_examples(path):
    """[(line number, command, [expected lines])] of the `$ ` blocks."""
    examples = []
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise SystemExit(f"{path}:{i + 1}: a fenced block that never ends")
        block = lines[start:end]
        if block and block[0].startswith("$ "):
            for offset, line in enumerate(block):
                if line.startswith("$ "):
                    examples.append((start + offset + 1, line[2:], []))
                else:
                    examples[-1][2].append(line)
        i = end + 1
    return examples


def matches(expected, actual):
    parts = [re.escape(p) for p in expected.split("...")]
    return re.fullmatch(".*".join(parts), actual) is not None


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: docs_messages_test.py HVSOCKD HVSOCK_CLI")
    hvsockd, cli = (os.path.abspath(p) for p in sys.argv[1:])
    examples = extract_examples(DOC)
    # A file that lost its examples (or a convention that changed) fails.
    if len(examples) < 5:
        raise SystemExit(f"FAIL: only {len(examples)} examples found in {DOC}")

    work = tempfile.mkdtemp(prefix="hvdocs-")
    os.chmod(work, 0o700)
    bin_dir = os.path.join(work, "bin")
    os.mkdir(bin_dir)
    os.symlink(cli, os.path.join(bin_dir, "hvsock"))
    os.symlink(hvsockd, os.path.join(bin_dir, "hvsockd"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVSOCK_")}
    env.update(
        PATH=bin_dir + ":" + env.get("PATH", "/usr/bin:/bin"),
        HVSOCK_TRANSPORT="emulated",
        HVSOCK_RUNTIME_DIR=os.path.join(work, "run"),
        # An hvsockd an example starts must not touch the user's home.
        HOME=os.path.join(work, "home"),
        XDG_STATE_HOME=os.path.join(work, "xdg-state"),
        XDG_RUNTIME_DIR=os.path.join(work, "xdg-run"),
        LC_ALL="C",
    )
    daemon_log = open(os.path.join(work, "hvsockd.log"), "w")
    daemon = subprocess.Popen(
        [hvsockd, "--state-dir", os.path.join(work, "state")],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=daemon_log)
    failures = []

    def hv(*args):
        return subprocess.run([cli, *args], env=env, capture_output=True, text=True,
                              timeout=30)

    def must(*args):
        r = hv(*args)
        if r.returncode != 0:
            raise SystemExit(f"FAIL: setup: hvsock {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def set_up():
        """The state every example starts from (see the docstring)."""
        vms = {v["name"] for v in json.loads(must("vm", "list", "--json"))}
        if "web" not in vms:
            must("vm", "create", "web")
        services = {s["name"]: s for s in json.loads(must("service", "list", "--json"))}
        if "echo" not in services:
            must("service", "register", "--name", "echo", "--port", "5000")
        if "billing" not in services:
            must("service", "register", "--name", "billing", "--id", BILLING)
        must("service", "enable", "echo")
        must("service", "enable", "billing")
        must("service", "disable", "billing", "--vm", "web")

    try:
        # Waits for hvsockd to serve (status --wait polls; no fixed sleep).
        if hv("status", "--wait", "20").returncode != 0:
            raise SystemExit("FAIL: hvsockd did not start: " +
                             open(os.path.join(work, "hvsockd.log")).read())
        for number, command, expected in examples:
            set_up()
            cwd = tempfile.mkdtemp(prefix="example-", dir=work)
            where = f"docs/cli.md:{number}: $ {command}"
            # Its own process group: whatever it starts ends with it.
            p = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                output, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
                failures.append(f"{where}: did not end within 30 s")
                continue
            r = subprocess.CompletedProcess(p.args, p.returncode, output)
            actual = r.stdout.splitlines()
            if len(actual) != len(expected) or not all(
                    matches(e, a) for e, a in zip(expected, actual)):
                failures.append(f"{where}: the output drifted\n  documented:\n" +
                                "".join(f"    {e}\n" for e in expected) + "  printed:\n" +
                                "".join(f"    {a}\n" for a in actual))
                continue
            error = bool(expected) and re.match(r"hvsockd?: ", expected[0]) is not None
            if error and r.returncode == 0:
                failures.append(f"{where}: printed an error but exited 0")
            elif not error and r.returncode != 0:
                failures.append(f"{where}: exited {r.returncode}")
            else:
                print(f"ok: {where}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAIL:\n" + "\n".join(failures))
        return 1
    print(f"ok: all {len(examples)} examples of docs/cli.md print what it says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
