/* The "ordered" policies on two workers. One lane per worker (the default): tasks whose records
 * carry order numbers, submitted out of that order (while the workers are paused, then in
 * reverse), run in order on their lane's worker, and unordered tasks all run; a restart starts
 * the sequences at 0 again, and is refused while tasks are pending or under another policy.
 * One lane of both workers (sm_ordered_set_lanes): the lane's tasks, submitted out of order
 * while paused or running, start in order, give or take the one task the other worker may
 * start at the same moment; set_lanes refuses 0 or more
 * lanes than workers, pending tasks and other policies. Engine selection: --sched ordered
 * starts it, a conflicting STARPU_SCHED is refused, STARPU_SCHED alone may name it, unknown
 * names are refused; the five pipeline names are starmoe's, and 1f1b starts as one of the
 * ordered family. Graph records carry the meta's order and lane. */
#include <stdlib.h>
#include <string.h>
#include <starmoe/starmoe.h>
#include "graph/graph.h"
#include "schedulers/ordered.h"
#include "schedulers/registry.h"
#include "tests/tap.h"

enum {
    NWORKERS = 2, NORDERED = 12, NSEQ = NWORKERS * NORDERED, NFREE = 8, NTASKS = NSEQ + NFREE
};

/* A kernel waiting for the lane's earlier orders gives up after this (a policy bug, not a
 * timing assertion: a correct policy never makes it wait long). */
#define STUCK_US 2e6

typedef struct run_log {
    int worker, lane, ticket;    /* ticket: how many of the lane's tasks had started before */
    int64_t order;
} run_log;

static run_log runs[NTASKS];
static int nruns;
static starpu_pthread_mutex_t runs_mutex = STARPU_PTHREAD_MUTEX_INITIALIZER;
static int nstarted[NWORKERS];           /* per lane, taken atomically */
static int started[NWORKERS][NSEQ];      /* per lane and order, set atomically */
static int stuck;

/* Returns once every order below `order` of the lane has started (or marks the run stuck). */
static void wait_earlier(int lane, int64_t order)
{
    double deadline = starpu_timing_now() + STUCK_US;
    for (int64_t o = 0; o < order && !__atomic_load_n(&stuck, __ATOMIC_SEQ_CST); o++)
        while (!__atomic_load_n(&started[lane][o], __ATOMIC_SEQ_CST))
            if (starpu_timing_now() > deadline) {
                __atomic_store_n(&stuck, 1, __ATOMIC_SEQ_CST);
                break;
            }
}

/* The kernel: an ordered task takes its lane's next ticket as it starts, notes who ran what,
 * and does not finish before the lane's earlier orders have started (so that another worker of
 * the lane can be at most one task ahead). */
static void note_run(void *buffers[], void *arg)
{
    (void)buffers;
    (void)arg;
    const sm_task_record *r = starpu_task_get_current()->sched_data;
    run_log log = {starpu_worker_get_id(), -1, -1, r ? r->meta.order : -1};
    if (log.order >= 0) {
        log.lane = r->meta.lane;
        log.ticket = __atomic_fetch_add(&nstarted[log.lane], 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&started[log.lane][log.order], 1, __ATOMIC_SEQ_CST);
    }
    STARPU_PTHREAD_MUTEX_LOCK(&runs_mutex);
    if (nruns < NTASKS) runs[nruns++] = log;
    STARPU_PTHREAD_MUTEX_UNLOCK(&runs_mutex);
    if (log.order >= 0) wait_earlier(log.lane, log.order);
}

static struct starpu_codelet note_cl = {.cpu_funcs = {note_run}, .nbuffers = 0, .name = "note"};

static int start(const char *sched, sm_error *err)
{
    sm_engine_opts o = {.ncpus = NWORKERS, .sched = sched};
    return sm_engine_init(&o, err);
}

static int submit(sm_task_record *r)
{
    struct starpu_task *t = starpu_task_create();
    t->cl = &note_cl;
    t->sched_data = r;
    return starpu_task_submit(t);
}

/* Records 0..NSEQ-1 ordered (lane i % nlanes, order i / nlanes), then NFREE unordered ones
 * (half without a record at all: NULL sched_data). */
static void make_records(sm_task_record *recs, int nlanes)
{
    memset(recs, 0, NTASKS * sizeof *recs);
    for (int i = 0; i < NTASKS; i++) {
        int ordered = i < NSEQ;
        recs[i].meta.order = ordered ? i / nlanes : -1;
        recs[i].meta.lane = ordered ? i % nlanes : -1;
    }
}

