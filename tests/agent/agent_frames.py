"""The agent protocol's frames (docs/agent-protocol.md), as the Python tests
that speak it by hand write and read them."""
import struct

ERROR = 10


def frame(kind, payload=b""):
    """One frame: u32 length (type byte + payload), u8 type, payload."""
    return struct.pack("<IB", len(payload) + 1, kind) + payload


def string(s):
    """A length-prefixed byte string."""
    return struct.pack("<I", len(s)) + s


HELLO = frame(1, struct.pack("<H", 1) + b"hvsock-agent")


def parse(out):
    """(frame types, ERROR texts) in the bytes the agent sent."""
    types, texts = [], []
    while len(out) >= 5:
        length, kind = struct.unpack("<IB", out[:5])
        types.append(kind)
        if kind == ERROR:
            texts.append(out[5:4 + length].decode(errors="replace"))
        out = out[4 + length:]
    return types, texts
