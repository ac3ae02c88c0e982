/* A resource's health from a status reply (see status_health.h). */
#include "cli/status_health.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

static bool flag(struct json_object *o, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
           json_object_get_boolean(v);
}

static const char *text(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return "";
    return json_object_get_string(v);
}

static int judge(struct json_object *o, char *why, size_t size)
{
    bool primary = strcmp(text(o, "role"), "primary") == 0;
    const char *resync = text(o, "resync");

    if (flag(o, "split_brain")) {
        snprintf(why, size, "split brain: an operator must choose (blkship resolve)");
        return BS_HEALTH_SPLIT;
    }
    if (primary && flag(o, "peer_promoted")) {
        snprintf(why, size, "the secondary was promoted: this side must be demoted or resolved");
        return BS_HEALTH_SPLIT;
    }
    if (!primary && flag(o, "promoted")) {
        snprintf(why, size, "promoted: the replica is no longer replicated to");
        return BS_HEALTH_DEGRADED;
    }
    if (primary && !flag(o, "log_connected")) {
        snprintf(why, size, "the write log is not held: writes may go unrecorded");
        return BS_HEALTH_DEGRADED;
    }
    if (!flag(o, "connected")) {
        const char *last = text(o, "last_disconnect");
        snprintf(why, size, "not connected%s%s", *last ? ": " : "", last);
        return BS_HEALTH_DEGRADED;
    }
    if (primary && (strcmp(resync, "full") == 0 || strcmp(resync, "checksum") == 0)) {
        snprintf(why, size, "%s resync under way: the replica is not yet a copy", resync);
        return BS_HEALTH_SYNCING;
    }
    if (primary && *text(o, "disk_state") && strcmp(text(o, "disk_state"), "consistent") != 0) {
        /* No epoch committed yet: the first sync is still being written in
         * place (also after a restart of the primary in the middle of it). */
        snprintf(why, size, "the replica has committed no epoch yet");
        return BS_HEALTH_SYNCING;
    }
    const char *ds = text(o, "disk_state");
    if (!primary && strcmp(ds, "applying") != 0 && !flag(o, "replica_consistent")) {
        snprintf(why, size, "the replica is not consistent yet");
        return BS_HEALTH_SYNCING;
    }
    snprintf(why, size, "replicating");
    return BS_HEALTH_OK;
}

int bs_status_health(const char *reply, size_t len, char *why, size_t size)
{
    struct json_object *o;
    char err[256];
    int r;

    if (size)
        why[0] = '\0';
    if (bs_json_parse(reply, len, &o, err, sizeof(err)) < 0)
        return -EBADMSG;
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return -EBADMSG;
    }
    r = judge(o, why, size);
    json_object_put(o);
    return r;
}
