/* Creation and removal of the write log's shared-memory region. */
#include "primary/writelog/wl_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define MOD "writelog"

int wl_sanitize_name(const char *name, char *out, size_t size)
{
    size_t i;

    for (i = 0; name[i]; i++) {
        if (i + 1 >= size)
            return -ENAMETOOLONG;
        out[i] = (name[i] == ':' || name[i] == '/') ? '_' : name[i];
    }
    if (i == 0)
        return -EINVAL;
    out[i] = '\0';
    return 0;
}

/* Opens an existing object only to see whether a live server holds it. */
static bool held_by_live_server(const char *name)
{
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    bool held;

    if (fd < 0)
        return false;
    held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int wl_shm_create(struct wl_shm *shm, const char *safe_name)
{
    int fd, r;

    shm->base = NULL;
    shm->fd = -1;
    r = snprintf(shm->name, sizeof(shm->name), "/log_%s.wlog", safe_name);
    if (r < 0 || (size_t)r >= sizeof(shm->name))
        return -ENAMETOOLONG;
    fd = shm_open(shm->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* The name is global while control sockets live in directories:
         * another server with this name elsewhere holds its object locked. */
        if (held_by_live_server(shm->name)) {
            BS_ERR(MOD, "shared memory %s belongs to another live write log of the same name",
                   shm->name);
            return -EADDRINUSE;
        }
        BS_WARN(MOD, "removing stale shared memory %s", shm->name);
        shm_unlink(shm->name);
        fd = shm_open(shm->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        r = -errno;
        BS_ERR(MOD, "shm_open %s: %s", shm->name, strerror(-r));
        return r;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        BS_ERR(MOD, "locking shared memory %s: %s", shm->name, strerror(-r));
        goto fail;
    }
    /* The mode above is filtered by umask; make sure it is exactly 0600. */
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, WL_SHM_SIZE) < 0) {
        r = -errno;
        BS_ERR(MOD, "sizing shared memory %s: %s", shm->name, strerror(-r));
        goto fail;
    }
    shm->base = mmap(NULL, WL_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shm->base == MAP_FAILED) {
        r = -errno;
        shm->base = NULL;
        BS_ERR(MOD, "mmap %s: %s", shm->name, strerror(-r));
        goto fail;
    }
    shm->fd = fd;
    SHARED_RING_INIT(wl_shm_ring(shm->base));
    return 0;
fail:
    close(fd);
    shm_unlink(shm->name);
    return r;
}

void wl_shm_destroy(struct wl_shm *shm)
{
    if (shm->base) {
        munmap(shm->base, WL_SHM_SIZE);
        shm->base = NULL;
        shm_unlink(shm->name);
    }
    if (shm->fd >= 0) {
        close(shm->fd);
        shm->fd = -1;
    }
}
