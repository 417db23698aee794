/* The point-to-point messages of the step graph (model/comm.c): every transfer between ranks
 * goes through here as a StarPU-MPI detached request, counted per peer while pending, so that
 * a wait that stops progressing (a peer stopped, or gone) fails naming the ranks it waits for
 * instead of hanging. */
#ifndef STARMOE_COMM_H
#define STARMOE_COMM_H

#include <starpu.h>
#include <starmoe/error.h>

/* Sends (receives) handle h to (from) rank `peer` with `tag`, once the tasks before it on h are
 * done (the tasks after it wait for it). -1 with err naming `what` when StarPU-MPI refuses. */
int sm_comm_send(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err);
int sm_comm_recv(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err);

/* Waits for every submitted task. Under mpirun, gives up when no task finished for timeout_s
 * seconds: -1 with err naming `what` and the ranks this one still waits for messages from, and
 * the engine abandoned (sm_comm_abandoned: nothing more may wait on StarPU, the process leaves
 * without finalising MPI). */
int sm_comm_wait(double timeout_s, const char *what, sm_error *err);
/* Whether a wait gave up (or a start-up exchange did): the engine must not be touched again. */
int sm_comm_abandoned(void);
void sm_comm_abandon(void);

/* Lost ranks. When a rank dies, mpirun stops the others with SIGTERM: sm_comm_watch_signals
 * makes each of them say so on stderr first, naming the rank that is gone when it shared this
 * host (its pid given by sm_comm_peer; 0: another host), then die of the signal as before. */
enum { SM_COMM_MAX_RANKS = 4096 };
void sm_comm_peer(int rank, int pid_on_this_host);
void sm_comm_watch_signals(void);

#endif
