/* Checks and renders an agent's status reply (see status_view.h).  The
 * fields read here are the ones docs/man/blkship.8.md promises for every
 * role; a reply without one of them is refused whole rather than shown in
 * part, so that a person never reads a zero that was really a gap. */
#include "cli/status_view.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/ctl.h"
#include "common/json.h"

/* What a field may hold. */
enum {
    T_STR = 1 << 0,
    T_BOOL = 1 << 1,
    T_NUM = 1 << 2,     /* a finite number */
    T_NULL = 1 << 3,
    T_OBJ = 1 << 4,     /* an object whose members have rules of their own */
};

struct field_rule {
    const char *name;
    unsigned types;
    bool required;
    double min, max;    /* for numbers */
};

#define ANY_BYTES 0, 1.8446744073709552e19

static const struct field_rule rules[] = {
    { "role", T_STR, true, 0, 0 },
    { "connected", T_BOOL, true, 0, 0 },
    { "dirty_bytes", T_NUM | T_NULL, true, ANY_BYTES },
    { "inflight_bytes", T_NUM, true, ANY_BYTES },
    { "sent_bytes", T_NUM, true, ANY_BYTES },
    { "acked_bytes", T_NUM, true, ANY_BYTES },
    { "sync_percent", T_NUM | T_NULL, true, 0, 100 },
    { "state", T_STR, false, 0, 0 },
    { "peer", T_STR, false, 0, 0 },
    { "device", T_STR, false, 0, 0 },
    { "rate_bytes_per_sec", T_NUM, false, ANY_BYTES },
    /* -1: unknown. */
    { "eta_seconds", T_NUM, false, -1, 1e300 },
    /* Epochs (docs/epochs.md §6): optional, shown when present. */
    { "replica_consistent", T_BOOL, false, 0, 0 },
    { "applied_epoch", T_NUM, false, ANY_BYTES },
    { "committed_epoch", T_NUM, false, ANY_BYTES },
    { "journal_bytes", T_NUM, false, ANY_BYTES },
    { "journal_max_bytes", T_NUM, false, ANY_BYTES },
    { "protocol_version", T_NUM, false, 0, 65535 },
    { "oversize_epochs", T_NUM, false, ANY_BYTES },
    { "consistency_note", T_STR, false, 0, 0 },
    { "epoch", T_NUM, false, ANY_BYTES },
    { "lag_ms", T_NUM, false, ANY_BYTES },
    { "mode", T_STR, false, 0, 0 },
    { "cow", T_OBJ, false, 0, 0 },
};

/* The members of the primary's "cow" object (copy-before-write counters). */
static const struct field_rule cow_rules[] = {
    { "bytes_now", T_NUM, false, ANY_BYTES },
    { "bytes_peak", T_NUM, false, ANY_BYTES },
    { "max_bytes", T_NUM, false, ANY_BYTES },
    { "preserved", T_NUM, false, ANY_BYTES },
    { "waits", T_NUM, false, ANY_BYTES },
    { "wait_ms", T_NUM, false, ANY_BYTES },
    { "breaks", T_NUM, false, ANY_BYTES },
    { "broken", T_BOOL, false, 0, 0 },
};

static const char *type_name(struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_string: return "a string";
    case json_type_array: return "an array";
    case json_type_object: return "an object";
    }
    return "?";
}

static const char *wanted(unsigned types)
{
    switch (types) {
    case T_STR: return "a string";
    case T_BOOL: return "a boolean";
    case T_NUM: return "a number";
    case T_NUM | T_NULL: return "a number or null";
    case T_OBJ: return "an object";
    }
    return "?";
}

static bool is_number(struct json_object *v)
{
    enum json_type t = json_object_get_type(v);

    return t == json_type_int || t == json_type_double;
}

