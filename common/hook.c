/* Operator hooks (see hook.h). */
#include "common/hook.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define MOD "hook"
#define LINE_MAX_BYTES 1024   /* longer output lines are logged in pieces */
#define LINES_PER_RUN 200     /* lines logged per run; the rest is counted */
#define NENV 8                /* the BLKSHIP_ variables a run gets */
#define GRACE_MS 1000         /* output still read after the hook exited */
/* Runs kept at once: those whose process runs (at most BS_HOOKS_MAX) and
 * those that exited but whose output is still being read. */
#define SLOTS (4 * BS_HOOKS_MAX)

extern char **environ;

struct hook_run;

struct bs_hooks {
    uv_loop_t *loop;
    char resource[256];
    char role[32];
    unsigned timeout_ms;
    bool closing;
    struct hook_run *runs[SLOTS];
    uint64_t started, succeeded, failed, timed_out, skipped;
    char last_event[32];
    char last_result[64];
};

struct hook_run {
    struct bs_hooks *hooks;
    char event[32];
    uv_process_t proc;
    uv_pipe_t out[2];           /* stdout, stderr */
    uv_timer_t timer;
    int open_handles;           /* closed when it drops to 0 */
    bool exited, killed;
    bool eof[2];                /* stdout, stderr ended */
    int pid;
    unsigned lines, dropped;
    char line[2][LINE_MAX_BYTES + 1];
    size_t line_len[2];
    char readbuf[4096];
};

struct bs_hooks *bs_hooks_new(uv_loop_t *loop, const char *resource, const char *role,
                              unsigned timeout_ms)
{
    struct bs_hooks *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->loop = loop;
    snprintf(h->resource, sizeof(h->resource), "%s", resource);
    snprintf(h->role, sizeof(h->role), "%s", role);
    h->timeout_ms = timeout_ms;
    return h;
}

/* Runs whose handles are still open (a slot each), and of those the ones
 * whose process has not exited yet. */
static unsigned occupied(const struct bs_hooks *h)
{
    unsigned n = 0;

    for (unsigned i = 0; i < SLOTS; i++)
        n += h->runs[i] != NULL;
    return n;
}

static unsigned running(const struct bs_hooks *h)
{
    unsigned n = 0;

    for (unsigned i = 0; i < SLOTS; i++)
        n += h->runs[i] != NULL && !h->runs[i]->exited;
    return n;
}

static void maybe_free_hooks(struct bs_hooks *h)
{
    if (h->closing && occupied(h) == 0)
        free(h);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct hook_run *r = handle->data;
    struct bs_hooks *h = r->hooks;

    if (--r->open_handles > 0)
        return;
    for (unsigned i = 0; i < SLOTS; i++)
        if (h->runs[i] == r)
            h->runs[i] = NULL;
    free(r);
    maybe_free_hooks(h);
}

static void close_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, on_handle_closed);
}

static void log_line(struct hook_run *r, int stream)
{
    char *line = r->line[stream];

    line[r->line_len[stream]] = '\0';
    r->line_len[stream] = 0;
    if (r->lines++ >= LINES_PER_RUN) {
        r->dropped++;
        return;
    }
    BS_INFO(MOD, "%s[%d] %s: %s", r->event, r->pid, stream ? "stderr" : "stdout", line);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct hook_run *r = handle->data;

    (void)suggested;
    *buf = uv_buf_init(r->readbuf, sizeof(r->readbuf));
}

/* Once the process has exited and both outputs ended, nothing is left to
 * wait for. */
static void maybe_done(struct hook_run *r)
{
    if (r->exited && r->eof[0] && r->eof[1])
        close_handle((uv_handle_t *)&r->timer);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct hook_run *r = stream->data;
    int k = (uv_pipe_t *)stream == &r->out[1];

    if (n < 0) {
        /* End of its output (or an error reading it): what is left of a
         * line without its newline is still logged. */
        if (r->line_len[k])
            log_line(r, k);
        r->eof[k] = true;
        close_handle((uv_handle_t *)stream);
        maybe_done(r);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c == '\n') {
            log_line(r, k);
            continue;
        }
        r->line[k][r->line_len[k]++] = c;
        if (r->line_len[k] == LINE_MAX_BYTES)
            log_line(r, k);
    }
}

