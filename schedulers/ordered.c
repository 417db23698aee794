/* The "ordered" policies (docs/starpu.md §4.3, generalised from workers to lanes of workers): per
 * lane a ring of ready ordered tasks keyed by order number and the next order the lane may
 * start; a worker-to-lane table; one shared FIFO for unordered tasks. Locking: each ring and the
 * FIFO have their own mutex; push files the task and calls starpu_push_task_end() under that
 * mutex, decides whom to wake under it, and wakes only after unlocking (the task may already be
 * running then, so it is not touched again). A push of a lane's next order wakes all the lane's
 * workers; each pops until the lane's next task is missing, and the push that fills it wakes
 * them again. The lane table changes only while no task is pending; pops read a worker's lane
 * with an atomic load. */
#include "schedulers/ordered.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "graph/graph.h"

/* An ordered task may be at most this far ahead of its lane's next order (a larger gap means
 * orders are missing: the lane would wait forever). */
#define SM_ORDERED_MAX_AHEAD (INT64_C(1) << 24)
#define SM_ORDERED_RING_START 64

typedef struct sm_ring {
    starpu_pthread_mutex_t mtx;
    struct starpu_task **slot;   /* the task of order o at slot[o & (cap - 1)], next <= o */
    int64_t cap;                 /* a power of two; 0 until the first ordered task */
    int64_t next;                /* the order this lane starts next */
    int64_t queued;
} sm_ring;

