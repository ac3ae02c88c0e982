/* What blkship-secondary exports to Prometheus (--metrics,
 * common/metrics.h): a snapshot built on the loop every tick and handed
 * to the HTTP thread.  The list is in docs/metrics.md. */
#include <stdio.h>

#include "common/log.h"
#include "common/promtext.h"
#include "secondary/journal.h"
#include "secondary/secondary.h"

void sec_metrics_publish(struct secondary *sec)
{
    struct bs_prom b;

    if (!sec->metrics)
        return;
    bs_prom_begin_agent(&b, sec->metrics_text, sizeof(sec->metrics_text), sec->resource,
                        "secondary");
    bs_prom_gauge(&b, "blkship_connected", "1 while a primary's session is accepted",
                  sec->session && sec->session->accepted);
    bs_prom_gauge(&b, "blkship_disk_bytes", "size of the replica", (double)sec->disk_bytes);
    bs_prom_gauge(&b, "blkship_replica_consistent",
                  "1 while the replica is exactly the primary's disk at the applied epoch",
                  epoch_replica_consistent(sec));
    bs_prom_gauge(&b, "blkship_applied_epoch", "the epoch whose image the replica holds",
                  (double)sec->applied_epoch);
    bs_prom_gauge(&b, "blkship_committed_epoch", "the newest epoch committed (journal or applied)",
                  (double)sec->committed_epoch);
    bs_prom_gauge(&b, "blkship_journal_bytes", "committed epochs waiting in the journal",
                  (double)bs_journal_used(sec->journal));
    bs_prom_gauge(&b, "blkship_journal_max_bytes", "the journal's size",
                  (double)sec->journal_max);
    bs_prom_counter(&b, "blkship_received_bytes_total", "data received from the primary",
                    sec->received_bytes);
    bs_prom_counter(&b, "blkship_written_bytes_total", "data written to the replica",
                    sec->written_bytes);
    bs_prom_counter(&b, "blkship_applied_bytes_total", "data durable on the replica (acknowledged)",
                    sec->durable_bytes);
    bs_prom_counter(&b, "blkship_checksum_compared_bytes_total", "compared by checksum resync",
                    sec->hashed_bytes);
    bs_prom_counter_head(&b, "blkship_errors_total", "failures, by kind");
    bs_prom_counter_sample(&b, "blkship_errors_total", "kind", "bad_frame", sec->bad_frames);
    bs_prom_counter_sample(&b, "blkship_errors_total", "kind", "primary_lost",
                           sec->primaries_lost);
    bs_prom_gauge(&b, "blkship_split_brain", "1 while a split brain is reported",
                  sec->split_brain);
    bs_prom_gauge(&b, "blkship_promoted", "1 once the replica was promoted", sec->promoted);
    bs_metrics_publish_prom(sec->metrics, &b);
}
