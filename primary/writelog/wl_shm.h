/* The shared-memory region of a write log: named POSIX shm, mode 0600,
 * WL_SHM_SIZE bytes laid out as proto/writelog.h says. */
#ifndef BLKSHIP_WRITELOG_WL_SHM_H
#define BLKSHIP_WRITELOG_WL_SHM_H

#include <stddef.h>

#include "proto/writelog.h"

struct wl_shm {
    char name[WL_RSPLEN_SHMP - sizeof(uint32_t)];
    void *base;
    int fd;            /* kept open: its exclusive flock marks the owner */
};

/* Turns a log name into the name used in paths: ':' and '/' become '_'.
 * Returns -ENAMETOOLONG if the result does not fit `size` bytes. */
int wl_sanitize_name(const char *name, char *out, size_t size);

/* Creates and maps the region and initialises the ring.  An object of the
 * same name left by a crashed server is replaced; one that a live server
 * holds (its flock) is not: -EADDRINUSE.  Returns 0 or -errno. */
int wl_shm_create(struct wl_shm *shm, const char *safe_name);
/* Unmaps and unlinks.  Idempotent. */
void wl_shm_destroy(struct wl_shm *shm);

#endif
