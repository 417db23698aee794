/* Run folders held by one process (io/run_folder.h): creation that remembers what it made, and
 * the flock on RUN_DIR/.lock. The lock file is checked to still be the file at its path once
 * locked, so removing it (undo) while another process opens it cannot give two holders. */
#include "io/run_folder.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomic_file.h"

/* The pid written in the lock file, 0 when none is readable. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

static int in_use(const sm_run_folder *f, int fd, sm_error *err)
{
    long pid = holder_pid(fd);
    char who[48] = "another process";
    if (pid) snprintf(who, sizeof who, "another process (pid %ld)", pid);
    return sm_fail(err, "%s: run folder in use by %s, which holds its lock %s: one run folder "
                        "serves one trainer at a time", f->path, who, f->lock_path);
}

/* Writes pid (> 0) into the lock file, or empties it (0). The pid only names the holder in
 * messages: a failure loses nothing else, and the callers go on. */
static int set_pid(int fd, long pid)
{
    char buf[32];
    int n = pid > 0 ? snprintf(buf, sizeof buf, "%ld\n", pid) : 0;
    if (ftruncate(fd, 0) != 0) return -1;
    return n == 0 || pwrite(fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* 1 when fd is still the file at path. */
static int same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static int take_lock(sm_run_folder *f, sm_error *err)
{
    for (int tries = 0; tries < 8; tries++) {
        int created = 1;
        int fd = open(f->lock_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST) {
            created = 0;
            fd = open(f->lock_path, O_RDWR | O_CLOEXEC);
        }
        if (fd < 0 && errno == ENOENT) continue; /* removed since: try again */
        if (fd < 0)
            return sm_fail(err, "%s: cannot open the lock file: %s", f->lock_path,
                           strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno, rc = e == EWOULDBLOCK ? in_use(f, fd, err)
                                                 : sm_fail(err, "%s: cannot lock: %s",
                                                           f->lock_path, strerror(e));
            close(fd);
            return rc;
        }
        if (same_file(fd, f->lock_path)) {
            set_pid(fd, (long)getpid());
            f->lock_fd = fd;
            f->lock_created = created;
            return 0;
        }
        close(fd); /* removed or replaced while we locked it: try again */
    }
    return sm_fail(err, "%s: the lock file keeps being removed or replaced", f->lock_path);
}

int sm_run_folder_open(sm_run_folder *f, const char *path, sm_error *err)
{
    memset(f, 0, sizeof *f);
    f->lock_fd = -1;
    size_t n = strlen(path) + sizeof "/.lock";
    f->path = strdup(path);
    f->lock_path = malloc(n);
    if (!f->path || !f->lock_path) return sm_fail(err, "%s: out of memory", path);
    snprintf(f->lock_path, n, "%s/.lock", path);
    if (sm_mkdir_p(path, &f->created, err)) return -1;
    return take_lock(f, err);
}

/* Removes the run folder with what it holds (when this process holds its lock: else another
 * process does, and it is theirs), then each folder up to the topmost one created, while empty. */
static void remove_created(sm_run_folder *f)
{
    char *p = f->path;
    size_t top = strlen(f->created), n = strlen(p);
    if (f->lock_fd >= 0) sm_remove_tree(p, NULL);
    for (;;) {
        while (n > top && p[n - 1] == '/') n--; /* trailing slashes */
        p[n] = '\0';
        if ((rmdir(p) != 0 && errno != ENOENT) || n <= top) break;
        while (n > top && p[n - 1] != '/') n--; /* the last name */
    }
}

void sm_run_folder_close(sm_run_folder *f, int undo)
{
    if (!f->path) return;
    if (undo && f->created)
        remove_created(f);
    else if (undo && f->lock_created && f->lock_fd >= 0)
        unlink(f->lock_path);
    if (f->lock_fd >= 0) {
        set_pid(f->lock_fd, 0);
        close(f->lock_fd);
    }
    free(f->path);
    free(f->created);
    free(f->lock_path);
    memset(f, 0, sizeof *f);
    f->lock_fd = -1;
}
