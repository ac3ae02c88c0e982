/* What blkship-primary exports to Prometheus (--metrics, common/metrics.h):
 * a snapshot built on the loop every tick and handed to the HTTP thread.
 * Names and types follow Prometheus' conventions; the list is in
 * docs/metrics.md, which a change here must follow. */
#include <stdio.h>

#include "common/log.h"
#include "common/promtext.h"
#include "primary/primary.h"

void primary_metrics_publish(struct primary *p)
{
    struct bs_prom b;
    uint64_t total = p->disk_sectors * BSR_SECTOR_SIZE;
    uint64_t gb = p->grain ? grain_bytes(p) : 0;
    uint64_t todo = p->dirty ? bs_dirty_todo_grains(p->dirty) * gb : 0;
    uint64_t infl = p->dirty ? bs_dirty_inflight_grains(p->dirty) * gb : 0;
    uint64_t now = uv_now(p->loop);

    if (!p->metrics)
        return;
    bs_prom_begin_agent(&b, p->metrics_text, sizeof(p->metrics_text), p->resource, "primary");
    bs_prom_gauge(&b, "blkship_connected", "1 while a session with the secondary streams",
                  p->ls == LS_STREAMING);
    bs_prom_gauge(&b, "blkship_log_connected", "1 while the agent holds its write log",
                  p->log != NULL);
    bs_prom_gauge(&b, "blkship_disk_bytes", "size of the disk", (double)total);
    bs_prom_gauge(&b, "blkship_dirty_bytes", "what the replica lacks, in the dirty bitmap",
                  (double)(todo + infl > total ? total : todo + infl));
    bs_prom_gauge(&b, "blkship_inflight_bytes", "sent, not yet acknowledged", (double)infl);
    bs_prom_gauge(&b, "blkship_sync_ratio", "share of the disk not waiting to be sent (0 to 1)",
                  total ? (double)(total - (todo > total ? total : todo)) / (double)total : 0);
    bs_prom_counter(&b, "blkship_sent_bytes_total", "data sent to the secondary", p->sent_bytes);
    bs_prom_counter(&b, "blkship_acked_bytes_total", "data the secondary acknowledged",
                    p->acked_bytes);
    bs_prom_counter(&b, "blkship_zero_bytes_total", "data sent as ZERO ranges", p->zero_bytes);
    bs_prom_gauge(&b, "blkship_epoch", "the newest epoch begun",
                  (double)(p->ep_state == EP_IDLE ? p->last_epoch : p->ep_number));
    bs_prom_gauge(&b, "blkship_committed_epoch", "the newest epoch the replica committed",
                  (double)p->committed_epoch);
    bs_prom_counter(&b, "blkship_epochs_committed_total", "epochs committed",
                    p->epochs_committed);
    bs_prom_counter(&b, "blkship_epochs_aborted_total", "epochs aborted", p->epochs_aborted);
    /* The replica holds every write completed before the newest committed
     * epoch's seal: the oldest write it may lack is younger than that. */
    bs_prom_gauge(&b, "blkship_rpo_seconds",
                  "age of the oldest write the replica may lack (recovery point)",
                  (double)(now - (p->committed_seal_ms ? p->committed_seal_ms : p->start_ms)) /
                      1000.0);
    bs_prom_counter(&b, "blkship_sessions_total", "sessions with the secondary begun",
                    p->sessions_up);
    bs_prom_counter_head(&b, "blkship_errors_total", "failures, by kind");
    bs_prom_counter_sample(&b, "blkship_errors_total", "kind", "link_down", p->link_downs);
    bs_prom_counter_sample(&b, "blkship_errors_total", "kind", "connect", p->connect_failures);
    bs_prom_counter_sample(&b, "blkship_errors_total", "kind", "disk_read", p->read_errors);
    bs_prom_gauge(&b, "blkship_split_brain", "1 while the secondary reports a split brain",
                  p->split_brain);
    bs_prom_gauge(&b, "blkship_cow_bytes", "old data the write log holds for the epoch read now",
                  (double)p->cow.bytes_now);
    bs_prom_counter(&b, "blkship_cow_preserved_total", "copies made before writes",
                    p->cow.preserved);
    bs_prom_counter(&b, "blkship_cow_waits_total", "writes that waited for copy-before-write",
                    p->cow.waits);
    bs_prom_counter(&b, "blkship_cow_breaks_total", "epochs broken in the write log",
                    p->cow.breaks);
    bs_prom_counter(&b, "blkship_checksum_compared_bytes_total", "compared by checksum resync",
                    p->cs_compared_bytes);
    bs_prom_counter(&b, "blkship_checksum_differing_bytes_total",
                    "found different by checksum resync", p->cs_differ_bytes);
    bs_prom_gauge(&b, "blkship_verify_running", "1 while an online verify runs", p->vf != NULL);
    bs_prom_gauge(&b, "blkship_verify_progress_ratio",
                  "share of the running verify's range read (0 to 1)", verify_progress(p));
    bs_prom_counter(&b, "blkship_verify_runs_total", "online verifies begun", p->vf_runs);
    bs_prom_gauge(&b, "blkship_verify_differing_bytes", "bytes the last verify found different",
                  (double)p->vf_last_differing);
    bs_prom_gauge(&b, "blkship_rate_limit_bytes_per_second", "--rate-limit (0: none)",
                  (double)p->rate_limit);
    bs_prom_counter(&b, "blkship_rate_limit_waits_total", "times the pump waited for the limit",
                    p->rl.waits);
    bs_prom_counter(&b, "blkship_compress_raw_bytes_total",
                    "data payload bytes offered to --compress", p->zc.raw_bytes);
    bs_prom_counter(&b, "blkship_compress_wire_bytes_total",
                    "what those payloads took on the link", p->zc.wire_bytes);
    bs_metrics_publish_prom(p->metrics, &b);
}