typedef struct sm_ordered_data {
    sm_ring ring[STARPU_NMAXWORKERS];             /* one per lane */
    int lane_of_worker[STARPU_NMAXWORKERS];
    int lane_first[STARPU_NMAXWORKERS + 1];       /* lane l: workers lane_first[l..l+1) */
    int nlanes;
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

/* ---- lanes ---- */

/* Splits workers 0..nworkers-1 into nlanes contiguous lanes, 1 <= nlanes <= nworkers (so that
 * none is empty). Only while no task is pending. */
static void sm_lanes_map(sm_ordered_data *d, int nlanes, int nworkers)
{
    for (int w = nworkers - 1; w >= 0; w--) {
        int lane = (int)((int64_t)w * nlanes / nworkers);
        __atomic_store_n(&d->lane_of_worker[w], lane, __ATOMIC_RELEASE);
        d->lane_first[lane] = w;
    }
    d->lane_first[nlanes] = nworkers;
    d->nlanes = nlanes;
}

/* Some worker of the lane can run the task. */
static int sm_lane_can_run(const sm_ordered_data *d, int lane, struct starpu_task *task)
{
    unsigned impl;
    for (int w = d->lane_first[lane]; w < d->lane_first[lane + 1]; w++)
        if (starpu_worker_can_execute_task_first_impl((unsigned)w, task, &impl)) return 1;
    return 0;
}

static void sm_lane_wake(const sm_ordered_data *d, int lane)
{
    for (int w = d->lane_first[lane]; w < d->lane_first[lane + 1]; w++)
        starpu_wake_worker_relax_light(w);
}

/* ---- per-lane rings ---- */

/* Makes room for `order` (caller holds the ring's mutex). */
static void sm_ring_reserve(sm_ring *q, int lane, int64_t order, const struct starpu_task *t)
{
    if (q->slot && order - q->next < q->cap) return;
    if (order - q->next >= SM_ORDERED_MAX_AHEAD)
        sm_ordered_fatal(t, "order %" PRId64 " is too far ahead of lane %d's next order %"
                         PRId64 " (missing orders?)", order, lane, q->next);
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

static int sm_push_ordered(sm_ordered_data *d, struct starpu_task *task, const sm_task_meta *m)
{
    int lane = m->lane;
    if (lane < 0 || lane >= d->nlanes)
        sm_ordered_fatal(task, "lane %d is not one of the %d lanes", lane, d->nlanes);
    if (!sm_lane_can_run(d, lane, task)) sm_ordered_fatal(task, "no worker of lane %d can run it",
                                                          lane);
    sm_ring *q = &d->ring[lane];
    STARPU_PTHREAD_MUTEX_LOCK(&q->mtx);
    if (m->order < q->next)
        sm_ordered_fatal(task, "order %" PRId64 " of lane %d already started (next: %" PRId64
                         ")", m->order, lane, q->next);
    sm_ring_reserve(q, lane, m->order, task);
    struct starpu_task **slot = &q->slot[m->order & (q->cap - 1)];
    if (*slot) sm_ordered_fatal(task, "order %" PRId64 " of lane %d is also '%s'", m->order, lane,
                                (*slot)->name ? (*slot)->name : "?");
    *slot = task;
    q->queued++;
    int wake = m->order == q->next;
    starpu_push_task_end(task);
    STARPU_PTHREAD_MUTEX_UNLOCK(&q->mtx);
    if (wake) sm_lane_wake(d, lane);
    return 0;
}

/* The lane's next task when it is ready and this worker can run it (another worker of the lane
 * takes it otherwise). */
static struct starpu_task *sm_pop_ordered(sm_ring *q, unsigned worker)
{
    struct starpu_task *t = NULL;
    unsigned impl;
    STARPU_PTHREAD_MUTEX_LOCK(&q->mtx);
    struct starpu_task **head = q->queued ? &q->slot[q->next & (q->cap - 1)] : NULL;
    if (head && *head && starpu_worker_can_execute_task_first_impl(worker, *head, &impl)) {
        t = *head;
        *head = NULL;
        q->next++;
        q->queued--;
        starpu_task_set_implementation(t, impl);
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
    if (!r || r->meta.order < 0) return sm_push_fifo(d, task);
    return sm_push_ordered(d, task, &r->meta);
}

static struct starpu_task *sm_ordered_pop(unsigned ctx)
{
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(ctx);
    unsigned w = starpu_worker_get_id_check();
    int lane = __atomic_load_n(&d->lane_of_worker[w], __ATOMIC_ACQUIRE);
    struct starpu_task *t = sm_pop_ordered(&d->ring[lane], w);
    return t ? t : sm_pop_fifo(d, w);
}

/* Starts with one lane per worker. */
static void sm_ordered_init(unsigned ctx)
{
    sm_ordered_data *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "starmoe: ordered policy: out of memory\n");
        abort();
    }
    int nworkers = (int)starpu_worker_get_count();
    for (int l = 0; l < STARPU_NMAXWORKERS; l++) STARPU_PTHREAD_MUTEX_INIT(&d->ring[l].mtx, NULL);
    sm_lanes_map(d, nworkers, nworkers);
    STARPU_PTHREAD_MUTEX_INIT(&d->fifo_mtx, NULL);
    starpu_task_list_init(&d->fifo);
    starpu_sched_ctx_set_policy_data(ctx, d);
}

static void sm_ordered_deinit(unsigned ctx)
{
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(ctx);
    for (int l = 0; l < STARPU_NMAXWORKERS; l++) {
        if (d->ring[l].queued)
            fprintf(stderr, "starmoe: ordered policy: lane %d still holds %" PRId64
                            " ordered tasks waiting for order %" PRId64 "\n",
                    l, d->ring[l].queued, d->ring[l].next);
        free(d->ring[l].slot);
        STARPU_PTHREAD_MUTEX_DESTROY(&d->ring[l].mtx);
    }
    STARPU_PTHREAD_MUTEX_DESTROY(&d->fifo_mtx);
    free(d);
}

#define SM_ORDERED_POLICY(name, description)                                                   \
    {                                                                                          \
        .init_sched = sm_ordered_init, .deinit_sched = sm_ordered_deinit,                     \
        .push_task = sm_ordered_push, .pop_task = sm_ordered_pop, .policy_name = (name),      \
        .policy_description = (description), .worker_type = STARPU_WORKER_LIST,               \
    }

static struct starpu_sched_policy sm_ordered_family[] = {
    SM_ORDERED_POLICY("ordered", "tasks with an order number start in that order within their "
                                 "lane of workers; the others fill the gaps from a shared FIFO"),
    SM_ORDERED_POLICY("gpipe", "pipeline ranks run their F/B slots in GPipe order (ordered "
                               "lanes); other tasks fill the gaps"),
    SM_ORDERED_POLICY("1f1b", "pipeline ranks run their F/B slots in 1F1B order (ordered "
                              "lanes); other tasks fill the gaps"),
    SM_ORDERED_POLICY("zbh1", "pipeline ranks run their F/B/W slots in ZB-H1 order (ordered "
                              "lanes); other tasks fill the gaps"),
    SM_ORDERED_POLICY("dualpipe", "pipeline ranks run their F/B/W slots in DualPipe order "
                                  "(ordered lanes); other tasks fill the gaps"),
    SM_ORDERED_POLICY("dualpipev", "pipeline ranks run their F/B/W slots in DualPipeV order "
                                   "(ordered lanes); other tasks fill the gaps"),
};

struct starpu_sched_policy *const sm_ordered_policies[] = {
    &sm_ordered_family[0], &sm_ordered_family[1], &sm_ordered_family[2],
    &sm_ordered_family[3], &sm_ordered_family[4], &sm_ordered_family[5],
};
const int sm_ordered_npolicies = sizeof sm_ordered_policies / sizeof *sm_ordered_policies;

/* ---- control from the main thread ---- */

static struct starpu_sched_policy *sm_policy_in_force(void)
{
    return starpu_is_initialized() ? starpu_sched_ctx_get_sched_policy(0) : NULL;
}

int sm_ordered_active(void)
{
    struct starpu_sched_policy *p = sm_policy_in_force();
    return p && p->push_task == sm_ordered_push;
}

/* The policy data when one of ours is in force and no task is pending; NULL otherwise (err says
 * why, naming the caller `fn`). */
static sm_ordered_data *sm_ordered_idle(const char *fn, sm_error *err)
{
    if (!sm_ordered_active()) {
        struct starpu_sched_policy *p = sm_policy_in_force();
        sm_fail(err, "%s: the policy in force is '%s', not one of the ordered policies (ordered, "
                     "gpipe, 1f1b, zbh1, dualpipe, dualpipev)",
                fn, p && p->policy_name ? p->policy_name : "?");
        return NULL;
    }
    if (starpu_task_nsubmitted() > 0) {
        sm_fail(err, "%s: %d tasks are still pending (wait for them first)", fn,
                starpu_task_nsubmitted());
        return NULL;
    }
    return starpu_sched_ctx_get_policy_data(0);
}

static void sm_ordered_reset(sm_ordered_data *d)
{
    for (int l = 0; l < STARPU_NMAXWORKERS; l++) {
        STARPU_PTHREAD_MUTEX_LOCK(&d->ring[l].mtx);
        d->ring[l].next = 0;
        STARPU_PTHREAD_MUTEX_UNLOCK(&d->ring[l].mtx);
    }
}

int sm_ordered_restart(sm_error *err)
{
    sm_ordered_data *d = sm_ordered_idle("sm_ordered_restart", err);
    if (!d) return -1;
    sm_ordered_reset(d);
    return 0;
}

int sm_ordered_set_lanes(int nlanes, sm_error *err)
{
    sm_ordered_data *d = sm_ordered_idle("sm_ordered_set_lanes", err);
    if (!d) return -1;
    int nworkers = (int)starpu_worker_get_count();
    if (nlanes < 1 || nlanes > nworkers)
        return sm_fail(err, "sm_ordered_set_lanes: %d lanes asked for, but a lane needs a worker "
                            "of its own: 1 to %d lanes", nlanes, nworkers);
    sm_lanes_map(d, nlanes, nworkers);
    sm_ordered_reset(d);
    return 0;
}

int sm_ordered_lane_of_worker(int worker)
{
    if (!sm_ordered_active() || worker < 0 || worker >= (int)starpu_worker_get_count())
        return -1;
    sm_ordered_data *d = starpu_sched_ctx_get_policy_data(0);
    return __atomic_load_n(&d->lane_of_worker[worker], __ATOMIC_ACQUIRE);
}
