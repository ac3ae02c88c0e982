/* `blkship wlog`: a person's view of a live write log, through the same
 * control socket and ring the replication agent uses. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "primary/writelog/wl_client.h"

static void wlog_usage(FILE *f)
{
    fputs("Usage: blkship wlog VERB SOCKET [ARGS] [--json]\n"
          "\n"
          "SOCKET is the log's control socket, e.g. /run/blkship/log_NAME.ctl.\n"
          "\n"
          "Verbs:\n"
          "  info                 disk size, granularity, epoch and dirty counts\n"
          "  peek                 list the dirty extents; the log is unchanged\n"
          "  getw                 seal the log and list every extent of the new epoch;\n"
          "                       the listed extents leave the log\n"
          "  clrw                 forget every dirty extent\n"
          "  read SECTOR COUNT [--output FILE]\n"
          "                       read sectors through the ring to FILE or stdout\n"
          "\n"
          "Extents print as 'SECTOR COUNT' lines in 512-byte sectors, or as JSON\n"
          "with --json.\n",
          f);
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "blkship wlog: %s: %s\n", what, strerror(-err));
    return 1;
}

/* Prints the extents in the export area; returns how many there were. */
static uint64_t print_extents(const struct wl_client *c, bool json, bool *first)
{
    const struct wl_disk_range *r = wl_client_extents(c);
    uint64_t n = 0;

    for (; n < WL_EXPORT_MAX && r[n].count; n++) {
        if (json)
            printf("%s\n    {\"sector\": %" PRIu64 ", \"count\": %" PRIu32 "}", *first ? "" : ",",
                   (uint64_t)r[n].sector, r[n].count);
        else
            printf("%" PRIu64 " %" PRIu32 "\n", (uint64_t)r[n].sector, r[n].count);
        *first = false;
    }
    return n;
}

static int do_info(struct wl_client *c, bool json)
{
    const struct wl_info_reply *i = &c->info;

    if (json) {
        printf("{\"version\": %u, \"disk_sectors\": %" PRIu64 ", \"disk_bytes\": %" PRIu64
               ", \"sector_size\": %u, \"grain_sectors\": %u, \"export_max\": %u"
               ", \"ring_max_sectors\": %u, \"log_id\": \"%016" PRIx64 "\", \"epoch\": %" PRIu64
               ", \"live_grains\": %" PRIu64 ", \"pending_grains\": %" PRIu64 "}\n",
               i->version, (uint64_t)i->disk_sectors, (uint64_t)i->disk_sectors * WL_SECTOR_SIZE,
               i->sector_size, i->grain_sectors, i->export_max, i->ring_max_sectors,
               (uint64_t)i->log_id, (uint64_t)i->epoch, (uint64_t)i->live_grains,
               (uint64_t)i->pending_grains);
    } else {
        printf("protocol version  %u\n", i->version);
        printf("disk              %" PRIu64 " sectors (%" PRIu64 " bytes)\n",
               (uint64_t)i->disk_sectors, (uint64_t)i->disk_sectors * WL_SECTOR_SIZE);
        printf("grain             %u sectors (%u bytes)\n", i->grain_sectors,
               i->grain_sectors * WL_SECTOR_SIZE);
        printf("log id            %016" PRIx64 "\n", (uint64_t)i->log_id);
        printf("epoch             %" PRIu64 "\n", (uint64_t)i->epoch);
        printf("dirty, unsealed   %" PRIu64 " grains\n", (uint64_t)i->live_grains);
        printf("sealed, unacked   %" PRIu64 " grains\n", (uint64_t)i->pending_grains);
    }
    return 0;
}

static int do_peek(struct wl_client *c, bool json)
{
    bool first = true;
    int r = wl_client_simple(c, WL_CMD_PEEK);

    if (r < 0)
        return fail("peek", r);
    if (json)
        printf("{\"extents\": [");
    uint64_t n = print_extents(c, json, &first);
    if (json)
        printf("%s], \"truncated\": %s}\n", first ? "" : "\n  ",
               n == WL_EXPORT_MAX ? "true" : "false");
    return 0;
}

/* Seals and walks the epoch chunk by chunk with "next", so that an epoch
 * larger than the export area is listed whole. */
