/* blkship-primary's FLUSH/ACK barrier, for epochs the secondary writes in
 * place (docs/epochs.md, section 5).
 *
 * A replica that has never held a consistent image (the welcome names no
 * committed epoch) takes epochs in place: what it acknowledges after a
 * FLUSH is on the replica itself, durably, and stays there whatever
 * becomes of the epoch.  So a long first full sync clears its bits as it
 * goes, and a crash or a lost link resumes it instead of starting over:
 * every frame is recorded with the FLUSH that follows it, and an ACK of
 * that FLUSH clears the frame's grains.  A replica with a committed epoch
 * journals, and there only COMMITTED clears anything (epoch.c).
 *
 * One rule keeps an ACK from clearing newer data: a grain is sent again
 * only after the frames awaiting ACKs were acknowledged or forgotten.  In
 * one epoch, the pre-copy's frames are all acknowledged before the seal
 * (epoch.c waits for that) and after the seal each grain is sent once; an
 * aborted epoch's frames are forgotten (its grains go back to todo).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/log.h"
#include "primary/primary.h"

#define MOD "primary"

bool flush_may_send(const struct primary *p)
{
    return !p->in_place || (p->unacked_bytes < MAX_UNACKED && p->sent_count + p->nslots < SENT_CAP);
}

void flush_note_sent(struct primary *p, uint64_t first, uint64_t n, uint64_t bytes)
{
    struct sent *e;

    if (!p->in_place)
        return;
    e = &p->sent[(p->sent_head + p->sent_count) % SENT_CAP];
    *e = (struct sent){ .first = first, .n = n, .bytes = bytes, .seq = p->next_seq };
    p->sent_count++;
    p->unacked_bytes += bytes;
    p->bytes_since_flush += bytes;
    if (p->bytes_since_flush >= FLUSH_BYTES)
        flush_now(p);
}

void flush_now(struct primary *p)
{
    if (!p->in_place || !p->bytes_since_flush)
        return;
    send_ctrl(p, BSR_FLUSH, p->next_seq++);
    p->bytes_since_flush = 0;
}

bool flush_handle_ack(struct primary *p, uint64_t seq)
{
    bool any = false;

    /* The secondary acknowledges FLUSHes of this session in order, possibly
     * skipping some (one fdatasync may cover several).  Anything else, a
     * FLUSH not sent yet, one of an earlier session or one acknowledged
     * already, is a peer that does not know what it made durable: nothing
     * it says can clear a bit. */
    if (seq < p->ack_floor || seq >= p->next_seq) {
        if (p->ack_floor == p->next_seq)
            BS_ERR(MOD, "the secondary acknowledged FLUSH %" PRIu64 ", which was not sent in this "
                        "session (no FLUSH awaits an acknowledgement)", seq);
        else
            BS_ERR(MOD, "the secondary acknowledged FLUSH %" PRIu64 ", which was not sent in this "
                        "session or was acknowledged already (FLUSH %" PRIu64 "..%" PRIu64
                        " await one)", seq, p->ack_floor, p->next_seq - 1);
        return false;
    }
    p->ack_floor = seq + 1;
    p->backoff_ms = 0;
    while (p->sent_count && p->sent[p->sent_head].seq <= seq) {
        struct sent *e = &p->sent[p->sent_head];
        bs_dirty_acked(p->dirty, e->first, e->n);
        p->acked_bytes += e->bytes;
        p->ep_acked_bytes += e->bytes;
        p->unacked_bytes -= e->bytes;
        p->sent_head = (p->sent_head + 1) % SENT_CAP;
        p->sent_count--;
        any = true;
    }
    if (any)
        schedule_pump(p);
    return true;
}

void flush_forget(struct primary *p)
{
    /* A commit covers them, or an abort put their grains back in todo, to
     * be sent again: an ACK still on its way stays valid but must clear
     * nothing, or it would clear the grain's newer copy. */
    p->sent_head = p->sent_count = 0;
    p->unacked_bytes = 0;
    p->bytes_since_flush = 0;
}

void flush_session_start(struct primary *p, bool in_place)
{
    p->in_place = in_place;
    p->sent_head = p->sent_count = 0;
    p->unacked_bytes = 0;
    p->bytes_since_flush = 0;
    p->ack_floor = p->next_seq;
}
