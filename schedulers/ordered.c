/* The "ordered" policy (starpu-notes A.6): per worker a ring of ready ordered tasks keyed by
 * order number and the next order it may start; one shared FIFO for unordered tasks. Locking:
 * each ring and the FIFO have their own mutex; push files the task and calls
 * starpu_push_task_end() under that mutex, decides whom to wake under it, and wakes only after
 * unlocking (the task may already be running then, so it is not touched again). */
#include "schedulers/ordered.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "graph/graph.h"

/* An ordered task may be at most this far ahead of its worker's next order (a larger gap means
 * orders are missing: the worker would wait forever). */
#define SM_ORDERED_MAX_AHEAD (INT64_C(1) << 24)
#define SM_ORDERED_RING_START 64

typedef struct sm_ring {
    starpu_pthread_mutex_t mtx;
    struct starpu_task **slot;   /* the task of order o at slot[o & (cap - 1)], next <= o */
    int64_t cap;                 /* a power of two; 0 until the first ordered task */
    int64_t next;                /* the order this worker starts next */
    int64_t queued;
} sm_ring;

typedef struct sm_ordered_data {
    sm_ring ring[STARPU_NMAXWORKERS];
    starpu_pthread_mutex_t fifo_mtx;
    struct starpu_task_list fifo;
} sm_ordered_data;

/* A misuse push_task cannot report (it has no error path): says what and stops. */
static void sm_ordered_fatal(const struct starpu_task *task, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void sm_ordered_fatal(const struct starpu_task *task, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "starmoe: ordered policy: task '%s': ", task->name ? task->name : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- per-worker rings ---- */

/* Makes room for `order` (caller holds the ring's mutex). */
static void sm_ring_reserve(sm_ring *q, int worker, int64_t order, const struct starpu_task *t)
{
    if (q->slot && order - q->next < q->cap) return;
    if (order - q->next >= SM_ORDERED_MAX_AHEAD)
        sm_ordered_fatal(t, "order %" PRId64 " is too far ahead of worker %d's next order %"
                         PRId64 " (missing orders?)", order, worker, q->next);
    int64_t cap = q->cap ? q->cap : SM_ORDERED_RING_START;
    while (order - q->next >= cap) cap *= 2;
    struct starpu_task **slot = calloc((size_t)cap, sizeof *slot);
    if (!slot) sm_ordered_fatal(t, "out of memory for %" PRId64 " ordered tasks", cap);
    for (int64_t o = q->next; o < q->next + q->cap; o++)
        slot[o & (cap - 1)] = q->slot[o & (q->cap - 1)];
    free(q->slot);
    q->slot = slot;
    q->cap = cap;
}

static int sm_push_ordered(sm_ordered_data *d, struct starpu_task *task,
                           const sm_task_record *r)
{
    int w = r->order_worker;
    unsigned impl;
    if (w < 0 || w >= (int)starpu_worker_get_count())
        sm_ordered_fatal(task, "order_worker %d is not one of the %u workers", w,
                         starpu_worker_get_count());
    if (!starpu_worker_can_execute_task_first_impl((unsigned)w, task, &impl))
        sm_ordered_fatal(task, "worker %d cannot run it", w);
    sm_ring *q = &d->ring[w];
    STARPU_PTHREAD_MUTEX_LOCK(&q->mtx);
    if (r->order < q->next)
        sm_ordered_fatal(task, "order %" PRId64 " on worker %d already started", r->order, w);
    sm_ring_reserve(q, w, r->order, task);
    struct starpu_task **slot = &q->slot[r->order & (q->cap - 1)];
    if (*slot) sm_ordered_fatal(task, "order %" PRId64 " on worker %d is also '%s'", r->order, w,
                                (*slot)->name ? (*slot)->name : "?");
    starpu_task_set_implementation(task, impl);
    *slot = task;
    q->queued++;
    int wake = r->order == q->next;
    starpu_push_task_end(task);
    STARPU_PTHREAD_MUTEX_UNLOCK(&q->mtx);
    if (wake) starpu_wake_worker_relax_light(w);
    return 0;
}

static struct starpu_task *sm_pop_ordered(sm_ring *q)
{
    struct starpu_task *t = NULL;
    STARPU_PTHREAD_MUTEX_LOCK(&q->mtx);
    if (q->queued && (t = q->slot[q->next & (q->cap - 1)])) {
        q->slot[q->next & (q->cap - 1)] = NULL;
        q->next++;
        q->queued--;
    }
    STARPU_PTHREAD_MUTEX_UNLOCK(&q->mtx);
    return t;
}

/* ---- the shared FIFO ---- */

static int sm_push_fifo(sm_ordered_data *d, struct starpu_task *task)
{
    unsigned ctx = task->sched_ctx;
    STARPU_PTHREAD_MUTEX_LOCK(&d->fifo_mtx);
    starpu_task_list_push_back(&d->fifo, task);
    starpu_push_task_end(task);
    STARPU_PTHREAD_MUTEX_UNLOCK(&d->fifo_mtx);
    struct starpu_worker_collection *workers = starpu_sched_ctx_get_worker_collection(ctx);
    struct starpu_sched_ctx_iterator it;
    workers->init_iterator(workers, &it);
    while (workers->has_next(workers, &it))
        starpu_wake_worker_relax_light(workers->get_next(workers, &it));
    return 0;
}

/* The oldest unordered task this worker can run. */
static struct starpu_task *sm_pop_fifo(sm_ordered_data *d, unsigned worker)
{
#ifdef STARPU_NON_BLOCKING_DRIVERS
    if (starpu_task_list_empty(&d->fifo)) return NULL; /* racy peek, re-checked under the lock */
#endif
    struct starpu_task *t;
    unsigned impl;
    STARPU_PTHREAD_MUTEX_LOCK(&d->fifo_mtx);
    for (t = starpu_task_list_begin(&d->fifo); t != starpu_task_list_end(&d->fifo);
         t = starpu_task_list_next(t))
        if (starpu_worker_can_execute_task_first_impl(worker, t, &impl)) {
            starpu_task_list_erase(&d->fifo, t);
            starpu_task_set_implementation(t, impl);
            break;
        }
    STARPU_PTHREAD_MUTEX_UNLOCK(&d->fifo_mtx);
    return t;
}

/* ---- the policy ---- */

static int sm_ordered_push(struct starpu_task *task)
{
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(task->sched_ctx);
    const sm_task_record *r = task->sched_data;
    if (!r || r->order < 0) return sm_push_fifo(d, task);
    return sm_push_ordered(d, task, r);
}

static struct starpu_task *sm_ordered_pop(unsigned ctx)
{
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(ctx);
    unsigned w = starpu_worker_get_id_check();
    struct starpu_task *t = sm_pop_ordered(&d->ring[w]);
    return t ? t : sm_pop_fifo(d, w);
}

static void sm_ordered_init(unsigned ctx)
{
    sm_ordered_data *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "starmoe: ordered policy: out of memory\n");
        abort();
    }
    for (int w = 0; w < STARPU_NMAXWORKERS; w++) STARPU_PTHREAD_MUTEX_INIT(&d->ring[w].mtx, NULL);
    STARPU_PTHREAD_MUTEX_INIT(&d->fifo_mtx, NULL);
    starpu_task_list_init(&d->fifo);
    starpu_sched_ctx_set_policy_data(ctx, d);
}

