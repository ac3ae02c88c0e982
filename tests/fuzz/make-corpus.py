#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/):
a handful of valid inputs each, laid out as each harness's opening comment
says.  Run it again after changing a harness's input layout; the files are
committed, so neither CI nor run.sh needs Python."""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"BLKSHIP\x1a"
PID = bytes(range(0x10, 0x20))
RID = bytes(range(0xa0, 0xb0))


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def hello(disk_bytes, max_payload, replica_id, generation=1, epoch=0):
    body = MAGIC + struct.pack("<HHIQII", 1, 0, 128, disk_bytes, 512, max_payload)
    body += PID + replica_id + struct.pack("<QQ", generation, epoch)
    return body.ljust(128, b"\0")


def welcome(status, max_payload, disk_bytes, reason):
    body = MAGIC + struct.pack("<HHIiIQ", 1, 0, 128, status, max_payload, disk_bytes)
    body += RID + PID + struct.pack("<QQ", 1, 0)
    return body + reason.encode().ljust(48, b"\0")[:47] + b"\0"


def frame(sel, disk_sectors, max_payload, sector, count, kind):
    return (bytes([sel]) + struct.pack("<QI", disk_sectors, max_payload)
            + struct.pack("<QIBBH", sector, count, kind, 0, 0))


def repl():
    mib = 1 << 20
    write("repl", "hello-first-pairing", b"\0" + hello(64 * mib, mib, bytes(16)))
    write("repl", "hello-paired", b"\0" + hello(8 << 30, 8 * mib, RID, 3, 17))
    write("repl", "welcome-ok", b"\1" + welcome(0, mib, 64 * mib, ""))
    write("repl", "welcome-refused", b"\1" + welcome(2, 0, 32 * mib, "disk of another size"))
    disk = 131072  # 64 MiB in sectors
    write("repl", "frame-data", frame(6, disk, mib, 2048, 8, 1))
    write("repl", "frame-zero-to-end", frame(6, disk, mib, disk - 16, 16, 2))
    write("repl", "frame-flush", frame(6, disk, mib, 42, 0, 3))
    write("repl", "frame-ack", frame(2, disk, mib, 42, 0, 4))
    write("repl", "frame-heartbeat", frame(6, disk, mib, 123456, 0, 5))
    write("repl", "frame-error", frame(2, disk, mib, 0, 8, 6))


def state():
    write("state", "primary.state",
          b"format 1\nrole primary\nprimary_id " + PID.hex().encode()
          + b"\nreplica_id " + RID.hex().encode()
          + b"\ngeneration 1\nlog_id 1311768467463790320\ndisk_sectors 131072\n")
    write("state", "primary-unpaired.state",
          b"format 1\nrole primary\nprimary_id " + PID.hex().encode()
          + b"\nreplica_id " + b"0" * 32 + b"\ngeneration 1\nlog_id 0\ndisk_sectors 2048\n")
    write("state", "secondary.state",
          b"format 1\nrole secondary\nreplica_id " + RID.hex().upper().encode()
          + b"\nprimary_id " + PID.hex().encode()
          + b"\ngeneration 1\nepoch 0\ndisk_bytes 67108864\n")
    write("state", "secondary-max.state",
          b"format 1\nrole secondary\nreplica_id " + RID.hex().encode()
          + b"\nprimary_id " + b"f" * 32
          + b"\ngeneration 18446744073709551615\nepoch 007\ndisk_bytes 0")


def ctlmsg(cmd, params=b""):
    return cmd + params.ljust(16, b"\0")


def wlog_ctl():
    cmds = [b"shmp", b"info", b"seal", b"next", b"kick", b"peek", b"clrw", b"getw"]
    write("wlog-ctl", "stream-agent-session", b"\0\x07" + b"".join(ctlmsg(c) for c in cmds))
    write("wlog-ctl", "stream-unknown-and-partial",
          b"\0\x01" + ctlmsg(b"\xffxyz") + ctlmsg(b"kick")[:9])
    disk = 131072
    reqs = struct.pack("<QII", 0, 8, 0) + struct.pack("<QII", disk - 8184, 8184, 0)
    reqs += struct.pack("<QII", 100, 512, 512 * 512)
    write("wlog-ctl", "server-ring-requests", b"\1" + struct.pack("<QIII", disk, 0, 0, 3) + reqs)
    write("wlog-ctl", "server-ring-wrapped",
          b"\1" + struct.pack("<QIII", disk, 0xfffffff0, 4, (0xfffffff0 + 64) & 0xffffffff)
          + struct.pack("<QII", 7, 1, 4095 * 512))
    shmp = struct.pack("<I", 8 << 20) + b"/log_vm1-disk0.wlog".ljust(252, b"\0")
    write("wlog-ctl", "reply-shmp", b"\2" + shmp)
    info = b"info" + struct.pack("<IQIIIIQQQQI12x", 1, disk, 512, 8, 262143, 8184,
                                 0x1234, 3, 10, 2, 0)
    write("wlog-ctl", "reply-info", b"\2" + info)
    write("wlog-ctl", "reply-seal", b"\2" + b"seal" + struct.pack("<IQQII", 2, 4, 24, 0, 0))
    write("wlog-ctl", "reply-errr", b"\2" + b"errr" + struct.pack("<i", 38) + b"xyzw" + bytes(8))
    write("wlog-ctl", "reply-kick-broken", b"\2" + b"kick" + struct.pack("<i", 71) + b"kick"
          + bytes(8))
    rsps = b"".join(struct.pack("<QII", 1000 + i * 512, 512, i * 512 * 512) for i in range(3))
    write("wlog-ctl", "client-ring-responses",
          b"\3" + struct.pack("<QQI", 1000, 1536, 511) + rsps)
    write("wlog-ctl", "client-ring-failed-read",
          b"\3" + struct.pack("<QQI", 0, 8, 511) + struct.pack("<QII", 0, 0, 5))


def opt():
    for name, value in [("u64", "4096"), ("hex", "0x1000"), ("size-k", "64K"),
                        ("size-gib", "1GiB"), ("dur-ms", "100ms"), ("dur-s", "5s"),
                        ("dur-min", "2min"), ("hostport", "127.0.0.1:7789"),
                        ("hostport-v6", "[::1]:7789"), ("hostport-name", "dr.example:1"),
                        ("port-too-big", "127.0.0.1:99999"), ("overflow", "18446744073709551616")]:
        write("opt", name, value.encode())


def status_view():
    primary = ('{"schema": 1, "role": "primary", "connected": true, "state": "replicating", '
               '"peer": "dr.example:7789", "disk_bytes": 1073741824, "grain_bytes": 4096, '
               '"dirty_bytes": 4096, "inflight_bytes": 0, "sent_bytes": 1073741824, '
               '"acked_bytes": 1073737728, "zero_bytes": 0, "sync_percent": 99.99, '
               '"rate_bytes_per_sec": 104857600, "eta_seconds": 0, "epoch": 12, '
               '"log_connected": true, "read_errors": 0, '
               '"replica_id": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"}\n')
    secondary = ('{"schema": 1, "role": "secondary", "connected": false, "peer": "", '
                 '"device": "/dev/vg0/vm1 \\"q\\" \\u001b[31m\\u00e9", '
                 '"disk_bytes": 67108864, "dirty_bytes": null, "inflight_bytes": 0, '
                 '"sent_bytes": 0, "received_bytes": 8192, "written_bytes": 8192, '
                 '"acked_bytes": 8192, "bad_frames": 0, "sync_percent": null}\n')
    error = '{"schema": 1, "error": "unknown request"}\n'
    for mode in (0, 1):
        write("status-view", "primary-%d" % mode, bytes([mode]) + primary.encode())
        write("status-view", "secondary-%d" % mode, bytes([mode]) + secondary.encode())
    write("status-view", "error", b"\0" + error.encode())
    write("status-view", "schema-2", b"\1" + primary.replace('"schema": 1', '"schema": 2').encode())
    # Epoch fields (docs/epochs.md §6), optional and shown when present.
    epochs_secondary = secondary.replace(
        '"sync_percent": null}',
        '"sync_percent": null, "replica_consistent": false, "applied_epoch": 41, '
        '"committed_epoch": 42, "journal_bytes": 1048576, "journal_max_bytes": 268435456, '
        '"protocol_version": 2, "oversize_epochs": 1, '
        '"consistency_note": "an epoch is being applied \\u001b[2J"}')
    epochs_primary = primary.replace(
        '"epoch": 12,',
        '"epoch": 12, "committed_epoch": 11, "lag_ms": 140, "mode": "async", '
        '"cow": {"bytes_now": 65536, "bytes_peak": 1048576, "max_bytes": 67108864, '
        '"preserved": 16, "waits": 2, "wait_ms": 7, "breaks": 0, "broken": false},')
    for mode in (0, 1):
        write("status-view", "secondary-epochs-%d" % mode, bytes([mode]) + epochs_secondary.encode())
        write("status-view", "primary-epochs-%d" % mode, bytes([mode]) + epochs_primary.encode())


def sni():
    """First flights of a TLS 1.3 client, as Python's OpenSSL writes them."""
    import ssl
    for name in ("r1", "vm-042.disk_0", None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        rbio, wbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        conn = ctx.wrap_bio(rbio, wbio, server_hostname=name)
        try:
            conn.do_handshake()
        except ssl.SSLWantReadError:
            pass
        write("sni", "hello-" + (name or "noname"), wbio.read())


def main():
    repl()
    sni()
    state()
    wlog_ctl()
    opt()
    status_view()
    return 0


if __name__ == "__main__":
    sys.exit(main())
