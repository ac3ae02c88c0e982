/* The write log's replies as JSON (see wl_json.h). */
#include "primary/writelog/wl_json.h"

#include <inttypes.h>
#include <stdio.h>

void wl_json_add_info(struct bs_json_builder *b, const struct wl_info_reply *i)
{
    char id[17];

    snprintf(id, sizeof(id), "%016" PRIx64, (uint64_t)i->log_id);
    bs_json_add_u64(b, "version", i->version);
    bs_json_add_u64(b, "disk_sectors", i->disk_sectors);
    bs_json_add_u64(b, "disk_bytes", (uint64_t)i->disk_sectors * WL_SECTOR_SIZE);
    bs_json_add_u64(b, "sector_size", i->sector_size);
    bs_json_add_u64(b, "grain_sectors", i->grain_sectors);
    bs_json_add_u64(b, "export_max", i->export_max);
    bs_json_add_u64(b, "ring_max_sectors", i->ring_max_sectors);
    bs_json_add_str(b, "log_id", id);
    bs_json_add_u64(b, "epoch", i->epoch);
    bs_json_add_u64(b, "live_grains", i->live_grains);
    bs_json_add_u64(b, "pending_grains", i->pending_grains);
    bs_json_add_u64(b, "flags", i->flags);
    bs_json_add_bool(b, "broken", (i->flags & WL_EF_BROKEN) != 0);
    bs_json_add_bool(b, "cow", (i->flags & WL_IF_COW) != 0);
}

void wl_json_add_cowc(struct bs_json_builder *b, const struct wl_cowc_reply *w)
{
    bs_json_add_u64(b, "epoch", w->epoch);
    bs_json_add_bool(b, "broken", (w->flags & WL_EF_BROKEN) != 0);
    bs_json_add_u64(b, "bytes_now", w->bytes_now);
    bs_json_add_u64(b, "bytes_peak", w->bytes_peak);
    bs_json_add_u64(b, "max_bytes", w->max_bytes);
    bs_json_add_u64(b, "preserved", w->preserved);
    bs_json_add_u64(b, "waits", w->waits);
    bs_json_add_u64(b, "wait_ms", w->wait_ms);
    bs_json_add_u64(b, "breaks", w->breaks);
    bs_json_add_u64(b, "drain_timeouts", w->drain_timeouts);
}
