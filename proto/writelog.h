/* The tapdisk write-log protocol as blkship speaks it: the shared-memory
 * layout, the control-socket messages and the request ring, byte for byte
 * compatible with the blktap2 log driver of 2009, plus our documented
 * extensions (docs/writelog-protocol.md).  Everything here is host byte
 * order: both ends of this protocol run on the same host.
 */
#ifndef BLKSHIP_PROTO_WRITELOG_H
#define BLKSHIP_PROTO_WRITELOG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* xenctrl.h supplies xen_mb/xen_rmb/xen_wmb, which xen/io/ring.h uses. */
#include <xenctrl.h>
#include <xen/io/ring.h>

/* ---- Control socket ---------------------------------------------------- */

/* Historical commands.  Their framing and reply lengths are unchanged. */
#define WL_CMD_SHMP "shmp" /* reply: WL_RSPLEN_SHMP bytes, struct wl_shmp_reply */
#define WL_CMD_PEEK "peek" /* reply: "done" */
#define WL_CMD_CLRW "clrw" /* reply: "done" */
#define WL_CMD_GETW "getw" /* reply: "done" */
#define WL_CMD_KICK "kick" /* reply: a 20-byte "kick" message when served */

/* Extensions (version 1). */
#define WL_CMD_INFO "info" /* reply: struct wl_info_reply */
#define WL_CMD_SEAL "seal" /* reply: struct wl_export_reply */
#define WL_CMD_NEXT "next" /* reply: struct wl_export_reply */
/* Extensions (version 2). */
#define WL_CMD_COWC "cowc" /* reply: struct wl_cowc_reply */
#define WL_CMD_ADDS "adds" /* params: u32 n; reply: struct wl_adds_reply */
/* Extensions (version 3). */
#define WL_CMD_FRZE "frze" /* reply: struct wl_frze_reply; every later write fails */

/* Messages the server sends that are not replies to a command. */
#define WL_MSG_BUSY "busy" /* 20 bytes, then close: another client is connected */
#define WL_MSG_ERRR "errr" /* 20 bytes: a command was refused, see wl_ctlmsg_err */

#define WL_CMD_LEN 4
#define WL_CTLMSG_LEN 20
#define WL_RSPLEN_SHMP 256
#define WL_RSPLEN_DONE 4
#define WL_RSPLEN_KICK WL_CTLMSG_LEN /* historically declared 0, but 20 arrive */

#define WL_PROTO_VERSION 3

/* Flags of the export, info and cowc replies. */
#define WL_EF_BROKEN (1u << 0) /* the sealed epoch is broken: copies dropped, do not commit it */
#define WL_IF_COW (1u << 1)    /* info only: copy-before-write is enabled on this server */
#define WL_IF_FROZEN (1u << 2) /* info only (v3): frozen, every write since has failed */

/* Every request, and the kick notification, is one of these. */
struct wl_ctlmsg {
    char cmd[WL_CMD_LEN];
    uint8_t params[16];
};

/* The params of an "errr" message or of a "kick" notification that
 * reports a broken ring.  A historical client ignores params. */
struct wl_ctlmsg_err {
    char cmd[WL_CMD_LEN];
    int32_t err;            /* positive errno */
    char refused[WL_CMD_LEN]; /* the command that was refused */
    uint8_t reserved[8];
};

struct wl_shmp_reply {
    uint32_t shm_size;
    char shm_name[WL_RSPLEN_SHMP - sizeof(uint32_t)]; /* NUL-terminated */
};

/* Reply to "info". */
struct wl_info_reply {
    char tag[WL_CMD_LEN];        /* "info" */
    uint32_t version;            /* WL_PROTO_VERSION */
    uint64_t disk_sectors;       /* disk size in 512-byte sectors */
    uint32_t sector_size;        /* always 512 */
    uint32_t grain_sectors;      /* the log's granularity: exports round to it */
    uint32_t export_max;         /* most extents one export can hold */
    uint32_t ring_max_sectors;   /* largest count one ring request may ask for */
    uint64_t log_id;             /* random; a new value means the log's history was lost */
    uint64_t epoch;              /* number of seals (getw/seal) since log_id began */
    uint64_t live_grains;        /* dirty grains not yet sealed */
    uint64_t pending_grains;     /* sealed grains not yet acknowledged */
    uint32_t flags;              /* WL_EF_BROKEN (for `epoch`), WL_IF_COW */
    uint32_t reserved[3];
};

