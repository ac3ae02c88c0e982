/* Encoding, decoding and validation of the replication protocol. */
#include "proto/repl.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

/* Little-endian field writers and readers over a byte cursor. */
static inline void put16(uint8_t **p, uint16_t v) { v = htole16(v); memcpy(*p, &v, 2); *p += 2; }
static inline void put32(uint8_t **p, uint32_t v) { v = htole32(v); memcpy(*p, &v, 4); *p += 4; }
static inline void put64(uint8_t **p, uint64_t v) { v = htole64(v); memcpy(*p, &v, 8); *p += 8; }
static inline void putb(uint8_t **p, const void *b, size_t n) { memcpy(*p, b, n); *p += n; }
static inline uint16_t get16(const uint8_t **p) { uint16_t v; memcpy(&v, *p, 2); *p += 2; return le16toh(v); }
static inline uint32_t get32(const uint8_t **p) { uint32_t v; memcpy(&v, *p, 4); *p += 4; return le32toh(v); }
static inline uint64_t get64(const uint8_t **p) { uint64_t v; memcpy(&v, *p, 8); *p += 8; return le64toh(v); }
static inline void getb(const uint8_t **p, void *b, size_t n) { memcpy(b, *p, n); *p += n; }

/* Hello layout: magic 8, version 2, flags 2, length 4, disk_bytes 8,
 * sector_size 4, max_payload 4, primary_id 16, replica_id 16, generation 8,
 * epoch 8; version 3: bitmap_generation 8, history 16, changed_bytes 8;
 * version 5: offers 4; reserved to 128. */
void bsr_hello_pack(const struct bsr_hello *h, uint8_t out[BSR_HELLO_LEN])
{
    uint8_t *p = out;

    memset(out, 0, BSR_HELLO_LEN);
    putb(&p, BSR_MAGIC, 8);
    put16(&p, h->version);
    put16(&p, h->flags);
    put32(&p, BSR_HELLO_LEN);
    put64(&p, h->disk_bytes);
    put32(&p, h->sector_size);
    put32(&p, h->max_payload);
    putb(&p, h->primary_id, BSR_ID_LEN);
    putb(&p, h->replica_id, BSR_ID_LEN);
    put64(&p, h->generation);
    put64(&p, h->epoch);
    if (h->version >= 3) {
        put64(&p, h->bitmap_generation);
        put64(&p, h->history[0]);
        put64(&p, h->history[1]);
        put64(&p, h->changed_bytes);
    }
    if (h->version >= 5)
        put32(&p, h->offers);
}

static int check_head(const uint8_t **p, uint16_t *version, uint16_t *flags, uint32_t want_len,
                      const char **why)
{
    uint32_t len;

    if (memcmp(*p, BSR_MAGIC, 8) != 0) {
        *why = "bad magic: not a blkship peer";
        return -EPROTO;
    }
    *p += 8;
    *version = get16(p);
    *flags = get16(p);
    len = get32(p);
    if (len != want_len) {
        *why = "bad handshake length";
        return -EPROTO;
    }
    return 0;
}

int bsr_hello_unpack(const uint8_t in[BSR_HELLO_LEN], struct bsr_hello *h, const char **why)
{
    const uint8_t *p = in;
    int r = check_head(&p, &h->version, &h->flags, BSR_HELLO_LEN, why);

    if (r < 0)
        return r;
    h->disk_bytes = get64(&p);
    h->sector_size = get32(&p);
    h->max_payload = get32(&p);
    getb(&p, h->primary_id, BSR_ID_LEN);
    getb(&p, h->replica_id, BSR_ID_LEN);
    h->generation = get64(&p);
    h->epoch = get64(&p);
    h->bitmap_generation = h->history[0] = h->history[1] = h->changed_bytes = 0;
    if (h->version >= 3) {
        h->bitmap_generation = get64(&p);
        h->history[0] = get64(&p);
        h->history[1] = get64(&p);
        h->changed_bytes = get64(&p);
    }
    h->offers = h->version >= 5 ? get32(&p) : 0;
    /* The reserved bytes are zero in every version this build knows.  A
     * newer primary may give them meaning: its hello is read as far as
     * this version defines it (the welcome then chooses this version, and
     * the primary must not rely on what it added). */
    if (h->version > BSR_VERSION)
        return 0;
    for (; p < in + BSR_HELLO_LEN; p++) {
        if (*p) {
            *why = "non-zero reserved bytes in the hello";
            return -EPROTO;
        }
    }
    return 0;
}

/* Welcome layout: magic 8, version 2, flags 2, length 4, status 4,
 * max_payload 4, disk_bytes 8, replica_id 16, primary_id 16, generation 8,
 * epoch 8, reason 48. */
