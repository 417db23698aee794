/* Input files opened the one safe way: only regular files are read (a FIFO, socket, device or
 * folder given where a file is expected is refused without blocking), errors say what is wrong
 * in words (not found, symbolic link loop, is a folder, permission denied), and reads that come
 * up short (a file truncated while being read) are errors, never a crash. */
#ifndef STARMOE_BASE_FILE_H
#define STARMOE_BASE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <starmoe/error.h>

/* Opens path read-only if it is a regular file: opened with O_NONBLOCK and checked with fstat
 * before anything is read, so a FIFO never blocks. Returns the descriptor (close-on-exec) and
 * its size in *size (when size is not NULL), or -1 with "PATH: cannot open: WHY". */
int sm_file_open_read(const char *path, uint64_t *size, sm_error *err);

/* The same as a stdio stream for reading lines; NULL with the error set. */
FILE *sm_file_open_stream(const char *path, sm_error *err);

/* The reason an open() or stat() of a file failed with errnum, in words: "not found",
 * "a symbolic link loop (too many levels of symbolic links)", "permission denied", ... */
const char *sm_file_why(int errnum);

/* Reads exactly n bytes at offset off; a file that ends before (truncated after it was opened)
 * or a read error fails with "PATH: WHAT: ..." naming the bytes read and expected. */
int sm_file_pread(int fd, void *buf, size_t n, uint64_t off, const char *path, const char *what,
                  sm_error *err);

/* Reads a whole regular file into a NUL-terminated malloc'd buffer of *len bytes. */
char *sm_read_file(const char *path, size_t *len, sm_error *err);

#endif