/* Submits every task in the order idx(k), k = 0..NTASKS-1, after clearing the logs. */
static int submit_all(sm_task_record *recs, int (*idx)(int))
{
    int rc = 0;
    nruns = stuck = 0;
    memset(nstarted, 0, sizeof nstarted);
    memset(started, 0, sizeof started);
    for (int k = 0; k < NTASKS; k++) {
        int i = idx(k);
        rc |= submit(i >= NTASKS - NFREE / 2 ? NULL : &recs[i]);
    }
    return rc;
}

static int scrambled(int k) { return (k * 7) % NTASKS; } /* 7 is prime to NTASKS = 32 */
static int reversed(int k) { return NTASKS - 1 - k; }

/* All tasks ran; each ordered one on a worker of its lane, once; the tickets of a lane of
 * `width` workers follow its orders within width - 1. */
static int check_runs(const char *what, int nlanes, int width)
{
    int seen[NWORKERS][NSEQ] = {{0}}, ok = nruns == NTASKS && !stuck;
    for (int i = 0; i < nruns; i++) {
        const run_log *g = &runs[i];
        if (g->order < 0) continue;
        int drift = g->ticket > g->order ? g->ticket - (int)g->order : (int)g->order - g->ticket;
        if (sm_ordered_lane_of_worker(g->worker) != g->lane || drift > width - 1 ||
            seen[g->lane][g->order]++) {
            tap_diag("%s: run %d: order %lld of lane %d ran on worker %d (lane %d) with ticket "
                     "%d", what, i, (long long)g->order, g->lane, g->worker,
                     sm_ordered_lane_of_worker(g->worker), g->ticket);
            ok = 0;
        }
    }
    for (int l = 0; l < nlanes; l++) ok &= nstarted[l] == NSEQ / nlanes;
    if (stuck) tap_diag("%s: a task waited in vain for an earlier order of its lane", what);
    return ok;
}

/* Runs a batch submitted in the order idx(k) while the workers are paused. */
static int run_paused(sm_task_record *recs, int (*idx)(int))
{
    starpu_pause();
    int rc = submit_all(recs, idx);
    starpu_resume();
    starpu_task_wait_for_all();
    return rc;
}

static void test_order(void)
{
    static sm_task_record recs[NTASKS];
    sm_error err = {{0}};
    make_records(recs, NWORKERS);
    tap_ok(sm_ordered_lane_of_worker(0) == 0 && sm_ordered_lane_of_worker(1) == 1 &&
           sm_ordered_lane_of_worker(NWORKERS) == -1, "one lane per worker by default");
    int rc = run_paused(recs, scrambled);
    tap_ok(rc == 0 && check_runs("scrambled", NWORKERS, 1), "tasks submitted scrambled while "
                                                            "paused ran in order on their "
                                                            "workers (%d runs)", nruns);
    tap_ok(sm_ordered_restart(&err) == 0, "restart between batches");
    rc = submit_all(recs, reversed);
    starpu_task_wait_for_all();
    tap_ok(rc == 0 && check_runs("reversed", NWORKERS, 1), "after a restart, tasks submitted in "
                                                           "reverse ran in order again");
    starpu_pause();
    sm_ordered_restart(&err);
    rc = submit(&recs[0]);
    tap_ok(rc == 0 && sm_ordered_restart(&err) && strstr(err.msg, "pending"),
           "restart refused while a task is pending: %s", err.msg);
    starpu_resume();
    starpu_task_wait_for_all();
}

static void test_one_lane(void)
{
    static sm_task_record recs[NTASKS];
    sm_error err = {{0}};
    make_records(recs, 1);
    int rc = sm_ordered_set_lanes(1, &err);
    tap_ok(rc == 0 && sm_ordered_lane_of_worker(0) == 0 && sm_ordered_lane_of_worker(1) == 0,
           "set_lanes(1) puts both workers in lane 0%s%s", rc ? ": " : "", rc ? err.msg : "");
    rc = run_paused(recs, reversed);
    tap_ok(rc == 0 && check_runs("one lane, reversed", 1, NWORKERS), "one lane of two workers: "
           "tasks submitted in reverse while paused started in the lane's order");
    sm_ordered_restart(&err);
    rc = run_paused(recs, scrambled);
    tap_ok(rc == 0 && check_runs("one lane, scrambled", 1, NWORKERS), "one lane of two workers: "
           "tasks submitted scrambled while paused started in the lane's order");
    sm_ordered_restart(&err);
    rc = submit_all(recs, reversed);
    starpu_task_wait_for_all();
    tap_ok(rc == 0 && check_runs("one lane, running", 1, NWORKERS), "one lane of two workers: "
           "tasks submitted in reverse while running started in the lane's order");
    tap_ok(sm_ordered_set_lanes(0, &err) && strstr(err.msg, "1 to 2 lanes"),
           "set_lanes(0) refused: %s", err.msg);
    tap_ok(sm_ordered_set_lanes(NWORKERS + 1, &err) && strstr(err.msg, "1 to 2 lanes"),
           "set_lanes(%d) refused: %s", NWORKERS + 1, err.msg);
    starpu_pause();
    rc = submit(NULL);
    tap_ok(rc == 0 && sm_ordered_set_lanes(NWORKERS, &err) && strstr(err.msg, "pending"),
           "set_lanes refused while a task is pending: %s", err.msg);
    starpu_resume();
    starpu_task_wait_for_all();
    rc = sm_ordered_set_lanes(NWORKERS, &err);
    tap_ok(rc == 0 && sm_ordered_lane_of_worker(1) == 1, "set_lanes(%d) gives one lane per "
           "worker again%s%s", NWORKERS, rc ? ": " : "", rc ? err.msg : "");
}