void bsr_welcome_pack(const struct bsr_welcome *w, uint8_t out[BSR_WELCOME_LEN])
{
    uint8_t *p = out;

    memset(out, 0, BSR_WELCOME_LEN);
    putb(&p, BSR_MAGIC, 8);
    put16(&p, w->version);
    put16(&p, w->flags);
    put32(&p, BSR_WELCOME_LEN);
    put32(&p, (uint32_t)w->status);
    put32(&p, w->max_payload);
    put64(&p, w->disk_bytes);
    putb(&p, w->replica_id, BSR_ID_LEN);
    putb(&p, w->primary_id, BSR_ID_LEN);
    put64(&p, w->generation);
    put64(&p, w->epoch);
    putb(&p, w->reason, BSR_REASON_LEN);
    out[BSR_WELCOME_LEN - 1] = 0;
}

int bsr_welcome_unpack(const uint8_t in[BSR_WELCOME_LEN], struct bsr_welcome *w,
                       const char **why)
{
    const uint8_t *p = in;
    int r = check_head(&p, &w->version, &w->flags, BSR_WELCOME_LEN, why);

    if (r < 0)
        return r;
    w->status = (int32_t)get32(&p);
    w->max_payload = get32(&p);
    w->disk_bytes = get64(&p);
    getb(&p, w->replica_id, BSR_ID_LEN);
    getb(&p, w->primary_id, BSR_ID_LEN);
    w->generation = get64(&p);
    w->epoch = get64(&p);
    getb(&p, w->reason, BSR_REASON_LEN);
    w->reason[BSR_REASON_LEN - 1] = '\0';
    return 0;
}

void bsr_frame_pack(const struct bsr_frame *f, uint8_t out[BSR_FRAME_HDR_LEN])
{
    uint8_t *p = out;

    put64(&p, f->sector);
    put32(&p, f->count);
    *p++ = f->kind;
    *p++ = f->flags;
    put16(&p, 0);
}

int bsr_frame_unpack(const uint8_t in[BSR_FRAME_HDR_LEN], const struct bsr_limits *lim,
                     bool from_primary, struct bsr_frame *f, const char **why)
{
    const uint8_t *p = in;
    uint16_t reserved;

    f->sector = get64(&p);
    f->count = get32(&p);
    f->kind = *p++;
    f->flags = *p++;
    reserved = get16(&p);
    if (f->flags != 0 || reserved != 0) {
        *why = "unknown flags or non-zero reserved bytes";
        return -EPROTO;
    }
    switch (f->kind) {
    case BSR_DATA:
    case BSR_ZERO:
        if (!from_primary) {
            *why = "data frame from the secondary";
            return -EPROTO;
        }
        if (f->count == 0) {
            *why = "extent with count 0";
            return -EPROTO;
        }
        if (f->kind == BSR_DATA && f->count > lim->max_payload / BSR_SECTOR_SIZE) {
            *why = "count over the negotiated payload limit";
            return -EPROTO;
        }
        if (f->sector >= lim->disk_sectors || f->count > lim->disk_sectors - f->sector) {
            *why = "extent beyond the end of the disk";
            return -EPROTO;
        }
        return 0;
    case BSR_ZDATA:
        if (!lim->zstd || lim->version < 5) {
            *why = "compressed data frame in a session that did not agree to them";
            return -EPROTO;
        }
        if (!from_primary) {
            *why = "data frame from the secondary";
            return -EPROTO;
        }
        /* The decompressed size is checked against the disk once known. */
        if (f->count == 0 || f->count > lim->max_payload) {
            *why = "compressed payload empty or over the negotiated payload limit";
            return -EPROTO;
        }
        if (f->sector >= lim->disk_sectors) {
            *why = "extent beyond the end of the disk";
            return -EPROTO;
        }
        return 0;
    case BSR_FLUSH:
        if (!from_primary) {
            *why = "flush from the secondary";
            return -EPROTO;
        }
        break;
    case BSR_ACK:
        if (from_primary) {
            *why = "acknowledgement from the primary";
            return -EPROTO;
        }
        break;
    case BSR_ERROR:
        if (from_primary) {
            *why = "error frame from the primary";
            return -EPROTO;
        }
        return 0; /* count carries the reason */
    case BSR_HEARTBEAT:
        break;
    case BSR_HASHES:
    case BSR_HASHED:
        if (lim->version < 3) {
            *why = "checksum frame in a session before version 3";
            return -EPROTO;
        }
        if (from_primary != (f->kind == BSR_HASHES)) {
            *why = from_primary ? "checksum answer from the primary" : "checksums from the secondary";
            return -EPROTO;
        }
        if (f->count == 0 || f->count > BSR_HASHES_MAX) {
            *why = "checksum frame with no blocks or more than 1024";
            return -EPROTO;
        }
        if (bsr_frame_payload(f) > lim->max_payload) {
            *why = "checksum frame over the negotiated payload limit";
            return -EPROTO;
        }
        if (f->sector >= lim->disk_sectors) {
            *why = "checksum range beyond the end of the disk";
            return -EPROTO;
        }
        return 0;
    case BSR_EXTENTS:
        if (lim->version < 4) {
            *why = "extents frame in a session before version 4";
            return -EPROTO;
        }
        if (from_primary) {
            *why = "extents from the primary";
            return -EPROTO;
        }
        if (f->sector != 0) {
            *why = "extents frame with a non-zero sector";
            return -EPROTO;
        }
        if (f->count > BSR_EXTENTS_MAX || bsr_frame_payload(f) > lim->max_payload) {
            *why = "extents frame over 4096 entries or the negotiated payload limit";
            return -EPROTO;
        }
        return 0;
    case BSR_END_EPOCH:
    case BSR_ABORT_EPOCH:
    case BSR_COMMITTED:
        if (lim->version < 2) {
            *why = "epoch frame in a version 1 session";
            return -EPROTO;
        }
        if (from_primary != (f->kind != BSR_COMMITTED)) {
            *why = from_primary ? "commit report from the primary" : "epoch control from the secondary";
            return -EPROTO;
        }
        if (f->sector == 0) {
            *why = "epoch 0 (epochs are numbered from 1)";
            return -EPROTO;
        }
        break;
    default:
        *why = "unknown frame kind";
        return -EPROTO;
    }
    if (f->count != 0) {
        *why = "non-zero count in a control frame";
        return -EPROTO;
    }
    return 0;
}