/* Checks one rule; returns 0 or -EBADMSG with the reason in err. */
static int check_field(struct json_object *obj, const struct field_rule *r, char *err,
                       size_t errsize)
{
    struct json_object *v;
    unsigned have;

    if (!json_object_object_get_ex(obj, r->name, &v)) {
        if (!r->required)
            return 0;
        snprintf(err, errsize, "the status has no \"%s\" field", r->name);
        return -EBADMSG;
    }
    have = !v ? T_NULL
         : is_number(v) ? T_NUM
         : json_object_is_type(v, json_type_string) ? T_STR
         : json_object_is_type(v, json_type_boolean) ? T_BOOL
         : json_object_is_type(v, json_type_object) ? T_OBJ
         : 0;
    if (!(have & r->types)) {
        snprintf(err, errsize, "the status field \"%s\" is %s, not %s", r->name, type_name(v),
                 wanted(r->types));
        return -EBADMSG;
    }
    if (have == T_NUM) {
        double d = json_object_get_double(v);
        if (d < r->min || d > r->max) {
            snprintf(err, errsize, "the status field \"%s\" is %g, outside [%g, %g]", r->name, d,
                     r->min, r->max);
            return -EBADMSG;
        }
    }
    return 0;
}

/* ---- Text for a terminal ----------------------------------------------------- */

/* Encodes the character at s (left bytes, valid UTF-8 as json-c returns
 * it) for a terminal: control characters, C0 and C1, and the backslash
 * become C-style escapes so that a string can neither move the cursor nor
 * hide what it holds; everything else is copied.  Writes at most 7 bytes
 * to out and returns how many; *used gets the bytes of s consumed. */
static size_t escape_char(const unsigned char *s, size_t left, char out[8], size_t *used)
{
    unsigned char c = s[0];

    *used = 1;
    switch (c) {
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    default: break;
    }
    if (c < 0x20 || c == 0x7f)
        return (size_t)snprintf(out, 8, "\\x%02x", c);
    if (c == 0xc2 && left >= 2 && s[1] >= 0x80 && s[1] <= 0x9f) {
        *used = 2;
        return (size_t)snprintf(out, 8, "\\u%04x", s[1]);
    }
    out[0] = (char)c;
    return 1;
}

static void put_text(FILE *f, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char enc[8];
    size_t used;

    for (size_t i = 0; i < len; i += used)
        fwrite(enc, 1, escape_char(u + i, len - i, enc, &used), f);
}

