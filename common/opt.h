/* Strict parsing of option values, shared by every program: numbers are
 * taken whole (no sign, no trailing junk, no overflow), sizes and
 * durations accept units, addresses are HOST:PORT or [IPv6]:PORT with a
 * port of 1-65535, and a value out of range is an error, never clamped.
 *
 * Two layers:
 *   bs_parse_*   pure parsers: 0 or -EINVAL (-ERANGE on overflow), no output;
 *   bs_opt_*     for option handling: parse, range-check, and on failure
 *                print one line naming the program, the option, the value
 *                and what was expected to stderr; return -EINVAL.  Callers
 *                exit with BS_EXIT_USAGE.
 */
#ifndef BLKSHIP_COMMON_OPT_H
#define BLKSHIP_COMMON_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses of every blkship program (documented in the man pages). */
#define BS_EXIT_OK 0
#define BS_EXIT_FAILURE 1 /* a runtime failure: I/O, network, a refused peer */
#define BS_EXIT_USAGE 2   /* a usage or configuration error: fix the command line */

#define BS_HOST_MAX 256

/* An unsigned integer: decimal, or hexadecimal with 0x. */
int bs_parse_u64(const char *s, uint64_t *out);
/* Bytes: a number with an optional binary unit K, M, G, T, P (also KiB,
 * MiB, ...; case-insensitive; "B" alone means bytes): "4096", "64K",
 * "1GiB". */
int bs_parse_size(const char *s, uint64_t *out);
/* Milliseconds: a number with a unit ms, s, m or h; a bare number is in
 * `bare_unit_ms` milliseconds (1 for options counted in ms, 1000 for
 * options counted in seconds): "100ms", "5s", "2m". */
int bs_parse_duration_ms(const char *s, uint64_t bare_unit_ms, uint64_t *out);
/* HOST:PORT, [IPv6]:PORT.  host gets the name without brackets (at most
 * BS_HOST_MAX - 1 bytes), port 1-65535. */
int bs_parse_hostport(const char *s, char host[BS_HOST_MAX], uint16_t *port);

/* The checked forms.  `opt` is the option's name as the user typed it
 * ("--interval"). */
int bs_opt_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int bs_opt_size(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int bs_opt_duration_ms(const char *opt, const char *s, uint64_t bare_unit_ms, uint64_t min_ms,
                       uint64_t max_ms, uint64_t *out);
int bs_opt_hostport(const char *opt, const char *s);
/* A path or name that must not be empty (an unset variable in a unit file
 * expands to ""). */
int bs_opt_nonempty(const char *opt, const char *s);
/* Reports a required option left out. */
void bs_opt_missing(const char *opt);

/* One option of a program's required set; `optional` ones may be absent
 * but, when given, must not be empty. */
struct bs_opt_required {
    const char *opt;
    const char *val;
    bool optional;
};
/* Names the first option that is missing or empty; -EINVAL then. */
int bs_opt_check_required(const struct bs_opt_required *req, size_t n);
/* --log-level: sets the level of common/log.h, or reports the value. */
int bs_opt_log_level(const char *opt, const char *s);
/* Refuses arguments left after the options (argv[first] on). */
int bs_opt_no_arguments(int first, int argc, char **argv);
/* The failure-detection options both agents take (docs/hooks.md):
 * --heartbeat-ms (100 ms to 60 s, a bare number is milliseconds), and the
 * peer timeout under its name --peer-timeout-ms (a bare number is
 * milliseconds) or its old name --heartbeat-timeout (seconds), 500 ms to
 * 1 h.  Each returns 0 or -EINVAL with the usage error printed. */
#define BS_HEARTBEAT_MS_DEFAULT 1000u
#define BS_PEER_TIMEOUT_MS_DEFAULT 5000u
int bs_opt_heartbeat_ms(const char *opt, const char *s, unsigned *out);
int bs_opt_peer_timeout_ms(const char *opt, const char *s, uint64_t bare_unit_ms, unsigned *out);
/* The timeout must allow for at least two heartbeats. */
int bs_opt_check_peer_timing(unsigned heartbeat_ms, unsigned peer_timeout_ms);

/* The name an agent's hooks and status give its resource: name if given,
 * else the last component of state_dir ("disk" if that has none). */
void bs_resource_name(const char *name, const char *state_dir, char *out, size_t size);
/* Prints "PROG: " and the formatted message to stderr, then a hint to
 * run --help. */
void bs_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
