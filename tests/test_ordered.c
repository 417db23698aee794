/* The "ordered" policy on two workers: tasks whose records carry order numbers, submitted out of
 * that order (while the workers are paused, then in reverse), run in order on their worker, and
 * unordered tasks all run; a restart starts the sequences at 0 again, and is refused while tasks
 * are pending or under another policy. Engine selection: --sched ordered starts it, a
 * conflicting STARPU_SCHED is refused, STARPU_SCHED alone may name it, unknown names are
 * refused. Graph records default to unordered. */
#include <stdlib.h>
#include <string.h>
#include <starmoe/model.h>
#include "graph/graph.h"
#include "schedulers/ordered.h"
#include "tests/tap.h"

enum { NWORKERS = 2, NORDERED = 12, NFREE = 8, NTASKS = NWORKERS * NORDERED + NFREE };

typedef struct run_log {
    int worker, target;
    int64_t order;
} run_log;

static run_log runs[NTASKS];
static int nruns;
static starpu_pthread_mutex_t runs_mutex = STARPU_PTHREAD_MUTEX_INITIALIZER;

/* The kernel: notes which worker ran which order. */
static void note_run(void *buffers[], void *arg)
{
    (void)buffers;
    (void)arg;
    const sm_task_record *r = starpu_task_get_current()->sched_data;
    STARPU_PTHREAD_MUTEX_LOCK(&runs_mutex);
    if (nruns < NTASKS)
        runs[nruns++] = (run_log){starpu_worker_get_id(), r ? r->order_worker : -1,
                                  r ? r->order : -1};
    STARPU_PTHREAD_MUTEX_UNLOCK(&runs_mutex);
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

/* Records 0..NWORKERS*NORDERED-1 ordered (worker i % NWORKERS, order i / NWORKERS), then
 * NFREE unordered ones (half without a record at all: NULL sched_data). */
static void make_records(sm_task_record *recs)
{
    memset(recs, 0, NTASKS * sizeof *recs);
    for (int i = 0; i < NTASKS; i++) {
        int ordered = i < NWORKERS * NORDERED;
        recs[i].order = ordered ? i / NWORKERS : -1;
        recs[i].order_worker = ordered ? i % NWORKERS : -1;
    }
}

/* Submits every task in the order idx(k), k = 0..NTASKS-1. */
static int submit_all(sm_task_record *recs, int (*idx)(int))
{
    int rc = 0;
    nruns = 0;
    for (int k = 0; k < NTASKS; k++) {
        int i = idx(k);
        rc |= submit(i >= NTASKS - NFREE / 2 ? NULL : &recs[i]);
    }
    return rc;
}

static int scrambled(int k) { return (k * 7) % NTASKS; } /* 7 is prime to NTASKS = 32 */
static int reversed(int k) { return NTASKS - 1 - k; }

/* Every ordered task ran on its worker, each worker's in order 0, 1, ...; all tasks ran. */
static int check_runs(const char *what)
{
    int next[NWORKERS] = {0}, ok = nruns == NTASKS;
    for (int i = 0; i < nruns; i++) {
        if (runs[i].order < 0) continue;
        int w = runs[i].target;
        if (runs[i].worker != w || runs[i].order != next[w]) {
            tap_diag("%s: run %d: order %lld of worker %d ran on worker %d, expected order %d",
                     what, i, (long long)runs[i].order, w, runs[i].worker, next[w]);
            ok = 0;
        }
        next[w]++;
    }
    for (int w = 0; w < NWORKERS; w++) ok &= next[w] == NORDERED;
    return ok;
}

static void test_order(void)
{
    static sm_task_record recs[NTASKS];
    sm_error err = {{0}};
    make_records(recs);
    starpu_pause();
    int rc = submit_all(recs, scrambled);
    starpu_resume();
    starpu_task_wait_for_all();
    tap_ok(rc == 0 && check_runs("scrambled"), "tasks submitted scrambled while paused ran in "
                                               "order on their workers (%d runs)", nruns);
    tap_ok(sm_ordered_restart(&err) == 0, "restart between batches");
    rc = submit_all(recs, reversed);
    starpu_task_wait_for_all();
    tap_ok(rc == 0 && check_runs("reversed"), "after a restart, tasks submitted in reverse ran "
                                              "in order again");
    starpu_pause();
    sm_ordered_restart(&err);
    rc = submit(&recs[0]);
    tap_ok(rc == 0 && sm_ordered_restart(&err) && strstr(err.msg, "pending"),
           "restart refused while a task is pending: %s", err.msg);
    starpu_resume();
    starpu_task_wait_for_all();
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
    if (rc == 0) sm_engine_shutdown();
}

static void test_record_default(void)
{
    sm_graph *g = sm_graph_new(0);
    sm_task_meta meta = {.op = "x", .layer = -1, .micro = -1, .expert = -1};
    int ok = g && sm_graph_insert(g, &note_cl, &meta, NULL, 0, NULL, 0, 0) == 0;
    const sm_task_record *r = ok ? sm_graph_task(g, 0) : NULL;
    tap_ok(r && r->order == -1 && r->order_worker == -1, "graph records start unordered");
    sm_graph_free(g);
}

int main(void)
{
    sm_error err = {{0}};
    test_record_default();
    if (!tap_ok(start("ordered", &err) == 0, "the engine starts with --sched ordered%s%s",
                err.msg[0] ? ": " : "", err.msg))
        return tap_done();
    tap_ok(!strcmp(sm_engine_sched_name(), "ordered"), "the policy in force is %s",
           sm_engine_sched_name());
    test_order();
    sm_engine_shutdown();
    test_engine_selection();
    return tap_done();
}