static int do_getw(struct wl_client *c, bool json)
{
    struct wl_export_reply rep;
    bool first = true;
    int r = wl_client_export(c, WL_CMD_SEAL, &rep);

    if (r < 0)
        return fail("seal", r);
    if (json)
        printf("{\"epoch\": %" PRIu64 ", \"extents\": [", (uint64_t)rep.epoch);
    for (;;) {
        print_extents(c, json, &first);
        /* "next" acknowledges what we printed and fetches the rest. */
        r = wl_client_export(c, WL_CMD_NEXT, &rep);
        if (r < 0)
            return fail("next", r);
        if (rep.extents == 0)
            break;
    }
    if (json)
        printf("%s]}\n", first ? "" : "\n  ");
    return 0;
}

static int do_clrw(struct wl_client *c)
{
    int r = wl_client_simple(c, WL_CMD_CLRW);

    return r < 0 ? fail("clrw", r) : 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-')
        return -EINVAL;
    *out = v;
    return 0;
}

static int do_read(struct wl_client *c, int argc, char **argv, const char *output)
{
    uint64_t sector, count, chunk = 8192;
    int fd = STDOUT_FILENO;
    char *buf;
    int r = 0;

    if (argc != 2 || parse_u64(argv[0], &sector) < 0 || parse_u64(argv[1], &count) < 0 ||
        count == 0) {
        fprintf(stderr, "blkship wlog read: need SECTOR and COUNT (> 0)\n");
        return 2;
    }
    if (sector >= c->info.disk_sectors || count > c->info.disk_sectors - sector) {
        fprintf(stderr, "blkship wlog read: sectors %" PRIu64 "+%" PRIu64
                        " are outside the disk (%" PRIu64 " sectors)\n",
                sector, count, (uint64_t)c->info.disk_sectors);
        return 1;
    }
    if (output) {
        fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return fail(output, -errno);
    }
    buf = malloc(chunk * WL_SECTOR_SIZE);
    if (!buf) {
        r = fail("read", -ENOMEM);
        goto out;
    }
    while (count) {
        uint64_t n = count < chunk ? count : chunk;
        int e = wl_client_read(c, sector, n, buf);
        if (e < 0) {
            r = fail("ring read", e);
            goto out;
        }
        for (size_t off = 0; off < n * WL_SECTOR_SIZE;) {
            ssize_t w = write(fd, buf + off, n * WL_SECTOR_SIZE - off);
            if (w < 0) {
                r = fail(output ? output : "stdout", -errno);
                goto out;
            }
            off += (size_t)w;
        }
        sector += n;
        count -= n;
    }
out:
    free(buf);
    if (output && fd >= 0)
        close(fd);
    return r;
}

int cmd_wlog(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *output = NULL;
    bool json = false;
    struct wl_client c;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+jo:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'j': json = true; break;
        case 'o': output = optarg; break;
        case 'h': wlog_usage(stdout); return 0;
        default: wlog_usage(stderr); return 2;
        }
    }
    /* Options may also follow the positional arguments. */
    char *pos[8];
    int npos = 0;
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if ((strcmp(argv[i], "--output") == 0 || strcmp(argv[i], "-o") == 0) &&
                   i + 1 < argc) {
            output = argv[++i];
        } else if (npos < 8) {
            pos[npos++] = argv[i];
        } else {
            wlog_usage(stderr);
            return 2;
        }
    }
    if (npos < 2) {
        wlog_usage(stderr);
        return 2;
    }
    const char *verb = pos[0];
    const char *sock = pos[1];
    bool known = !strcmp(verb, "info") || !strcmp(verb, "peek") || !strcmp(verb, "getw") ||
                 !strcmp(verb, "clrw") || !strcmp(verb, "read");
    if (!known) {
        fprintf(stderr, "blkship wlog: unknown verb '%s'\n", verb);
        wlog_usage(stderr);
        return 2;
    }
    if (strcmp(verb, "read") != 0 && npos != 2) {
        wlog_usage(stderr);
        return 2;
    }
    r = wl_client_open(&c, sock);
    if (r < 0)
        return fail(sock, r);
    if (!strcmp(verb, "info"))
        r = do_info(&c, json);
    else if (!strcmp(verb, "peek"))
        r = do_peek(&c, json);
    else if (!strcmp(verb, "getw"))
        r = do_getw(&c, json);
    else if (!strcmp(verb, "clrw"))
        r = do_clrw(&c);
    else
        r = do_read(&c, npos - 2, pos + 2, output);
    wl_client_close(&c);
    return r;
}
