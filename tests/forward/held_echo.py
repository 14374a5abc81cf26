#!/usr/bin/env python3
"""Connection-limit check for forward_test.sh.

serve PORT: an echo server on 127.0.0.1:PORT (prints "serving" when it
  is); each connection is echoed until the client's EOF, then closed, so
  connections stay open as long as their clients keep them.
limit PORT MAX: through a forward on 127.0.0.1:PORT started with
  --max-connections MAX, holds MAX connections and checks each echoes; then
  three more connections must be closed at once (EOF or reset, no echo)
  while the MAX held ones still echo; after one held connection closes, a
  new one must be served again (retried until the forward has seen the close).
"""
import socket
import sys
import threading
import time


def serve(port):
    server = socket.create_server(("127.0.0.1", port))
    print(f"serving on {port}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def echoes(conn, text):
    conn.sendall(text)
    got = b""
    while len(got) < len(text):
        data = conn.recv(65536)
        if not data:
            return False
        got += data
    return got == text


def refused(connect):
    """True when the forward closes the new connection without serving it
    (the reset may already arrive while connecting)."""
    try:
        with connect() as conn:
            conn.sendall(b"anyone?\n")
            return conn.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def limit(port, most):
    connect = lambda: socket.create_connection(("127.0.0.1", port), timeout=10)
    held = [connect() for _ in range(most)]
    for i, conn in enumerate(held):
        if not echoes(conn, f"held {i}\n".encode()):
            sys.exit(f"FAIL: held connection {i} of {most} was not served")
    for i in range(3):
        if not refused(connect):
            sys.exit(f"FAIL: connection {most + 1 + i} past the limit of {most} was served")
    for i, conn in enumerate(held):
        if not echoes(conn, f"still {i}\n".encode()):
            sys.exit(f"FAIL: held connection {i} stopped working after the refusals")
    held.pop().close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with connect() as conn:
                if echoes(conn, b"after\n"):
                    break
        except (ConnectionResetError, BrokenPipeError):
            pass
        if time.monotonic() > deadline:
            sys.exit("FAIL: no connection was served again after one of the held ones closed")
        time.sleep(0.05)
    print(f"ok: {most} held connections served, 3 more closed at once, served again after a close")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        limit(int(sys.argv[2]), int(sys.argv[3]))
