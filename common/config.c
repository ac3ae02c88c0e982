/* One configuration file per resource (see config.h). */
#include "common/config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_BYTES 4096

static const char *const known_sections[] = { "common", "primary", "secondary", "writelog" };
/* Options that name the file or stop the program: never keys. */
static const char *const not_keys[] = { "config", "resource", "help", "version", "check-config" };

struct reader {
    FILE *f;
    unsigned line;
    unsigned long_line; /* the first line over LINE_MAX_BYTES, 0: none */
};

struct parse {
    struct bs_config *cfg;
    const char *role;
    const struct option *opts;
    struct reader *rd;
    unsigned errors;
};

static char *read_line(char *str, int num, void *stream)
{
    struct reader *rd = stream;
    char *r = fgets(str, num, rd->f);
    size_t len;

    if (!r)
        return NULL;
    rd->line++;
    len = strlen(r);
    if (len == (size_t)num - 1 && r[len - 1] != '\n') {
        /* The rest of an over-long line would be read as lines of its own. */
        int ch;
        if (!rd->long_line)
            rd->long_line = rd->line;
        while ((ch = fgetc(rd->f)) != EOF && ch != '\n')
            ;
    }
    return r;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static const struct option *find_opt(const struct option *opts, const char *name)
{
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0)
            return opts;
    return NULL;
}

__attribute__((format(printf, 3, 4))) static void error_at(struct parse *ps, const char *key,
                                                          const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: %s:%u: %s: ", program_invocation_short_name, ps->cfg->path, ps->rd->line,
            key);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ps->errors++;
}

static int on_pair(void *user, const char *section, const char *key, const char *value)
{
    struct parse *ps = user;
    struct bs_config *cfg = ps->cfg;
    const struct option *o;
    struct bs_config_entry *e;
    char *v = NULL;

    if (!in_list(section, known_sections, sizeof(known_sections) / sizeof(known_sections[0]))) {
        error_at(ps, key, *section ? "in section [%s], which is none of [common], [primary], "
                                     "[secondary] and [writelog]"
                                   : "before any section%s",
                 section);
        return 1;
    }
    for (size_t i = 0; i < sizeof(known_sections) / sizeof(known_sections[0]); i++)
        if (strcmp(section, known_sections[i]) == 0)
            cfg->sections |= 1u << i;
    if (!ps->role || (strcmp(section, "common") != 0 && strcmp(section, ps->role) != 0) ||
        (strcmp(section, "common") == 0 && strcmp(ps->role, "writelog") == 0))
        return 1; /* another program's ([common] is the agents') */
    if (in_list(key, not_keys, sizeof(not_keys) / sizeof(not_keys[0]))) {
        error_at(ps, key, "not a configuration key (a command-line option only)%s", "");
        return 1;
    }
    o = find_opt(ps->opts, key);
    if (!o) {
        error_at(ps, key,
                 strcmp(section, "common") == 0
                     ? "not a key of this program (in [common] only the keys both agents take)%s"
                     : "unknown key%s",
                 "");
        return 1;
    }
    for (size_t i = 0; i < cfg->n; i++) {
        if (cfg->e[i].opt == o) {
            char prev[32];
            snprintf(prev, sizeof(prev), "%u", cfg->e[i].line);
            error_at(ps, key, "given twice (first on line %s)", prev);
            return 1;
        }
    }
    if (o->has_arg == no_argument) {
        if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcmp(value, "1") ||
            !strcasecmp(value, "on")) {
            v = strdup("");
        } else if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
                   !strcmp(value, "0") || !strcasecmp(value, "off")) {
            v = NULL;
        } else {
            error_at(ps, key, "'%s': not yes or no", value);
            return 1;
        }
    } else {
        v = strdup(value);
        if (!v)
            return 0;
    }
    e = realloc(cfg->e, (cfg->n + 1) * sizeof(*e));
    if (!e) {
        free(v);
        return 0;
    }
    cfg->e = e;
    e = &cfg->e[cfg->n++];
    e->key = strdup(key);
    e->value = v;
    e->line = ps->rd->line;
    e->opt = o;
    return e->key ? 1 : 0;
}