/* The same into buf (always terminated), cut short with "..." if need be. */
static void escape_into(const char *s, size_t len, char *buf, size_t size)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, used, n;
    char enc[8];

    if (!size)
        return;
    for (size_t i = 0; i < len; i += used) {
        n = escape_char(u + i, len - i, enc, &used);
        if (o + n + 4 > size) {
            if (o + 4 <= size) {
                memcpy(buf + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(buf + o, enc, n);
        o += n;
    }
    buf[o] = '\0';
}

/* ---- Human output ------------------------------------------------------------ */

static struct json_object *member(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;

    json_object_object_get_ex(obj, key, &v);
    return v;
}

/* A number field, or -1 when it is absent or null. */
static double num(struct json_object *obj, const char *key)
{
    struct json_object *v = member(obj, key);

    return v ? json_object_get_double(v) : -1;
}

static void put_field_text(FILE *f, struct json_object *obj, const char *key)
{
    struct json_object *v = member(obj, key);

    put_text(f, json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

/* "LABEL VALUE" for an optional string member that is there and not
 * empty (newer agents' fields: an older agent's reply lacks them). */
static void optional_line(FILE *f, struct json_object *obj, const char *label, const char *key)
{
    struct json_object *v = member(obj, key);

    if (!v || !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
        return;
    fputs(label, f);
    put_field_text(f, obj, key);
    fputc('\n', f);
}

static void human_bytes(double b, char *out, size_t size)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    int u = 0;

    while (b >= 1024 && u < 5) {
        b /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/* The replica's disk state, first and in capitals: what an operator about
 * to fail over must not misread. */
static void print_replica(struct json_object *obj, FILE *f)
{
    struct json_object *c = member(obj, "replica_consistent");
    struct json_object *note = member(obj, "consistency_note");
    double applied = num(obj, "applied_epoch"), committed = num(obj, "committed_epoch");
    double used = num(obj, "journal_bytes"), max = num(obj, "journal_max_bytes");
    double version = num(obj, "protocol_version"), oversize = num(obj, "oversize_epochs");
    char a[64], b[64];

    if (c) {
        if (json_object_get_boolean(c)) {
            fputs("replica     CONSISTENT", f);
            if (applied >= 0)
                fprintf(f, " at epoch %.0f", applied);
        } else {
            fputs("replica     INCONSISTENT", f);
            if (note && json_object_get_string_len(note) > 0) {
                fputs(" — ", f);
                put_field_text(f, obj, "consistency_note");
            }
        }
        fputc('\n', f);
    }
    if (applied >= 0 || committed >= 0) {
        fputs("epochs     ", f);
        if (applied >= 0)
            fprintf(f, " applied %.0f", applied);
        if (committed >= 0)
            fprintf(f, "%s committed %.0f", applied >= 0 ? "," : "", committed);
        fputc('\n', f);
    }
    if (used >= 0) {
        human_bytes(used, a, sizeof(a));
        if (max >= 0) {
            human_bytes(max, b, sizeof(b));
            fprintf(f, "journal     %s of %s\n", a, b);
        } else {
            fprintf(f, "journal     %s\n", a);
        }
    }
    if (oversize > 0)
        fprintf(f, "oversize    %.0f epoch(s) larger than the journal, applied in place\n",
                oversize);
    if (version >= 0)
        fprintf(f, "protocol    version %.0f\n", version);
}

/* Failure detection and promotion (docs/hooks.md, docs/failover.md), where
 * the agent reports them. */
static void print_failover(struct json_object *obj, FILE *f)
{
    struct json_object *promoted = member(obj, "promoted"), *hooks = member(obj, "hooks");
    double hb = num(obj, "heartbeat_ms"), pt = num(obj, "peer_timeout_ms");
    double lost = num(obj, "primaries_lost");

    struct json_object *resync = member(obj, "resync");

    if (resync && strcmp(json_object_get_string(resync), "full") == 0) {
        fputs("resync      FULL: the whole disk is being sent (", f);
        put_field_text(f, obj, "resync_reason");
        fputs(")\n", f);
    }
    if (resync && strcmp(json_object_get_string(resync), "checksum") == 0) {
        fprintf(f, "resync      CHECKSUM: %.2f%% of the disk compared, %.0f bytes differ (",
                num(obj, "checksum_percent"), num(obj, "checksum_differing_bytes"));
        put_field_text(f, obj, "resync_reason");
        fputs(")\n", f);
    }
    struct json_object *sb = member(obj, "split_brain");
    if (sb && json_object_is_type(sb, json_type_boolean) && json_object_get_boolean(sb))
        fprintf(f, "SPLIT BRAIN both disks changed since they parted; the other side holds "
                   "generation %.0f; nothing is sent until 'blkship resolve --discard-local' "
                   "on one side\n",
                num(obj, "split_brain_peer_generation"));
    struct json_object *owed = member(obj, "checksum_required");
    if (owed && json_object_is_type(owed, json_type_boolean) && json_object_get_boolean(owed))
        fputs("resolved    split brain resolved here: the next session compares checksums\n", f);
    if (promoted && json_object_get_boolean(promoted))
        fputs("PROMOTED    the device is released; this agent takes no primary\n", f);
    if (hb >= 0 && pt >= 0) {
        fprintf(f, "heartbeat   every %.0f ms, peer lost after %.0f ms", hb, pt);
        if (lost > 0)
            fprintf(f, "; primary lost %.0f time(s)", lost);
        fputc('\n', f);
    }
    if (hooks && json_object_is_type(hooks, json_type_object) && num(hooks, "started") > 0) {
        fprintf(f, "hooks       %.0f run, %.0f failed, %.0f timed out, %.0f running; last: ",
                num(hooks, "started"), num(hooks, "failed"), num(hooks, "timed_out"),
                num(hooks, "running"));
        put_field_text(f, hooks, "last_event");
        fputs(" (", f);
        put_field_text(f, hooks, "last_result");
        fputs(")\n", f);
    }
}

/* The primary's epoch fields and copy-before-write counters. */
static void print_epochs(struct json_object *obj, FILE *f)
{
    struct json_object *cow = member(obj, "cow");
    double epoch = num(obj, "epoch"), committed = num(obj, "committed_epoch");
    double lag = num(obj, "lag_ms");
    const char *sep = "";
    char a[64];

    if (member(obj, "mode")) {
        fputs("mode        ", f);
        put_field_text(f, obj, "mode");
        fputc('\n', f);
    }
    if (epoch >= 0 || committed >= 0 || lag >= 0) {
        fputs("epoch      ", f);
        if (epoch >= 0) {
            fprintf(f, " %.0f", epoch);
            sep = ",";
        }
        if (committed >= 0) {
            fprintf(f, "%s committed %.0f", sep, committed);
            sep = ",";
        }
        if (lag >= 0)
            fprintf(f, "%s lag %.0f ms", sep, lag);
        fputc('\n', f);
    }
    if (!cow)
        return;
    fputs("cow        ", f);
    sep = "";
    for (size_t i = 0; i < sizeof(cow_rules) / sizeof(cow_rules[0]); i++) {
        const char *name = cow_rules[i].name;
        struct json_object *v = member(cow, name);
        if (!v)
            continue;
        if (cow_rules[i].types == T_BOOL) {
            fprintf(f, "%s %s %s", sep, name, json_object_get_boolean(v) ? "yes" : "no");
        } else if (strstr(name, "bytes")) {
            human_bytes(json_object_get_double(v), a, sizeof(a));
            fprintf(f, "%s %s %s", sep, name, a);
        } else {
            fprintf(f, "%s %s %.0f", sep, name, json_object_get_double(v));
        }
        sep = ",";
    }
    fputc('\n', f);
}

static void print_human(struct json_object *obj, FILE *f)
{
    struct json_object *peer = member(obj, "peer");
    double pct = num(obj, "sync_percent");
    double dirty = num(obj, "dirty_bytes");
    double rate = num(obj, "rate_bytes_per_sec");
    double eta = num(obj, "eta_seconds");
    char a[64], b[64], c[64];

    optional_line(f, obj, "resource    ", "resource");
    fputs("role        ", f);
    put_field_text(f, obj, "role");
    fputc('\n', f);
    optional_line(f, obj, "disk        ", "disk_state");
    print_replica(obj, f);
    print_failover(obj, f);
    fprintf(f, "connected   %s",
            json_object_get_boolean(member(obj, "connected")) ? "yes" : "no");
    if (peer && json_object_get_string_len(peer) > 0) {
        fputs(" — ", f);
        put_field_text(f, obj, "peer");
    }
    fputc('\n', f);
    if (json_object_get_boolean(member(obj, "connected")))
        optional_line(f, obj, "peer cert   ", "peer_certificate");
    else
        optional_line(f, obj, "last down   ", "last_disconnect");
    {
        struct json_object *rc = member(obj, "reconnects");
        if (rc && is_number(rc) && json_object_get_int64(rc) > 0)
            fprintf(f, "reconnects  %" PRId64 "\n", json_object_get_int64(rc));
    }
    {
        /* --compress: what it saves (raw / wire). */
        struct json_object *z = member(obj, "compression");
        struct json_object *ratio = member(obj, "compress_ratio");
        if (z && json_object_is_type(z, json_type_string) && strcmp(json_object_get_string(z), "none") &&
            ratio && is_number(ratio)) {
            fputs("compression ", f);
            put_field_text(f, obj, "compression");
            bool up = json_object_get_boolean(member(obj, "connected"));
            fprintf(f, ", ratio %.2f%s\n", json_object_get_double(ratio),
                    !up || json_object_get_boolean(member(obj, "compression_active"))
                        ? ""
                        : " (not agreed by the secondary)");
        }
    }
    if (member(obj, "device")) {
        fputs("device      ", f);
        put_field_text(f, obj, "device");
        fputc('\n', f);
    }
    if (member(obj, "state")) {
        fputs("state       ", f);
        put_field_text(f, obj, "state");
        fputc('\n', f);
    }
    if (pct >= 0) {
        int width = 40, fill = (int)(pct / 100.0 * width + 0.5);
        fputs("in sync     [", f);
        for (int i = 0; i < width; i++)
            fputc(i < fill ? '#' : '.', f);
        fprintf(f, "] %.1f%%\n", pct);
    }
    if (dirty >= 0) {
        human_bytes(dirty, a, sizeof(a));
        fprintf(f, "dirty       %s\n", a);
    }
    human_bytes(num(obj, "sent_bytes"), a, sizeof(a));
    human_bytes(num(obj, "acked_bytes"), b, sizeof(b));
    human_bytes(num(obj, "inflight_bytes"), c, sizeof(c));
    fprintf(f, "sent        %s, durable on the replica %s, in flight %s\n", a, b, c);
    if (rate >= 0) {
        human_bytes(rate, a, sizeof(a));
        if (eta >= 0 && dirty > 0)
            fprintf(f, "rate        %s/s, ETA %.0f s\n", a, eta);
        else
            fprintf(f, "rate        %s/s\n", a);
    }
    print_epochs(obj, f);
}

/* ---- Entry point ------------------------------------------------------------- */

/* Checks everything the renderers read, so that they cannot fail. */
static int check_status(struct json_object *obj, char *err, size_t errsize)
{
    struct json_object *v;
    int64_t schema;
    int r;

    if (!json_object_is_type(obj, json_type_object)) {
        snprintf(err, errsize, "the reply is %s, not a JSON object", type_name(obj));
        return -EBADMSG;
    }
    if (json_object_object_get_ex(obj, "error", &v)) {
        if (json_object_is_type(v, json_type_string)) {
            char text[512];
            escape_into(json_object_get_string(v), (size_t)json_object_get_string_len(v), text,
                        sizeof(text));
            snprintf(err, errsize, "the agent answered with an error: %s", text);
        } else {
            snprintf(err, errsize, "the agent answered with an error (%s)", type_name(v));
        }
        return -EREMOTEIO;
    }
    if (!json_object_object_get_ex(obj, "schema", &v)) {
        snprintf(err, errsize, "the status has no \"schema\" field");
        return -EBADMSG;
    }
    if (!json_object_is_type(v, json_type_int)) {
        snprintf(err, errsize, "the status field \"schema\" is %s, not an integer",
                 type_name(v));
        return -EBADMSG;
    }
    schema = json_object_get_int64(v);
    if (schema < 1) {
        snprintf(err, errsize, "the status schema %" PRId64 " is not a schema (1 or more)", schema);
        return -EBADMSG;
    }
    if (schema > BS_CTL_SCHEMA) {
        snprintf(err, errsize,
                 "the status is in schema %" PRId64 ", newer than this blkship reads (%d): "
                 "use the blkship of the agent's version",
                 schema, BS_CTL_SCHEMA);
        return -EPROTONOSUPPORT;
    }
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        r = check_field(obj, &rules[i], err, errsize);
        if (r < 0)
            return r;
    }
    if (json_object_object_get_ex(obj, "cow", &v))
        for (size_t i = 0; i < sizeof(cow_rules) / sizeof(cow_rules[0]); i++) {
            r = check_field(v, &cow_rules[i], err, errsize);
            if (r < 0)
                return r;
        }
    return 0;
}

int bs_status_view(const char *reply, size_t len, enum bs_status_view_mode mode, FILE *out,
                   char *err, size_t errsize)
{
    struct json_object *obj;
    int r;

    if (errsize)
        err[0] = '\0';
    r = bs_json_parse(reply, len, &obj, err, errsize);
    if (r < 0)
        return r;
    r = check_status(obj, err, errsize);
    if (r == 0 && out) {
        if (mode == BS_STATUS_JSON) {
            r = bs_json_print(obj, out);
        } else {
            print_human(obj, out);
            r = ferror(out) ? -EIO : 0;
        }
        if (r < 0)
            snprintf(err, errsize, "%s", r == -ENOMEM ? "out of memory" : "writing failed");
    }
    json_object_put(obj);
    return r;
}
