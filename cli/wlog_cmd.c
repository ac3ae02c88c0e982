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
#include "common/json.h"
#include "common/opt.h"
#include "primary/writelog/wl_client.h"

static void wlog_usage(FILE *f)
{
    fputs("Usage: blkship wlog VERB SOCKET [ARGS] [--json] [--force]\n"
          "\n"
          "SOCKET is the log's control socket, e.g. /run/blkship/log_NAME.ctl.\n"
          "\n"
          "Verbs:\n"
          "  info                 disk size, granularity, epoch, dirty counts and flags\n"
          "  peek                 list the dirty extents; the log is unchanged\n"
          "  getw                 seal the log and list every extent of the new epoch;\n"
          "                       the listed extents leave the log\n"
          "  clrw --force         forget every dirty extent: the replica then silently\n"
          "                       differs from the disk until it is fully resynchronised;\n"
          "                       without --force, only says what would be lost\n"
          "  read SECTOR COUNT [--output FILE]\n"
          "                       read sectors through the ring to FILE or stdout\n"
          "  cowc                 copy-before-write counters of the sealed epoch\n"
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

/* Extents as JSON: the members of an array, one object per line.  An
 * epoch may hold millions of extents, so they are written as they come
 * rather than built into one document; each object is serialised by
 * json-c, only the commas between them are ours. */
struct extent_out {
    bool json;
    bool first;
    bool failed;                /* json-c ran out of memory */
    struct json_object *obj;    /* reused: {"sector": N, "count": N} */
};

static int extent_out_init(struct extent_out *eo, bool json)
{
    eo->json = json;
    eo->first = true;
    eo->failed = false;
    eo->obj = NULL;
    if (!json)
        return 0;
    eo->obj = json_object_new_object();
    if (!eo->obj || json_object_object_add(eo->obj, "sector", json_object_new_uint64(0)) < 0 ||
        json_object_object_add(eo->obj, "count", json_object_new_uint64(0)) < 0) {
        json_object_put(eo->obj);
        eo->obj = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void extent_out_free(struct extent_out *eo)
{
    json_object_put(eo->obj);
}

/* Prints the extents in the export area; returns how many there were. */
static uint64_t print_extents(const struct wl_client *c, struct extent_out *eo)
{
    const struct wl_disk_range *r = wl_client_extents(c);
    uint64_t n = 0;

    for (; n < WL_EXPORT_MAX && r[n].count; n++) {
        if (eo->json) {
            json_object_set_uint64(json_object_object_get(eo->obj, "sector"), r[n].sector);
            json_object_set_uint64(json_object_object_get(eo->obj, "count"), r[n].count);
            const char *text = json_object_to_json_string_ext(eo->obj, BS_JSON_FLAGS);
            if (!text) {
                eo->failed = true;
                return n;
            }
            fputs(eo->first ? "\n    " : ",\n    ", stdout);
            fputs(text, stdout);
        } else {
            printf("%" PRIu64 " %" PRIu32 "\n", (uint64_t)r[n].sector, r[n].count);
        }
        eo->first = false;
    }
    return n;
}

static int do_info(struct wl_client *c, bool json)
{
    const struct wl_info_reply *i = &c->info;
    struct bs_json_builder b;
    char id[17];
    int r;

    snprintf(id, sizeof(id), "%016" PRIx64, (uint64_t)i->log_id);
    if (json) {
        bs_json_begin(&b);
        bs_json_add_u64(&b, "version", i->version);
        bs_json_add_u64(&b, "disk_sectors", i->disk_sectors);
        bs_json_add_u64(&b, "disk_bytes", (uint64_t)i->disk_sectors * WL_SECTOR_SIZE);
        bs_json_add_u64(&b, "sector_size", i->sector_size);
        bs_json_add_u64(&b, "grain_sectors", i->grain_sectors);
        bs_json_add_u64(&b, "export_max", i->export_max);
        bs_json_add_u64(&b, "ring_max_sectors", i->ring_max_sectors);
        bs_json_add_str(&b, "log_id", id);
        bs_json_add_u64(&b, "epoch", i->epoch);
        bs_json_add_u64(&b, "live_grains", i->live_grains);
        bs_json_add_u64(&b, "pending_grains", i->pending_grains);
        bs_json_add_u64(&b, "flags", i->flags);
        bs_json_add_bool(&b, "broken", (i->flags & WL_EF_BROKEN) != 0);
        bs_json_add_bool(&b, "cow", (i->flags & WL_IF_COW) != 0);
        r = bs_json_finish_print(&b, stdout);
        return r < 0 ? fail("info", r) : 0;
    }
    printf("protocol version  %u\n", i->version);
    printf("disk              %" PRIu64 " sectors (%" PRIu64 " bytes)\n",
           (uint64_t)i->disk_sectors, (uint64_t)i->disk_sectors * WL_SECTOR_SIZE);
    printf("grain             %u sectors (%u bytes)\n", i->grain_sectors,
           i->grain_sectors * WL_SECTOR_SIZE);
    printf("log id            %s\n", id);
    printf("epoch             %" PRIu64 "\n", (uint64_t)i->epoch);
    printf("dirty, unsealed   %" PRIu64 " grains\n", (uint64_t)i->live_grains);
    printf("sealed, unacked   %" PRIu64 " grains\n", (uint64_t)i->pending_grains);
    printf("copy-before-write %s\n", i->flags & WL_IF_COW ? "enabled" : "disabled");
    if (i->flags & WL_EF_BROKEN)
        printf("epoch %" PRIu64 " is BROKEN: do not commit it, seal again\n", (uint64_t)i->epoch);
    return 0;
}

static int do_cowc(struct wl_client *c, bool json)
{
    struct wl_cowc_reply w;
    struct bs_json_builder b;
    bool broken;
    int r = wl_client_cowc(c, &w);

    if (r < 0)
        return fail("cowc", r);
    broken = (w.flags & WL_EF_BROKEN) != 0;
    if (json) {
        bs_json_begin(&b);
        bs_json_add_bool(&b, "enabled", w.max_bytes != 0);
        bs_json_add_u64(&b, "epoch", w.epoch);
        bs_json_add_bool(&b, "broken", broken);
        bs_json_add_u64(&b, "bytes_now", w.bytes_now);
        bs_json_add_u64(&b, "bytes_peak", w.bytes_peak);
        bs_json_add_u64(&b, "max_bytes", w.max_bytes);
        bs_json_add_u64(&b, "preserved", w.preserved);
        bs_json_add_u64(&b, "waits", w.waits);
        bs_json_add_u64(&b, "wait_ms", w.wait_ms);
        bs_json_add_u64(&b, "breaks", w.breaks);
        bs_json_add_u64(&b, "drain_timeouts", w.drain_timeouts);
        r = bs_json_finish_print(&b, stdout);
        return r < 0 ? fail("cowc", r) : 0;
    }
    if (w.max_bytes == 0)
        printf("copy-before-write disabled (writelog-cow-max=0): epochs are not points in time\n");
    printf("epoch             %" PRIu64 "%s\n", (uint64_t)w.epoch,
           w.epoch == 0 ? " (none open)" : broken ? " BROKEN" : "");
    printf("preserved now     %" PRIu64 " bytes (peak %" PRIu64 ", pool %" PRIu64 ")\n",
           (uint64_t)w.bytes_now, (uint64_t)w.bytes_peak, (uint64_t)w.max_bytes);
    printf("copies made       %" PRIu64 "\n", (uint64_t)w.preserved);
    printf("waits for space   %" PRIu64 " (%" PRIu64 " ms in all)\n", (uint64_t)w.waits,
           (uint64_t)w.wait_ms);
    printf("epochs broken     %" PRIu64 "\n", (uint64_t)w.breaks);
    printf("drain timeouts    %" PRIu64 "\n", (uint64_t)w.drain_timeouts);
    return 0;
}

static int do_peek(struct wl_client *c, bool json)
{
    struct extent_out eo;
    int r = wl_client_simple(c, WL_CMD_PEEK);

    if (r < 0)
        return fail("peek", r);
    r = extent_out_init(&eo, json);
    if (r < 0)
        return fail("peek", r);
    if (json)
        printf("{ \"extents\": [");
    uint64_t n = print_extents(c, &eo);
    if (eo.failed) {
        extent_out_free(&eo);
        return fail("peek", -ENOMEM);
    }
    if (json)
        printf("%s], \"truncated\": %s }\n", eo.first ? " " : "\n  ",
               n == WL_EXPORT_MAX ? "true" : "false");
    extent_out_free(&eo);
    return 0;
}

/* Seals and walks the epoch chunk by chunk with "next", so that an epoch
 * larger than the export area is listed whole. */
static int do_getw(struct wl_client *c, bool json)
{
    struct wl_export_reply rep;
    struct extent_out eo;
    int r = extent_out_init(&eo, json);

    if (r < 0)
        return fail("getw", r);
    r = wl_client_export(c, WL_CMD_SEAL, &rep);
    if (r < 0) {
        r = fail("seal", r);
        goto out;
    }
    if (json)
        printf("{ \"epoch\": %" PRIu64 ", \"extents\": [", (uint64_t)rep.epoch);
    for (;;) {
        print_extents(c, &eo);
        if (eo.failed) {
            /* Not acknowledged: the rest stays pending in the log. */
            r = fail("getw", -ENOMEM);
            goto out;
        }
        /* "next" acknowledges what we printed and fetches the rest. */
        r = wl_client_export(c, WL_CMD_NEXT, &rep);
        if (r < 0) {
            r = fail("next", r);
            goto out;
        }
        if (rep.extents == 0)
            break;
    }
    if (json)
        printf("%s] }\n", eo.first ? " " : "\n  ");
out:
    extent_out_free(&eo);
    return r;
}

static void human_bytes(uint64_t bytes, char *out, size_t size)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double b = (double)bytes;
    int u = 0;

    while (b >= 1024 && u < 6) {
        b /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/* Clearing discards what the replica has not received yet, so without
 * --force it only peeks and says what would go. */
static int do_clrw(struct wl_client *c, const char *sock, bool force)
{
    const struct wl_disk_range *ext;
    uint64_t n = 0, sectors = 0;
    char size[32];
    int r = wl_client_simple(c, WL_CMD_PEEK);

    if (r < 0)
        return fail("peek", r);
    ext = wl_client_extents(c);
    for (; n < WL_EXPORT_MAX && ext[n].count; n++)
        sectors += ext[n].count;
    human_bytes(sectors * WL_SECTOR_SIZE, size, sizeof(size));
    /* A peek shows one export area of extents; past that, more remain. */
    const char *atleast = n == WL_EXPORT_MAX ? "at least " : "";
    if (!force) {
        fprintf(stderr,
                "blkship wlog clrw: refusing without --force.\n"
                "The log %s holds %s%" PRIu64 " dirty extents, %s%s (%" PRIu64 " bytes),\n"
                "that blkship-primary has not taken from the log yet.  Clearing forgets\n"
                "them: the replica then silently differs from this disk until it is fully\n"
                "resynchronised.  Run again with --force to clear.\n",
                sock, atleast, n, atleast, size, sectors * WL_SECTOR_SIZE);
        return 2;
    }
    r = wl_client_simple(c, WL_CMD_CLRW);
    if (r < 0)
        return fail("clrw", r);
    fprintf(stderr, "blkship wlog clrw: forgot %s%" PRIu64 " dirty extents (%s%s)\n", atleast, n,
            atleast, size);
    return 0;
}

static int do_read(struct wl_client *c, int argc, char **argv, const char *output)
{
    uint64_t sector, count, chunk = 8192;
    int fd = STDOUT_FILENO;
    char *buf;
    int r = 0;

    if (argc != 2 || bs_parse_u64(argv[0], &sector) < 0 || bs_parse_u64(argv[1], &count) < 0 ||
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
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *output = NULL;
    bool json = false, force = false;
    struct wl_client c;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+jo:fh", opts, NULL)) != -1) {
        switch (opt) {
        case 'j': json = true; break;
        case 'o': output = optarg; break;
        case 'f': force = true; break;
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
        } else if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0) {
            force = true;
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
                 !strcmp(verb, "clrw") || !strcmp(verb, "read") || !strcmp(verb, "cowc");
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
        r = do_clrw(&c, sock, force);
    else if (!strcmp(verb, "cowc"))
        r = do_cowc(&c, json);
    else
        r = do_read(&c, npos - 2, pos + 2, output);
    wl_client_close(&c);
    return r;
}
