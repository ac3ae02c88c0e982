#!/usr/bin/env python3
"""pit-writer: one writer at queue depth 1 that stamps every block it writes
with a sequence number, for the point-in-time tests.

Usage: pit-writer.py NBD_URI LOG STOPFILE MAX_SECONDS [SEED]

Block b (4096 bytes) written by write number s holds the 16-byte record
(s, b), little-endian u64s, 256 times.  Each write goes to a random block
and is logged as "s b" on its own line in LOG, flushed, after its reply:
every write in LOG had completed when it was logged, and write s + 1 was
issued only after that.  Stops when STOPFILE exists or after MAX_SECONDS;
prints "pit-writer: N writes" at the end."""
import os
import random
import struct
import sys
import time

import nbd

BLOCK = 4096


def main():
    uri, log_path, stop, max_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rnd = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else os.getpid())
    h = nbd.NBD()
    h.connect_uri(uri)
    blocks = h.get_size() // BLOCK
    end = time.monotonic() + max_s
    seq = 0
    with open(log_path, "w", buffering=1) as log:
        while time.monotonic() < end:
            if seq % 64 == 0 and os.path.exists(stop):
                break
            seq += 1
            b = rnd.randrange(blocks)
            h.pwrite(struct.pack("<QQ", seq, b) * (BLOCK // 16), b * BLOCK)
            log.write("%d %d\n" % (seq, b))
            log.flush()
    h.shutdown()
    print("pit-writer: %d writes" % seq)


if __name__ == "__main__":
    main()
