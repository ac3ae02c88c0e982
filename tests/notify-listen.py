#!/usr/bin/python3
"""Plays systemd's side of sd_notify(3) for the tests: binds a unix datagram
socket at PATH and appends every notification it receives to OUT, one line
each: milliseconds since the epoch, a tab, then the message with its
newlines as "|".  Runs until killed or until LIMIT seconds (default 300)
have passed, so that a test that dies cannot leave it behind for long."""
import os
import socket
import sys
import time

path, out = sys.argv[1], sys.argv[2]
limit = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
deadline = time.monotonic() + limit
with open(out, "a", buffering=1) as f:
    while time.monotonic() < deadline:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg = s.recv(4096)
        except socket.timeout:
            continue
        f.write("%d\t%s\n" % (time.time() * 1000, msg.decode("utf-8", "replace").replace("\n", "|")))
