/* The secondary's epoch journal (see journal.h for the contract and the
 * format).
 *
 * Positions in the record region are logical: a byte count that only
 * grows, the physical offset being REGION_OFF + pos % region.  A record
 * never straddles the region's end: what is left there is skipped, with a
 * PAD record when a header fits.  Space from the durable start (the
 * superblock's start_pos) to the append position is in use; only
 * bs_journal_release moves the start, after its superblock write is
 * durable, so an append never overwrites a record that a crash could
 * still need.
 *
 * Each COMMIT record carries the number of records of its epoch and a
 * CRC32C chained over their CRCs: an epoch is committed at scan time only
 * if exactly the records it counted precede it.
 */
#include "secondary/journal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "common/log.h"
#include "secondary/target.h"

#define MOD "journal"

#define SB_MAGIC "BLKSJRNL"
#define SB_VERSION 1u
#define SB_LEN 64u
#define SB_SLOT 512u
#define REGION_OFF 4096u
#define REC_MAGIC 0x4c4e524au /* "JRNL" */

/* ---- Encoding ------------------------------------------------------------ */

struct sb {
    uint64_t gen;
    uint64_t size;
    uint64_t start_pos;
    uint64_t start_seq;
};

/* Record header, decoded:
 *   0 magic u32 | 4 type u8 | 5..7 zero | 8 count u32 | 12 zero u32
 *   16 seq u64 | 24 epoch u64 | 32 sector u64 | 40 crc u32 | 44 zero u32
 * COMMIT: count = records of the epoch, sector = their chained CRC. */
struct rec {
    uint8_t type;
    uint32_t count;
    uint64_t seq, epoch, sector;
    uint32_t crc;
};

static void sb_pack(const struct sb *s, uint8_t out[SB_LEN])
{
    memset(out, 0, SB_LEN);
    memcpy(out, SB_MAGIC, 8);
    bs_put_le32(out + 8, SB_VERSION);
    bs_put_le32(out + 12, SB_LEN);
    bs_put_le64(out + 16, s->gen);
    bs_put_le64(out + 24, s->size);
    bs_put_le64(out + 32, s->start_pos);
    bs_put_le64(out + 40, s->start_seq);
    bs_put_le32(out + 60, crc32c(0, out, 60));
}

static int sb_unpack(const uint8_t in[SB_LEN], struct sb *s)
{
    if (memcmp(in, SB_MAGIC, 8) != 0 || bs_get_le32(in + 8) != SB_VERSION || bs_get_le32(in + 12) != SB_LEN ||
        bs_get_le32(in + 60) != crc32c(0, in, 60))
        return -EINVAL;
    s->gen = bs_get_le64(in + 16);
    s->size = bs_get_le64(in + 24);
    s->start_pos = bs_get_le64(in + 32);
    s->start_seq = bs_get_le64(in + 40);
    return 0;
}

/* The CRC of a record covers its header (with the CRC field zero) and its
 * payload. */
static uint32_t rec_crc(const uint8_t hdr[BS_JOURNAL_HDR_LEN], const void *payload, size_t len)
{
    uint8_t h[BS_JOURNAL_HDR_LEN];

    memcpy(h, hdr, sizeof(h));
    memset(h + 40, 0, 4);
    return crc32c(crc32c(0, h, sizeof(h)), payload, len);
}

static void rec_pack(const struct rec *r, uint8_t out[BS_JOURNAL_HDR_LEN])
{
    memset(out, 0, BS_JOURNAL_HDR_LEN);
    bs_put_le32(out, REC_MAGIC);
    out[4] = r->type;
    bs_put_le32(out + 8, r->count);
    bs_put_le64(out + 16, r->seq);
    bs_put_le64(out + 24, r->epoch);
    bs_put_le64(out + 32, r->sector);
}

