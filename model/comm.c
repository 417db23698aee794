/* Messages of the step graph, counted per peer while pending, and the watched wait (comm.h). */
#include "model/comm.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starpu_mpi.h>
#include <starmoe/engine.h>
#include "base/clock.h"

/* messages not yet received from each rank */
static atomic_int sm_pending_from[SM_COMM_MAX_RANKS];
static atomic_int sm_abandoned;

static void sm_received(void *arg) { atomic_fetch_sub(&sm_pending_from[(intptr_t)arg], 1); }

static int sm_refused(int rc, const char *verb, const char *what, int peer, sm_error *err)
{
    return rc ? sm_fail(err, "StarPU-MPI refused to %s %s (rank %d, code %d)", verb, what, peer,
                        rc)
              : 0;
}

int sm_comm_send(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err)
{
    return sm_refused(starpu_mpi_isend_detached(h, peer, tag, MPI_COMM_WORLD, NULL, NULL),
                      "send", what, peer, err);
}

int sm_comm_recv(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err)
{
    if (peer < 0 || peer >= SM_COMM_MAX_RANKS)
        return sm_fail(err, "receive %s: rank %d is out of range", what, peer);
    atomic_fetch_add(&sm_pending_from[peer], 1);
    int rc = starpu_mpi_irecv_detached(h, peer, tag, MPI_COMM_WORLD, sm_received,
                                       (void *)(intptr_t)peer);
    if (rc) atomic_fetch_sub(&sm_pending_from[peer], 1);
    return sm_refused(rc, "receive", what, peer, err);
}

/* "rank 1, rank 3" (the ranks with pending messages), or "no rank" */
static void sm_waited_ranks(char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (int r = 0; r < sm_engine_size() && r < SM_COMM_MAX_RANKS && used < n; r++)
        if (atomic_load(&sm_pending_from[r]) > 0)
            used += (size_t)snprintf(buf + used, n - used, "%srank %d", used ? ", " : "", r);
    if (!buf[0]) snprintf(buf, n, "no rank (messages sent may not have been taken)");
}

int sm_comm_wait(double timeout_s, const char *what, sm_error *err)
{
    if (sm_engine_size() == 1) {
        starpu_task_wait_for_all();
        return 0;
    }
    int last = starpu_task_nsubmitted();
    double since = sm_now();
    for (int n; (n = starpu_task_nsubmitted()) > 0; usleep(1000)) {
        if (n != last) {
            last = n;
            since = sm_now();
        } else if (sm_now() - since > timeout_s) {
            char ranks[256];
            sm_waited_ranks(ranks, sizeof ranks);
            sm_comm_abandon();
            return sm_fail(err, "%s: no task finished for parallel.timeout_s %g s; waiting for "
                                "messages from %s (stopped, or too slow: raise "
                                "parallel.timeout_s)", what, timeout_s, ranks);
        }
    }
    return 0;
}

int sm_comm_abandoned(void) { return atomic_load(&sm_abandoned); }
void sm_comm_abandon(void) { atomic_store(&sm_abandoned, 1); }

/* ---- lost ranks ---- */

static int sm_peer_pid[SM_COMM_MAX_RANKS];
static int sm_me, sm_nranks;     /* read before any signal: the handler calls nothing else */

void sm_comm_peer(int rank, int pid_on_this_host)
{
    if (rank >= 0 && rank < SM_COMM_MAX_RANKS) sm_peer_pid[rank] = pid_on_this_host;
}

/* Appends text to buf (async-signal-safe), returns the new length. */
static size_t sm_put(char *buf, size_t at, size_t cap, const char *text)
{
    while (*text && at + 1 < cap) buf[at++] = *text++;
    return at;
}

static size_t sm_put_int(char *buf, size_t at, size_t cap, long v)
{
    char digits[24];
    int n = 0;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) > 0 && n < 23);
    while (n > 0 && at + 1 < cap) buf[at++] = digits[--n];
    return at;
}

/* A process gone, or left a zombie for its parent to reap. */
static int sm_pid_gone(int pid)
{
    if (kill(pid, 0) != 0) return errno == ESRCH;
    char path[40] = "/proc/", stat[64];
    size_t at = sm_put_int(path, 6, sizeof path, pid);
    path[sm_put(path, at, sizeof path, "/stat")] = 0;
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, stat, sizeof stat - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 1;
    stat[n] = 0;
    const char *close_paren = strrchr(stat, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

static void sm_on_stop_signal(int sig)
{
    char msg[256];
    int me = sm_me;
    size_t at = sm_put(msg, 0, sizeof msg, "rank ");
    at = sm_put_int(msg, at, sizeof msg, me);
    at = sm_put(msg, at, sizeof msg, ": starmoe: ");
    int lost = -1;
    for (int r = 0; r < sm_nranks && r < SM_COMM_MAX_RANKS && lost < 0; r++)
        if (r != me && sm_peer_pid[r] > 0 && sm_pid_gone(sm_peer_pid[r])) lost = r;
    if (lost >= 0) {
        at = sm_put(msg, at, sizeof msg, "rank ");
        at = sm_put_int(msg, at, sizeof msg, lost);
        at = sm_put(msg, at, sizeof msg, " (pid ");
        at = sm_put_int(msg, at, sizeof msg, sm_peer_pid[lost]);
        at = sm_put(msg, at, sizeof msg, ") was lost: mpirun stops every rank; the last "
                                         "complete checkpoint resumes with --resume\n");
    } else {
        at = sm_put(msg, at, sizeof msg, "stopped by mpirun (signal ");
        at = sm_put_int(msg, at, sizeof msg, sig);
        at = sm_put(msg, at, sizeof msg, "): another rank failed or was lost (mpirun names "
                                         "it)\n");
    }
    ssize_t ignored = write(STDERR_FILENO, msg, at);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

void sm_comm_watch_signals(void)
{
    struct sigaction sa = {.sa_handler = sm_on_stop_signal};
    sm_me = sm_engine_rank();
    sm_nranks = sm_engine_size();
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
}
