/* Atomic "key value" state files and identities (see state.h). */
#include "common/state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int bs_state_read(const char *path, char *buf, size_t size)
{
    size_t len = 0;
    int fd, r = 0;

    if (size == 0)
        return -EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n;

        if (len == size - 1) {
            /* Full: one more byte means the file does not fit. */
            char extra;
            n = read(fd, &extra, 1);
            if (n != 0)
                r = n > 0 ? -EFBIG : -errno;
            break;
        }
        n = read(fd, buf + len, size - 1 - len);
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (r == 0)
        buf[len] = '\0';
    return r;
}

static int fsync_dir_of(const char *path)
{
    char copy[4096];
    int fd, r = 0;

    snprintf(copy, sizeof(copy), "%s", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

int bs_state_write(const char *path, const char *text)
{
    return bs_file_write_atomic(path, text, strlen(text));
}

int bs_file_write_atomic(const char *path, const void *buf, size_t len)
{
    const char *text = buf;
    char tmp[4096];
    size_t done = 0;
    int fd, r = 0;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0) {
            r = -errno;
            break;
        }
        done += (size_t)n;
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    return fsync_dir_of(path);
}

int bs_state_get(const char *text, const char *key, char *value, size_t size)
{
    size_t klen = strlen(key);
    const char *p = text;

    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, "\n");
            if (n >= size)
                return -ENAMETOOLONG;
            memcpy(value, v, n);
            value[n] = '\0';
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -ENOENT;
}

int bs_state_get_u64(const char *text, const char *key, uint64_t *out)
{
    char v[32], *end;
    int r = bs_state_get(text, key, v, sizeof(v));

    if (r < 0)
        return r;
    if (v[0] < '0' || v[0] > '9')
        return -EINVAL; /* strtoull would take a sign or blanks */
    errno = 0;
    *out = strtoull(v, &end, 10);
    if (errno || end == v || *end)
        return -EINVAL;
    return 0;
}

void bs_id_to_hex(const uint8_t id[16], char hex[33])
{
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", id[i]);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int bs_id_from_hex(const char *hex, uint8_t id[16])
{
    if (strlen(hex) != 32)
        return -EINVAL;
    for (int i = 0; i < 16; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

bool bs_id_is_zero(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        if (id[i])
            return false;
    return true;
}

int bs_id_random(uint8_t id[16])
{
    if (getrandom(id, 16, 0) != 16)
        return -errno;
    return 0;
}

int bs_generation_random(uint64_t *out)
{
    uint64_t g = 0;

    while (g == 0) {
        if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
            return -errno;
        g &= (1ull << 53) - 1;
    }
    *out = g;
    return 0;
}

int bs_mkdir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    if (stat(dir, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
