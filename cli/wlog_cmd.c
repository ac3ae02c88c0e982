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
#include "common/ctl.h"
#include "common/json.h"
#include "common/opt.h"
#include "primary/writelog/wl_client.h"
#include "primary/writelog/wl_json.h"

static void wlog_usage(FILE *f)
{
    fputs("Usage: blkship wlog VERB SOCKET [ARGS] [--json] [--force]\n"
          "       blkship wlog info|cowc --control AGENT-SOCK [--json]\n"
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
          "with --json.\n"
          "\n"
          "The log takes one client: while blkship-primary holds it, ask the agent\n"
          "instead: blkship wlog info|cowc --control AGENT-SOCK [--json].\n",
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

static int show_info(const struct wl_info_reply *i, bool json)
{
    struct bs_json_builder b;
    char id[17];
    int r;

    snprintf(id, sizeof(id), "%016" PRIx64, (uint64_t)i->log_id);
    if (json) {
        bs_json_begin(&b);
        wl_json_add_info(&b, i);
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

static int do_info(struct wl_client *c, bool json)
{
    return show_info(&c->info, json);
}

static int show_cowc(const struct wl_cowc_reply *wp, bool json)
{
    struct wl_cowc_reply w = *wp;
    struct bs_json_builder b;
    bool broken;
    int r;

    broken = (w.flags & WL_EF_BROKEN) != 0;
    if (json) {
        bs_json_begin(&b);
        bs_json_add_bool(&b, "enabled", w.max_bytes != 0);
        wl_json_add_cowc(&b, &w);
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

static int do_cowc(struct wl_client *c, bool json)
{
    struct wl_cowc_reply w;
    int r = wl_client_cowc(c, &w);

    if (r < 0)
        return fail("cowc", r);
    return show_cowc(&w, json);
}

/* The number `key` of the agent's reply (0 if absent). */
static uint64_t ju64(struct json_object *o, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* info or cowc asked of the agent that holds the log: the log takes one
 * client, and while the agent runs it is that client. */
static int via_agent(const char *control, const char *verb, bool json)
{
    char req[32], err[256], *reply = malloc(BS_CTL_MAX_REPLY);
    struct json_object *o = NULL, *v;
    int n, r;

    if (!reply)
        return fail(control, -ENOMEM);
    snprintf(req, sizeof(req), "wlog %s", verb);
    n = bs_ctl_call(control, req, reply, BS_CTL_MAX_REPLY);
    if (n < 0) {
        free(reply);
        return fail(control, n);
    }
    if (bs_json_parse(reply, (size_t)n, &o, err, sizeof(err)) < 0 ||
        !json_object_is_type(o, json_type_object)) {
        fprintf(stderr, "blkship wlog: %s: not a reply: %s\n", control, err);
        json_object_put(o);
        free(reply);
        return 1;
    }
    free(reply);
    if (json_object_object_get_ex(o, "error", &v)) {
        fprintf(stderr, "blkship wlog: %s: %s\n", control, json_object_get_string(v));
        json_object_put(o);
        return 1;
    }
    if (!strcmp(verb, "info")) {
        struct wl_info_reply i = { .version = (uint32_t)ju64(o, "version"),
                                   .disk_sectors = ju64(o, "disk_sectors"),
                                   .sector_size = (uint32_t)ju64(o, "sector_size"),
                                   .grain_sectors = (uint32_t)ju64(o, "grain_sectors"),
                                   .export_max = (uint32_t)ju64(o, "export_max"),
                                   .ring_max_sectors = (uint32_t)ju64(o, "ring_max_sectors"),
                                   .epoch = ju64(o, "epoch"),
                                   .live_grains = ju64(o, "live_grains"),
                                   .pending_grains = ju64(o, "pending_grains"),
                                   .flags = (uint32_t)ju64(o, "flags") };
        struct json_object *id;
        if (json_object_object_get_ex(o, "log_id", &id))
            i.log_id = strtoull(json_object_get_string(id), NULL, 16);
        r = show_info(&i, json);
    } else {
        struct wl_cowc_reply w = { .epoch = ju64(o, "epoch"),
                                   .bytes_now = ju64(o, "bytes_now"),
                                   .bytes_peak = ju64(o, "bytes_peak"),
                                   .max_bytes = ju64(o, "max_bytes"),
                                   .preserved = ju64(o, "preserved"),
                                   .waits = ju64(o, "waits"), .wait_ms = ju64(o, "wait_ms"),
                                   .breaks = ju64(o, "breaks"),
                                   .drain_timeouts = ju64(o, "drain_timeouts") };
        struct json_object *b;
        if (json_object_object_get_ex(o, "broken", &b) && json_object_get_boolean(b))
            w.flags = WL_EF_BROKEN;
        r = show_cowc(&w, json);
    }
    if (!json && r == 0)
        printf("(as the agent holding %s had it %" PRIu64 " ms ago)\n",
               json_object_object_get_ex(o, "log", &v) ? json_object_get_string(v) : "the log",
               ju64(o, "age_ms"));
    json_object_put(o);
    return r;
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
    const char *output = NULL, *control = NULL;
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
        } else if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
            control = argv[++i];
        } else if (npos < 8) {
            pos[npos++] = argv[i];
        } else {
            wlog_usage(stderr);
            return 2;
        }
    }
    if (control) {
        if (npos != 1 || (strcmp(pos[0], "info") != 0 && strcmp(pos[0], "cowc") != 0)) {
            wlog_usage(stderr);
            return 2;
        }
        return via_agent(control, pos[0], json);
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
    if (r == -EBUSY && (!strcmp(verb, "info") || !strcmp(verb, "cowc"))) {
        fail(sock, r);
        fprintf(stderr, "blkship wlog: another client holds the log (blkship-primary, while it "
                        "runs): ask it with 'blkship wlog %s --control AGENT-CONTROL-SOCKET'\n",
                verb);
        return 1;
    }
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
