/* libFuzzer harness for the replication wire format (proto/repl.c): the
 * hello, the welcome and the frame header, each decoded from bytes a peer
 * chose, and what a successful decode promises checked.
 *
 * Input: byte 0 picks the decoder (bits 0-1: 0 hello, 1 welcome, 2 or 3
 * frame; bit 2: the frame comes from the primary).  A frame is preceded by
 * the limits it is checked against, disk_sectors (u64 LE) and max_payload
 * (u32 LE); then come the message's bytes, zero-filled to its length.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/repl.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_hello(struct fuzz_input *in)
{
    /* Exactly the length the decoder may read, so ASan sees any overread. */
    uint8_t *msg = malloc(BSR_HELLO_LEN), again[BSR_HELLO_LEN];
    struct bsr_hello h;
    const char *why = NULL;

    FUZZ_CHECK(msg);
    fuzz_take(in, msg, BSR_HELLO_LEN);
    if (bsr_hello_unpack(msg, &h, &why) == 0) {
        /* Every byte of an accepted hello is a field or a zero reserved
         * byte: packing the decoded form gives the same bytes back.  A
         * hello of a newer version may carry its own fields in what is
         * reserved here: the fields this version defines come back. */
        bsr_hello_pack(&h, again);
        if (h.version <= BSR_VERSION)
            FUZZ_CHECK(memcmp(msg, again, BSR_HELLO_LEN) == 0);
        else
            FUZZ_CHECK(memcmp(msg, again, BSR_HELLO_DEFINED_LEN) == 0);
    } else {
        FUZZ_CHECK(why != NULL);
    }
    free(msg);
}

static void fuzz_welcome(struct fuzz_input *in)
{
    uint8_t *msg = malloc(BSR_WELCOME_LEN), again[BSR_WELCOME_LEN];
    struct bsr_welcome w;
    const char *why = NULL;

    FUZZ_CHECK(msg);
    fuzz_take(in, msg, BSR_WELCOME_LEN);
    if (bsr_welcome_unpack(msg, &w, &why) == 0) {
        /* The reason is text for a log line: always terminated. */
        FUZZ_CHECK(memchr(w.reason, '\0', sizeof(w.reason)) != NULL);
        (void)bsr_status_str(w.status);
        /* Round trip, except the reason's last byte, which both sides
         * force to NUL. */
        bsr_welcome_pack(&w, again);
        msg[BSR_WELCOME_LEN - 1] = 0;
        FUZZ_CHECK(memcmp(msg, again, BSR_WELCOME_LEN) == 0);
    } else {
        FUZZ_CHECK(why != NULL);
    }
    free(msg);
}

