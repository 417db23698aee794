/* The point-to-point messages of the step graph (model/comm.c): every transfer between ranks
 * goes through here as a StarPU-MPI detached request, counted per peer while pending, so that
 * a wait that stops progressing (a peer stopped, or gone) fails naming the ranks it waits for
 * instead of hanging. */
#ifndef STARMOE_COMM_H
#define STARMOE_COMM_H

#include <starpu.h>
#include <starmoe/error.h>
#include "trace/recorder.h"

/* Sends (receives) handle h to (from) rank `peer` with `tag`, once the tasks before it on h are
 * done (the tasks after it wait for it). -1 with err naming `what` when StarPU-MPI refuses. */
int sm_comm_send(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err);
int sm_comm_recv(starpu_data_handle_t h, int peer, int64_t tag, const char *what,
                 sm_error *err);

/* The messages of a step, for its trace (model/rank_trace.c turns them on): each send and
 * receive with its peer, tag, tensor name, handle and the time it was posted; the completion
 * callback (on StarPU-MPI's thread) adds its end and the handle's size then. Off by default. */
void sm_comm_record(int on);
/* Forgets the recorded messages (a step graph is about to be submitted). */
void sm_comm_forget(void);
/* The messages recorded since sm_comm_forget, once complete (those still pending after
 * SM_COMM_COMPLETE_S seconds have end_us 0): a copy, valid until the next call. */
size_t sm_comm_messages(const sm_trace_message **m);
#define SM_COMM_COMPLETE_S 2.0

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
