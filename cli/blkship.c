/* blkship: the operator's command: the agents' status, checkpoints, promote,
 * resolve, and a live write log's verbs. */
#include <stdio.h>
#include <string.h>

#include "cli/blkship.h"

static void usage(FILE *f)
{
    fputs("Usage: blkship COMMAND ...\n"
          "\n"
          "Commands:\n"
          "  status --control SOCK [--json]            state of a primary or secondary agent\n"
          "  events --control SOCK [--json]            follow an agent's events as they happen\n"
          "  xen discover DOMAIN [--json]              a Xen domain's disks, as resources\n"
          "  checkpoint --control SOCK                 seal an epoch; wait for its commit\n"
          "  promote --control SOCK [--force]          hand a secondary's replica over as a\n"
          "                                            primary's disk\n"
          "  resolve --control SOCK --discard-local    end a split brain, giving up the\n"
          "                                            changes made on this side\n"
          "  demote --control SOCK                     make a primary's disk the replica of\n"
          "                                            the promoted side, keeping its bitmap\n"
          "  verify --control SOCK [--repair] ...      compare the replica with the primary\n"
          "                                            by checksums, while it replicates\n"
          "  config check RESOURCE | --config FILE      validate a resource's configuration\n"
          "  wlog info|peek|getw|clrw|read SOCKET ...   look at and drive a write log\n"
          "  writelog-exec RESOURCE [--print]           run nbdkit with the writelog filter\n"
          "                                            as the resource's [writelog] says\n"
          "\n"
          "Run 'blkship wlog --help' for the write-log verbs.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("blkship " BLKSHIP_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(argv[1], "checkpoint") == 0)
        return cmd_checkpoint(argc - 1, argv + 1);
    if (strcmp(argv[1], "promote") == 0)
        return cmd_promote(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "resolve") == 0)
        return cmd_resolve(argc - 1, argv + 1);
    if (strcmp(argv[1], "demote") == 0)
        return cmd_demote(argc - 1, argv + 1);
    if (strcmp(argv[1], "config") == 0)
        return cmd_config(argc - 1, argv + 1);
    if (strcmp(argv[1], "wlog") == 0)
        return cmd_wlog(argc - 1, argv + 1);
    if (strcmp(argv[1], "xen") == 0)
        return cmd_xen(argc - 1, argv + 1);
    if (strcmp(argv[1], "events") == 0)
        return cmd_events(argc - 1, argv + 1);
    if (strcmp(argv[1], "writelog-exec") == 0)
        return cmd_writelog_exec(argc - 1, argv + 1);
    fprintf(stderr, "blkship: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