static void sm_ordered_deinit(unsigned ctx)
{
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(ctx);
    for (int w = 0; w < STARPU_NMAXWORKERS; w++) {
        if (d->ring[w].queued)
            fprintf(stderr, "starmoe: ordered policy: worker %d still holds %" PRId64
                            " ordered tasks waiting for order %" PRId64 "\n",
                    w, d->ring[w].queued, d->ring[w].next);
        free(d->ring[w].slot);
        STARPU_PTHREAD_MUTEX_DESTROY(&d->ring[w].mtx);
    }
    STARPU_PTHREAD_MUTEX_DESTROY(&d->fifo_mtx);
    free(d);
}

struct starpu_sched_policy sm_ordered_policy = {
    .init_sched = sm_ordered_init,
    .deinit_sched = sm_ordered_deinit,
    .push_task = sm_ordered_push,
    .pop_task = sm_ordered_pop,
    .policy_name = "ordered",
    .policy_description = "tasks with an order number run in that order on their worker; the "
                          "others fill the gaps from a shared FIFO",
    .worker_type = STARPU_WORKER_LIST,
};

int sm_ordered_restart(sm_error *err)
{
    struct starpu_sched_policy *p = starpu_sched_ctx_get_sched_policy(0);
    if (!p || p->push_task != sm_ordered_push)
        return sm_fail(err, "sm_ordered_restart: the policy in force is '%s', not 'ordered'",
                       p && p->policy_name ? p->policy_name : "?");
    if (starpu_task_nsubmitted() > 0)
        return sm_fail(err, "sm_ordered_restart: %d tasks are still pending (wait for them "
                            "first)", starpu_task_nsubmitted());
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(0);
    for (int w = 0; w < STARPU_NMAXWORKERS; w++) {
        STARPU_PTHREAD_MUTEX_LOCK(&d->ring[w].mtx);
        d->ring[w].next = 0;
        STARPU_PTHREAD_MUTEX_UNLOCK(&d->ring[w].mtx);
    }
    return 0;
}
