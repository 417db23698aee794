/* Input files opened the one safe way (base/file.h): regular files only, errors in words. */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/grow.h"

const char *sm_file_why(int errnum)
{
    switch (errnum) {
    case ENOENT: return "not found";
    case ELOOP: return "a symbolic link loop (too many levels of symbolic links)";
    case EACCES: return "permission denied";
    case ENOTDIR: return "a part of the path is not a folder";
    case ENAMETOOLONG: return "the path or one of its names is too long";
    case EISDIR: return "is a folder, expected a file";
    default: return strerror(errnum);
    }
}

/* Why a file of this mode cannot be read as an input file, NULL for a regular file. */
static const char *not_regular(mode_t mode)
{
    if (S_ISREG(mode)) return NULL;
    if (S_ISDIR(mode)) return sm_file_why(EISDIR);
    if (S_ISFIFO(mode)) return "not a regular file (a FIFO)";
    if (S_ISSOCK(mode)) return "not a regular file (a socket)";
    return "not a regular file (a device)";
}

int sm_file_open_read(const char *path, uint64_t *size, sm_error *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return sm_fail(err, "%s: cannot open: %s", path, sm_file_why(errno));
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) why = strerror(errno);
    else if (!(why = not_regular(st.st_mode)) && fcntl(fd, F_SETFL, 0) != 0)
        why = strerror(errno);
    if (why) {
        close(fd);
        return sm_fail(err, "%s: cannot open: %s", path, why);
    }
    if (size) *size = (uint64_t)st.st_size;
    return fd;
}

FILE *sm_file_open_stream(const char *path, sm_error *err)
{
    int fd = sm_file_open_read(path, NULL, err);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f) {
        sm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int sm_file_pread(int fd, void *buf, size_t n, uint64_t off, const char *path, const char *what,
                  sm_error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return sm_fail(err, "%s: %s: cannot read: %s", path, what, strerror(errno));
        if (r == 0)
            return sm_fail(err, "%s: %s: the file ends after %zu of %zu bytes at offset %llu "
                           "(truncated while being read?)", path, what, got, n,
                           (unsigned long long)off);
        got += (size_t)r;
    }
    return 0;
}

char *sm_read_file(const char *path, size_t *len, sm_error *err)
{
    uint64_t size;
    int fd = sm_file_open_read(path, &size, err);
    if (fd < 0) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {                   /* up to the end, whatever size fstat said */
        if (sm_grow(&buf, &cap, (n > size ? n : (size_t)size) + 65536 + 1, 1)) {
            rc = sm_fail(err, "%s: out of memory", path);
            break;
        }
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) rc = sm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    if (rc) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
