/* The write log's replies as JSON members, under the names `blkship wlog
 * --json` prints and the agent's status and control socket answer with
 * (docs/man/blkship.8.md): one place for them. */
#ifndef BLKSHIP_WL_JSON_H
#define BLKSHIP_WL_JSON_H

#include "common/json.h"
#include "proto/writelog.h"

/* version, disk_sectors, disk_bytes, sector_size, grain_sectors,
 * export_max, ring_max_sectors, log_id (hex), epoch, live_grains,
 * pending_grains, flags, broken, cow. */
void wl_json_add_info(struct bs_json_builder *b, const struct wl_info_reply *i);
/* epoch, broken, bytes_now, bytes_peak, max_bytes, preserved, waits,
 * wait_ms, breaks, drain_timeouts (the caller adds "enabled"). */
void wl_json_add_cowc(struct bs_json_builder *b, const struct wl_cowc_reply *w);

#endif
