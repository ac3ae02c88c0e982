/* The replication protocol between blkship-primary and blkship-secondary
 * (docs/protocol.md).  It runs inside TLS 1.3 from the first byte.  Every
 * integer on the wire is little-endian; the structs below are the decoded
 * host forms, and the *_pack / *_unpack functions convert, so no code ever
 * reads a wire struct in place.  Every field has a bound, checked by the
 * *_check functions before anything it describes is read or allocated.
 */
#ifndef BLKSHIP_PROTO_REPL_H
#define BLKSHIP_PROTO_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BSR_MAGIC "BLKSHIP\x1a"     /* 8 bytes */
/* The newest version this build speaks, and the oldest it still accepts.
 * Version 2 adds epochs (END_EPOCH, COMMITTED, ABORT_EPOCH); version 3
 * adds block checksums (HASHES, HASHED); version 4 the replica's own
 * changes, sent after the welcome (EXTENTS).  Version 5: the trailer of a
 * DATA or ZDATA frame is the CRC32C of its header alone (the payload is
 * authenticated by TLS's AEAD, and checked disk to disk by verify), and
 * compressed data frames (ZDATA) when both sides agree in the handshake.
 * The hello carries the primary's newest version and the welcome the one
 * chosen, min of both sides' newest. */
#define BSR_VERSION 5u
#define BSR_VERSION_MIN 1u
#define BSR_SECTOR_SIZE 512u
#define BSR_ID_LEN 16
#define BSR_HELLO_LEN 128u
#define BSR_HELLO_DEFINED_LEN 116u  /* the bytes version 5 gives meaning to */
#define BSR_WELCOME_LEN 128u
#define BSR_FRAME_HDR_LEN 16u
#define BSR_FRAME_CRC_LEN 4u
/* Largest payload either side may announce: 8 MiB. */
#define BSR_MAX_PAYLOAD_LIMIT (8u << 20)
#define BSR_DEFAULT_MAX_PAYLOAD (1u << 20)
#define BSR_REASON_LEN 48
/* Version 3 checksums: one HASHES frame covers at most this many blocks,
 * and its range at most the negotiated payload limit.  A block is 4 KiB to
 * 8 MiB, a power of two. */
#define BSR_HASHES_MAX 1024u
#define BSR_HASH_RANGE_LEN 8u          /* the range description before the hashes */
#define BSR_HASH_BLOCK_MIN_SECTORS 8u
#define BSR_HASH_BLOCK_MAX_SECTORS 16384u

/* Primary -> secondary, the first 128 bytes inside TLS. */
struct bsr_hello {
    uint16_t version;
    uint16_t flags;                 /* none defined: 0 */
    uint64_t disk_bytes;
    uint32_t sector_size;           /* BSR_SECTOR_SIZE */
    uint32_t max_payload;           /* largest DATA payload it will send, bytes */
    uint8_t primary_id[BSR_ID_LEN]; /* the primary's identity, random, persistent */
    uint8_t replica_id[BSR_ID_LEN]; /* the replica it expects; all zero on first pairing */
    uint64_t generation;            /* the primary's data generation */
    uint64_t epoch;                 /* last epoch the primary shipped whole (0: none yet) */
    /* Version 3 (docs/failover.md, generations): */
    uint64_t bitmap_generation;     /* the generation its bitmap's changes are against (0: none) */
    uint64_t history[2];            /* the generations before `generation`, newest first */
    uint64_t changed_bytes;         /* what its bitmap marks: data the replica may lack */
    /* Version 5: */
    uint32_t offers;                /* BSR_HO_*: what the primary could use; the welcome's
                                       flags say what was taken.  In the reserved bytes of
                                       older versions, which a version 4 secondary skips in
                                       a newer hello: an offer never gets a primary refused */
};

enum bsr_status {
    BSR_OK = 0,
    BSR_E_VERSION = 1,     /* protocol version not supported */
    BSR_E_SIZE = 2,        /* disk size or sector size differs from the replica's */
    BSR_E_IDENTITY = 3,    /* the hello names another replica */
    BSR_E_PAIRED = 4,      /* the replica is paired with another primary */
    BSR_E_BUSY = 5,        /* another primary session is active */
    BSR_E_LIMITS = 6,      /* a limit in the hello is out of range */
    BSR_E_IO = 7,          /* the replica cannot be written */
    BSR_E_PROTOCOL = 8,    /* a frame broke the protocol */
    BSR_E_PROMOTED = 9,    /* the replica was promoted: it takes no primary */
    BSR_E_SPLIT_BRAIN = 10, /* both sides changed since they parted (version 3) */
    BSR_E_GENERATION = 11, /* the generations share no history: unrelated data (version 3) */
};

