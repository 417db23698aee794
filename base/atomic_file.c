/* Atomic file replacement, folder creation and removal (base/atomic_file.h), used by every
 * writer. */
#include "base/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sm_atomic_abort(sm_atomic_file *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        unlink(a->tmp);
    }
    free(a->path);
    free(a->tmp);
    a->fd = -1;
    a->path = a->tmp = NULL;
}

/* Reports errno for `what` on the temporary file and gives up. */
static int atomic_fail(sm_atomic_file *a, const char *what, sm_error *err)
{
    sm_fail(err, "%s: cannot %s %s: %s", a->path, what, a->tmp, strerror(errno));
    sm_atomic_abort(a);
    return -1;
}

int sm_atomic_begin(sm_atomic_file *a, const char *path, sm_error *err)
{
    size_t n = strlen(path) + 32;
    a->fd = -1;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        sm_atomic_abort(a);
        return sm_fail(err, "%s: out of memory", path);
    }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return a->fd < 0 ? atomic_fail(a, "create", err) : 0;
}

int sm_atomic_write(sm_atomic_file *a, const void *buf, size_t n, sm_error *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return atomic_fail(a, "write", err);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the folder holding path, so that the rename itself is durable. */
static int sync_parent(const char *path, sm_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return sm_fail(err, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        rc = sm_fail(err, "%s: cannot sync folder %s: %s", path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

int sm_atomic_commit(sm_atomic_file *a, sm_error *err)
{
    if (fsync(a->fd) != 0) return atomic_fail(a, "sync", err);
    int fd = a->fd;
    a->fd = -1;
    if (close(fd) != 0 || rename(a->tmp, a->path) != 0) {
        sm_fail(err, "%s: cannot close and rename %s: %s", a->path, a->tmp, strerror(errno));
        unlink(a->tmp);
        sm_atomic_abort(a);
        return -1;
    }
    int rc = sync_parent(a->path, err);
    sm_atomic_abort(a);
    return rc;
}

int sm_atomic_write_file(const char *path, const void *buf, size_t n, sm_error *err)
{
    sm_atomic_file a;
    if (sm_atomic_begin(&a, path, err) || sm_atomic_write(&a, buf, n, err)) return -1;
    return sm_atomic_commit(&a, err);
}

int sm_mkdir_p(const char *dir, char **created, sm_error *err)
{
    size_t n = strlen(dir);
    if (created) *created = NULL;
    if (n == 0) return sm_fail(err, "the folder name to create is empty");
    char *path = strdup(dir);
    int rc = path ? 0 : sm_fail(err, "%s: out of memory", dir);
    for (size_t i = 1; i <= n && !rc; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char keep = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) == 0) {
            if (created && !*created && !(*created = strdup(path)))
                rc = sm_fail(err, "%s: out of memory", dir);
        } else if (errno != EEXIST) {
            rc = sm_fail(err, "%s: cannot create folder %s: %s", dir, path, strerror(errno));
        }
        path[i] = keep;
    }
    free(path);
    return rc;
}

int sm_remove_tree(const char *path, sm_error *err)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int rc = 0;
    if (!d && errno == ENOENT) return 0;
    if (!d) return sm_fail(err, "%s: cannot open folder: %s", path, strerror(errno));
    while (rc == 0 && (e = readdir(d))) {
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *sub = malloc(n);
        if (!sub) {
            rc = sm_fail(err, "%s: out of memory", path);
            break;
        }
        snprintf(sub, n, "%s/%s", path, e->d_name);
        if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            rc = sm_remove_tree(sub, err);
        else if (unlink(sub) != 0 && errno != ENOENT)
            rc = sm_fail(err, "%s: cannot remove: %s", sub, strerror(errno));
        free(sub);
    }
    closedir(d);
    if (rc == 0 && rmdir(path) != 0)
        rc = sm_fail(err, "%s: cannot remove folder: %s", path, strerror(errno));
    return rc;
}
