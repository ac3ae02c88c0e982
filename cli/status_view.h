/* What `blkship status` shows of an agent's status reply: the reply is
 * checked (JSON, an object, the schema and the fields this view reads)
 * and rendered for a person or as JSON.  Pure, so that a fuzzer can drive
 * it: no I/O except writing to the FILE given, no global state. */
#ifndef BLKSHIP_CLI_STATUS_VIEW_H
#define BLKSHIP_CLI_STATUS_VIEW_H

#include <stddef.h>
#include <stdio.h>

enum bs_status_view_mode {
    BS_STATUS_HUMAN,    /* aligned lines, a progress bar, sizes in KiB/MiB/... */
    BS_STATUS_JSON,     /* the reply as one line of JSON, re-serialised */
};

/* Checks reply[0, len) (need not be NUL-terminated) and writes it to out
 * in the mode given (out NULL: only checks).  Returns 0; or, with nothing
 * written to out and a
 * one-line reason in err (errsize bytes, always terminated):
 *   -EBADMSG          not JSON, not an object, or a field this view reads
 *                     is missing or of the wrong type or range;
 *   -EREMOTEIO        the agent answered with an error object;
 *   -EPROTONOSUPPORT  the reply's schema is newer than BS_CTL_SCHEMA;
 *   -ENOMEM, -EIO     out of memory, or writing to out failed (then part
 *                     of the text may have been written). */
int bs_status_view(const char *reply, size_t len, enum bs_status_view_mode mode, FILE *out,
                   char *err, size_t errsize);

#endif
