#!/usr/bin/env python3
"""pit-check: is a replica exactly the disk after some prefix of the
writes pit-writer.py logged?

Usage: pit-check.py REPLICA LOG

Every block of REPLICA must be all zeroes (never written) or 256 copies of
one record (s, b) with b its own block number (else: a torn or misplaced
block).  Let k be the highest s found.  Then every block must hold exactly
the last write to it numbered k or lower (or zeroes if there is none), and
every record must be a write LOG lists for that block.  Exit status 0 with
"pit-check: prefix of K writes holds (N blocks written, M blocks checked)",
1 with the first differences."""
import struct
import sys

BLOCK = 4096


def main():
    replica, log_path = sys.argv[1], sys.argv[2]
    writes = {}
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                break  # a line still being written
            writes[int(parts[0])] = int(parts[1])
    found = []
    bad = []
    zero = bytes(BLOCK)
    with open(replica, "rb") as f:
        b = 0
        while True:
            data = f.read(BLOCK)
            if not data:
                break
            if len(data) != BLOCK:
                bad.append("block %d: short read of %d bytes" % (b, len(data)))
                break
            if data == zero:
                found.append(0)
            else:
                rec = data[:16]
                s, blk = struct.unpack("<QQ", rec)
                if rec * (BLOCK // 16) != data:
                    bad.append("block %d: torn (not one record throughout; first (%d, %d))" % (b, s, blk))
                    found.append(None)
                elif blk != b:
                    bad.append("block %d: holds the write for block %d (write %d): misplaced" % (b, blk, s))
                    found.append(None)
                elif writes.get(s) != b:
                    bad.append("block %d: write %d is not a write of this block in the log" % (b, s))
                    found.append(None)
                else:
                    found.append(s)
            b += 1
    k = max([s for s in found if s] or [0])
    last = {}
    for s in sorted(writes):
        if s > k:
            break
        last[writes[s]] = s
    for b, s in enumerate(found):
        if s is None:
            continue
        want = last.get(b, 0)
        if s != want:
            bad.append("block %d: holds write %d, but write %d (of %d) is the last to it up to %d" %
                       (b, s, want, len(writes), k) if want else
                       "block %d: holds write %d, but no write to it up to %d" % (b, s, k))
    if bad:
        print("pit-check: the replica is not a prefix of the writes (highest write found %d):" % k)
        for line in bad[:20]:
            print("  " + line)
        if len(bad) > 20:
            print("  ... %d more" % (len(bad) - 20))
        sys.exit(1)
    print("pit-check: prefix of %d writes holds (%d blocks written, %d blocks checked)" %
          (k, len(last), len(found)))


if __name__ == "__main__":
    main()
