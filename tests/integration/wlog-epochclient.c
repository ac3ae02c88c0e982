/* A scripted write-log client for the epoch tests: one connection, kept
 * open while the test drives it with commands on stdin, one per line, and
 * reads one answer line per command on stdout:
 *
 *   seal | next           "seal epoch=E extents=N more=M flags=F"
 *   extents               "extents S C S C ..." (the export area)
 *   readcmp IMAGE         reads every extent of the export area through the
 *                         ring and compares it byte for byte with IMAGE at
 *                         the same offsets: "readcmp ok sectors=N" or
 *                         "readcmp mismatch sector=S"
 *   adds S C [S C ...]    "adds extents=N grains=G" or "adds error=ERRNO"
 *   info                  "info epoch=E flags=F live=L pending=P"
 *   cowc                  "cowc epoch=E flags=F bytes_now=B preserved=P
 *                         waits=W breaks=K drain_timeouts=D max=M"
 *   quit                  closes the connection and exits 0
 *
 * A failed request prints "CMD error=ERRNO" and goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primary/writelog/wl_client.h"

static void print_export(const char *cmd, int r, const struct wl_export_reply *e)
{
    if (r < 0)
        printf("%s error=%d\n", cmd, -r);
    else
        printf("%s epoch=%" PRIu64 " extents=%u more=%u flags=%u\n", cmd, (uint64_t)e->epoch,
               e->extents, e->more, e->flags);
}

/* Compares count sectors at sector read through the ring with the image. */
static int compare_range(struct wl_client *c, int img, uint64_t sector, uint32_t count,
                         uint64_t *bad)
{
    size_t len = (size_t)count * WL_SECTOR_SIZE;
    char *got = malloc(len), *want = malloc(len);
    int r = -ENOMEM;

    if (!got || !want)
        goto out;
    r = wl_client_read(c, sector, count, got);
    if (r < 0)
        goto out;
    if (pread(img, want, len, (off_t)(sector * WL_SECTOR_SIZE)) != (ssize_t)len) {
        r = -EIO;
        goto out;
    }
    for (size_t i = 0; i < len; i += WL_SECTOR_SIZE)
        if (memcmp(got + i, want + i, WL_SECTOR_SIZE) != 0) {
            *bad = sector + i / WL_SECTOR_SIZE;
            r = 1;
            goto out;
        }
    r = 0;
out:
    free(got);
    free(want);
    return r;
}

static void do_readcmp(struct wl_client *c, const char *image)
{
    const struct wl_disk_range *ext = wl_client_extents(c);
    struct wl_disk_range copy[64];
    uint64_t total = 0, bad = 0;
    unsigned n = 0;
    int img = open(image, O_RDONLY | O_CLOEXEC);

    if (img < 0) {
        printf("readcmp error=%d\n", errno);
        return;
    }
    /* The export area is rewritten by nothing but seal/next, but copy it
     * anyway: the test's epochs are small. */
    while (n < 64 && ext[n].count) {
        copy[n] = ext[n];
        n++;
    }
    for (unsigned i = 0; i < n; i++) {
        int r = compare_range(c, img, copy[i].sector, copy[i].count, &bad);
        if (r < 0) {
            printf("readcmp error=%d\n", -r);
            close(img);
            return;
        }
        if (r > 0) {
            printf("readcmp mismatch sector=%" PRIu64 "\n", bad);
            close(img);
            return;
        }
        total += copy[i].count;
    }
    close(img);
    printf("readcmp ok sectors=%" PRIu64 "\n", total);
}

static void do_adds(struct wl_client *c, char *args)
{
    struct wl_disk_range r[32];
    struct wl_adds_reply rep;
    uint32_t n = 0;
    char *save = NULL;

    for (char *t = strtok_r(args, " \n", &save); t && n < 32; t = strtok_r(NULL, " \n", &save)) {
        char *t2 = strtok_r(NULL, " \n", &save);
        if (!t2)
            break;
        r[n++] = (struct wl_disk_range){ .sector = strtoull(t, NULL, 0),
                                         .count = (uint32_t)strtoul(t2, NULL, 0) };
    }
    int e = wl_client_adds(c, r, n, &rep);
    if (e < 0)
        printf("adds error=%d\n", -e);
    else
        printf("adds extents=%u grains=%" PRIu64 "\n", rep.extents, (uint64_t)rep.grains);
}

int main(int argc, char **argv)
{
    struct wl_client c;
    char line[4096];
    int r;

    if (argc != 2) {
        fprintf(stderr, "usage: wlog-epochclient SOCKET < commands\n");
        return 2;
    }
    r = wl_client_open(&c, argv[1]);
    if (r < 0) {
        fprintf(stderr, "wlog-epochclient: %s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof(line), stdin)) {
        struct wl_export_reply e;
        line[strcspn(line, "\n")] = '\0';
        if (!strcmp(line, "seal") || !strcmp(line, "next")) {
            r = wl_client_export(&c, line, &e);
            print_export(line, r, &e);
        } else if (!strcmp(line, "extents")) {
            const struct wl_disk_range *x = wl_client_extents(&c);
            printf("extents");
            for (unsigned i = 0; i < 64 && x[i].count; i++)
                printf(" %" PRIu64 " %u", (uint64_t)x[i].sector, x[i].count);
            printf("\n");
        } else if (!strncmp(line, "readcmp ", 8)) {
            do_readcmp(&c, line + 8);
        } else if (!strncmp(line, "adds ", 5)) {
            do_adds(&c, line + 5);
        } else if (!strcmp(line, "info")) {
            r = wl_client_info(&c);
            if (r < 0)
                printf("info error=%d\n", -r);
            else
                printf("info epoch=%" PRIu64 " flags=%u live=%" PRIu64 " pending=%" PRIu64 "\n",
                       (uint64_t)c.info.epoch, c.info.flags, (uint64_t)c.info.live_grains,
                       (uint64_t)c.info.pending_grains);
        } else if (!strcmp(line, "cowc")) {
            struct wl_cowc_reply w;
            r = wl_client_cowc(&c, &w);
            if (r < 0)
                printf("cowc error=%d\n", -r);
            else
                printf("cowc epoch=%" PRIu64 " flags=%u bytes_now=%" PRIu64 " preserved=%" PRIu64
                       " waits=%" PRIu64 " breaks=%" PRIu64 " drain_timeouts=%" PRIu64
                       " max=%" PRIu64 "\n",
                       (uint64_t)w.epoch, w.flags, (uint64_t)w.bytes_now, (uint64_t)w.preserved,
                       (uint64_t)w.waits, (uint64_t)w.breaks, (uint64_t)w.drain_timeouts,
                       (uint64_t)w.max_bytes);
        } else if (!strcmp(line, "quit")) {
            break;
        } else {
            printf("unknown command: %s\n", line);
        }
    }
    wl_client_close(&c);
    return 0;
}
