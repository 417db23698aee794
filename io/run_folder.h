/* A run folder held by one process for a run's life: created when missing (with its parents),
 * then locked with flock(2) on RUN_DIR/.lock, a file that holds the holder's pid. A second
 * process is refused with a message naming the folder and that pid; the kernel releases the
 * lock when the holder ends, even by SIGKILL. A command that fails before its run started
 * removes what it created in this invocation (the folders it made, else the lock file it made),
 * never what was there before. */
#ifndef STARMOE_RUN_FOLDER_H
#define STARMOE_RUN_FOLDER_H

#include <starmoe/error.h>

typedef struct sm_run_folder {
    char *path;                  /* the run folder; NULL until sm_run_folder_open */
    char *created;               /* the topmost folder this process created, NULL: none */
    char *lock_path;
    int lock_fd;                 /* -1 when not held */
    int lock_created;            /* the lock file was made by this process */
} sm_run_folder;

/* Creates path when missing, then takes its lock without waiting: when another process holds
 * it, an error naming the folder and, when it has written it, the holder's pid. Call
 * sm_run_folder_close afterwards whatever the result. */
int sm_run_folder_open(sm_run_folder *f, const char *path, sm_error *err);

/* Releases the lock. undo: first removes what sm_run_folder_open created (the run folder with
 * all it holds and the parents it made, when it made the run folder; else the lock file, when
 * it made that). A struct zeroed and never opened is fine. */
void sm_run_folder_close(sm_run_folder *f, int undo);

#endif