static int rec_unpack(const uint8_t in[BS_JOURNAL_HDR_LEN], struct rec *r)
{
    if (bs_get_le32(in) != REC_MAGIC || in[5] || in[6] || in[7] || bs_get_le32(in + 12) || bs_get_le32(in + 44))
        return -EINVAL;
    r->type = in[4];
    r->count = bs_get_le32(in + 8);
    r->seq = bs_get_le64(in + 16);
    r->epoch = bs_get_le64(in + 24);
    r->sector = bs_get_le64(in + 32);
    r->crc = bs_get_le32(in + 40);
    if (r->type < BS_JOURNAL_DATA || r->type > BS_JOURNAL_PAD)
        return -EINVAL;
    return 0;
}

static uint64_t payload_len(const struct rec *r)
{
    return r->type == BS_JOURNAL_DATA ? (uint64_t)r->count * 512 : 0;
}

/* ---- The journal ----------------------------------------------------------- */

/* Records bs_journal_append_many gathers into one pwritev. */
#define BATCH_RECS 64u

/* Appended bytes are sent on their way to the disk (sync_file_range,
 * which starts the writeback and does not wait for it) once this many are
 * waiting: a commit's fdatasync then writes the last of them, not the
 * whole epoch.  A 10 MiB catch-up epoch's commit took 19-24 ms here
 * without it, all of it after the last byte had arrived. */
#define WB_BYTES (1u << 20)

/* A committed epoch's records: [first_pos, end_pos), end_pos just past its
 * commit record. */
struct span {
    uint64_t epoch;     /* as its commit record names it */
    uint64_t rec_epoch; /* as its records carry it (at most epoch) */
    uint64_t first_pos;
    uint64_t end_pos;
    uint64_t end_seq;   /* the next sequence number after its commit */
    uint32_t records;   /* DATA and ZERO records, as its commit counts them */
};

struct bs_journal {
    pthread_mutex_t lock;       /* spans, start, the counters below */
    int fd;
    char path[4096];
    uint64_t size, region;
    uint32_t max_record;
    struct sb sb;               /* as last made durable */

    /* Appending. */
    uint64_t write_pos, write_seq;
    uint64_t tail_pos, tail_seq;        /* just past the last commit */
    uint64_t wb_pos;                    /* writeback started up to here */
    uint64_t last_epoch;
    bool epoch_open;
    uint64_t open_epoch;
    uint32_t open_records, open_chain;
    uint8_t hdr[BS_JOURNAL_HDR_LEN];    /* of the record being appended */
    uint8_t bhdr[BATCH_RECS][BS_JOURNAL_HDR_LEN]; /* of a batch (append_many) */
    uint32_t bcrc[BATCH_RECS];

    /* Committed, not yet released, oldest first. */
    struct span *spans;
    size_t nspans, capspans;
    uint8_t *rbuf;                      /* the read-back window, rcap bytes */
    size_t rcap;
};

/* Records are read back a window at a time (the scan, a replay): one
 * pread brings in many small records, where reading each header and then
 * its payload would cost two system calls a record.  A window is valid
 * for one walk only: a walk starts with an empty one. */
#define RWIN_BYTES (1u << 20)

struct rwin {
    uint64_t pos; /* logical position of rbuf[0] */
    uint64_t len; /* bytes of rbuf read from there */
};

static uint64_t phys(const struct bs_journal *j, uint64_t pos)
{
    return REGION_OFF + pos % j->region;
}