int bs_config_read(const char *path, const char *role, const struct option *opts,
                   struct bs_config *cfg)
{
    struct reader rd = { 0 };
    struct parse ps = { .cfg = cfg, .role = role, .opts = opts, .rd = &rd };
    int r;

    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->path, sizeof(cfg->path), "%s", path);
    rd.f = fopen(path, "re");
    if (!rd.f) {
        fprintf(stderr, "%s: configuration %s: %s\n", program_invocation_short_name, path,
                strerror(errno));
        return -1;
    }
    /* Values are taken as written: a hook's ';' is not a comment, and a
     * line is one key. */
    ini_allow_inline_comments = false;
    ini_allow_multiline = false;
    ini_use_stack = false;
    ini_max_line = LINE_MAX_BYTES;
    r = ini_parse_stream(read_line, &rd, on_pair, &ps);
    fclose(rd.f);
    if (rd.long_line) {
        fprintf(stderr, "%s: %s:%u: a line over %d bytes\n", program_invocation_short_name, path,
                rd.long_line, LINE_MAX_BYTES - 3);
        ps.errors++;
    } else if (r > 0 && ps.errors == 0) {
        fprintf(stderr, "%s: %s:%d: not a [section] or a 'key = value' line\n",
                program_invocation_short_name, path, r);
        ps.errors++;
    } else if (r < 0) {
        fprintf(stderr, "%s: %s: cannot be read (out of memory)\n", program_invocation_short_name,
                path);
        ps.errors++;
    }
    if (ps.errors) {
        bs_config_free(cfg);
        return -1;
    }
    return 0;
}

int bs_config_load(int argc, char **argv, const char *role, const struct option *opts,
                   struct bs_config *cfg)
{
    const char *config = NULL, *resource = NULL;
    const struct option *oc = find_opt(opts, "config"), *orr = find_opt(opts, "resource");
    int saved = opterr, idx, opt;
    char path[4096];

    memset(cfg, 0, sizeof(*cfg));
    opterr = 0;
    optind = 0; /* glibc: a full restart of getopt */
    while ((opt = getopt_long(argc, argv, "-:", opts, &idx)) != -1) {
        if (opt == 0 || opt == '?' || opt == ':' || opt == 1)
            continue;
        if (oc && opt == oc->val)
            config = optarg;
        else if (orr && opt == orr->val)
            resource = optarg;
    }
    opterr = saved;
    optind = 0;
    if (config) {
        if (!*config) {
            fprintf(stderr, "%s: --config is empty\n", program_invocation_short_name);
            return -1;
        }
        return bs_config_read(config, role, opts, cfg);
    }
    if (resource && bs_config_resource_path(resource, path, sizeof(path))) {
        FILE *f = fopen(path, "re");
        if (!f)
            return 0; /* no file for this resource: the command line alone */
        fclose(f);
        return bs_config_read(path, role, opts, cfg);
    }
    return 0;
}

bool bs_config_resource_path(const char *name, char *out, size_t size)
{
    const char *dir = getenv("BLKSHIP_CONFIG_DIR");
    int n;

    if (!name || !*name || strchr(name, '/') || name[0] == '.')
        return false;
    n = snprintf(out, size, "%s/%s.conf", dir && *dir ? dir : BS_CONFIG_DIR_DEFAULT, name);
    return n > 0 && (size_t)n < size;
}

void bs_config_free(struct bs_config *cfg)
{
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->e[i].key);
        free(cfg->e[i].value);
    }
    free(cfg->e);
    cfg->e = NULL;
    cfg->n = 0;
}

void bs_config_where(const struct bs_config *cfg, size_t i, char *out, size_t size)
{
    snprintf(out, size, "%s:%u: %s", cfg->path, cfg->e[i].line, cfg->e[i].key);
}

const char *bs_config_opt_name(const struct option *opts, int val, char *out, size_t size)
{
    for (; opts->name; opts++) {
        if (opts->val == val) {
            snprintf(out, size, "--%s", opts->name);
            return out;
        }
    }
    snprintf(out, size, "an option");
    return out;
}

bool bs_config_resource(const struct bs_config *cfg, char *out, size_t size)
{
    const char *base = strrchr(cfg->path, '/');
    size_t len;

    if (!cfg->path[0])
        return false;
    base = base ? base + 1 : cfg->path;
    len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".conf") == 0)
        len -= 5;
    snprintf(out, size, "%.*s", (int)len, base);
    return len > 0;
}
