/* Small persistent state files: "key value" lines, written atomically
 * (temporary file, fsync, rename, fsync of the directory) so that a crash
 * leaves either the old or the new file, never a torn one. */
#ifndef BLKSHIP_COMMON_STATE_H
#define BLKSHIP_COMMON_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS_STATE_MAX 4096

/* Reads the whole file into buf (NUL-terminated).  -ENOENT if absent,
 * -EFBIG if larger than size - 1. */
int bs_state_read(const char *path, char *buf, size_t size);
/* Replaces the file with text, durably. */
int bs_state_write(const char *path, const char *text);
/* The same for any bytes: path holds buf[0..len) or what it held before. */
int bs_file_write_atomic(const char *path, const void *buf, size_t len);

/* Finds "key value" in text and copies value (to end of line).  Returns 0
 * or -ENOENT. */
int bs_state_get(const char *text, const char *key, char *value, size_t size);
int bs_state_get_u64(const char *text, const char *key, uint64_t *out);

/* 16-byte identities as 32 hex digits. */
void bs_id_to_hex(const uint8_t id[16], char hex[33]);
int bs_id_from_hex(const char *hex, uint8_t id[16]);
bool bs_id_is_zero(const uint8_t id[16]);
int bs_id_random(uint8_t id[16]);
/* A new data generation (docs/failover.md): random, non-zero, below 2^53
 * so that JSON readers hold it exactly.  Returns 0 or -errno. */
int bs_generation_random(uint64_t *out);

/* Creates dir (one level) with mode 0700 if missing. */
int bs_mkdir(const char *dir);

#endif
