/* `blkship xen discover DOMAIN [--json]`: lists a Xen domain's disks, as
 * candidate resources: each block backend dom0 serves it (vbd, vbd3,
 * qdisk: /local/domain/0/backend/KIND/DOMID/DEVID) with its device name in
 * the guest, what backs it (params), its mode, and a suggested resource
 * name and [writelog] disk.  Reads xenstore through libxenstore
 * (XENSTORED_PATH names another xenstored's socket). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/blkship.h"
#include "common/json.h"
#include "common/opt.h"

static void xen_usage(FILE *f)
{
    fputs("Usage: blkship xen discover DOMAIN [--json]\n"
          "\n"
          "Lists the disks of Xen domain DOMAIN (an id or a name) from xenstore:\n"
          "device, what backs it, mode, backend kind, and the resource name and\n"
          "[writelog] disk to replicate it with.  Exit status 0, or 1 when xenstore\n"
          "cannot be read or the domain is not found.\n",
          f);
}

#ifndef HAVE_XENSTORE

int cmd_xen(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "blkship xen: this blkship was built without libxenstore\n");
    return BS_EXIT_FAILURE;
}

#else

#include <xenstore.h>

/* /local/domain/0/backend/KIND/DOMID/DEVID/KEY, or NULL. */
static char *get(struct xs_handle *xs, const char *kind, const char *domid, const char *devid,
                 const char *key)
{
    char p[512];
    unsigned len;

    snprintf(p, sizeof(p), "/local/domain/0/backend/%s/%s/%s/%s", kind, domid, devid, key);
    return xs_read(xs, XBT_NULL, p, &len);
}

/* The domain's id as text (DOMAIN itself if a number), and its name. */
static bool find_domain(struct xs_handle *xs, const char *domain, char *id, size_t idsize,
                        char *name, size_t namesize)
{
    char **ids, *end;
    unsigned n;
    bool found = false;

    strtoul(domain, &end, 10);
    ids = xs_directory(xs, XBT_NULL, "/local/domain", &n);
    for (unsigned i = 0; ids && i < n && !found; i++) {
        char p[64], *nm;
        unsigned len;
        snprintf(p, sizeof(p), "/local/domain/%s/name", ids[i]);
        nm = xs_read(xs, XBT_NULL, p, &len);
        if ((*domain && !*end && strcmp(ids[i], domain) == 0) || (nm && strcmp(nm, domain) == 0)) {
            snprintf(id, idsize, "%s", ids[i]);
            snprintf(name, namesize, "%s", nm ? nm : ids[i]);
            found = true;
        }
        free(nm);
    }
    free(ids);
    return found;
}

int cmd_xen(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const kinds[] = { "vbd", "vbd3", "qdisk" };
    struct bs_json_builder out;
    char id[32], name[128];
    bool json = false;
    unsigned found = 0;
    struct xs_handle *xs;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'j': json = true; break;
        case 'h': xen_usage(stdout); return BS_EXIT_OK;
        default: xen_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (optind != argc - 2 || strcmp(argv[optind], "discover") != 0) {
        xen_usage(stderr);
        return BS_EXIT_USAGE;
    }
    xs = xs_open(0);
    if (!xs) {
        fprintf(stderr, "blkship xen: cannot connect to xenstore: %s\n", strerror(errno));
        return BS_EXIT_FAILURE;
    }
    if (!find_domain(xs, argv[optind + 1], id, sizeof(id), name, sizeof(name))) {
        fprintf(stderr, "blkship xen: no domain %s in xenstore\n", argv[optind + 1]);
        xs_close(xs);
        return BS_EXIT_FAILURE;
    }
    if (json) {
        bs_json_begin(&out);
        bs_json_add_str(&out, "domain", name);
        bs_json_add_str(&out, "domid", id);
    } else {
        printf("domain %s (id %s)\n", name, id);
        printf("%-8s %-8s %-5s %-6s %-24s %s\n", "device", "devid", "mode", "kind", "resource",
               "backed by");
    }
    struct json_object *arr = json ? json_object_new_array() : NULL;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char dir[128], **devs;
        unsigned n;
        snprintf(dir, sizeof(dir), "/local/domain/0/backend/%s/%s", kinds[k], id);
        devs = xs_directory(xs, XBT_NULL, dir, &n);
        for (unsigned i = 0; devs && i < n; i++) {
            char *params = get(xs, kinds[k], id, devs[i], "params");
            char *dev = get(xs, kinds[k], id, devs[i], "dev");
            char *mode = get(xs, kinds[k], id, devs[i], "mode");
            char resource[300];
            snprintf(resource, sizeof(resource), "%s-%s", name, dev ? dev : devs[i]);
            if (json) {
                struct bs_json_builder d;
                bs_json_begin(&d);
                bs_json_add_str(&d, "device", dev ? dev : "");
                bs_json_add_str(&d, "devid", devs[i]);
                bs_json_add_str(&d, "kind", kinds[k]);
                bs_json_add_str(&d, "mode", mode ? mode : "");
                bs_json_add_str(&d, "params", params ? params : "");
                bs_json_add_str(&d, "resource", resource);
                json_object_array_add(arr, d.obj); /* arr owns it now */
            } else {
                printf("%-8s %-8s %-5s %-6s %-24s %s\n", dev ? dev : "?", devs[i],
                       mode ? mode : "?", kinds[k], resource, params ? params : "?");
            }
            found++;
            free(params);
            free(dev);
            free(mode);
        }
        free(devs);
    }
    xs_close(xs);
    if (json) {
        json_object_object_add(out.obj, "disks", arr);
        return bs_json_finish_print(&out, stdout) < 0 ? BS_EXIT_FAILURE : BS_EXIT_OK;
    }
    if (!found)
        printf("(no block devices)\n");
    else
        printf("\nTo replicate one: /etc/blkship/RESOURCE.conf with [writelog] disk = what backs "
               "it (docs/guide-dr.md).\n");
    return BS_EXIT_OK;
}

#endif
