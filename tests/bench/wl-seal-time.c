/* wl-seal-time: times write-log control commands for writelog-bench.sh.
 *
 *   wl-seal-time info    SOCKET
 *   wl-seal-time clear   SOCKET
 *   wl-seal-time measure SOCKET MODE OFFSETS_FILE BLOCK_BYTES
 *
 * info    prints the log's parameters and dirty counts.
 * clear   sends "clrw" and checks that the log is empty afterwards.
 * measure expects the live map to hold exactly the blocks listed in
 *         OFFSETS_FILE (one byte offset per line, BLOCK_BYTES each, pairwise
 *         non-adjacent and grain aligned) and nothing pending.  It times,
 *         from this client, the round trip of:
 *           info   (baseline: socket round trip plus a count of the maps)
 *           MODE   "seal" or "getw" on the dirty log: the measured figure
 *           ack    for seal, the "next" that acknowledges the chunk
 *           empty  the same MODE again on the now empty log
 *         and checks that the export area lists exactly the expected
 *         extents and that the log is empty at the end.
 *
 * Output is one line of key=value pairs on stdout; times are microseconds.
 * Exit status: 0 on success, 1 when a check failed, 2 on a usage error.
 * The connection is opened before any timing starts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primary/writelog/wl_client.h"

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "wl-seal-time: %s: %s\n", what, err < 0 ? strerror(-err) : "check failed");
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Reads byte offsets, one per line, and returns them as sorted sectors. */
static int read_offsets(const char *path, uint64_t **out, size_t *n_out)
{
    FILE *f = fopen(path, "r");
    uint64_t *v = NULL, off;
    size_t n = 0, cap = 0;

    if (!f) {
        fprintf(stderr, "wl-seal-time: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fscanf(f, "%" SCNu64, &off) == 1) {
        if (off % WL_SECTOR_SIZE) {
            fprintf(stderr, "wl-seal-time: offset %" PRIu64 " is not sector aligned\n", off);
            goto bad;
        }
        if (n == cap) {
            uint64_t *nv = realloc(v, (cap = cap ? cap * 2 : 1024) * sizeof(*v));
            if (!nv)
                goto bad;
            v = nv;
        }
        v[n++] = off / WL_SECTOR_SIZE;
    }
    if (!feof(f)) {
        fprintf(stderr, "wl-seal-time: %s: not a list of offsets\n", path);
        goto bad;
    }
    fclose(f);
    qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    *n_out = n;
    return 0;
bad:
    fclose(f);
    free(v);
    return -1;
}

/* Compares the export area with the expected extents. */
static int check_extents(const struct wl_client *c, const uint64_t *sectors, size_t n,
                         uint32_t count)
{
    const struct wl_disk_range *r = wl_client_extents(c);
    size_t i;

    for (i = 0; i < n; i++) {
        if (r[i].count == 0) {
            fprintf(stderr, "wl-seal-time: export area ends after %zu extents, expected %zu\n",
                    i, n);
            return -1;
        }
        if (r[i].sector != sectors[i] || r[i].count != count) {
            fprintf(stderr,
                    "wl-seal-time: extent %zu is %" PRIu64 "+%" PRIu32 ", expected %" PRIu64
                    "+%" PRIu32 "\n",
                    i, (uint64_t)r[i].sector, r[i].count, sectors[i], count);
            return -1;
        }
    }
    if (r[n].count != 0) {
        fprintf(stderr, "wl-seal-time: export area has more than the %zu expected extents\n", n);
        return -1;
    }
    return 0;
}

static double time_info(struct wl_client *c, int *r)
{
    double t0 = now_us();

    *r = wl_client_info(c);
    return now_us() - t0;
}

static int do_info(struct wl_client *c)
{
    const struct wl_info_reply *i = &c->info;

    printf("disk_sectors=%" PRIu64 " grain_sectors=%u export_max=%u epoch=%" PRIu64
           " live_grains=%" PRIu64 " pending_grains=%" PRIu64 "\n",
           (uint64_t)i->disk_sectors, i->grain_sectors, i->export_max, (uint64_t)i->epoch,
           (uint64_t)i->live_grains, (uint64_t)i->pending_grains);
    return 0;
}

static int do_clear(struct wl_client *c)
{
    int r = wl_client_simple(c, WL_CMD_CLRW);

    if (r < 0)
        return fail("clrw", r);
    r = wl_client_info(c);
    if (r < 0)
        return fail("info", r);
    if (c->info.live_grains || c->info.pending_grains) {
        fprintf(stderr, "wl-seal-time: log not empty after clrw (%" PRIu64 " live, %" PRIu64
                        " pending)\n",
                (uint64_t)c->info.live_grains, (uint64_t)c->info.pending_grains);
        return 1;
    }
    printf("cleared=1\n");
    return 0;
}

static int do_measure(struct wl_client *c, const char *mode, const char *offsets_file,
                      const char *block_arg)
{
    struct wl_export_reply rep;
    uint64_t *sectors = NULL;
    size_t n = 0;
    double info_us, op_us, ack_us = 0, empty_us, t0;
    unsigned long block_bytes;
    uint32_t count, grain = c->info.grain_sectors;
    int seal, r, rc = 1;
    char *end;

    if (strcmp(mode, "seal") == 0)
        seal = 1;
    else if (strcmp(mode, "getw") == 0)
        seal = 0;
    else {
        fprintf(stderr, "wl-seal-time: MODE must be seal or getw\n");
        return 2;
    }
    errno = 0;
    block_bytes = strtoul(block_arg, &end, 0);
    if (errno || *end || block_bytes == 0 || block_bytes % WL_SECTOR_SIZE ||
        block_bytes / WL_SECTOR_SIZE > UINT32_MAX) {
        fprintf(stderr, "wl-seal-time: bad BLOCK_BYTES %s\n", block_arg);
        return 2;
    }
    count = (uint32_t)(block_bytes / WL_SECTOR_SIZE);
    if (read_offsets(offsets_file, &sectors, &n) < 0)
        return 1;
    if (n == 0 || n > c->info.export_max) {
        fprintf(stderr, "wl-seal-time: %zu offsets: need 1 to %u\n", n, c->info.export_max);
        goto out;
    }
    /* The expected extents are exact only if every block is whole grains
     * and no two blocks touch or share a grain. */
    for (size_t i = 0; i < n; i++) {
        if (sectors[i] % grain || count % grain ||
            (i + 1 < n && sectors[i] + count >= sectors[i + 1])) {
            fprintf(stderr, "wl-seal-time: block at sector %" PRIu64 " is not grain aligned or "
                            "touches the next one: the extent count would not be exact\n",
                    sectors[i]);
            goto out;
        }
    }

    info_us = time_info(c, &r);
    if (r < 0) {
        fail("info", r);
        goto out;
    }
    if (c->info.live_grains != n * (count / grain) || c->info.pending_grains != 0) {
        fprintf(stderr, "wl-seal-time: before %s: %" PRIu64 " live and %" PRIu64
                        " pending grains, expected %zu and 0\n",
                mode, (uint64_t)c->info.live_grains, (uint64_t)c->info.pending_grains,
                n * (count / grain));
        goto out;
    }

    /* The measured command. */
    t0 = now_us();
    r = seal ? wl_client_export(c, WL_CMD_SEAL, &rep) : wl_client_simple(c, WL_CMD_GETW);
    op_us = now_us() - t0;
    if (r < 0) {
        fail(mode, r);
        goto out;
    }
    if (seal && (rep.extents != n || rep.more)) {
        fprintf(stderr, "wl-seal-time: seal reported %" PRIu32 " extents (more=%" PRIu32
                        "), expected %zu\n",
                rep.extents, rep.more, n);
        goto out;
    }
    if (check_extents(c, sectors, n, count) < 0)
        goto out;

    if (seal) {
        t0 = now_us();
        r = wl_client_export(c, WL_CMD_NEXT, &rep);
        ack_us = now_us() - t0;
        if (r < 0) {
            fail("next", r);
            goto out;
        }
        if (rep.extents || rep.more || rep.pending_grains) {
            fprintf(stderr, "wl-seal-time: next after the only chunk returned %" PRIu32
                            " extents, %" PRIu64 " pending\n",
                    rep.extents, (uint64_t)rep.pending_grains);
            goto out;
        }
    }

    /* The same command on an empty log: its fixed cost on this disk. */
    t0 = now_us();
    r = seal ? wl_client_export(c, WL_CMD_SEAL, &rep) : wl_client_simple(c, WL_CMD_GETW);
    empty_us = now_us() - t0;
    if (r < 0) {
        fail(mode, r);
        goto out;
    }
    if ((seal && rep.extents) || wl_client_extents(c)[0].count) {
        fprintf(stderr, "wl-seal-time: %s on the emptied log exported extents\n", mode);
        goto out;
    }
    if (seal) {
        r = wl_client_export(c, WL_CMD_NEXT, &rep);
        if (r < 0) {
            fail("next", r);
            goto out;
        }
    }
    r = wl_client_info(c);
    if (r < 0) {
        fail("info", r);
        goto out;
    }
    if (c->info.live_grains || c->info.pending_grains) {
        fprintf(stderr, "wl-seal-time: after %s: %" PRIu64 " live, %" PRIu64
                        " pending grains, expected none\n",
                mode, (uint64_t)c->info.live_grains, (uint64_t)c->info.pending_grains);
        goto out;
    }
    printf("mode=%s extents=%zu info_us=%.1f op_us=%.1f ack_us=%.1f empty_us=%.1f "
           "epoch=%" PRIu64 "\n",
           mode, n, info_us, op_us, ack_us, empty_us, (uint64_t)c->info.epoch);
    rc = 0;
out:
    free(sectors);
    return rc;
}

static void usage(FILE *f)
{
    fputs("Usage: wl-seal-time info SOCKET\n"
          "       wl-seal-time clear SOCKET\n"
          "       wl-seal-time measure SOCKET seal|getw OFFSETS_FILE BLOCK_BYTES\n",
          f);
}

int main(int argc, char **argv)
{
    struct wl_client c;
    int r, rc;

    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    if (!((strcmp(argv[1], "info") == 0 && argc == 3) ||
          (strcmp(argv[1], "clear") == 0 && argc == 3) ||
          (strcmp(argv[1], "measure") == 0 && argc == 6))) {
        usage(stderr);
        return 2;
    }
    r = wl_client_open(&c, argv[2]);
    if (r < 0)
        return fail(argv[2], r);
    c.timeout_ms = 10000;
    if (strcmp(argv[1], "info") == 0)
        rc = do_info(&c);
    else if (strcmp(argv[1], "clear") == 0)
        rc = do_clear(&c);
    else
        rc = do_measure(&c, argv[3], argv[4], argv[5]);
    wl_client_close(&c);
    fflush(stdout);
    return rc;
}