/* Reply to "seal" and "next". */
struct wl_export_reply {
    char tag[WL_CMD_LEN];        /* echoes the command */
    uint32_t extents;            /* entries written to the export area */
    uint64_t epoch;              /* the sealed epoch these extents belong to */
    uint64_t pending_grains;     /* sealed grains left after this chunk, this chunk included */
    uint32_t more;               /* 1 when another "next" would export more */
    uint32_t flags;              /* WL_EF_BROKEN: `epoch` is broken (version 2; 0 before) */
};

/* Reply to "cowc": the copy-before-write counters. */
struct wl_cowc_reply {
    char tag[WL_CMD_LEN];        /* "cowc" */
    uint32_t flags;              /* WL_EF_BROKEN for `epoch` */
    uint64_t epoch;              /* sealed epoch the copies are for, 0 none */
    uint64_t bytes_now;          /* held by preserved copies now */
    uint64_t bytes_peak;         /* most ever held at once */
    uint64_t max_bytes;          /* writelog-cow-max (0: copy-before-write disabled) */
    uint64_t preserved;          /* copies made */
    uint64_t waits;              /* writes that waited for pool space */
    uint64_t wait_ms;            /* total time they waited */
    uint64_t breaks;             /* epochs broken, whatever the cause */
    uint64_t drain_timeouts;     /* seals whose drain of writes in flight timed out */
};

/* The params of a "seal" request (version 2; a client of version 1 sends
 * zeroes): flags, and nothing else. */
struct wl_seal_params {
    uint32_t flags;              /* WL_SEAL_RECORD, or 0 */
    uint8_t reserved[12];        /* zero */
};
/* Seal for the record only: the client takes the chunks into its own
 * bitmap and will not read this epoch (it is not connected to its peer):
 * no copy-before-write, no unread map, and the guest does not wait for the
 * seal to settle.  The previous epoch's copies are dropped as at any seal. */
#define WL_SEAL_RECORD (1u << 0)

/* The params of an "adds" request: n struct wl_disk_range entries are at
 * the start of the export area. */
struct wl_adds_params {
    uint32_t n;
    uint8_t reserved[12];
};

/* Reply to "adds". */
struct wl_adds_reply {
    char tag[WL_CMD_LEN];        /* "adds" */
    uint32_t extents;            /* ranges taken */
    uint64_t grains;             /* grains newly marked */
    uint64_t reserved[2];
};

/* The reply to frze: from now on every write, zero and trim fails with
 * EROFS, until the server stops.  Every write that reached the disk
 * before is marked in the log already, so the next seal exports it. */
struct wl_frze_reply {
    char tag[WL_CMD_LEN];        /* "frze" */
    uint32_t reserved0;
    uint64_t refused;            /* writes refused since the freeze (0 at the first) */
    uint64_t reserved[2];
};

/* ---- Shared memory ------------------------------------------------------ */

#define WL_SHM_SIZE (8u * 1024 * 1024)
#define WL_EXPORT_OFFSET 0u
#define WL_EXPORT_SIZE (WL_SHM_SIZE / 2)
#define WL_RING_OFFSET WL_EXPORT_SIZE
#define WL_RING_SIZE 4096u
#define WL_DATA_OFFSET (WL_RING_OFFSET + WL_RING_SIZE)
#define WL_DATA_SIZE (WL_SHM_SIZE - WL_DATA_OFFSET)
#define WL_SECTOR_SIZE 512u
#define WL_SECTOR_SHIFT 9

/* One entry of the export area; an entry with count 0 ends the list. */
struct wl_disk_range {
    uint64_t sector;
    uint32_t count;
    uint32_t pad; /* explicit: the historical struct was 12 bytes on i386 */
};
#define WL_EXPORT_SLOTS (WL_EXPORT_SIZE / sizeof(struct wl_disk_range))
#define WL_EXPORT_MAX (WL_EXPORT_SLOTS - 1) /* the last slot holds the terminator */

/* A ring request: read `count` sectors at `sector` into the data area at
 * byte `offset`.  The response echoes it; a refused or failed request is
 * answered with count 0 and offset set to a positive errno. */
