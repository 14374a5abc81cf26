#!/usr/bin/env python3
"""Both ends of restart.streams_survive's transfer.

  bulk.py source MIB          writes MIB MiB of random bytes to stdout, then
                              "sent N SHA256" on stderr
  bulk.py sink DIR MARK...    reads stdin to EOF, then writes "received N SHA256"
                              to DIR/sink.done; at each MARK (a byte count) it
                              writes the count to DIR/sink.at and stops reading
                              until DIR/go.MARK exists, so the pipes and the
                              stream behind it fill up and stay full while the
                              test kills and restarts hvsockd
"""
import hashlib
import os
import sys
import time

CHUNK = 1 << 20


def source(mib: int) -> None:
    digest = hashlib.sha256()
    out = sys.stdout.buffer
    for _ in range(mib):
        block = os.urandom(CHUNK)
        digest.update(block)
        out.write(block)
    out.flush()
    sys.stderr.write(f"sent {mib * CHUNK} {digest.hexdigest()}\n")


def sink(directory: str, marks: list[int]) -> None:
    digest = hashlib.sha256()
    total = 0
    fd = sys.stdin.fileno()
    marks = sorted(marks)
    while True:
        want = CHUNK
        if marks:
            want = min(want, marks[0] - total)
        if want == 0:
            mark = marks.pop(0)
            tmp = os.path.join(directory, "sink.at.tmp")
            with open(tmp, "w") as f:
                f.write(f"{mark}\n")
            os.rename(tmp, os.path.join(directory, "sink.at"))
            # The test's go-ahead, after it has restarted hvsockd.
            go = os.path.join(directory, f"go.{mark}")
            while not os.path.exists(go):
                time.sleep(0.01)
            continue
        data = os.read(fd, want)
        if not data:
            break
        digest.update(data)
        total += len(data)
    tmp = os.path.join(directory, "sink.done.tmp")
    with open(tmp, "w") as f:
        f.write(f"received {total} {digest.hexdigest()}\n")
    os.rename(tmp, os.path.join(directory, "sink.done"))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "source":
        source(int(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "sink":
        sink(sys.argv[2], [int(m) for m in sys.argv[3:]])
    else:
        sys.exit("usage: bulk.py source MIB | bulk.py sink DIR [MARK...]")
