#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_proto.c into tests/fuzz/corpus/.

Each seed: a setting byte, then messages as u16 length + bytes (see
fuzz_proto.c).  With setting bit 0, req 1..10 name the requests in flight:
1 OPEN, 2 READ 64, 3 WRITE 16, 4 POLL, 5 CTL, 6 READ 512, 7 POLL, 8 PING,
9 READ 8192, 10 WRITE 4096; handle 1 is the OPEN's, 2 and 3 the two open
handles.  With setting bit 2, requests 9 and 10 have slots 0 and 1 of the
shared buffer.
"""
import os
import struct
import sys

HELLO, REPLY, POLL_READY, LOG = 1, 2, 3, 4
F_SHM = 2
SLOT, SLOTS = 1 << 20, 16


def msg(type_, payload=b"", req=0, handle=0, file=0, size=0, offset=0, status=0, flags=0, length=None, shm=0):
    n = 40 + len(payload) if length is None else length
    return struct.pack("<IHHIIIIQiI", n, type_, flags, req, handle, file, size, offset, status, shm) + payload


def hello(files, version=2):
    p = struct.pack("<HH", version, len(files))
    for (id_, fn, unit, kind, mode, size, name) in files:
        p += struct.pack("<IBBBHQB", id_, fn, unit, kind, mode, size, len(name)) + name
    return p


def seed(setting, *msgs):
    """msgs: messages; an empty one (b"") is a tick, see fuzz_proto.c."""
    out = bytes([setting])
    for m in msgs:
        out += struct.pack("<H", len(m)) + m
    return out


GOOD = [(1, 0, 0, 1, 0o666, 0, b"ep81"), (2, 1, 0, 2, 0o444, 4096, b"data")]
UNITS = GOOD + [(3, 1, 1, 2, 0o444, 8192, b"data"), (4, 1, 2, 0x12, 0o644 & 0o666, 512, b"data")]

seeds = {
    "hello": seed(0, msg(HELLO, hello(GOOD))),
    "hello-units": seed(0, msg(HELLO, hello(UNITS))),
    "hello-twice": seed(0, msg(HELLO, hello(GOOD)), msg(HELLO, hello(GOOD))),
    "hello-bad-version": seed(0, msg(HELLO, hello(GOOD, version=1))),
    "hello-bad-function": seed(0, msg(HELLO, hello([(1, 7, 0, 1, 0o444, 0, b"x")]))),
    "hello-dup-name": seed(0, msg(HELLO, hello([(1, 0, 0, 1, 0o444, 0, b"x"), (2, 0, 0, 1, 0o444, 0, b"x")]))),
    "reply-before-hello": seed(0, msg(REPLY, req=1)),
    "log-starting": seed(0, msg(LOG, b"hello \x01 world", status=3)),
    "replies": seed(1, msg(REPLY, req=1), msg(REPLY, b"x" * 10, req=2, status=10), msg(REPLY, req=3, status=16),
                    msg(REPLY, req=4, status=1), msg(REPLY, req=5), msg(REPLY, b"y" * 512, req=6, status=512),
                    msg(REPLY, req=7, status=4), msg(REPLY, req=8)),
    "replies-errors": seed(1, msg(REPLY, req=1, status=-2), msg(REPLY, req=2, status=-11), msg(REPLY, req=3, status=-5),
                           msg(REPLY, req=4, status=-19), msg(REPLY, req=5, status=-22)),
    "timeouts": seed(3, msg(REPLY, req=2, status=-4), msg(REPLY, req=1), msg(REPLY, req=3, status=16)),
    "poll-ready": seed(1, msg(POLL_READY, handle=2), msg(POLL_READY, handle=3), msg(POLL_READY, handle=99),
                       msg(REPLY, req=4, status=1)),
    "open-then-poll-ready": seed(1, msg(REPLY, req=1), msg(POLL_READY, handle=1), msg(LOG, b"opened", status=7)),
    "dup-reply": seed(1, msg(REPLY, b"z" * 4, req=2, status=4), msg(REPLY, b"z" * 4, req=2, status=4)),
    "unknown-req": seed(1, msg(REPLY, req=12345)),
    "read-too-long": seed(1, msg(REPLY, b"q" * 100, req=2, status=100)),
    "bad-len": seed(1, msg(REPLY, req=2, length=41)),
    "truncated": seed(1, msg(REPLY, b"abc", req=2, status=3)[:20]),
    "reserved": seed(1, msg(REPLY, req=1)[:36] + b"\x01\x00\x00\x00"),
    "daemon-type": seed(1, msg(17, req=1, size=10)),
    "log-flood": seed(1, *[msg(LOG, b"chatty driver line %d" % i, status=6) for i in range(40)]),
    "tick-then-replies": seed(1, b"", msg(REPLY, req=2, status=-4), msg(REPLY, b"ab", req=6, status=2), b"",
                              msg(REPLY, req=3, status=16)),
    "bad-status": seed(1, msg(REPLY, req=1, status=-100000)),
    "shm-replies": seed(5, msg(REPLY, req=9, status=100, flags=F_SHM), msg(REPLY, req=10, status=4096)),
    "shm-at-end-of-slot": seed(5, msg(REPLY, req=9, status=16, flags=F_SHM, shm=SLOT - 16)),
    "shm-inline": seed(5, msg(REPLY, b"i" * 100, req=9, status=100), msg(REPLY, req=10, status=-5)),
    "shm-foreign": seed(5, msg(REPLY, req=9, status=16, flags=F_SHM, shm=SLOT)),
    "shm-outside": seed(5, msg(REPLY, req=9, status=16, flags=F_SHM, shm=SLOTS * SLOT - 8)),
    "shm-no-slot": seed(5, msg(REPLY, req=2, status=10, flags=F_SHM)),
    "shm-write-reply": seed(5, msg(REPLY, req=10, status=16, flags=F_SHM, shm=SLOT)),
    "shm-unmapped": seed(1, msg(REPLY, req=9, status=16, flags=F_SHM)),
    "shm-timeouts": seed(7, msg(REPLY, req=9, status=8, flags=F_SHM), b"", msg(REPLY, req=10, status=4096)),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