static void test_pipeline_names(void)
{
    static const char *names[] = {"gpipe", "1f1b", "zbh1", "dualpipe", "dualpipev"};
    sm_error err = {{0}};
    for (int i = 0; i < 5; i++) {
        sm_sched_entry e;
        int rc = sm_sched_find(names[i], &e, &err);
        tap_ok(rc == 0 && e.origin == SM_SCHED_STARMOE && e.policy, "--sched %s is starmoe's "
               "own%s%s", names[i], rc ? ": " : "", rc ? err.msg : "");
    }
    int rc = start("1f1b", &err);
    tap_ok(rc == 0 && !strcmp(sm_engine_sched_name(), "1f1b") && sm_ordered_active() &&
           sm_ordered_set_lanes(1, &err) == 0, "--sched 1f1b starts an ordered policy whose "
           "lanes can be set (%s)", rc ? err.msg : sm_engine_sched_name());
    if (rc == 0) sm_engine_shutdown();
    tap_ok(!sm_ordered_active() && sm_ordered_lane_of_worker(0) == -1,
           "no ordered policy is active after shutdown");
}

static void test_engine_selection(void)
{
    sm_error err = {{0}};
    setenv("STARPU_SCHED", "eager", 1);
    tap_ok(start("ordered", &err) && strstr(err.msg, "STARPU_SCHED=eager"),
           "a conflicting STARPU_SCHED is refused: %s", err.msg);
    setenv("STARPU_SCHED", "ordered", 1);
    int rc = start(NULL, &err);
    tap_ok(rc == 0 && !strcmp(sm_engine_sched_name(), "ordered") && !getenv("STARPU_SCHED"),
           "STARPU_SCHED=ordered alone starts it (%s)", rc ? err.msg : sm_engine_sched_name());
    if (rc == 0) sm_engine_shutdown();
    unsetenv("STARPU_SCHED");
    tap_ok(start("nosuch", &err) && strstr(err.msg, "'nosuch' is unknown"),
           "an unknown policy is refused: %s", err.msg);
    rc = start("eager", &err);
    tap_ok(rc == 0 && sm_ordered_restart(&err) && strstr(err.msg, "'eager'"),
           "restart refused under another policy: %s", err.msg);
    tap_ok(rc == 0 && !sm_ordered_active() && sm_ordered_set_lanes(1, &err) &&
           strstr(err.msg, "'eager'") && sm_ordered_lane_of_worker(0) == -1,
           "set_lanes refused and no lanes under another policy: %s", err.msg);
    if (rc == 0) sm_engine_shutdown();
}

static void test_record_meta(void)
{
    sm_graph *g = sm_graph_new(0);
    sm_task_meta free_meta = {.op = "x", .layer = -1, .micro = -1, .expert = -1, .order = -1,
                              .lane = -1};
    sm_task_meta seq_meta = free_meta;
    seq_meta.order = 3;
    seq_meta.lane = 1;
    int ok = g && sm_graph_insert(g, &note_cl, &free_meta, NULL, 0, NULL, 0, 0, NULL) == 0 &&
             sm_graph_insert(g, &note_cl, &seq_meta, NULL, 0, NULL, 0, 0, NULL) == 0;
    const sm_task_record *a = ok ? sm_graph_task(g, 0) : NULL, *b = ok ? sm_graph_task(g, 1) : NULL;
    tap_ok(a && b && a->meta.order == -1 && a->meta.lane == -1 && b->meta.order == 3 &&
           b->meta.lane == 1, "graph records carry the meta's order and lane");
    sm_graph_free(g);
}

int main(void)
{
    sm_error err = {{0}};
    test_record_meta();
    if (!tap_ok(start("ordered", &err) == 0, "the engine starts with --sched ordered%s%s",
                err.msg[0] ? ": " : "", err.msg))
        return tap_done();
    tap_ok(!strcmp(sm_engine_sched_name(), "ordered") && sm_ordered_active(),
           "the policy in force is %s", sm_engine_sched_name());
    test_order();
    test_one_lane();
    sm_engine_shutdown();
    test_pipeline_names();
    test_engine_selection();
    return tap_done();
}
