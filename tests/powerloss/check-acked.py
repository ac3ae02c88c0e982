#!/usr/bin/env python3
"""Checks that every grain the replica has acknowledged is on the replica's
durable store, byte for byte.

A grain counts as acknowledged when it is clean in the primary's dirty
bitmap file (primary/dirty.c: a 4096-byte header "BSDIRTY1", u32 version 1,
u32 grain in sectors, u64 disk sectors, u64 grains; then one bit per grain
in little-endian u64 words) and not dirty in the write log (the extents of
`blkship wlog peek`, one "SECTOR COUNT" per line).  For each such grain the
primary's image and the replica's backing file must be equal.  Why this is
exactly the set to check is argued in tests/replication/test-powerloss-replica.sh.

    check-acked.py BITMAP PEEK IMAGE REPLICA

Prints one summary line; exits 0 when every checked grain matches, 1 when
some do not (the first ones are listed), 2 on bad input.
"""
import struct
import sys

SECTOR = 512
HDR = 4096
EXPORT_MAX = 262143


def die(msg):
    print("check-acked: " + msg, file=sys.stderr)
    sys.exit(2)


def read_bitmap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HDR:
        die(f"{path}: {len(data)} bytes, shorter than its header")
    magic, version, grain, disk_sectors, ngrains = struct.unpack_from("<8sIIQQ", data, 0)
    if magic != b"BSDIRTY1" or version != 1:
        die(f"{path}: not a version 1 dirty bitmap (magic {magic!r}, version {version})")
    if grain == 0 or grain & (grain - 1) or ngrains != (disk_sectors + grain - 1) // grain:
        die(f"{path}: inconsistent header (grain {grain}, {disk_sectors} sectors, {ngrains} grains)")
    nwords = (ngrains + 63) // 64
    if len(data) != HDR + nwords * 8:
        die(f"{path}: {len(data)} bytes, expected {HDR + nwords * 8}")
    bits = int.from_bytes(data[HDR:], "little")
    return grain, disk_sectors, ngrains, bits


def read_peek(path, grain, ngrains):
    dirty = set()
    n = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                sector, count = (int(x) for x in line.split())
            except ValueError:
                die(f"{path}: not an extent line: {line!r}")
            if count <= 0:
                die(f"{path}: empty extent: {line!r}")
            n += 1
            first, last = sector // grain, (sector + count - 1) // grain
            if last >= ngrains:
                die(f"{path}: extent beyond the disk: {line!r}")
            dirty.update(range(first, last + 1))
    if n >= EXPORT_MAX:
        die(f"{path}: {n} extents fill the export area; more may be dirty than it shows")
    return dirty


def main():
    if len(sys.argv) != 5:
        die("usage: check-acked.py BITMAP PEEK IMAGE REPLICA")
    bitmap, peek, image, replica = sys.argv[1:]
    grain, disk_sectors, ngrains, bits = read_bitmap(bitmap)
    log_dirty = read_peek(peek, grain, ngrains)
    gbytes = grain * SECTOR
    size = disk_sectors * SECTOR
    with open(image, "rb") as f:
        a = f.read(size)
    with open(replica, "rb") as f:
        b = f.read(size)
    if len(a) != size or len(b) != size:
        die(f"sizes: image {len(a)}, replica {len(b)}, disk {size}")

    checked = bitmap_dirty = only_log_dirty = differ_dirty = 0
    bad = []
    step = 1 << 20  # compare a MiB at once; look at its grains only if it differs
    per = step // gbytes if gbytes <= step else 1
    span = per * gbytes
    for base in range(0, ngrains, per):
        lo = base * gbytes
        hi = min(lo + span, size)
        same_span = a[lo:hi] == b[lo:hi]
        for g in range(base, min(base + per, ngrains)):
            glo, ghi = g * gbytes, min((g + 1) * gbytes, size)
            if (bits >> g) & 1:
                bitmap_dirty += 1
                if not same_span and a[glo:ghi] != b[glo:ghi]:
                    differ_dirty += 1
                continue
            if g in log_dirty:
                only_log_dirty += 1
                if not same_span and a[glo:ghi] != b[glo:ghi]:
                    differ_dirty += 1
                continue
            checked += 1
            if not same_span and a[glo:ghi] != b[glo:ghi]:
                bad.append(g)
    print(f"check-acked: {checked} acknowledged grains checked, {len(bad)} differ; "
          f"not checked: {bitmap_dirty} dirty in the bitmap, {only_log_dirty} more in the log "
          f"({differ_dirty} of those differ); grain {gbytes} bytes")
    for g in bad[:10]:
        print(f"check-acked: grain {g} (bytes {g * gbytes}..{(g + 1) * gbytes - 1}) "
              f"was acknowledged but the replica's store differs", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
