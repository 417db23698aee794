/* Errors stop at the first failure: when one insertion fails (a tensor made in another graph,
 * a NULL tensor), the step, pipeline and optimizer builders return -1 with the task's name,
 * the tensor and the reason in err.msg, and insert nothing after it. The builds only record
 * (graphs with execute = 0), so the task records are exactly what went in. */
#include <stdlib.h>
#include <string.h>
#include <starmoe/model.h>
#include "model/model.h"
#include "tests/tap.h"
#include "tests/testutil.h"

enum { B = 4, S = 8, MICRO = 4 };

/* Index of the step's first task named `task` that accesses t; -1 if none does. */
static long first_access(const sm_graph *g, const char *task, const sm_tensor *t)
{
    for (size_t i = 0; i < sm_graph_ntasks(g); i++) {
        const sm_task_record *r = sm_graph_task(g, i);
        for (int k = 0; k < r->naccess && !strcmp(r->name, task); k++)
            if (sm_graph_access(g, r, k, NULL) == t) return (long)i;
    }
    return -1;
}

/* Builds r once as it is, then with *slot swapped for `bad`: the build must fail at the first
 * task named `task` that used *slot, naming it and the reason, with no task from it on. */
static void expect_stop(sm_run *r, sm_tensor **slot, sm_tensor *bad, const char *task,
                        const char *reason, const char *what)
{
    sm_error err = {{0}};
    sm_graph *g = r->m->g;
    int built = sm_run_build(r, &err) == 0;
    long at = built ? first_access(g, task, *slot) : -1;
    sm_tensor *keep = *slot;
    *slot = bad;
    int rc = sm_run_build(r, &err);
    size_t n = sm_graph_ntasks(g);
    *slot = keep;
    tap_ok(built && at > 0, "%s: the intact build uses the tensor (task %ld)", what, at);
    tap_ok(rc == -1 && strstr(err.msg, task) && strstr(err.msg, reason),
           "%s: the build fails naming '%s' and why (%s)", what, task, err.msg);
    tap_ok(at >= 0 && n == (size_t)at, "%s: nothing inserted from the failed task on (%zu tasks, "
           "the failed one was number %ld)", what, n, at);
    tap_ok(!strstr(err.msg, "submission failed"), "%s: no generic message", what);
}

/* A forward tensor from another graph, a NULL gradient in the backward. */
static void test_plain(sm_model *m, sm_tensor *foreign)
{
    sm_error err = {{0}};
    sm_run *r = sm_run_new(m, B, S, MICRO, 1, &err);
    if (!tap_ok(r != NULL, "plain run (%s)", err.msg)) return;
    expect_stop(r, &m->layers[1].o.w, foreign, "linear_fwd L1 mb0",
                "(tensor 'other.o_proj') is not a tensor of this graph",
                "o_proj from another graph");
    expect_stop(r, &m->layers[0].kv_b.g, NULL, "linear_bwd_weight L0 mb0",
                "is a NULL tensor", "a NULL kv_b gradient");
    sm_run_free(r);
}

/* The same failure inside a pipeline schedule's slots. */
static void test_pipeline(sm_model *m, sm_tensor *foreign)
{
    sm_error err = {{0}};
    sm_run *r = sm_run_new_with(m, B, S, MICRO, 1, &(sm_run_opts){.pipeline = "zbh1", .pp = 2},
                                &err);
    if (!tap_ok(r != NULL, "zbh1 run (%s)", err.msg)) return;
    expect_stop(r, &m->layers[2].o.w, foreign, "linear_fwd L2 mb0",
                "is not a tensor of this graph", "zbh1: o_proj from another graph");
    sm_run_free(r);
}

/* The optimizer's tasks: a routing plan from another graph stops it at bias_update. */
static void test_optimizer(sm_model *m, sm_tensor *foreign_plan)
{
    sm_error err = {{0}};
    sm_optim_hp hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .grad_clip = 1.0};
    sm_run *r = sm_run_new(m, B, S, MICRO, 1, &err);
    sm_optimizer *o = r ? sm_optimizer_new(m, &err) : NULL;
    if (!tap_ok(o != NULL, "run and optimizer (%s)", err.msg)) {
        sm_run_free(r);
        return;
    }
    sm_graph *g = m->g;
    sm_tensor **slot = &r->mb[0].layers[1].plan, *keep = *slot;
    int ok = sm_run_build(r, &err) == 0 && sm_optimizer_submit(o, r, &hp, &err) == 0;
    long at = ok ? first_access(g, "bias_update L1", keep) : -1;
    ok = ok && sm_run_build(r, &err) == 0;
    size_t step_tasks = sm_graph_ntasks(g);
    *slot = foreign_plan;
    int rc = ok ? sm_optimizer_submit(o, r, &hp, &err) : 0;
    *slot = keep;
    tap_ok(ok && rc == -1 && strstr(err.msg, "bias_update L1") && strstr(err.msg, "other.plan"),
           "optimizer: fails at bias_update naming the tensor (%s)", err.msg);
    tap_ok(at > 0 && sm_graph_ntasks(g) == (size_t)at,
           "optimizer: nothing inserted from the failed task on (%zu tasks, %zu from the step, "
           "bias_update was number %ld)", sm_graph_ntasks(g), step_tasks, at);
    sm_optimizer_free(o);
    sm_run_free(r);
}

int main(void)
{
    sm_config c = tu_tiny_config();
    sm_error err = {{0}};
    sm_model *m = sm_model_new(&c, 0, &err);
    sm_graph *other = sm_graph_new(0);
    if (!tap_ok(m && other, "model and a second graph (%s)", err.msg)) return tap_done();
    const sm_tensor *o = m->layers[1].o.w;
    sm_tensor *foreign = sm_tensor_new(other, "other.o_proj", SM_F32, SM_PARAM, o->ndim,
                                       o->shape, &err);
    sm_tensor *plan = foreign ? sm_tensor_new(other, "other.plan", SM_I32, SM_ACT, 1,
                                              (int64_t[]){1024}, &err)
                              : NULL;
    if (tap_ok(plan != NULL, "tensors of the second graph (%s)", err.msg)) {
        test_plain(m, foreign);
        test_pipeline(m, foreign);
        test_optimizer(m, plan);
    }
    sm_graph_free(other);
    sm_model_free(m);
    return tap_done();
}