/* Welcome flags (version 3). */
#define BSR_WF_CHECKSUM 1u /* the replica changed on its own: compare by checksums first */
/* Version 4: the replica has changes of its own against the generation
 * it holds (it was a primary, demoted): EXTENTS frames follow the welcome,
 * the last with count 0, before anything else it sends. */
#define BSR_WF_EXTENTS 2u
/* Version 5: the secondary takes ZDATA frames (the hello offered them). */
#define BSR_WF_ZSTD 4u
#define BSR_WF_KNOWN_V3 BSR_WF_CHECKSUM
#define BSR_WF_KNOWN_V4 (BSR_WF_CHECKSUM | BSR_WF_EXTENTS)
#define BSR_WF_KNOWN (BSR_WF_CHECKSUM | BSR_WF_EXTENTS | BSR_WF_ZSTD)

/* Hello offers (version 5). */
#define BSR_HO_ZSTD 1u /* the primary would send zstd-compressed data (ZDATA) */
/* One EXTENTS entry: u64 sector, u32 count (sectors), u32 reserved 0. */
#define BSR_EXTENT_LEN 16u
#define BSR_EXTENTS_MAX 4096u  /* entries in one EXTENTS frame, at most */

/* Secondary -> primary, the answer to the hello. */
struct bsr_welcome {
    uint16_t version;
    uint16_t flags;
    int32_t status;                 /* enum bsr_status */
    uint64_t disk_bytes;            /* the replica's size */
    uint32_t max_payload;           /* agreed limit: min of both sides */
    uint8_t replica_id[BSR_ID_LEN];
    uint8_t primary_id[BSR_ID_LEN]; /* the primary it is paired with (zero: none) */
    uint64_t generation;            /* the generation the replica holds */
    uint64_t epoch;                 /* v2: newest epoch committed in the replica's journal
                                       (or applied); v1: 0 */
    char reason[BSR_REASON_LEN];    /* NUL-terminated text for the log */
};

/* Frame kinds.  DATA carries count sectors of payload; every other kind has
 * none. */
enum bsr_kind {
    BSR_DATA = 1,       /* P->S  write payload at sector */
    BSR_ZERO = 2,       /* P->S  sectors [sector, sector+count) read as zeroes */
    BSR_FLUSH = 3,      /* P->S  make everything before durable, then ACK; sector = sequence */
    BSR_ACK = 4,        /* S->P  everything before FLUSH `sector` is durable */
    BSR_HEARTBEAT = 5,  /* both  liveness; sector = sender's monotonic milliseconds */
    BSR_ERROR = 6,      /* S->P  the session ends; count = enum bsr_status */
    /* Version 2. */
    BSR_END_EPOCH = 7,  /* P->S  the epoch `sector` is whole: commit it */
    BSR_COMMITTED = 8,  /* S->P  epoch `sector` is committed: it survives any crash */
    BSR_ABORT_EPOCH = 9, /* P->S  epoch `sector` was broken: drop what arrived of it */
    /* Version 3. */
    BSR_HASHES = 10,    /* P->S  the primary's checksums of `count` blocks from `sector`:
                           compare them with the replica's */
    BSR_HASHED = 11,    /* S->P  the answer: a bitmap of the blocks that differ */
    /* Version 4. */
    BSR_EXTENTS = 12,   /* S->P  `count` extents where the replica may differ from the
                           generation it holds (count 0: the last such frame) */
    /* Version 5, when the welcome has BSR_WF_ZSTD. */
    BSR_ZDATA = 13,     /* P->S  a DATA frame's payload compressed: `count` bytes, one
                           zstd frame that names its content size, a whole number of
                           sectors (at least one, at most the payload limit) written
                           from `sector` */
};
#define BSR_KIND_MAX BSR_ZDATA

