/* The secondary's epoch journal (docs/epochs.md, section 4): a bounded,
 * circular, append-only file of the frames of each epoch, so that an epoch
 * reaches the replica all or nothing.
 *
 * An epoch's records are appended as its frames arrive; bs_journal_commit
 * appends a commit record and makes the journal durable: from then on the
 * epoch survives any crash.  The applier copies a committed epoch to the
 * replica (bs_journal_replay), makes the replica durable, and then releases
 * the epoch's space (bs_journal_release).  At open, the journal is scanned:
 * the committed epochs still in it are listed (to be applied again, which
 * is idempotent) and whatever follows the last commit record is discarded.
 *
 * On-disk format (all integers little-endian), version 1:
 *   bytes 0..511, 512..1023   two superblock copies; the valid one with the
 *                             higher generation wins, so a torn superblock
 *                             write leaves the other
 *   bytes 4096..size          the circular record region
 * A record is a 48-byte header (magic, type, sequence number, epoch,
 * sector, count, CRC32C of header and payload) and, for DATA, count * 512
 * bytes of payload.  Sequence numbers increase by one per record and epoch
 * numbers never decrease along the region: the first record that breaks
 * either rule, or its CRC, ends the journal.
 *
 * One appender at a time (the caller serialises appends and commits);
 * replay and release may run concurrently with appends of later epochs.
 * Every function may block on I/O: call them off the event loop. */
#ifndef BLKSHIP_SECONDARY_JOURNAL_H
#define BLKSHIP_SECONDARY_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS_JOURNAL_MIN_BYTES (1ull << 20)
#define BS_JOURNAL_HDR_LEN 48u

enum bs_journal_kind {
    BS_JOURNAL_DATA = 1,   /* count sectors of payload at sector */
    BS_JOURNAL_ZERO = 2,   /* sectors [sector, sector + count) read as zeroes */
    BS_JOURNAL_COMMIT = 3, /* the epoch is whole */
    BS_JOURNAL_PAD = 4,    /* filler up to the region's end */
};

struct bs_journal;

/* One record of a committed epoch, as bs_journal_replay hands it over. */
struct bs_journal_record {
    enum bs_journal_kind kind;  /* DATA or ZERO */
    uint64_t epoch;
    uint64_t sector;
    uint32_t count;
    const void *data;           /* DATA: count * 512 bytes, valid during the call */
};

/* Applies one record; returns 0 or -errno (which stops the replay). */
typedef int bs_journal_apply_fn(void *opaque, const struct bs_journal_record *r);

/* Opens the journal at path, creating it (size bytes, at least
 * BS_JOURNAL_MIN_BYTES) if it does not exist, and scans it.  max_record is
 * the largest DATA payload a record may carry, in bytes.  A journal whose
 * superblocks are both invalid is refused with -EUCLEAN (never guessed
 * at); one of another size than asked keeps its own size.  Returns 0 or
 * -errno; logs why. */
int bs_journal_open(const char *path, uint64_t size, uint32_t max_record,
                    struct bs_journal **out);
void bs_journal_close(struct bs_journal *j);

/* The committed epochs found at open or committed since, oldest first, not
 * yet released: writes up to max of them to out and returns how many
 * there are. */
size_t bs_journal_committed(struct bs_journal *j, uint64_t *out, size_t max);
/* Whether committed epoch `epoch` is in the journal with no DATA or ZERO
 * record (its commit record alone): applying it changes nothing. */
bool bs_journal_empty_epoch(struct bs_journal *j, uint64_t epoch);
/* Bytes the unreleased records take, the uncommitted tail included. */
uint64_t bs_journal_used(struct bs_journal *j);
uint64_t bs_journal_size(struct bs_journal *j);

/* Appends a DATA or ZERO record of epoch (which must not be below the
 * last one appended).  -ENOSPC when the record does not fit in the space
 * not yet released: the epoch is too large for the journal as it is now
 * (see bs_journal_abort).  -EINVAL for a payload over max_record. */
int bs_journal_append(struct bs_journal *j, uint64_t epoch, enum bs_journal_kind kind,
                      uint64_t sector, uint32_t count, const void *data);
/* One DATA or ZERO record for bs_journal_append_many. */
struct bs_journal_entry {
    enum bs_journal_kind kind;
    uint64_t sector;
    uint32_t count;
    const void *data; /* DATA: count * 512 bytes */
};
/* Appends the n records of in, of epoch, in order, with the results of as
 * many bs_journal_append calls, in as few writes as the region's end
 * allows (a pwritev of up to 64 records).  Sets *done to how many were
 * appended: all of them on success, those before the one that failed
 * otherwise; a failed write counts none of the records it carried. */
int bs_journal_append_many(struct bs_journal *j, uint64_t epoch,
                           const struct bs_journal_entry *in, size_t n, size_t *done);
/* Appends the commit record of epoch and makes every record up to it
 * durable (fdatasync).  On success the epoch is committed.  The epoch may
 * be above the one its records were appended under (the appender learns
 * an epoch's number only at its end; it appends under the lowest number
 * it may have): the commit's number is the epoch's, for the scan, replay,
 * release and bs_journal_committed. */
int bs_journal_commit(struct bs_journal *j, uint64_t epoch);
/* Makes every record appended so far durable (fdatasync), committed or
 * not; a crash still discards the uncommitted ones.  Returns 0 or -errno. */
int bs_journal_sync(struct bs_journal *j);
/* Calls apply for every record appended since the last commit (the open
 * epoch's), in order: what an epoch too large for the journal had
 * journalled before it was found to be, for its caller to apply in place
 * before bs_journal_abort.  Call from the appender's thread, while no
 * bs_journal_replay runs (they share the read buffer).  Returns 0,
 * -EUCLEAN if a record no longer reads back, or apply's error. */
int bs_journal_replay_open(struct bs_journal *j, bs_journal_apply_fn *apply, void *opaque);
/* Forgets the records appended since the last commit (an epoch that was
 * broken, or too large): their space is reused.  Nothing is written. */
void bs_journal_abort(struct bs_journal *j);

/* Calls apply for every record of committed epoch `epoch`, in order.
 * Returns 0, -ENOENT if the epoch is not in the journal, -EUCLEAN if a
 * record no longer reads back as written, or apply's error. */
int bs_journal_replay(struct bs_journal *j, uint64_t epoch, bs_journal_apply_fn *apply,
                      void *opaque);
/* Frees the space of every committed epoch up to and including `epoch`
 * (which the replica now holds durably) and records that durably in the
 * superblock.  Returns 0 or -errno. */
int bs_journal_release(struct bs_journal *j, uint64_t epoch);

#endif
