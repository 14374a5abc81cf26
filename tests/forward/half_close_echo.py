#!/usr/bin/env python3
"""Half-close check for forward_test.sh.

serve PORT: accepts connections on 127.0.0.1:PORT; reads each until EOF, then
  answers "got N bytes" and closes (so it answers only after the client's
  half-close arrived).
client PORT: sends 1 MiB, shuts down its write side, and expects the answer.
"""
import socket
import sys
import threading


def serve(port):
    server = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def answer(conn):
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        total += len(data)
    conn.sendall(f"got {total} bytes".encode())
    conn.close()


def client(port):
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(b"x" * 1048576)
    conn.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        data = conn.recv(4096)
        if not data:
            break
        reply += data
    if reply != b"got 1048576 bytes":
        sys.exit(f"FAIL: expected 'got 1048576 bytes', got {reply!r}")


if __name__ == "__main__":
    (serve if sys.argv[1] == "serve" else client)(int(sys.argv[2]))