/* Bytes to the region's end from pos. */
static uint64_t room(const struct bs_journal *j, uint64_t pos)
{
    return j->region - pos % j->region;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file is shorter than its superblock says */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Writes all of the n buffers of v (which it consumes) at off; short
 * writes continue. */
static int pwritev_all(int fd, struct iovec *v, int n, uint64_t off)
{
    while (n) {
        ssize_t w = pwritev(fd, v, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -ENOSPC;
        off += (uint64_t)w;
        while (n && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n) {
            v->iov_base = (char *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Writes all of hdr then payload at off. */
static int pwrite2_all(int fd, const void *hdr, size_t hlen, const void *payload, size_t plen,
                       uint64_t off)
{
    struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)payload, plen } };

    return pwritev_all(fd, iov, plen ? 2 : 1, off);
}

static int write_sb(struct bs_journal *j, uint64_t start_pos, uint64_t start_seq)
{
    struct sb s = { .gen = j->sb.gen + 1, .size = j->size, .start_pos = start_pos,
                    .start_seq = start_seq };
    uint8_t buf[SB_LEN];
    int r;

    sb_pack(&s, buf);
    r = bs_target_pwrite_all(j->fd, buf, sizeof(buf), (s.gen % 2) * SB_SLOT);
    if (r == 0 && fdatasync(j->fd) < 0)
        r = -errno;
    if (r < 0) {
        BS_ERR(MOD, "writing the superblock of %s: %s", j->path, strerror(-r));
        return r;
    }
    pthread_mutex_lock(&j->lock);
    j->sb = s;
    pthread_mutex_unlock(&j->lock);
    return 0;
}

static int push_span(struct bs_journal *j, const struct span *s)
{
    if (j->nspans == j->capspans) {
        size_t cap = j->capspans ? j->capspans * 2 : 64;
        struct span *n = realloc(j->spans, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        j->spans = n;
        j->capspans = cap;
    }
    j->spans[j->nspans++] = *s;
    return 0;
}

/* Reads the window from pos on: as much as rbuf holds, up to the region's
 * end and to limit (a logical position above pos), and at least need
 * bytes, else -EINVAL (a record that would run past limit). */
static int rwin_fill(struct bs_journal *j, struct rwin *w, uint64_t pos, uint64_t limit,
                     uint64_t need)
{
    uint64_t n = room(j, pos);
    int r;

    if (limit - pos < n)
        n = limit - pos;
    if (n > j->rcap)
        n = j->rcap;
    w->len = 0;
    if (n < need)
        return -EINVAL;
    r = pread_all(j->fd, j->rbuf, (size_t)n, phys(j, pos));
    if (r < 0)
        return r;
    w->pos = pos;
    w->len = n;
    return 0;
}

/* Reads the record at pos (below limit, and ending at or before it) into
 * rec; *hdr points at it in the window, its payload after the header, until
 * the next call.  Returns 0, or -EINVAL when what is there is not a valid
 * record. */
static int read_rec(struct bs_journal *j, struct rwin *w, uint64_t pos, uint64_t limit,
                    struct rec *rec, const uint8_t **hdr)
{
    uint64_t len;
    int r;

    if (room(j, pos) < BS_JOURNAL_HDR_LEN)
        return -EINVAL;
    if (pos < w->pos || pos + BS_JOURNAL_HDR_LEN > w->pos + w->len) {
        r = rwin_fill(j, w, pos, limit, BS_JOURNAL_HDR_LEN);
        if (r < 0)
            return r;
    }
    if (rec_unpack(j->rbuf + (pos - w->pos), rec) < 0)
        return -EINVAL;
    len = payload_len(rec);
    if (len > j->max_record || BS_JOURNAL_HDR_LEN + len > room(j, pos))
        return -EINVAL;
    if (pos + BS_JOURNAL_HDR_LEN + len > w->pos + w->len) {
        r = rwin_fill(j, w, pos, limit, BS_JOURNAL_HDR_LEN + len);
        if (r < 0)
            return r;
    }
    *hdr = j->rbuf + (pos - w->pos);
    if (rec_crc(*hdr, *hdr + BS_JOURNAL_HDR_LEN, len) != rec->crc)
        return -EINVAL;
    return 0;
}

/* Walks the records from the durable start: lists the committed epochs and
 * puts the append position just past the last commit. */
static int scan(struct bs_journal *j)
{
    uint64_t pos = j->sb.start_pos, next_seq = j->sb.start_seq, epoch = 0;
    uint64_t ep_first = 0;
    uint32_t ep_records = 0, ep_chain = 0;
    bool in_epoch = false;
    struct rec rec;
    struct rwin w = { 0 };
    const uint8_t *hdr;

    j->tail_pos = pos;
    j->tail_seq = next_seq;
    while (pos - j->sb.start_pos < j->region) {
        if (room(j, pos) < BS_JOURNAL_HDR_LEN) {
            pos += room(j, pos);
            continue;
        }
        int r = read_rec(j, &w, pos, j->sb.start_pos + j->region, &rec, &hdr);
        if (r == -EINVAL || (r == 0 && (rec.seq < next_seq || rec.epoch < epoch)))
            break; /* the end of the journal: garbage, or older than what precedes */
        if (r < 0) {
            BS_ERR(MOD, "reading %s: %s", j->path, strerror(-r));
            return r;
        }
        next_seq = rec.seq + 1;
        if (rec.type == BS_JOURNAL_PAD) {
            pos += room(j, pos);
            continue;
        }
        if (rec.type == BS_JOURNAL_COMMIT && in_epoch && rec.epoch > epoch) {
            /* The commit names the open epoch by its final number, above
             * the one its records were appended under: it is its commit. */
        } else if (!in_epoch || rec.epoch != epoch) {
            /* A new epoch begins; one left without its commit is dropped. */
            in_epoch = true;
            epoch = rec.epoch;
            ep_first = pos;
            ep_records = 0;
            ep_chain = 0;
        }
        uint64_t end = pos + BS_JOURNAL_HDR_LEN + payload_len(&rec);
        if (rec.type == BS_JOURNAL_COMMIT) {
            if (rec.count != ep_records || (uint32_t)rec.sector != ep_chain)
                break; /* not the records it vouches for: not committed */
            struct span s = { .epoch = rec.epoch, .rec_epoch = epoch, .first_pos = ep_first,
                              .end_pos = end, .end_seq = next_seq, .records = rec.count };
            r = push_span(j, &s);
            if (r < 0)
                return r;
            j->tail_pos = end;
            j->tail_seq = next_seq;
            in_epoch = false;
            epoch = rec.epoch;
            j->last_epoch = epoch;
        } else {
            uint32_t crc = htole32(rec.crc);
            ep_chain = crc32c(ep_chain, &crc, sizeof(crc));
            ep_records++;
        }
        pos = end;
    }
    j->write_pos = j->wb_pos = j->tail_pos;
    /* Sequence numbers go on past anything scanned, the dropped tail
     * included, so that no record written from now on can be taken for
     * one of it. */
    j->write_seq = next_seq > j->tail_seq ? next_seq : j->tail_seq;
    return 0;
}

static int create_file(const char *path, uint64_t size, int *fdp)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r;

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0 || fdatasync(fd) < 0) {
        r = -errno;
        close(fd);
        unlink(path);
        return r;
    }
    *fdp = fd;
    return 0;
}

int bs_journal_open(const char *path, uint64_t size, uint32_t max_record,
                    struct bs_journal **out)
{
    struct bs_journal *j;
    uint8_t buf[2][SB_LEN];
    struct sb s[2];
    bool ok[2];
    bool fresh = false;
    int r;

    *out = NULL;
    if (size < BS_JOURNAL_MIN_BYTES || max_record == 0 ||
        BS_JOURNAL_HDR_LEN + (uint64_t)max_record > (size - REGION_OFF) / 2) {
        BS_ERR(MOD, "journal %s: %" PRIu64 " bytes cannot hold records of %u bytes", path, size,
               max_record);
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    pthread_mutex_init(&j->lock, NULL);
    snprintf(j->path, sizeof(j->path), "%s", path);
    j->max_record = max_record;
    j->fd = open(path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0 && errno == ENOENT) {
        r = create_file(path, size, &j->fd);
        if (r < 0) {
            BS_ERR(MOD, "creating %s: %s", path, strerror(-r));
            goto fail;
        }
        fresh = true;
    } else if (j->fd < 0) {
        r = -errno;
        BS_ERR(MOD, "opening %s: %s", path, strerror(-r));
        goto fail;
    }
    j->rcap = BS_JOURNAL_HDR_LEN + (size_t)max_record;
    if (j->rcap < RWIN_BYTES)
        j->rcap = RWIN_BYTES;
    j->rbuf = malloc(j->rcap);
    if (!j->rbuf) {
        r = -ENOMEM;
        goto fail;
    }
    if (fresh) {
        j->size = size;
        j->region = size - REGION_OFF;
        j->sb = (struct sb){ .gen = 0, .size = size, .start_pos = 0, .start_seq = 1 };
        r = write_sb(j, 0, 1);
        if (r < 0)
            goto fail;
        j->write_seq = j->tail_seq = 1;
        BS_INFO(MOD, "new journal %s, %" PRIu64 " bytes", path, size);
        *out = j;
        return 0;
    }
    for (int i = 0; i < 2; i++) {
        r = pread_all(j->fd, buf[i], SB_LEN, (uint64_t)i * SB_SLOT);
        ok[i] = r == 0 && sb_unpack(buf[i], &s[i]) == 0;
    }
    if (!ok[0] && !ok[1]) {
        BS_ERR(MOD, "%s has no valid superblock: not a blkship journal, or damaged; "
                    "refusing to guess (move it away to start a new one, which discards "
                    "any epoch it holds)",
               path);
        r = -EUCLEAN;
        goto fail;
    }
    j->sb = ok[0] && (!ok[1] || s[0].gen > s[1].gen) ? s[0] : s[1];
    j->size = j->sb.size;
    j->region = j->size - REGION_OFF;
    {
        struct stat st;
        if (fstat(j->fd, &st) < 0 || (uint64_t)st.st_size < j->size ||
            BS_JOURNAL_HDR_LEN + (uint64_t)max_record > j->region / 2) {
            BS_ERR(MOD, "%s is shorter than its superblock says, or too small for records of "
                        "%u bytes",
                   path, max_record);
            r = -EUCLEAN;
            goto fail;
        }
    }
    if (j->size != size)
        BS_WARN(MOD, "%s keeps its size of %" PRIu64 " bytes (%" PRIu64 " asked)", path,
                j->size, size);
    r = scan(j);
    if (r < 0)
        goto fail;
    if (j->nspans)
        BS_INFO(MOD, "%s holds %zu committed epoch(s), %" PRIu64 " to %" PRIu64, path,
                j->nspans, j->spans[0].epoch, j->spans[j->nspans - 1].epoch);
    *out = j;
    return 0;
fail:
    bs_journal_close(j);
    return r;
}

void bs_journal_close(struct bs_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j->rbuf);
    free(j->spans);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

size_t bs_journal_committed(struct bs_journal *j, uint64_t *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&j->lock);
    n = j->nspans;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = j->spans[i].epoch;
    pthread_mutex_unlock(&j->lock);
    return n;
}

uint64_t bs_journal_used(struct bs_journal *j)
{
    uint64_t used;

    pthread_mutex_lock(&j->lock);
    used = j->write_pos - j->sb.start_pos;
    pthread_mutex_unlock(&j->lock);
    return used;
}

uint64_t bs_journal_size(struct bs_journal *j)
{
    return j->size;
}

/* Writes one record (header fields in rec, payload len bytes) at the
 * append position, with a PAD first when it would straddle the end.
 * -ENOSPC when it does not fit before the durable start. */
static int append_rec(struct bs_journal *j, struct rec *rec, const void *payload, size_t len)
{
    uint64_t need = BS_JOURNAL_HDR_LEN + len, pos = j->write_pos, skip = 0;
    uint64_t start;
    int r;

    if (room(j, pos) < need)
        skip = room(j, pos);
    pthread_mutex_lock(&j->lock);
    start = j->sb.start_pos;
    pthread_mutex_unlock(&j->lock);
    if (pos + skip + need - start > j->region)
        return -ENOSPC;
    if (skip >= BS_JOURNAL_HDR_LEN) {
        /* The PAD carries the epoch of the record after it: epochs never
         * go down along the region. */
        struct rec pad = { .type = BS_JOURNAL_PAD, .seq = j->write_seq, .epoch = rec->epoch };
        uint8_t hdr[BS_JOURNAL_HDR_LEN];
        rec_pack(&pad, hdr);
        bs_put_le32(hdr + 40, rec_crc(hdr, NULL, 0));
        r = bs_target_pwrite_all(j->fd, hdr, sizeof(hdr), phys(j, pos));
        if (r < 0)
            return r;
        j->write_seq++;
    }
    pos += skip;
    rec->seq = j->write_seq;
    rec_pack(rec, j->hdr);
    rec->crc = rec_crc(j->hdr, payload, len);
    bs_put_le32(j->hdr + 40, rec->crc);
    /* The payload goes from the caller's buffer: no copy. */
    r = pwrite2_all(j->fd, j->hdr, BS_JOURNAL_HDR_LEN, payload, len, phys(j, pos));
    if (r < 0)
        return r;
    j->write_seq++;
    pthread_mutex_lock(&j->lock);
    j->write_pos = pos + need;
    pthread_mutex_unlock(&j->lock);
    return 0;
}

/* Starts the writeback of what was appended since the last time, once
 * WB_BYTES are waiting.  Only a head start: the commit's fdatasync is what
 * makes them durable, and reports what failed, so a failure here is
 * ignored. */
static void wb_kick(struct bs_journal *j)
{
    uint64_t from = j->wb_pos, to = j->write_pos;

    if (to < from + WB_BYTES)
        return;
    /* Never more than the region: wb_pos is at least the tail (scan,
     * commit and abort move it there), and appends stop a region past the
     * durable start. */
    while (from < to) {
        uint64_t n = to - from < room(j, from) ? to - from : room(j, from);
        (void)sync_file_range(j->fd, (off_t)phys(j, from), (off_t)n, SYNC_FILE_RANGE_WRITE);
        from += n;
    }
    j->wb_pos = to;
}

/* Whether a DATA or ZERO record of epoch may be appended now. */
static bool append_ok(const struct bs_journal *j, uint64_t epoch, enum bs_journal_kind kind,
                      uint32_t count)
{
    size_t len = kind == BS_JOURNAL_DATA ? (size_t)count * 512 : 0;

    return (kind == BS_JOURNAL_DATA || kind == BS_JOURNAL_ZERO) && count != 0 &&
           len <= j->max_record && epoch > j->last_epoch &&
           (!j->epoch_open || epoch == j->open_epoch);
}

/* Counts an appended record, of CRC crc, into its epoch's commit. */
static void chain_rec(struct bs_journal *j, uint64_t epoch, uint32_t crc)
{
    if (!j->epoch_open) {
        j->epoch_open = true;
        j->open_epoch = epoch;
        j->open_records = 0;
        j->open_chain = 0;
    }
    crc = htole32(crc);
    j->open_chain = crc32c(j->open_chain, &crc, sizeof(crc));
    j->open_records++;
}

int bs_journal_append(struct bs_journal *j, uint64_t epoch, enum bs_journal_kind kind,
                      uint64_t sector, uint32_t count, const void *data)
{
    struct rec rec = { .type = (uint8_t)kind, .count = count, .epoch = epoch, .sector = sector };
    size_t len = kind == BS_JOURNAL_DATA ? (size_t)count * 512 : 0;
    int r;

    if (!append_ok(j, epoch, kind, count))
        return -EINVAL;
    r = append_rec(j, &rec, data, len);
    if (r < 0)
        return r;
    chain_rec(j, epoch, rec.crc);
    wb_kick(j);
    return 0;
}

int bs_journal_append_many(struct bs_journal *j, uint64_t epoch,
                           const struct bs_journal_entry *in, size_t n, size_t *done)
{
    size_t i = 0;

    *done = 0;
    while (i < n) {
        struct iovec iov[2 * BATCH_RECS];
        uint64_t pos = j->write_pos, start;
        unsigned k = 0;
        int niov = 0, r;

        pthread_mutex_lock(&j->lock);
        start = j->sb.start_pos;
        pthread_mutex_unlock(&j->lock);
        /* Gather the records that fit, contiguously, before the region's
         * end and the durable start. */
        while (i + k < n && k < BATCH_RECS) {
            const struct bs_journal_entry *e = &in[i + k];
            size_t len = e->kind == BS_JOURNAL_DATA ? (size_t)e->count * 512 : 0;
            uint64_t need = BS_JOURNAL_HDR_LEN + len;

            if (!append_ok(j, epoch, e->kind, e->count) || room(j, pos) < need ||
                pos + need - start > j->region)
                break;
            struct rec rec = { .type = (uint8_t)e->kind, .count = e->count,
                               .seq = j->write_seq + k, .epoch = epoch, .sector = e->sector };
            rec_pack(&rec, j->bhdr[k]);
            j->bcrc[k] = rec_crc(j->bhdr[k], e->data, len);
            bs_put_le32(j->bhdr[k] + 40, j->bcrc[k]);
            iov[niov++] = (struct iovec){ j->bhdr[k], BS_JOURNAL_HDR_LEN };
            if (len)
                iov[niov++] = (struct iovec){ (void *)e->data, len };
            pos += need;
            k++;
        }
        if (k == 0) {
            /* The next record is invalid, needs a PAD first or does not
             * fit: bs_journal_append says which, one record at a time. */
            r = bs_journal_append(j, epoch, in[i].kind, in[i].sector, in[i].count, in[i].data);
            if (r < 0)
                return r;
            *done = ++i;
            continue;
        }
        r = pwritev_all(j->fd, iov, niov, phys(j, j->write_pos));
        if (r < 0)
            return r;
        for (unsigned m = 0; m < k; m++)
            chain_rec(j, epoch, j->bcrc[m]);
        j->write_seq += k;
        pthread_mutex_lock(&j->lock);
        j->write_pos = pos;
        pthread_mutex_unlock(&j->lock);
        i += k;
        *done = i;
        wb_kick(j);
    }
    return 0;
}

int bs_journal_commit(struct bs_journal *j, uint64_t epoch)
{
    uint64_t first = j->epoch_open ? j->tail_pos : j->write_pos;
    struct rec rec = { .type = BS_JOURNAL_COMMIT, .epoch = epoch };
    int r;

    if (epoch <= j->last_epoch || (j->epoch_open && epoch < j->open_epoch))
        return -EINVAL;
    rec.count = j->epoch_open ? j->open_records : 0;
    rec.sector = j->epoch_open ? j->open_chain : 0;
    r = append_rec(j, &rec, NULL, 0);
    if (r == 0 && fdatasync(j->fd) < 0)
        r = -errno;
    if (r < 0) {
        if (r != -ENOSPC)
            BS_ERR(MOD, "committing epoch %" PRIu64 " to %s: %s", epoch, j->path, strerror(-r));
        return r;
    }
    struct span s = { .epoch = epoch, .rec_epoch = j->epoch_open ? j->open_epoch : epoch,
                      .first_pos = first, .end_pos = j->write_pos, .end_seq = j->write_seq,
                      .records = rec.count };
    pthread_mutex_lock(&j->lock);
    r = push_span(j, &s);
    pthread_mutex_unlock(&j->lock);
    if (r < 0)
        return r;
    j->tail_pos = j->wb_pos = j->write_pos;
    j->tail_seq = j->write_seq;
    j->last_epoch = epoch;
    j->epoch_open = false;
    return 0;
}

void bs_journal_abort(struct bs_journal *j)
{
    /* The sequence numbers go on: what was written since the tail can
     * never be read as part of what is written there next. */
    pthread_mutex_lock(&j->lock);
    j->write_pos = j->tail_pos;
    pthread_mutex_unlock(&j->lock);
    if (j->wb_pos > j->write_pos)
        j->wb_pos = j->write_pos;
    j->epoch_open = false;
}

int bs_journal_sync(struct bs_journal *j)
{
    if (fdatasync(j->fd) < 0) {
        int r = -errno;
        BS_ERR(MOD, "syncing %s: %s", j->path, strerror(-r));
        return r;
    }
    return 0;
}

static struct span *find_span(struct bs_journal *j, uint64_t epoch)
{
    for (size_t i = 0; i < j->nspans; i++)
        if (j->spans[i].epoch == epoch)
            return &j->spans[i];
    return NULL;
}

/* Calls apply for the DATA and ZERO records of s, in order, up to its end
 * or its commit record. */
static int walk_span(struct bs_journal *j, const struct span *sp, bs_journal_apply_fn *apply,
                     void *opaque)
{
    struct span s = *sp;
    uint64_t epoch = s.epoch;
    struct rec rec;
    struct rwin w = { 0 };
    const uint8_t *hdr;
    uint64_t pos;
    int r;

    for (pos = s.first_pos; pos < s.end_pos;) {
        if (room(j, pos) < BS_JOURNAL_HDR_LEN) {
            pos += room(j, pos);
            continue;
        }
        r = read_rec(j, &w, pos, s.end_pos, &rec, &hdr);
        if (r == -EINVAL || (r == 0 && (rec.type == BS_JOURNAL_DATA || rec.type == BS_JOURNAL_ZERO) &&
                             rec.epoch != s.rec_epoch)) {
            BS_ERR(MOD, "%s: a record of committed epoch %" PRIu64 " no longer reads back",
                   j->path, epoch);
            return -EUCLEAN;
        }
        if (r < 0)
            return r;
        if (rec.type == BS_JOURNAL_PAD) {
            pos += room(j, pos);
            continue;
        }
        if (rec.type == BS_JOURNAL_COMMIT)
            break;
        struct bs_journal_record out = { .kind = (enum bs_journal_kind)rec.type,
                                         .epoch = epoch, .sector = rec.sector,
                                         .count = rec.count,
                                         .data = hdr + BS_JOURNAL_HDR_LEN };
        r = apply(opaque, &out);
        if (r < 0)
            return r;
        pos += BS_JOURNAL_HDR_LEN + payload_len(&rec);
    }
    return 0;
}

bool bs_journal_empty_epoch(struct bs_journal *j, uint64_t epoch)
{
    const struct span *s;
    bool empty;

    pthread_mutex_lock(&j->lock);
    s = find_span(j, epoch);
    empty = s && s->records == 0;
    pthread_mutex_unlock(&j->lock);
    return empty;
}

int bs_journal_replay(struct bs_journal *j, uint64_t epoch, bs_journal_apply_fn *apply,
                      void *opaque)
{
    struct span s, *found;

    pthread_mutex_lock(&j->lock);
    found = find_span(j, epoch);
    if (found)
        s = *found;
    pthread_mutex_unlock(&j->lock);
    if (!found)
        return -ENOENT;
    return walk_span(j, &s, apply, opaque);
}

int bs_journal_replay_open(struct bs_journal *j, bs_journal_apply_fn *apply, void *opaque)
{
    struct span s = { .epoch = j->open_epoch, .rec_epoch = j->open_epoch,
                      .first_pos = j->tail_pos, .end_pos = j->write_pos };

    if (!j->epoch_open)
        return 0;
    return walk_span(j, &s, apply, opaque);
}

int bs_journal_release(struct bs_journal *j, uint64_t epoch)
{
    size_t n = 0;
    int r;

    pthread_mutex_lock(&j->lock);
    while (n < j->nspans && j->spans[n].epoch <= epoch)
        n++;
    pthread_mutex_unlock(&j->lock);
    if (n == 0)
        return 0;
    /* The start moves only once the superblock saying so is durable. */
    r = write_sb(j, j->spans[n - 1].end_pos, j->spans[n - 1].end_seq);
    if (r < 0)
        return r;
    pthread_mutex_lock(&j->lock);
    memmove(j->spans, j->spans + n, (j->nspans - n) * sizeof(*j->spans));
    j->nspans -= n;
    pthread_mutex_unlock(&j->lock);
    return 0;
}
