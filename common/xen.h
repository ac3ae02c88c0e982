/* A resource's state in xenstore, for the toolstack and the guest's
 * tools (libxenstore; docs/xen.md has the paths):
 *   /local/domain/DOMID/blkship/RESOURCE/{role,state,disk-state,connected,
 *       peer,committed-epoch,rpo-ms,updated}
 * written in one transaction, owned by dom0, readable by the domain.
 *
 * Writing never runs on the agent's loop: bs_xen_publish keeps the newest
 * state and a thread of libuv's pool writes it, one write at a time.  A
 * xenstore that cannot be reached (no xenstored, a domain that went away)
 * is logged once per outage and tried again at the next publish;
 * replication never waits for it.  Built only where libxenstore is
 * (HAVE_XENSTORE); elsewhere bs_xen_open says so. */
#ifndef BLKSHIP_COMMON_XEN_H
#define BLKSHIP_COMMON_XEN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct bs_xen_state {
    char role[16];
    char state[256];        /* the status line (as systemd's STATUS=) */
    char disk_state[16];
    char peer[96];
    bool connected;
    uint64_t committed_epoch;
    uint64_t rpo_ms;
};

struct bs_xen;

/* domain: a domain id or name (a name is looked up in xenstore at each
 * write until found).  Returns 0, or -ENOTSUP when built without
 * libxenstore, -ENOMEM. */
int bs_xen_open(uv_loop_t *loop, const char *domain, const char *resource, struct bs_xen **out);
/* Publishes st if it differs from the last one written. */
void bs_xen_publish(struct bs_xen *x, const struct bs_xen_state *st);
/* Ends publishing: the writes in flight and the last state published
 * ("stopped", which stays for the toolstack to read) are finished by the
 * loop's next runs, and x is freed after them (at once if idle).  Call it
 * before the loop's final run.  NULL is ignored. */
void bs_xen_close(struct bs_xen *x);

#endif