struct log_extent {
    uint64_t sector;
    uint32_t count;
    uint32_t offset;
};
typedef struct log_extent log_request_t;
typedef struct log_extent log_response_t;

DEFINE_RING_TYPES(log, log_request_t, log_response_t);

#define WL_RING_ENTRIES __CONST_RING_SIZE(log, WL_RING_SIZE)
#define WL_RING_MAX_SECTORS (WL_DATA_SIZE / WL_SECTOR_SIZE)

static inline struct wl_disk_range *wl_shm_export(void *shm)
{
    return (struct wl_disk_range *)((char *)shm + WL_EXPORT_OFFSET);
}

static inline struct log_sring *wl_shm_ring(void *shm)
{
    return (struct log_sring *)((char *)shm + WL_RING_OFFSET);
}

static inline uint8_t *wl_shm_data(void *shm)
{
    return (uint8_t *)shm + WL_DATA_OFFSET;
}

static inline int wl_cmd_is(const struct wl_ctlmsg *m, const char *cmd)
{
    return memcmp(m->cmd, cmd, WL_CMD_LEN) == 0;
}

/* The historical layout, checked byte for byte. */
_Static_assert(sizeof(struct wl_ctlmsg) == WL_CTLMSG_LEN, "control message is 20 bytes");
_Static_assert(sizeof(struct wl_ctlmsg_err) == WL_CTLMSG_LEN, "error message is 20 bytes");
_Static_assert(sizeof(struct wl_shmp_reply) == WL_RSPLEN_SHMP, "shmp reply is 256 bytes");
_Static_assert(sizeof(struct wl_disk_range) == 16, "disk_range is 16 bytes");
_Static_assert(offsetof(struct wl_disk_range, count) == 8, "disk_range.count at 8");
_Static_assert(sizeof(struct log_extent) == 16, "log_extent is 16 bytes");
_Static_assert(offsetof(struct log_extent, count) == 8, "log_extent.count at 8");
_Static_assert(offsetof(struct log_extent, offset) == 12, "log_extent.offset at 12");
_Static_assert(offsetof(struct log_sring, ring) == 64, "ring entries start at 64");
_Static_assert(WL_RING_ENTRIES == 128, "128 ring entries in one page");
_Static_assert(offsetof(struct log_sring, req_prod) == 0, "req_prod at 0");
_Static_assert(offsetof(struct log_sring, req_event) == 4, "req_event at 4");
_Static_assert(offsetof(struct log_sring, rsp_prod) == 8, "rsp_prod at 8");
_Static_assert(offsetof(struct log_sring, rsp_event) == 12, "rsp_event at 12");
_Static_assert(64 + WL_RING_ENTRIES * sizeof(union log_sring_entry) <= WL_RING_SIZE,
               "shared ring fits its page");
_Static_assert(WL_RING_OFFSET == 4u * 1024 * 1024, "ring at 4 MiB");
_Static_assert(WL_DATA_OFFSET == 4u * 1024 * 1024 + 4096, "data area after the ring page");
_Static_assert(WL_EXPORT_SLOTS == 262144, "export area holds 262144 entries");
/* Our extensions. */
_Static_assert(sizeof(struct wl_info_reply) == 80, "info reply is 80 bytes");
_Static_assert(sizeof(struct wl_export_reply) == 32, "export reply is 32 bytes");
_Static_assert(offsetof(struct wl_export_reply, flags) == 28, "export reply flags at 28");
_Static_assert(offsetof(struct wl_info_reply, flags) == 64, "info reply flags at 64");
_Static_assert(sizeof(struct wl_cowc_reply) == 80, "cowc reply is 80 bytes");
_Static_assert(offsetof(struct wl_cowc_reply, epoch) == 8, "cowc epoch at 8");
_Static_assert(offsetof(struct wl_cowc_reply, drain_timeouts) == 72, "cowc drain_timeouts at 72");
_Static_assert(sizeof(struct wl_adds_params) == 16, "adds params are 16 bytes");
_Static_assert(sizeof(struct wl_seal_params) == 16, "seal params are 16 bytes");
_Static_assert(sizeof(struct wl_adds_reply) == 32, "adds reply is 32 bytes");
_Static_assert(offsetof(struct wl_adds_reply, grains) == 8, "adds grains at 8");

#endif
