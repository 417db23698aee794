/* A complete scheduling-policy plugin: "plugin-fifo", one FIFO that every worker pops, built as
 * a shared library and loaded with `starmoe eval --sched-lib plugin_fifo.so --sched plugin-fifo`
 * (or by StarPU 1.4 itself through STARPU_SCHED_LIB). It defines the two functions of StarPU
 * 1.4's policy-library interface; docs/writing-a-policy.md walks through it. Every worker of
 * starmoe's CPU-only engine can run every task, so pop takes the oldest task as it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starpu.h>

typedef struct fifo_data {
    starpu_pthread_mutex_t mutex;   /* guards `tasks` */
    struct starpu_task_list tasks;  /* oldest at the front */
} fifo_data;

static void fifo_init(unsigned ctx)
{
    fifo_data *d = malloc(sizeof *d);
    if (!d) {
        fprintf(stderr, "plugin-fifo: out of memory\n");
        abort();
    }
    STARPU_PTHREAD_MUTEX_INIT(&d->mutex, NULL);
    starpu_task_list_init(&d->tasks);
    starpu_sched_ctx_set_policy_data(ctx, d);
}

static void fifo_deinit(unsigned ctx)
{
    fifo_data *d = starpu_sched_ctx_get_policy_data(ctx);
    STARPU_PTHREAD_MUTEX_DESTROY(&d->mutex);
    free(d);
}

/* Called when a task becomes ready, possibly from several threads at once. */
static int fifo_push(struct starpu_task *task)
{
    unsigned ctx = task->sched_ctx;
    fifo_data *d = starpu_sched_ctx_get_policy_data(ctx);
    STARPU_PTHREAD_MUTEX_LOCK(&d->mutex);
    starpu_task_list_push_back(&d->tasks, task);
    starpu_push_task_end(task); /* under the mutex: no worker has the task yet */
    STARPU_PTHREAD_MUTEX_UNLOCK(&d->mutex);
    /* from here on a worker may already run (and free) the task: only wake the workers */
    struct starpu_worker_collection *workers = starpu_sched_ctx_get_worker_collection(ctx);
    struct starpu_sched_ctx_iterator it;
    workers->init_iterator(workers, &it);
    while (workers->has_next(workers, &it))
        starpu_wake_worker_relax_light(workers->get_next(workers, &it));
    return 0;
}

/* Called by an idle worker, with its scheduling mutex held; NULL lets it wait. */
static struct starpu_task *fifo_pop(unsigned ctx)
{
    fifo_data *d = starpu_sched_ctx_get_policy_data(ctx);
    struct starpu_task *task = NULL;
    STARPU_PTHREAD_MUTEX_LOCK(&d->mutex);
    if (!starpu_task_list_empty(&d->tasks)) task = starpu_task_list_pop_front(&d->tasks);
    STARPU_PTHREAD_MUTEX_UNLOCK(&d->mutex);
    return task;
}

static struct starpu_sched_policy fifo_policy = {
    .init_sched = fifo_init,
    .deinit_sched = fifo_deinit,
    .push_task = fifo_push,
    .pop_task = fifo_pop,
    .policy_name = "plugin-fifo",
    .policy_description = "example plugin: one FIFO every worker pops (examples/plugin_fifo.c)",
    .worker_type = STARPU_WORKER_LIST,
};

/* The policies of this library, NULL-terminated (listed by '--sched help'). */
static struct starpu_sched_policy *fifo_policies[] = {&fifo_policy, NULL};

struct starpu_sched_policy *starpu_get_sched_lib_policy(const char *name);
struct starpu_sched_policy **starpu_get_sched_lib_policies(void);

struct starpu_sched_policy *starpu_get_sched_lib_policy(const char *name)
{
    return strcmp(name, fifo_policy.policy_name) ? NULL : &fifo_policy;
}

struct starpu_sched_policy **starpu_get_sched_lib_policies(void) { return fifo_policies; }
