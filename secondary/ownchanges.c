/* The replica's own changes (docs/failover.md, "Demote"): a primary's disk
 * demoted with `blkship demote` becomes this replica, and the extents
 * where it may differ from the generation it shares with the new primary
 * (what it wrote that never committed there, what it wrote after they
 * parted) come with it in demoted.changes.  They are sent after the
 * welcome (EXTENTS frames, protocol 4) to every primary session until one
 * of them commits an epoch: the primary has them durably in its bitmap
 * before it starts any epoch, and the first committed epoch holds every
 * block of them.  Only then are the file and the state's "own_changes"
 * dropped.
 */
#include "secondary/secondary.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/json.h"
#include "common/log.h"
#include "common/state.h"

#define MOD "secondary"

int own_load(struct secondary *sec)
{
    const char *why = "?";
    int r = bs_changes_read(sec->changes_path, sec->disk_bytes / BSR_SECTOR_SIZE, &sec->own,
                            &why);

    if (r < 0) {
        BS_ERR(MOD, "%s: %s; the replica's own changes cannot be sent. Remove this state "
                    "directory's secondary.state to compare by checksums instead",
               sec->changes_path, r == -EINVAL ? why : strerror(-r));
        return r;
    }
    sec->own_pending = true;
    for (size_t i = 0; i < sec->own.n; i++) {
        uint64_t s;
        uint32_t k;
        bs_changes_get(&sec->own, i, &s, &k);
        sec->own_bytes += (uint64_t)k * BSR_SECTOR_SIZE;
    }
    return 0;
}

int own_adopt(struct secondary *sec, const char *state_dir, bool newer, uint64_t above)
{
    char path[4200], text[BS_STATE_MAX], role[32], how[16];
    uint64_t fmt, gen, sectors, seq = 0;
    int r;

    snprintf(path, sizeof(path), "%s/primary.state", state_dir);
    r = bs_state_read(path, text, sizeof(text));
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 ||
        bs_state_get(text, "role", role, sizeof(role)) < 0) {
        BS_ERR(MOD, "%s is not a valid primary state file; refusing to guess", path);
        return -EINVAL;
    }
    (void)bs_state_get_u64(text, "role_seq", &seq);
    if (newer && fmt == 2 && strcmp(role, "demoted") == 0 && seq <= above)
        return 0; /* the promotion here is the newer role */
    if (fmt != 2 || strcmp(role, "demoted") != 0) {
        BS_ERR(MOD, "%s: this directory holds a primary's state, and its disk is that "
                    "primary's.  To make it a replica, run 'blkship demote' on that primary "
                    "first (it keeps what its bitmap knows), or give blkship-secondary an "
                    "empty --state-dir (a new pairing)", path);
        return -EPERM;
    }
    if (bs_state_get_u64(text, "generation", &gen) < 0 || gen == 0 ||
        bs_state_get_u64(text, "disk_sectors", &sectors) < 0 ||
        bs_state_get(text, "changes", how, sizeof(how)) < 0) {
        BS_ERR(MOD, "%s: a demoted state without its generation or changes; refusing to guess",
               path);
        return -EINVAL;
    }
    if (sectors * BSR_SECTOR_SIZE != sec->disk_bytes) {
        BS_ERR(MOD, "%s was demoted from a disk of %" PRIu64 " bytes; %s is %" PRIu64 " bytes",
               path, sectors * BSR_SECTOR_SIZE, sec->target.path, sec->disk_bytes);
        return -EINVAL;
    }
    r = bs_id_random(sec->replica_id);
    if (r < 0)
        return r;
    sec->generation = gen;
    sec->role_seq = seq + 1;
    if (strcmp(how, "file") == 0) {
        r = own_load(sec);
        if (r < 0)
            return r;
    } else {
        /* The bitmap was not complete when it was demoted. */
        sec->checksum_required = true;
        sec->generation_prev = gen;
    }
    BS_INFO(MOD, "taking up the demoted primary's disk (generation %016" PRIx64 "): %s", gen,
            sec->own_pending ? "its own changes are sent to the new primary"
                             : "to be compared by checksums");
    return 1;
}

bool own_send(struct session *s)
{
    struct secondary *sec = s->sec;
    size_t n = sec->own.n, frames;
    size_t per_frame = s->limits.max_payload / BSR_EXTENT_LEN, len, off = 0, i = 0;

    if (per_frame > BSR_EXTENTS_MAX)
        per_frame = BSR_EXTENTS_MAX;
    frames = (n + per_frame - 1) / per_frame + 1;
    len = n * BSR_EXTENT_LEN + frames * (BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN);
    free(s->own_buf);
    s->own_buf = malloc(len);
    if (!s->own_buf)
        return false;
    for (size_t f = 0; f < frames; f++) {
        uint32_t k = (uint32_t)(n - i < per_frame ? n - i : per_frame);
        struct bsr_frame fr = { .kind = BSR_EXTENTS, .count = k };
        uint8_t *start = s->own_buf + off;
        uint32_t crc;

        bsr_frame_pack(&fr, start);
        off += BSR_FRAME_HDR_LEN;
        memcpy(s->own_buf + off, sec->own.entries + i * BSR_EXTENT_LEN, k * BSR_EXTENT_LEN);
        off += k * BSR_EXTENT_LEN;
        i += k;
        crc = htole32(crc32c(0, start, BSR_FRAME_HDR_LEN + k * BSR_EXTENT_LEN));
        memcpy(s->own_buf + off, &crc, BSR_FRAME_CRC_LEN);
        off += BSR_FRAME_CRC_LEN;
    }
    if (bs_conn_write(s->conn, s->own_buf, off, NULL, NULL) < 0)
        return false;
    s->own_sent = true;
    BS_INFO(MOD, "sent the replica's own changes: %" PRIu64 " bytes in %zu extents", sec->own_bytes,
            n);
    return true;
}

void own_committed(struct session *s)
{
    struct secondary *sec = s->sec;
    int r;

    /* Resent by the EXTENTS, or moot after a checksum resync. */
    if (!sec->own_pending || !(s->own_sent || s->checksum_asked))
        return;
    pthread_mutex_lock(&sec->state_lock);
    sec->own_pending = false;
    r = sec_write_state_locked(sec);
    if (r < 0)
        sec->own_pending = true; /* sent again next session */
    pthread_mutex_unlock(&sec->state_lock);
    if (r < 0)
        return;
    if (unlink(sec->changes_path) < 0 && errno != ENOENT)
        BS_WARN(MOD, "removing %s: %s (no longer used)", sec->changes_path, strerror(errno));
    BS_INFO(MOD, "the replica's own changes are resent and committed (%" PRIu64 " bytes)",
            sec->own_bytes);
    bs_changes_free(&sec->own);
}

void own_status(struct secondary *sec, struct bs_json_builder *b)
{
    bs_json_add_bool(b, "own_changes_pending", sec->own_pending);
    bs_json_add_u64(b, "own_changes_bytes", sec->own_pending ? sec->own_bytes : 0);
}
