/* Unix socket listeners published atomically (see uds.h). */
#include "common/uds.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int bs_uds_listen(uv_pipe_t *pipe, const char *path, int backlog, uv_connection_cb cb)
{
    char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
    mode_t old;
    int n, r;

    n = snprintf(tmp, sizeof(tmp), "%s.new", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return UV_ENAMETOOLONG;
    unlink(tmp);
    old = umask(0177);
    r = uv_pipe_bind(pipe, tmp);
    umask(old);
    if (r < 0)
        return r;
    r = uv_listen((uv_stream_t *)pipe, backlog, cb);
    if (r == 0 && rename(tmp, path) < 0)
        r = uv_translate_sys_error(errno);
    if (r < 0)
        unlink(tmp);
    return r;
}
