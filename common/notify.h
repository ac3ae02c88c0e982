/* systemd readiness notification (sd_notify protocol) without libsystemd:
 * one datagram to $NOTIFY_SOCKET.  A no-op outside systemd. */
#ifndef BLKSHIP_COMMON_NOTIFY_H
#define BLKSHIP_COMMON_NOTIFY_H

/* Sends e.g. "READY=1" or "STOPPING=1".  Returns 0, or -errno. */
int bs_notify(const char *state);

#endif
