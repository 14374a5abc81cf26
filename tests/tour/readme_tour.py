#!/usr/bin/env python3
"""Runs README.md's five-minute tour as a person types it, and checks it.

The ```sh blocks of the "A five-minute tour" section are taken from README.md
as they are written and typed, command by command, into an interactive bash
(job control on) on a pseudo-terminal: a step that reads the terminal is
stopped by it ("Stopped (tty input)") or hangs, and either fails the run. A
line `#> TEXT` under a command is what that command prints: each such line
must appear in the command's output, in order (`...` matches anything). A
command ending in `&` is a background job: the runner waits for its `#>`
lines before typing on, as a person would. A command whose first `#>` line
is an hvsock error (`hvsock: ...`) must fail; every other command must exit 0.
The whole tour runs twice in a row, in a new shell each time, and must leave
no process and no directory behind.

Three words are replaced before typing: build/release (and $PWD/build/
release) by the build under test, build/guest-kit by that build's kit, and
/tmp/tour by a directory of this run's own.

Usage: readme_tour.py REPO_ROOT BUILD_DIR [RUNS]"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PROMPT = "__TOUR_PROMPT__"
PROMPT_RE = re.compile(PROMPT + r" (\d+) __")


def extract_steps(readme):
    """[(command, [expected lines], block number)] of the tour section."""
    text = open(readme).read()
    start = text.index("## A five-minute tour")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    steps = []
    for number, block in enumerate(re.findall(r"```sh\n(.*?)```", section, re.S), 1):
        pending = ""
        for line in block.splitlines():
            if pending:
                pending += "\n" + line
                if not line.endswith("\\"):
                    steps.append([pending, [], number])
                    pending = ""
                continue
            if line.startswith("#>"):
                if not steps:
                    raise SystemExit(f"README block {number}: '#>' before any command")
                steps[-1][1].append(line[2:].strip())
            elif not line.strip() or line.lstrip().startswith("#"):
                continue
            elif line.endswith("\\"):
                pending = line
            else:
                steps.append([line, [], number])
    if not steps:
        raise SystemExit("no tour steps found in " + readme)
    return steps


def pattern(expected):
    parts = [re.escape(p) for p in expected.split("...")]
    return re.compile(".*?".join(parts))


class Shell:
    def __init__(self, cwd, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.buffer = ""
        self.transcript = ""  # everything the terminal showed

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            raise EOFError
        text = data.decode(errors="replace").replace("\r", "")
        self.buffer += text
        self.transcript += text
        return True

    def type(self, text):
        os.write(self.fd, text.encode() + b"\n")

    def until(self, predicate, limit, what):
        deadline = time.monotonic() + limit
        while not predicate(self.buffer):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(what)
            self.read(min(left, 1.0))

    def run(self, command, limit):
        """Types `command`; returns (status, output) once the prompt is back."""
        self.buffer = ""
        self.type(command)
        self.until(lambda b: PROMPT_RE.search(b), limit, "no prompt came back")
        match = PROMPT_RE.search(self.buffer)
        output = self.buffer[:match.start()]
        self.buffer = self.buffer[match.end():]
        return int(match.group(1)), output


def run_tour(steps, repo, env, tour_dir, log, sessions):
    shell = Shell(repo, env)
    sessions.append(shell.pid)  # pty.fork made it a session leader
    shell.until(lambda b: PROMPT_RE.search(b), 10, "bash did not start")
    shell.run("stty -echo", 10)
    try:
        for index, (command, expected, block) in enumerate(steps, 1):
            typed = command
            limit = 300 if "run-guest.sh" in command or "build-kit.sh" in command else 60
            log.write(f"$ {typed}\n")
            status, output = shell.run(typed, limit)
            seen = output
            background = command.split("#")[0].rstrip().endswith("&")
            if background and expected:
                # The job's own lines come when it gets there.
                def all_seen(b, o=output):
                    text = o + b
                    pos = 0
                    for e in expected:
                        m = pattern(e).search(text, pos)
                        if not m:
                            return False
                        pos = m.end()
                    return True
                shell.until(all_seen, 30, "a background job did not print its line")
                seen = output + shell.buffer
                shell.buffer = ""
            log.write(seen if seen.endswith("\n") or not seen else seen + "\n")
            where = f"block {block}, step {index}: {command.splitlines()[0]}"
            if "Stopped" in seen:
                raise AssertionError(f"{where}: a job was stopped by the terminal:\n{seen}")
            wants_failure = bool(expected) and expected[0].startswith("hvsock:")
            if not background:
                if wants_failure and status == 0:
                    raise AssertionError(f"{where}: should have failed, exited 0:\n{seen}")
                if not wants_failure and status != 0:
                    raise AssertionError(f"{where}: exited {status}:\n{seen}")
            pos = 0
            for e in expected:
                m = pattern(e).search(seen, pos)
                if not m:
                    raise AssertionError(f"{where}: expected '{e}' in:\n{seen}")
                pos = m.end()
        # Nothing may be left: no job (running or stopped) in the shell, and
        # no job ever stopped by the terminal (bash says so at a later prompt).
        _, jobs = shell.run("jobs", 10)
        log.write(jobs)
        if jobs.strip():
            raise AssertionError(f"the tour left jobs behind:\n{jobs}")
        if "Stopped" in shell.transcript:
            raise AssertionError("a job was stopped by the terminal (see the log)")
        shell.type("exit")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                shell.read(0.5)
            except EOFError:
                break
            done, _ = os.waitpid(shell.pid, os.WNOHANG)
            if done:
                break
    finally:
        try:
            os.kill(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(shell.pid, 0)
        except ChildProcessError:
            pass
        os.close(shell.fd)


def leftovers(session, tour_dir):
    """Processes left in the shell's session (each job has its own process
    group, but they all stay in the session of the terminal), or naming
    the tour's directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                sid = int(f.read().rsplit(")", 1)[1].split()[3])  # the session id
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        if int(pid) != os.getpid() and (sid == session or tour_dir in cmdline):
            found.append(f"{pid} {cmdline}")
    return found