static void on_grace(uv_timer_t *t)
{
    struct hook_run *r = t->data;

    close_handle((uv_handle_t *)&r->out[0]);
    close_handle((uv_handle_t *)&r->out[1]);
    close_handle((uv_handle_t *)&r->timer);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal)
{
    struct hook_run *r = proc->data;
    struct bs_hooks *h = r->hooks;

    r->exited = true;
    uv_timer_stop(&r->timer);
    if (r->killed) {
        h->timed_out++;
        snprintf(h->last_result, sizeof(h->last_result), "killed after %u ms", h->timeout_ms);
        BS_ERR(MOD, "%s hook (pid %d) still ran after the hook timeout (%u ms): killed", r->event,
               r->pid, h->timeout_ms);
    } else if (term_signal) {
        h->failed++;
        snprintf(h->last_result, sizeof(h->last_result), "killed by signal %d", term_signal);
        BS_ERR(MOD, "%s hook (pid %d) was killed by signal %d", r->event, r->pid, term_signal);
    } else if (status != 0) {
        h->failed++;
        snprintf(h->last_result, sizeof(h->last_result), "exit status %" PRId64, status);
        BS_ERR(MOD, "%s hook (pid %d) failed with exit status %" PRId64, r->event, r->pid, status);
    } else {
        h->succeeded++;
        snprintf(h->last_result, sizeof(h->last_result), "exit status 0");
        BS_INFO(MOD, "%s hook (pid %d) succeeded", r->event, r->pid);
    }
    if (r->dropped)
        BS_WARN(MOD, "%s hook (pid %d): %u more lines of output not logged", r->event, r->pid,
                r->dropped);
    close_handle((uv_handle_t *)&r->proc);
    /* What it wrote just before it exited may not be read yet; something
     * it left running in the background may hold its output open. */
    uv_timer_start(&r->timer, on_grace, GRACE_MS, 0);
    maybe_done(r);
}

static void on_timeout(uv_timer_t *t)
{
    struct hook_run *r = t->data;

    if (r->exited)
        return;
    r->killed = true;
    /* Its own session: the shell and whatever it started go together. */
    if (kill(-r->pid, SIGKILL) < 0)
        (void)uv_process_kill(&r->proc, SIGKILL);
}

/* envp: the agent's environment without BLKSHIP_ variables of the names a
 * run sets, then those.  vars holds the NENV strings. */
static char **build_env(const struct bs_hooks *h, const struct bs_hook_event *ev,
                        char vars[NENV][512])
{
    static const char *const names[NENV] = { "BLKSHIP_RESOURCE=", "BLKSHIP_EVENT=",
                                             "BLKSHIP_ROLE=",     "BLKSHIP_PEER=",
                                             "BLKSHIP_EPOCH=",    "BLKSHIP_REASON=",
                                             "BLKSHIP_HOOK_TIMEOUT_MS=", "BLKSHIP_GENERATION=" };
    size_t n = 0, k = 0;
    char **envp;

    while (environ[n])
        n++;
    envp = calloc(n + NENV + 1, sizeof(*envp));
    if (!envp)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        bool ours = false;
        for (unsigned j = 0; j < NENV; j++)
            ours = ours || strncmp(environ[i], names[j], strlen(names[j])) == 0;
        if (!ours)
            envp[k++] = environ[i];
    }
    snprintf(vars[0], 512, "%s%s", names[0], h->resource);
    snprintf(vars[1], 512, "%s%s", names[1], ev->event);
    snprintf(vars[2], 512, "%s%s", names[2], h->role);
    snprintf(vars[3], 512, "%s%s", names[3], ev->peer ? ev->peer : "");
    snprintf(vars[4], 512, "%s%" PRIu64, names[4], ev->epoch);
    snprintf(vars[5], 512, "%s%s", names[5], ev->reason ? ev->reason : "");
    snprintf(vars[6], 512, "%s%u", names[6], h->timeout_ms);
    snprintf(vars[7], 512, "%s%" PRIu64, names[7], ev->generation);
    for (unsigned j = 0; j < NENV; j++)
        envp[k++] = vars[j];
    envp[k] = NULL;
    return envp;
}

