/* The blkship operator tool: one entry per verb group. */
#ifndef BLKSHIP_CLI_BLKSHIP_H
#define BLKSHIP_CLI_BLKSHIP_H

/* `blkship wlog ...`: returns the process exit status. */
int cmd_wlog(int argc, char **argv);
/* `blkship status ...`. */
int cmd_status(int argc, char **argv);
/* `blkship checkpoint ...`. */
int cmd_checkpoint(int argc, char **argv);
/* `blkship promote ...`. */
int cmd_promote(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_demote(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_writelog_exec(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_xen(int argc, char **argv);
int cmd_verify(int argc, char **argv);

#endif
