/* Messages of the step graph, counted per peer while pending and recorded for the trace when
 * asked, and the watched wait (comm.h). A completion callback finds its message by a cookie: the
 * peer, the message's index in the log and the log's generation (a callback of a forgotten step
 * records nothing). */
#include "model/comm.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starpu_mpi.h>
#include <starmoe/engine.h>
#include "base/clock.h"
#include "base/grow.h"

/* messages not yet received from each rank */
static atomic_int sm_pending_from[SM_COMM_MAX_RANKS];
static atomic_int sm_abandoned;

/* ---- the record of a step's messages ---- */

_Static_assert(sizeof(uintptr_t) >= 8, "the completion cookie needs 64 bits");
enum { SM_PEER_BITS = 12, SM_INDEX_BITS = 32, SM_GENERATION_BITS = 19 };
_Static_assert(SM_COMM_MAX_RANKS <= 1 << SM_PEER_BITS, "ranks fit the cookie");

static pthread_mutex_t sm_log_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_trace_message *sm_log, *sm_log_copy;
static size_t sm_nlog, sm_cap_log, sm_cap_log_copy;
static uintptr_t sm_log_generation;
static atomic_int sm_recording;

void sm_comm_record(int on) { atomic_store(&sm_recording, on); }

void sm_comm_forget(void)
{
    pthread_mutex_lock(&sm_log_lock);
    sm_nlog = 0;
    sm_log_generation = (sm_log_generation + 1) & (((uintptr_t)1 << SM_GENERATION_BITS) - 1);
    pthread_mutex_unlock(&sm_log_lock);
}

/* Records a message being posted; its cookie (the peer alone when not recording or out of
 * memory). */
static uintptr_t sm_log_posted(starpu_data_handle_t h, int send, int peer, int64_t tag,
                               const char *what)
{
    uintptr_t cookie = (uintptr_t)peer;
    if (!atomic_load(&sm_recording)) return cookie;
    pthread_mutex_lock(&sm_log_lock);
    if (sm_nlog < (1ull << SM_INDEX_BITS) - 1 &&
        sm_grow(&sm_log, &sm_cap_log, sm_nlog + 1, sizeof *sm_log) == 0) {
        sm_trace_message *m = &sm_log[sm_nlog++];
        *m = (sm_trace_message){.send = send, .peer = peer, .tag = tag, .handle = h,
                                .posted_us = starpu_timing_now()};
        snprintf(m->what, sizeof m->what, "%s", what);
        cookie |= ((sm_log_generation << SM_INDEX_BITS | sm_nlog) << SM_PEER_BITS);
    }
    pthread_mutex_unlock(&sm_log_lock);
    return cookie;
}

/* Forgets a message StarPU-MPI refused (the last one posted). */
static void sm_log_refused(uintptr_t cookie)
{
    pthread_mutex_lock(&sm_log_lock);
    if (cookie >> SM_PEER_BITS && (cookie >> SM_PEER_BITS & ((1ull << SM_INDEX_BITS) - 1)) ==
                                      sm_nlog)
        sm_nlog--;
    pthread_mutex_unlock(&sm_log_lock);
}

/* A message completed: its end and size, when its step is still the one recorded. */
static void sm_log_done(uintptr_t cookie)
{
    uintptr_t index = cookie >> SM_PEER_BITS & ((1ull << SM_INDEX_BITS) - 1);
    if (!index) return;
    double now = starpu_timing_now();
    pthread_mutex_lock(&sm_log_lock);
    if (cookie >> (SM_PEER_BITS + SM_INDEX_BITS) == sm_log_generation && index <= sm_nlog) {
        sm_trace_message *m = &sm_log[index - 1];
        m->bytes = starpu_data_get_size(m->handle);
        m->end_us = now;
    }
    pthread_mutex_unlock(&sm_log_lock);
}

/* The messages of the log not complete yet. */
static size_t sm_log_pending(void)
{
    size_t n = 0;
    pthread_mutex_lock(&sm_log_lock);
    for (size_t i = 0; i < sm_nlog; i++) n += !(sm_log[i].end_us > 0);
    pthread_mutex_unlock(&sm_log_lock);
    return n;
}

size_t sm_comm_messages(const sm_trace_message **m)
{
    /* a send may complete a little after the tasks of its step are done */
    for (double until = sm_now() + SM_COMM_COMPLETE_S; sm_log_pending() && sm_now() < until;)
        sched_yield();
    pthread_mutex_lock(&sm_log_lock);
    size_t n = sm_nlog;
    if (sm_grow(&sm_log_copy, &sm_cap_log_copy, n, sizeof *sm_log_copy)) n = 0;
    if (n) memcpy(sm_log_copy, sm_log, n * sizeof *sm_log);
    pthread_mutex_unlock(&sm_log_lock);
    *m = sm_log_copy;
    return n;
}

static void sm_sent(void *arg) { sm_log_done((uintptr_t)arg); }

static void sm_received(void *arg)
{
    uintptr_t cookie = (uintptr_t)arg;
    sm_log_done(cookie);
    atomic_fetch_sub(&sm_pending_from[cookie & (SM_COMM_MAX_RANKS - 1)], 1);
}

static int sm_refused(int rc, const char *verb, const char *what, int peer, sm_error *err)
{
    return rc ? sm_fail(err, "StarPU-MPI refused to %s %s (rank %d, code %d)", verb, what, peer,
                        rc)
              : 0;
}

int sm_comm_send(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err)
{
    if (peer < 0 || peer >= SM_COMM_MAX_RANKS)
        return sm_fail(err, "send %s: rank %d is out of range", what, peer);
    uintptr_t cookie = sm_log_posted(h, 1, peer, tag, what);
    int rc = starpu_mpi_isend_detached(h, peer, tag, MPI_COMM_WORLD, sm_sent, (void *)cookie);
    if (rc) sm_log_refused(cookie);
    return sm_refused(rc, "send", what, peer, err);
}

int sm_comm_recv(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err)
{
    if (peer < 0 || peer >= SM_COMM_MAX_RANKS)
        return sm_fail(err, "receive %s: rank %d is out of range", what, peer);
    atomic_fetch_add(&sm_pending_from[peer], 1);
    uintptr_t cookie = sm_log_posted(h, 0, peer, tag, what);
    int rc = starpu_mpi_irecv_detached(h, peer, tag, MPI_COMM_WORLD, sm_received,
                                       (void *)cookie);
    if (rc) {
        sm_log_refused(cookie);
        atomic_fetch_sub(&sm_pending_from[peer], 1);
    }
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