int bs_hooks_run(struct bs_hooks *h, const char *cmd, const struct bs_hook_event *ev)
{
    char vars[NENV][512];
    char *args[] = { "/bin/sh", "-c", (char *)cmd, NULL };
    uv_stdio_container_t stdio[3];
    uv_process_options_t o = { 0 };
    struct hook_run *r;
    unsigned slot;
    char **envp;
    int e;

    snprintf(h->last_event, sizeof(h->last_event), "%s", ev->event);
    for (slot = 0; slot < SLOTS && h->runs[slot]; slot++)
        ;
    if (slot == SLOTS || running(h) >= BS_HOOKS_MAX || h->closing) {
        h->skipped++;
        BS_ERR(MOD, "%s hook not run: %s", ev->event,
               h->closing ? "shutting down" : "too many hooks still running");
        return -EBUSY;
    }
    r = calloc(1, sizeof(*r));
    envp = r ? build_env(h, ev, vars) : NULL;
    if (!envp) {
        free(r);
        h->skipped++;
        BS_ERR(MOD, "%s hook not run: out of memory", ev->event);
        return -ENOMEM;
    }
    r->hooks = h;
    snprintf(r->event, sizeof(r->event), "%s", ev->event);
    for (int k = 0; k < 2; k++) {
        uv_pipe_init(h->loop, &r->out[k], 0);
        r->out[k].data = r;
    }
    uv_timer_init(h->loop, &r->timer);
    r->timer.data = r;
    r->proc.data = r;
    stdio[0].flags = UV_IGNORE;
    for (int k = 0; k < 2; k++) {
        stdio[k + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[k + 1].data.stream = (uv_stream_t *)&r->out[k];
    }
    o.file = args[0];
    o.args = args;
    o.env = envp;
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = on_exit_cb;
    o.flags = UV_PROCESS_DETACHED; /* a session of its own: killed as a group */
    e = uv_spawn(h->loop, &r->proc, &o);
    free(envp);
    r->open_handles = 3; /* the pipes and the timer; the process once spawned */
    if (e < 0) {
        h->skipped++;
        BS_ERR(MOD, "%s hook not run: cannot start /bin/sh: %s", ev->event, uv_strerror(e));
        h->runs[slot] = r;
        close_handle((uv_handle_t *)&r->out[0]);
        close_handle((uv_handle_t *)&r->out[1]);
        close_handle((uv_handle_t *)&r->timer);
        return e;
    }
    r->open_handles = 4;
    r->pid = r->proc.pid;
    h->runs[slot] = r;
    h->started++;
    snprintf(h->last_result, sizeof(h->last_result), "running");
    BS_INFO(MOD, "running the %s hook (pid %d, timeout %u ms, reason: %s): %s", ev->event, r->pid,
            h->timeout_ms, ev->reason ? ev->reason : "", cmd);
    for (int k = 0; k < 2; k++)
        uv_read_start((uv_stream_t *)&r->out[k], on_alloc, on_read);
    uv_timer_start(&r->timer, on_timeout, h->timeout_ms, 0);
    return 0;
}

void bs_hooks_status(const struct bs_hooks *h, struct bs_json_builder *b)
{
    bs_json_add_u64(b, "running", running(h));
    bs_json_add_u64(b, "started", h->started);
    bs_json_add_u64(b, "succeeded", h->succeeded);
    bs_json_add_u64(b, "failed", h->failed);
    bs_json_add_u64(b, "timed_out", h->timed_out);
    bs_json_add_u64(b, "skipped", h->skipped);
    bs_json_add_str(b, "last_event", h->last_event);
    bs_json_add_str(b, "last_result", h->last_result);
}

void bs_hooks_close(struct bs_hooks *h)
{
    if (!h)
        return;
    h->closing = true;
    if (running(h))
        BS_INFO(MOD, "waiting for %u hooks to end (each at most its hook timeout)", running(h));
    maybe_free_hooks(h);
}
