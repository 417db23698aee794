/* Files written whole or not at all, and folders made with their parents (or removed with
 * their contents): the one way the library writes a file (no reader ever sees half of one). */
#ifndef STARMOE_BASE_ATOMIC_FILE_H
#define STARMOE_BASE_ATOMIC_FILE_H

#include <stddef.h>
#include <starmoe/error.h>

/* Atomic file replacement, shared by every writer of the library: the bytes go to
 * "PATH.tmp.<pid>" in the same folder, which is fsynced, renamed over PATH, and the folder is
 * fsynced. I/O errors name the path and give strerror. */
typedef struct sm_atomic_file {
    int fd;
    char *path, *tmp;
} sm_atomic_file;
int sm_atomic_begin(sm_atomic_file *a, const char *path, sm_error *err);
int sm_atomic_write(sm_atomic_file *a, const void *buf, size_t n, sm_error *err);
/* Finishes (fsync, rename, folder fsync); on failure the temporary file is removed. */
int sm_atomic_commit(sm_atomic_file *a, sm_error *err);
/* Gives up: closes and removes the temporary file. */
void sm_atomic_abort(sm_atomic_file *a);
/* The whole sequence for one buffer. */
int sm_atomic_write_file(const char *path, const void *buf, size_t n, sm_error *err);
/* Creates the folder and any missing parents (like mkdir -p); an existing folder is fine. When
 * created is not NULL it receives the topmost folder this call made (malloc'd), NULL when it
 * made none, so that a caller can undo exactly what it created. */
int sm_mkdir_p(const char *dir, char **created, sm_error *err);
/* Removes path and everything below it (symbolic links are removed, never followed); a missing
 * path is not an error. */
int sm_remove_tree(const char *path, sm_error *err);

#endif
