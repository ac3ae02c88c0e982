/* One configuration file per resource (docs/config.md), read with libinih.
 *
 * A file has sections [common], [primary], [secondary] and [writelog].
 * A program reads [common] and its own section; each key there is the long
 * name of one of its command-line options ("connect = dr:7789" is
 * "--connect dr:7789"), given at most once, and its value is checked by
 * the same code as the option's, with messages that begin "FILE:LINE:
 * key".  Options on the command line are applied after the file, so they
 * override it.  A key the program does not know, a section no program
 * knows, a line that is not "key = value" and a key given twice are
 * refused with FILE:LINE and the reason; the other programs' sections are
 * left to them.
 *
 * The file is --config FILE, or with --resource NAME the file NAME.conf in
 * the configuration directory (BLKSHIP_CONFIG_DIR, default /etc/blkship),
 * if it exists.
 */
#ifndef BLKSHIP_COMMON_CONFIG_H
#define BLKSHIP_COMMON_CONFIG_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#define BS_CONFIG_DIR_DEFAULT "/etc/blkship"

struct bs_config_entry {
    char *key;
    char *value;        /* NULL for a flag set to false */
    unsigned line;
    const struct option *opt;
};

struct bs_config {
    char path[4096];    /* "" when no file is used */
    struct bs_config_entry *e;
    size_t n;
    unsigned sections;  /* BS_CONFIG_* bits: the sections the file has */
};

#define BS_CONFIG_COMMON 1u
#define BS_CONFIG_PRIMARY 2u
#define BS_CONFIG_SECONDARY 4u
#define BS_CONFIG_WRITELOG 8u

/* Finds --config or --resource among argv (a getopt pass that changes
 * nothing else: optind is reset after it) and reads the file for section
 * `role` (NULL: only checks the file's syntax and sections).  `opts` is the
 * program's option table, which must include "config" and "resource".
 * Returns 0 (cfg->path "" when there is no file), or -1 after printing the
 * error(s) on stderr. */
int bs_config_load(int argc, char **argv, const char *role, const struct option *opts,
                   struct bs_config *cfg);
/* The file of resource `name`: NAME.conf in BLKSHIP_CONFIG_DIR (default
 * BS_CONFIG_DIR_DEFAULT).  False for a name that is empty, has a '/' or
 * begins with '.', or a path too long. */
bool bs_config_resource_path(const char *name, char *out, size_t size);
/* Reads path itself (the part of bs_config_load after finding it). */
int bs_config_read(const char *path, const char *role, const struct option *opts,
                   struct bs_config *cfg);
void bs_config_free(struct bs_config *cfg);
/* "FILE:LINE: key", the name entry i is reported under. */
void bs_config_where(const struct bs_config *cfg, size_t i, char *out, size_t size);
/* The resource a file names (its base name without ".conf") into out;
 * false when no file is used. */
bool bs_config_resource(const struct bs_config *cfg, char *out, size_t size);
/* The long name of option code `val` in opts, as "--name" (for messages). */
const char *bs_config_opt_name(const struct option *opts, int val, char *out, size_t size);

#endif
