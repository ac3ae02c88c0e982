#!/usr/bin/python3
"""A xenstore protocol peer for the tests (the real xenstored needs a
hypervisor): serves the xenstore wire protocol (xen/io/xs_wire.h: a
16-byte header of type, request id, transaction id and length, then the
payload) on a unix socket, which libxenstore uses when XENSTORED_PATH
names it.  It keeps a tree of nodes with values and permissions, and
answers DIRECTORY, READ, WRITE, MKDIR, RM, GET_PERMS, SET_PERMS,
GET_DOMAIN_PATH, TRANSACTION_START/END (applied at once: the tests need
atomic sets, not isolation), WATCH/UNWATCH (acknowledged, no events) and
RESET_WATCHES; anything else is an ENOSYS error.

    xenstored-peer.py SOCKET INITIAL.json DUMP.json [LIMIT_S]

INITIAL.json maps paths to values ("/local/domain/7/name": "vm7"); after
every change the whole tree is written to DUMP.json (path -> value, and
"perms:PATH" -> the permission strings).  It stops by itself after LIMIT_S
seconds (default 300)."""
import json
import os
import selectors
import socket
import struct
import sys
import time

DIRECTORY, READ, GET_PERMS, WATCH, UNWATCH, T_START, T_END = 1, 2, 3, 4, 5, 6, 7
GET_DOMAIN_PATH, WRITE, MKDIR, RM, SET_PERMS, ERROR = 10, 11, 12, 13, 14, 16
RESET_WATCHES = 21

path, initial, dump = sys.argv[1], sys.argv[2], sys.argv[3]
limit = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
nodes = {"/": ""}
perms = {}
for p, v in json.load(open(initial)).items():
    nodes[p] = v


def parents(p):
    out = []
    while p != "/":
        p = p.rsplit("/", 1)[0] or "/"
        out.append(p)
    return out


def make(p, v=None):
    for q in parents(p):
        nodes.setdefault(q, "")
    if v is not None or p not in nodes:
        nodes[p] = "" if v is None else v


for p in list(nodes):
    make(p, nodes[p])


def save():
    out = dict(nodes)
    out.update({"perms:" + p: v for p, v in perms.items()})
    tmp = dump + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    os.replace(tmp, dump)


def children(p):
    pre = "/" if p == "/" else p + "/"
    return sorted({q[len(pre):].split("/")[0] for q in nodes if q.startswith(pre) and q != p})


next_tx = [1]


def handle(kind, payload):
    """Returns (type, reply bytes)."""
    args = payload.split(b"\0")
    p = args[0].decode()
    if kind == DIRECTORY:
        if p not in nodes:
            return ERROR, b"ENOENT\0"
        return kind, b"".join(c.encode() + b"\0" for c in children(p))
    if kind == READ:
        if p not in nodes:
            return ERROR, b"ENOENT\0"
        return kind, nodes[p].encode()
    if kind == WRITE:
        value = payload[len(args[0]) + 1:].decode()
        make(p, value)
        save()
        return kind, b"OK\0"
    if kind == MKDIR:
        make(p)
        save()
        return kind, b"OK\0"
    if kind == RM:
        for q in [q for q in nodes if q == p or q.startswith(p + "/")]:
            del nodes[q]
            perms.pop(q, None)
        save()
        return kind, b"OK\0"
    if kind == SET_PERMS:
        if p not in nodes:
            return ERROR, b"ENOENT\0"
        perms[p] = [a.decode() for a in args[1:] if a]
        save()
        return kind, b"OK\0"
    if kind == GET_PERMS:
        if p not in nodes:
            return ERROR, b"ENOENT\0"
        return kind, b"".join(s.encode() + b"\0" for s in perms.get(p, ["n0"]))
    if kind == GET_DOMAIN_PATH:
        return kind, ("/local/domain/%s" % p).encode() + b"\0"
    if kind == T_START:
        next_tx[0] += 1
        return kind, str(next_tx[0]).encode() + b"\0"
    if kind in (T_END, WATCH, UNWATCH, RESET_WATCHES):
        return kind, b"OK\0"
    return ERROR, b"ENOSYS\0"


try:
    os.unlink(path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(16)
save()
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
bufs = {}
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            bufs[c] = b""
            sel.register(c, selectors.EVENT_READ)
            continue
        data = s.recv(65536)
        if not data:
            sel.unregister(s)
            del bufs[s]
            s.close()
            continue
        bufs[s] += data
        while len(bufs[s]) >= 16:
            kind, req, tx, n = struct.unpack("<IIII", bufs[s][:16])
            if len(bufs[s]) < 16 + n:
                break
            payload, bufs[s] = bufs[s][16:16 + n], bufs[s][16 + n:]
            rtype, reply = handle(kind, payload)
            s.sendall(struct.pack("<IIII", rtype, req, tx, len(reply)) + reply)