def main():
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    repo, build = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else 2
    tour_dir = tempfile.mkdtemp(prefix="hvsock-tour-")
    os.rmdir(tour_dir)  # the tour makes it
    steps = []
    for command, expected, block in extract_steps(os.path.join(repo, "README.md")):
        for old, new in (("$PWD/build/release", build), ("build/release", build),
                         ("build/guest-kit", os.path.join(build, "guest-kit")),
                         ("/tmp/tour", tour_dir)):
            command = command.replace(old, new)
            expected = [e.replace(old, new) for e in expected]
        steps.append((command, expected, block))
    home = tempfile.mkdtemp(prefix="hvsock-tour-home-")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": home, "TERM": "dumb", "LANG": "C.UTF-8",
           "PS1": PROMPT + " $? __\n", "PS2": "",
           "HVSOCK_TRANSPORT": "emulated"}
    log_path = os.path.join(home, "tour.log")
    failed = None
    sessions = []
    try:
        for run in range(1, runs + 1):
            with open(log_path, "a") as log:
                log.write(f"==== run {run}\n")
                try:
                    run_tour(steps, repo, env, tour_dir, log, sessions)
                except (AssertionError, TimeoutError, EOFError) as e:
                    failed = f"run {run}: {type(e).__name__}: {e}"
                    break
            left = leftovers(sessions[-1], tour_dir)
            if left:
                failed = f"run {run} left processes behind:\n" + "\n".join(left)
                break
            if os.path.exists(tour_dir):
                failed = f"run {run} left {tour_dir} behind"
                break
            print(f"ok: run {run}: {len(steps)} steps as written in README.md", flush=True)
    finally:
        for session in sessions:
            for line in leftovers(session, tour_dir):
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(tour_dir, ignore_errors=True)
    if failed:
        print(open(log_path).read()[-6000:])
        print("FAIL: " + failed)
        shutil.rmtree(home, ignore_errors=True)
        return 1
    shutil.rmtree(home, ignore_errors=True)
    print(f"the tour ran {runs} times as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
