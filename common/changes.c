/* A disk's own changes, kept in a file (see changes.h). */
#include "common/changes.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "common/state.h"

#define MAGIC "BSCHG001"

void bs_changes_put(uint8_t *entries, size_t i, uint64_t sector, uint32_t count)
{
    uint8_t *e = entries + i * BS_CHANGES_ENTRY_LEN;

    bs_put_le64(e, sector);
    bs_put_le32(e + 8, count);
    bs_put_le32(e + 12, 0);
}

void bs_changes_get(const struct bs_changes *c, size_t i, uint64_t *sector, uint32_t *count)
{
    const uint8_t *e = c->entries + i * BS_CHANGES_ENTRY_LEN;

    *sector = bs_get_le64(e);
    *count = bs_get_le32(e + 8);
}

int bs_changes_write(const char *path, const struct bs_changes *c)
{
    size_t body = c->n * BS_CHANGES_ENTRY_LEN;
    uint8_t *buf = malloc(BS_CHANGES_HDR_LEN + body);
    int r;

    if (!buf)
        return -ENOMEM;
    memcpy(buf, MAGIC, 8);
    bs_put_le64(buf + 8, c->disk_sectors);
    bs_put_le64(buf + 16, c->n);
    bs_put_le32(buf + 24, crc32c(0, c->entries, body));
    bs_put_le32(buf + 28, 0);
    if (body)
        memcpy(buf + BS_CHANGES_HDR_LEN, c->entries, body);
    r = bs_file_write_atomic(path, buf, BS_CHANGES_HDR_LEN + body);
    free(buf);
    return r;
}

int bs_changes_read(const char *path, uint64_t disk_sectors, struct bs_changes *c,
                    const char **why)
{
    uint8_t hdr[BS_CHANGES_HDR_LEN];
    struct stat st;
    uint64_t n;
    size_t body, got = 0;
    int fd, r = 0;

    memset(c, 0, sizeof(*c));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (st.st_size < (off_t)BS_CHANGES_HDR_LEN || pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr)) {
        *why = "shorter than its header";
        r = -EINVAL;
        goto out;
    }
    n = bs_get_le64(hdr + 16);
    if (memcmp(hdr, MAGIC, 8) != 0 || bs_get_le32(hdr + 28) != 0) {
        *why = "not a changes file (magic)";
        r = -EINVAL;
        goto out;
    }
    if (bs_get_le64(hdr + 8) != disk_sectors) {
        *why = "made for a disk of another size";
        r = -EINVAL;
        goto out;
    }
    if (n > BS_CHANGES_MAX ||
        (uint64_t)st.st_size != BS_CHANGES_HDR_LEN + n * BS_CHANGES_ENTRY_LEN) {
        *why = "its length does not match its entry count";
        r = -EINVAL;
        goto out;
    }
    body = (size_t)n * BS_CHANGES_ENTRY_LEN;
    c->entries = malloc(body ? body : 1);
    if (!c->entries) {
        r = -ENOMEM;
        goto out;
    }
    while (got < body) {
        ssize_t k = pread(fd, c->entries + got, body - got, (off_t)(BS_CHANGES_HDR_LEN + got));
        if (k <= 0) {
            r = k < 0 ? -errno : -EIO;
            goto out;
        }
        got += (size_t)k;
    }
    if (crc32c(0, c->entries, body) != bs_get_le32(hdr + 24)) {
        *why = "its entries fail their CRC";
        r = -EINVAL;
        goto out;
    }
    c->n = (size_t)n;
    c->disk_sectors = disk_sectors;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t s;
        uint32_t k;
        bs_changes_get(c, i, &s, &k);
        if (k == 0 || bs_get_le32(c->entries + i * BS_CHANGES_ENTRY_LEN + 12) != 0 ||
            s >= disk_sectors || k > disk_sectors - s) {
            *why = "an entry is empty or beyond the disk";
            r = -EINVAL;
            goto out;
        }
    }
out:
    close(fd);
    if (r < 0)
        bs_changes_free(c);
    return r;
}

void bs_changes_free(struct bs_changes *c)
{
    free(c->entries);
    c->entries = NULL;
    c->n = 0;
}