static void fuzz_frame(struct fuzz_input *in, bool from_primary)
{
    struct bsr_limits lim;
    uint8_t *hdr = malloc(BSR_FRAME_HDR_LEN), again[BSR_FRAME_HDR_LEN];
    struct bsr_frame f;
    const char *why = NULL;

    FUZZ_CHECK(hdr);
    lim.disk_sectors = fuzz_u64(in);
    lim.max_payload = fuzz_u32(in);
    lim.version = fuzz_u32(in) & 7;
    lim.zstd = fuzz_u8(in) & 1;
    fuzz_take(in, hdr, BSR_FRAME_HDR_LEN);
    if (bsr_frame_unpack(hdr, &lim, from_primary, &f, &why) != 0) {
        FUZZ_CHECK(why != NULL);
        free(hdr);
        return;
    }
    bsr_frame_pack(&f, again);
    FUZZ_CHECK(memcmp(hdr, again, BSR_FRAME_HDR_LEN) == 0);
    FUZZ_CHECK(f.flags == 0);
    FUZZ_CHECK(f.kind >= BSR_DATA && f.kind <= BSR_KIND_MAX);
    switch (f.kind) {
    case BSR_DATA:
    case BSR_ZERO:
        /* An accepted extent is non-empty and lies on the disk. */
        FUZZ_CHECK(from_primary);
        FUZZ_CHECK(f.count > 0);
        FUZZ_CHECK((unsigned __int128)f.sector + f.count <= lim.disk_sectors);
        break;
    case BSR_FLUSH:
        FUZZ_CHECK(from_primary && f.count == 0);
        break;
    case BSR_ACK:
        FUZZ_CHECK(!from_primary && f.count == 0);
        break;
    case BSR_ERROR:
        FUZZ_CHECK(!from_primary);
        break;
    case BSR_HEARTBEAT:
        FUZZ_CHECK(f.count == 0);
        break;
    case BSR_END_EPOCH:
    case BSR_ABORT_EPOCH:
        FUZZ_CHECK(from_primary && lim.version >= 2 && f.count == 0 && f.sector > 0);
        break;
    case BSR_COMMITTED:
        FUZZ_CHECK(!from_primary && lim.version >= 2 && f.count == 0 && f.sector > 0);
        break;
    case BSR_ZDATA:
        /* Only where agreed; its payload within the limit, its sector on the disk. */
        FUZZ_CHECK(from_primary && lim.zstd && lim.version >= 5);
        FUZZ_CHECK(f.count >= 1 && f.count <= lim.max_payload && f.sector < lim.disk_sectors);
        break;
    case BSR_HASHES:
    case BSR_HASHED:
        FUZZ_CHECK(from_primary == (f.kind == BSR_HASHES) && lim.version >= 3);
        FUZZ_CHECK(f.count >= 1 && f.count <= BSR_HASHES_MAX && f.sector < lim.disk_sectors);
        break;
    }
    if (f.kind == BSR_HASHES) {
        /* An accepted range lies on the disk, within the payload limit,
         * starts on a block and has the header's number of blocks. */
        uint8_t rb[BSR_HASH_RANGE_LEN];
        struct bsr_hash_range r;
        fuzz_take(in, rb, sizeof(rb));
        bsr_hash_range_unpack(rb, &r);
        if (bsr_hash_range_check(&f, &r, &lim, &why) == 0) {
            FUZZ_CHECK(r.block_sectors >= BSR_HASH_BLOCK_MIN_SECTORS &&
                       r.block_sectors <= BSR_HASH_BLOCK_MAX_SECTORS &&
                       (r.block_sectors & (r.block_sectors - 1)) == 0);
            FUZZ_CHECK(f.sector % r.block_sectors == 0);
            FUZZ_CHECK((unsigned __int128)f.sector + r.range_sectors <= lim.disk_sectors);
            FUZZ_CHECK((uint64_t)r.range_sectors * BSR_SECTOR_SIZE <= lim.max_payload);
            FUZZ_CHECK(((uint64_t)r.range_sectors + r.block_sectors - 1) / r.block_sectors ==
                       f.count);
        } else {
            FUZZ_CHECK(why != NULL);
        }
    }
    /* What the receiver will read next is bounded by the agreed payload. */
    FUZZ_CHECK((uint64_t)f.count * BSR_SECTOR_SIZE <= lim.max_payload || f.kind != BSR_DATA);
    FUZZ_CHECK(bsr_frame_payload(&f) <= lim.max_payload);
    FUZZ_CHECK(bsr_frame_payload(&f) ==
               (f.kind == BSR_DATA     ? (uint64_t)f.count * BSR_SECTOR_SIZE
                : f.kind == BSR_HASHES ? BSR_HASH_RANGE_LEN + 8ull * f.count
                : f.kind == BSR_HASHED  ? (f.count + 7ull) / 8
                : f.kind == BSR_EXTENTS ? (uint64_t)f.count * BSR_EXTENT_LEN
                : f.kind == BSR_ZDATA   ? f.count
                                        : 0));
    free(hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    uint8_t sel = fuzz_u8(&in);

    switch (sel & 3) {
    case 0:
        fuzz_hello(&in);
        break;
    case 1:
        fuzz_welcome(&in);
        break;
    default:
        fuzz_frame(&in, sel & 4);
        break;
    }
    return 0;
}