void bsr_hash_range_pack(const struct bsr_hash_range *r, uint8_t out[BSR_HASH_RANGE_LEN])
{
    uint8_t *p = out;

    put32(&p, r->block_sectors);
    put32(&p, r->range_sectors);
}

void bsr_hash_range_unpack(const uint8_t in[BSR_HASH_RANGE_LEN], struct bsr_hash_range *r)
{
    const uint8_t *p = in;

    r->block_sectors = get32(&p);
    r->range_sectors = get32(&p);
}

int bsr_hash_range_check(const struct bsr_frame *f, const struct bsr_hash_range *r,
                         const struct bsr_limits *lim, const char **why)
{
    uint32_t b = r->block_sectors;

    if (b < BSR_HASH_BLOCK_MIN_SECTORS || b > BSR_HASH_BLOCK_MAX_SECTORS || (b & (b - 1))) {
        *why = "checksum block size not a power of two from 4 KiB to 8 MiB";
        return -EPROTO;
    }
    if (f->sector % b) {
        *why = "checksum range not on a block boundary";
        return -EPROTO;
    }
    if (r->range_sectors == 0 || (r->range_sectors + (uint64_t)b - 1) / b != f->count) {
        *why = "checksum range and block count disagree";
        return -EPROTO;
    }
    if (f->sector >= lim->disk_sectors || r->range_sectors > lim->disk_sectors - f->sector) {
        *why = "checksum range beyond the end of the disk";
        return -EPROTO;
    }
    /* Only the last block of the disk may be short. */
    if (r->range_sectors % b && f->sector + r->range_sectors != lim->disk_sectors) {
        *why = "short checksum block before the end of the disk";
        return -EPROTO;
    }
    if ((uint64_t)r->range_sectors * BSR_SECTOR_SIZE > lim->max_payload) {
        *why = "checksum range over the negotiated payload limit";
        return -EPROTO;
    }
    return 0;
}

const char *bsr_status_str(int status)
{
    switch (status) {
    case BSR_OK: return "ok";
    case BSR_E_VERSION: return "protocol version not supported";
    case BSR_E_SIZE: return "disk of another size";
    case BSR_E_IDENTITY: return "wrong replica";
    case BSR_E_PAIRED: return "replica paired with another primary";
    case BSR_E_BUSY: return "another primary session is active";
    case BSR_E_LIMITS: return "limits out of range";
    case BSR_E_IO: return "replica I/O error";
    case BSR_E_PROTOCOL: return "protocol error";
    case BSR_E_PROMOTED: return "the replica was promoted";
    case BSR_E_SPLIT_BRAIN: return "split brain";
    case BSR_E_GENERATION: return "unrelated data generations";
    default: return "unknown status";
    }
}

void bsr_extent_pack(uint64_t sector, uint32_t count, uint8_t out[BSR_EXTENT_LEN])
{
    uint8_t *p = out;

    put64(&p, sector);
    put32(&p, count);
    put32(&p, 0);
}

int bsr_extent_unpack(const uint8_t in[BSR_EXTENT_LEN], const struct bsr_limits *lim,
                      uint64_t *sector, uint32_t *count, const char **why)
{
    const uint8_t *p = in;
    uint32_t reserved;

    *sector = get64(&p);
    *count = get32(&p);
    reserved = get32(&p);
    if (reserved != 0) {
        *why = "extent with non-zero reserved bytes";
        return -EPROTO;
    }
    if (*count == 0) {
        *why = "extent with count 0";
        return -EPROTO;
    }
    if (*sector >= lim->disk_sectors || *count > lim->disk_sectors - *sector) {
        *why = "extent beyond the end of the disk";
        return -EPROTO;
    }
    return 0;
}
