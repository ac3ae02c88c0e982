/* A resource's [writelog] section (docs/config.md): the disk nbdkit
 * serves, where, and the writelog filter's parameters.  Read by
 * `blkship config check` and `blkship writelog-exec`. */
#ifndef BLKSHIP_CLI_WRITELOG_CONF_H
#define BLKSHIP_CLI_WRITELOG_CONF_H

#include "common/config.h"

struct wl_conf {
    struct bs_config cfg;       /* owns the strings below */
    const char *disk;           /* required */
    const char *plugin;         /* default "file" */
    const char *name;           /* default: the resource */
    const char *dir;            /* default BS_RUN_DIR_DEFAULT */
    const char *grain, *readers, *cow_max, *cow_wait; /* NULL: the filter's defaults */
    char socket[4096];          /* default DIR/RESOURCE.nbd */
    char resource[256];
};

/* Reads and checks [writelog] of the file at path, filling the defaults.
 * Returns 0, or -1 after printing every error as FILE:LINE: key: reason
 * (and a missing disk). */
int wl_conf_load(const char *path, struct wl_conf *wc);
void wl_conf_free(struct wl_conf *wc);

#endif
