#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_proto.c into tests/fuzz/corpus/.

Each seed: a setting byte, then messages as u16 length + bytes (see
fuzz_proto.c).  With setting bit 0, req 1..17 name the requests in flight:
1 OPEN, 2 READ 64, 3 WRITE 16, 4 POLL, 5 CTL, 6 READ 512, 7 POLL,
8 LOOKUP "DCIM", 9 GETATTR node 5, 10 READDIR 4096, 11 CREATE "NEW.JPG",
12 UNLINK, 13 OPEN node 5, 14 FLUSH, 15 PING, 16 READ 8192, 17 WRITE 4096;
handle 1 is the OPEN's, 2 and 3 the two open handles.  With setting bit 2,
requests 16 and 17 have slots 0 and 1 of the shared buffer.
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


def hello(files, version=3):
    p = struct.pack("<HH", version, len(files))
    for (id_, fn, unit, kind, mode, size, name) in files:
        p += struct.pack("<IBBBHQB", id_, fn, unit, kind, mode, size, len(name)) + name
    return p


def node(id_, kind, mode, size, mtime, name):
    """A node record (LOOKUP/GETATTR/READDIR/CREATE replies)."""
    return struct.pack("<IBHQqB", id_, kind, mode, size, mtime, len(name)) + name


DIR, BLOCK = 3, 2


def seed(setting, *msgs):
    """msgs: messages; an empty one (b"") is a tick, see fuzz_proto.c."""
    out = bytes([setting])
    for m in msgs:
        out += struct.pack("<H", len(m)) + m
    return out


GOOD = [(1, 0, 0, 1, 0o666, 0, b"ep81"), (2, 1, 0, 2, 0o444, 4096, b"data")]
TREE = GOOD + [(0xFFFFFF00, 0, 0, DIR, 0o755, 0, b"store-00010001")]
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
    "shm-replies": seed(5, msg(REPLY, req=16, status=100, flags=F_SHM), msg(REPLY, req=17, status=4096)),
    "shm-at-end-of-slot": seed(5, msg(REPLY, req=16, status=16, flags=F_SHM, shm=SLOT - 16)),
    "shm-inline": seed(5, msg(REPLY, b"i" * 100, req=16, status=100), msg(REPLY, req=17, status=-5)),
    "shm-foreign": seed(5, msg(REPLY, req=16, status=16, flags=F_SHM, shm=SLOT)),
    "shm-outside": seed(5, msg(REPLY, req=16, status=16, flags=F_SHM, shm=SLOTS * SLOT - 8)),
    "shm-no-slot": seed(5, msg(REPLY, req=2, status=10, flags=F_SHM)),
    "shm-write-reply": seed(5, msg(REPLY, req=17, status=16, flags=F_SHM, shm=SLOT)),
    "shm-unmapped": seed(1, msg(REPLY, req=16, status=16, flags=F_SHM)),
    "shm-timeouts": seed(7, msg(REPLY, req=16, status=8, flags=F_SHM), b"", msg(REPLY, req=17, status=4096)),
    "hello-tree": seed(0, msg(HELLO, hello(TREE))),
    "hello-dir-id0": seed(0, msg(HELLO, hello([(0, 0, 0, DIR, 0o755, 0, b"store")]))),
    "tree-replies": seed(1, msg(REPLY, node(1, DIR, 0o755, 0, 1718445600, b"DCIM"), req=8, status=28),
                         msg(REPLY, node(5, BLOCK, 0o644, 300000, 1718445900, b"IMG 1.JPG"), req=9, status=33),
                         msg(REPLY, node(1, DIR, 0o755, 0, 0, b"DCIM") + node(5, BLOCK, 0o444, 7, 0, b"a"),
                             req=10, status=53),
                         msg(REPLY, node(0xFFFFFE00, BLOCK, 0o644, 0, 0, b"NEW.JPG"), req=11, status=31),
                         msg(REPLY, req=12), msg(REPLY, req=13), msg(REPLY, req=14)),
    "tree-errors": seed(1, msg(REPLY, req=8, status=-2), msg(REPLY, req=9, status=-2), msg(REPLY, req=10, status=-20),
                        msg(REPLY, req=11, status=-30), msg(REPLY, req=12, status=-1), msg(REPLY, req=13, status=-21),
                        msg(REPLY, req=14, status=-28)),
    "lookup-wrong-name": seed(1, msg(REPLY, node(1, DIR, 0o755, 0, 0, b"dcim"), req=8, status=28)),
    "getattr-wrong-node": seed(1, msg(REPLY, node(6, BLOCK, 0o644, 1, 0, b"x"), req=9, status=25)),
    "readdir-dir-size": seed(1, msg(REPLY, node(1, DIR, 0o755, 9, 0, b"DCIM"), req=10, status=28)),
    "create-dir": seed(1, msg(REPLY, node(9, DIR, 0o755, 0, 0, b"NEW.JPG"), req=11, status=31)),
    "lookup-no-node": seed(1, msg(REPLY, req=8)),
    "unlink-data": seed(1, msg(REPLY, b"xy", req=12, status=2)),
    "node-slash": seed(1, msg(REPLY, node(1, DIR, 0o755, 0, 0, b"DC/M"), req=8, status=28)),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
