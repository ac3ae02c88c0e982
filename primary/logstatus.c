/* The write log as the agent holding it sees it, for `blkship wlog info
 * --control` and `blkship wlog cowc --control`: the log takes one client,
 * so while the agent runs, the operator asks the agent.  The counters are
 * the log's own replies (info and cowc), refreshed every tick; "age_ms"
 * says how old they are. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "primary/primary.h"
#include "primary/writelog/wl_json.h"

ssize_t log_status_reply(struct primary *p, const char *request, char *reply, size_t size)
{
    struct bs_json_builder b;

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (!p->log) {
        bs_json_add_str(&b, "error", "the agent holds no write log now");
        return bs_json_finish(&b, reply, size);
    }
    if (strcmp(request, "wlog info") == 0) {
        wl_json_add_info(&b, log_link_info(p->log));
        bs_json_add_u64(&b, "age_ms", uv_now(p->loop) - p->info_at_ms);
    } else {
        bs_json_add_bool(&b, "enabled", p->cow.max_bytes != 0);
        wl_json_add_cowc(&b, &p->cow);
    }
    bs_json_add_str(&b, "log", p->writelog_path);
    return bs_json_finish(&b, reply, size);
}