/* The 16-byte frame header:
 *   bytes 0..7   sector (u64), or the sequence/timestamp for control kinds
 *   bytes 8..11  count (u32): sectors for DATA and ZERO, else 0 or a code
 *   byte  12     kind
 *   byte  13     flags (none defined: 0)
 *   bytes 14..15 reserved, 0
 * It is followed by the payload (DATA: count * 512 bytes; HASHES: the
 * range description and count hashes; HASHED: a bitmap of count bits;
 * every other kind: none), then by a 4-byte CRC32C (Castagnoli) of the
 * header and the payload. */
struct bsr_frame {
    uint64_t sector;
    uint32_t count;
    uint8_t kind;
    uint8_t flags;
};

/* What one side accepts from the other, fixed at the handshake. */
struct bsr_limits {
    uint16_t version;       /* the version agreed; 0 is taken as 1 */
    uint64_t disk_sectors;
    uint32_t max_payload;   /* bytes */
    bool zstd;              /* version 5: ZDATA frames were agreed */
};

/* Whether a frame's trailer CRC covers its payload as well as its header:
 * always, except for data frames from version 5 on. */
static inline bool bsr_crc_covers_payload(uint16_t version, uint8_t kind)
{
    return version < 5 || (kind != BSR_DATA && kind != BSR_ZDATA);
}

void bsr_hello_pack(const struct bsr_hello *h, uint8_t out[BSR_HELLO_LEN]);
/* Returns 0, or -EPROTO with *why set when the bytes are not a hello. */
int bsr_hello_unpack(const uint8_t in[BSR_HELLO_LEN], struct bsr_hello *h, const char **why);
void bsr_welcome_pack(const struct bsr_welcome *w, uint8_t out[BSR_WELCOME_LEN]);
int bsr_welcome_unpack(const uint8_t in[BSR_WELCOME_LEN], struct bsr_welcome *w,
                       const char **why);

void bsr_frame_pack(const struct bsr_frame *f, uint8_t out[BSR_FRAME_HDR_LEN]);
/* Decodes and validates a header: kind known, flags and reserved zero,
 * count and sector within the limits, payload bounded.  `from_primary`
 * says which kinds the sender may send.  Returns 0 or -EPROTO with *why. */
int bsr_frame_unpack(const uint8_t in[BSR_FRAME_HDR_LEN], const struct bsr_limits *lim,
                     bool from_primary, struct bsr_frame *f, const char **why);
/* Payload bytes that follow a (validated) header. */
static inline uint32_t bsr_frame_payload(const struct bsr_frame *f)
{
    switch (f->kind) {
    case BSR_DATA: return f->count * BSR_SECTOR_SIZE;
    case BSR_HASHES: return BSR_HASH_RANGE_LEN + f->count * 8u;
    case BSR_HASHED: return (f->count + 7u) / 8u;
    case BSR_EXTENTS: return f->count * BSR_EXTENT_LEN;
    case BSR_ZDATA: return f->count;
    default: return 0;
    }
}

/* The start of a HASHES payload: the blocks' size and the range they
 * cover, from the header's sector.  Each block's hash follows, as a
 * little-endian u64 (XXH3-64 of its bytes, common/blockhash.h); the last
 * block may be shorter than block_sectors. */
struct bsr_hash_range {
    uint32_t block_sectors;
    uint32_t range_sectors;
};
void bsr_hash_range_pack(const struct bsr_hash_range *r, uint8_t out[BSR_HASH_RANGE_LEN]);
void bsr_hash_range_unpack(const uint8_t in[BSR_HASH_RANGE_LEN], struct bsr_hash_range *r);
/* Checks a HASHES frame's range against its header and the limits: a
 * power-of-two block, the range starting on a block, as many blocks as
 * the header counts, within the disk and the payload limit.  Returns 0 or
 * -EPROTO with *why. */
int bsr_hash_range_check(const struct bsr_frame *f, const struct bsr_hash_range *r,
                         const struct bsr_limits *lim, const char **why);

/* One entry of an EXTENTS payload. */
void bsr_extent_pack(uint64_t sector, uint32_t count, uint8_t out[BSR_EXTENT_LEN]);
/* Decodes entry `in` and checks it: count not 0, reserved 0, within the
 * disk.  Returns 0 or -EPROTO with *why. */
int bsr_extent_unpack(const uint8_t in[BSR_EXTENT_LEN], const struct bsr_limits *lim,
                      uint64_t *sector, uint32_t *count, const char **why);

const char *bsr_status_str(int status);

#endif
