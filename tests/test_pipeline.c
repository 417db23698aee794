/* Pipeline parallelism inside one process, on the official tiny config with PP = 2 over two
 * workers: every pipeline schedule gives the loss and the gradients of the unpipelined step
 * (bitwise where each stage has one gradient copy; DualPipe's two copies sum in another order,
 * so it is bitwise in deterministic mode); each rank's lane starts its tasks in its program
 * order, slot by slot, on its own worker, DualPipe's overlapped slots interleaving their two
 * chunks; bad settings get errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/starmoe.h>
#include "model/model.h"
#include "schedulers/ordered.h"
#include "schedulers/schedule.h"
#include "tests/tap.h"
#include "tests/testutil.h"

enum { B = 8, S = 16, MICRO = 4, PP = 2 };

static const char *const policies[] = {"gpipe", "1f1b", "zbh1", "dualpipe", "dualpipev"};

typedef struct step_out {
    double loss;
    float *grads;                /* every gradient, concatenated */
    size_t n;
} step_out;

static void fill_tokens(int32_t *ids, int32_t *tg, int V)
{
    for (int i = 0; i < B * S; i++) {
        ids[i] = (i * 37 + 11) % V;
        tg[i] = (i * 53 + 5) % V;
    }
}

static float *gather_grads(sm_model *m, size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < sm_model_nparams(m); i++)
        if (sm_model_param_grad(m, i)) {
            int64_t shape[4];
            int nd = sm_model_param_shape(m, i, shape);
            size_t k = 1;
            for (int d = 0; d < nd; d++) k *= (size_t)shape[d];
            total += k;
        }
    float *all = malloc(total * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < sm_model_nparams(m); i++) {
        const float *g = sm_model_param_grad(m, i);
        int64_t shape[4];
        int nd = sm_model_param_shape(m, i, shape);
        size_t k = 1;
        if (!g) continue;
        for (int d = 0; d < nd; d++) k *= (size_t)shape[d];
        memcpy(all + at, g, k * sizeof *all);
        at += k;
    }
    *n = total;
    return all;
}

/* (micro-batch, forward?) of each op of rank `rank`'s program, and the slot it belongs to
 * (an overlapped slot's two ops share one): what its lane must show, slot by slot, when its
 * tasks are sorted by start time. */
static int expected_ops(const sm_schedule *p, int rank, int *micro, int *fwd, int *slot)
{
    int n = 0;
    for (int k = 0; k < p->nslots[rank]; k++)
        for (int o = 0; o < p->slots[rank][k].nops; o++) {
            const sm_slot_op *op = &p->slots[rank][k].op[o];
            int dir, stage;
            sm_schedule_locate(p, rank, op->chunk, &dir, &stage);
            micro[n] = dir * sm_schedule_micro_per_dir(p) + op->micro;
            fwd[n] = op->kind == SM_SLOT_F;
            slot[n++] = k;
        }
    return n;
}

/* How many ops slot `slot` of the op list (emicro, efwd, eslot)[0..ne) has when one of them is
 * (m, f); else 0. */
static int slot_has(const int *emicro, const int *efwd, const int *eslot, int ne, int slot,
                    int m, int f)
{
    int n = 0, hit = 0;
    for (int k = 0; k < ne; k++) {
        if (eslot[k] != slot) continue;
        n++;
        hit |= emicro[k] == m && efwd[k] == f;
    }
    return hit ? n : 0;
}

/* Whether every op of slot `slot` is also an op of slot `of`. */
static int slot_within(const int *emicro, const int *efwd, const int *eslot, int ne, int slot,
                       int of)
{
    for (int k = 0; k < ne; k++)
        if (eslot[k] == slot && !slot_has(emicro, efwd, eslot, ne, of, emicro[k], efwd[k]))
            return 0;
    return 1;
}

/* Whether the observed runs of (micro-batch, forward?) follow the program slot by slot: each
 * run is an op of the current slot, or of a later one when the slots between hold only ops of
 * the current one (their runs merge with its); an overlapped slot's two chunks may alternate
 * (interleaved by block parts). *pairs counts the overlapped slots that ran in more than two
 * runs. */
static int follows_program(const int *micro, const int *fwd, int nrun, const int *emicro,
                           const int *efwd, const int *eslot, int ne, int *pairs)
{
    int last = ne ? eslot[ne - 1] : -1, cur = 0, runs = 0;
    *pairs = 0;
    if (!nrun || !slot_has(emicro, efwd, eslot, ne, 0, micro[0], fwd[0])) return 0;
    for (int i = 0; i < nrun; i++) {
        if (!slot_has(emicro, efwd, eslot, ne, cur, micro[i], fwd[i])) {
            int s = cur + 1;
            for (; s <= last && !slot_has(emicro, efwd, eslot, ne, s, micro[i], fwd[i]); s++)
                if (!slot_within(emicro, efwd, eslot, ne, s, cur)) return 0;
            if (s > last) return 0;
            *pairs += slot_has(emicro, efwd, eslot, ne, cur, micro[i - 1], fwd[i - 1]) == 2 &&
                      runs > 2;
            cur = s;
            runs = 0;
        }
        runs++;
    }
    *pairs += slot_has(emicro, efwd, eslot, ne, cur, micro[nrun - 1], fwd[nrun - 1]) == 2 &&
              runs > 2;
    for (int s = cur + 1; s <= last; s++)
        if (!slot_within(emicro, efwd, eslot, ne, s, cur)) return 0;
    return 1;
}

/* Backward tasks: their phase says so, or (routing communication) their op name. */
static int is_backward(const sm_task_meta *m)
{
    return m->phase == SM_BACKWARD_INPUT || m->phase == SM_BACKWARD_WEIGHT ||
           strstr(m->op, "_bwd") != NULL;
}

static const sm_task_record **by_start;
static int peak_live;            /* most tensors alive at once in the model's graph */

static int cmp_start(const void *a, const void *b)
{
    const sm_task_record *x = *(const sm_task_record *const *)a;
    const sm_task_record *y = *(const sm_task_record *const *)b;
    if (x->start_us != y->start_us) return x->start_us < y->start_us ? -1 : 1;
    return x->meta.order < y->meta.order ? -1 : x->meta.order > y->meta.order;
}

/* Each lane: its tasks ran on its worker, started in order 0, 1, 2, ..., and follow the
 * rank's program. */
static void check_lane_order(sm_run *r, const char *name)
{
    const sm_graph *g = r->m->g;
    const sm_schedule *p = sm_pipeline_schedule(r);
    size_t n = sm_graph_ntasks(g);
    by_start = malloc(n * sizeof *by_start);
    int *micro = malloc(n * sizeof *micro), *fwd = malloc(n * sizeof *fwd);
    int *emicro = malloc(n * sizeof *emicro), *efwd = malloc(n * sizeof *efwd);
    int *eslot = malloc(n * sizeof *eslot);
    for (int lane = 0; lane < PP; lane++) {
        size_t k = 0;
        int in_order = 1, on_lane = 1, nrun = 0;
        for (size_t i = 0; i < n; i++) {
            const sm_task_record *t = sm_graph_task(g, i);
            if (t->meta.lane == lane) by_start[k++] = t;
        }
        qsort(by_start, k, sizeof *by_start, cmp_start);
        for (size_t i = 0; i < k; i++) {
            const sm_task_record *t = by_start[i];
            int f = !is_backward(&t->meta);
            in_order &= t->meta.order == (int64_t)i;
            on_lane &= t->done && sm_ordered_lane_of_worker(t->worker) == lane;
            if (nrun && micro[nrun - 1] == t->meta.micro && fwd[nrun - 1] == f) continue;
            micro[nrun] = t->meta.micro;
            fwd[nrun++] = f;
        }
        int ne = expected_ops(p, lane, emicro, efwd, eslot), pairs;
        int same = follows_program(micro, fwd, nrun, emicro, efwd, eslot, ne, &pairs);
        int npairs = 0;
        for (int k2 = 0; k2 < p->nslots[lane]; k2++) npairs += p->slots[lane][k2].nops == 2;
        tap_ok(k > 0 && in_order, "%s: rank %d's %zu tasks started in order 0, 1, 2, ...", name,
               lane, k);
        tap_ok(on_lane, "%s: rank %d's tasks ran on its own worker", name, lane);
        tap_ok(same, "%s: rank %d ran its program's F/B/W micro-batches slot by slot (%d runs, "
                     "%d ops)", name, lane, nrun, ne);
        tap_ok(npairs ? pairs > 0 : pairs == 0, "%s: rank %d interleaved the chunks of its "
               "overlapped slots (%d of %d ran in more than two runs)", name, lane, pairs,
               npairs);
    }
    free(by_start);
    free(micro);
    free(fwd);
    free(emicro);
    free(efwd);
    free(eslot);
}

/* One forward + backward step; with check_order, the lanes' order is checked too. */
static int step(sm_model *m, const sm_run_opts *o, const char *name, int check_order,
                step_out *out)
{
    sm_error err = {{0}};
    int32_t ids[B * S], tg[B * S];
    sm_run *r = sm_run_new_with(m, B, S, MICRO, 1, o, &err);
    if (!r) {
        tap_diag("%s: %s", name, err.msg);
        return -1;
    }
    if (sm_graph_live_tensors(m->g) > peak_live) peak_live = sm_graph_live_tensors(m->g);
    fill_tokens(ids, tg, sm_model_config(m)->vocab_size);
    sm_run_set_balance(r, 1e-3);
    if (sm_run_step(r, ids, tg, &out->loss, &err)) {
        tap_diag("%s: %s", name, err.msg);
        sm_run_free(r);
        return -1;
    }
    out->grads = gather_grads(m, &out->n);
    if (check_order) check_lane_order(r, name);
    sm_run_free(r);
    return 0;
}

static int bitwise(const step_out *a, const step_out *b)
{
    return a->loss == b->loss && a->n == b->n && !memcmp(a->grads, b->grads, a->n * sizeof *a->grads);
}

static void test_schedules(sm_model *m)
{
    step_out ref, det;
    sm_run_opts det_opts = {.deterministic = 1};
    if (step(m, NULL, "no pipeline", 0, &ref) || step(m, &det_opts, "deterministic", 0, &det)) {
        tap_ok(0, "reference steps");
        return;
    }
    tap_ok(det.loss == ref.loss && tu_rel_frob(det.grads, ref.grads, ref.n) < 1e-6,
           "deterministic mode without a pipeline: same loss, gradients within 1e-6 (%.2g)",
           tu_rel_frob(det.grads, ref.grads, ref.n));
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        sm_run_opts o = {.pipeline = policies[i], .pp = PP};
        step_out s, sd;
        char name[64];
        if (step(m, &o, policies[i], 1, &s)) {
            tap_ok(0, "%s: pipelined step", policies[i]);
            continue;
        }
        if (strcmp(policies[i], "dualpipe") != 0) {
            tap_ok(bitwise(&s, &ref), "%s, pp %d: loss and every gradient bitwise equal to the "
                                      "unpipelined step", policies[i], PP);
        } else {
            double e = tu_rel_frob(s.grads, ref.grads, ref.n);
            tap_ok(s.loss == ref.loss && e < 1e-6, "dualpipe, pp %d: same loss, gradients of the "
                   "two summed copies within 1e-6 (%.2g)", PP, e);
        }
        o.deterministic = 1;
        snprintf(name, sizeof name, "%s deterministic", policies[i]);
        if (step(m, &o, name, 0, &sd) == 0)
            tap_ok(bitwise(&sd, &det), "%s: bitwise equal to the unpipelined deterministic step",
                   name);
        else
            tap_ok(0, "%s: pipelined step", name);
        free(s.grads);
        free(sd.grads);
    }
    free(ref.grads);
    free(det.grads);
}

/* Stage cuts of the SMALL config for every schedule at PP 2 and 4: contiguous spans covering
 * every layer once, the embedding on the first stage only, the head on the last only. */
static void test_stage_cuts(void)
{
    const char *src = getenv("STARMOE_SRCDIR");
    char path[1100];
    sm_config c;
    sm_error err = {{0}};
    snprintf(path, sizeof path, "%s/configs/small.json", src ? src : "..");
    if (sm_config_load_json(&c, path, &err)) {
        tap_ok(0, "%s", err.msg);
        return;
    }
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++)
        for (int pp = 2; pp <= 4; pp += 2) {
            sm_schedule_policy pol;
            sm_schedule_policy_parse(policies[i], &pol, NULL);
            sm_schedule *p = sm_schedule_new(pol, pp, 4 * pp, &err);
            sm_stage_span span[16];
            int ok = p && sm_stage_cut(p, &c, 256, span, &err) == 0, at = 0;
            for (int s = 0; ok && s < p->nstages; s++) {
                ok &= span[s].first == at && span[s].end >= at;
                ok &= span[s].embed == (s == 0) && span[s].head == (s == p->nstages - 1);
                at = span[s].end;
            }
            tap_ok(ok && at == c.num_hidden_layers, "%s, pp %d: %d stages cover the %d layers in "
                   "order", policies[i], pp, p ? p->nstages : 0, c.num_hidden_layers);
            sm_schedule_free(p);
        }
}

/* Two pipelined runs with different rank counts on one engine: each step sets its own lanes. */
static void test_two_runs(sm_model *m)
{
    sm_error err = {{0}};
    int32_t ids[B * S], tg[B * S];
    double l2 = 0, l1 = 0;
    sm_run *a = sm_run_new_with(m, B, S, MICRO, 1, &(sm_run_opts){.pipeline = "1f1b", .pp = 2},
                                &err);
    sm_run *b = a ? sm_run_new_with(m, B, S, MICRO, 1, &(sm_run_opts){.pipeline = "gpipe", .pp = 1},
                                    &err)
                  : NULL;
    if (sm_graph_live_tensors(m->g) > peak_live) peak_live = sm_graph_live_tensors(m->g);
    fill_tokens(ids, tg, sm_model_config(m)->vocab_size);
    int ok = b && sm_run_step(b, ids, tg, &l1, &err) == 0 && sm_run_step(a, ids, tg, &l2, &err) == 0;
    tap_ok(ok && l1 == l2, "a pp-2 run steps after a pp-1 run was made and stepped (%s)",
           ok ? "same loss" : err.msg);
    sm_run_free(a);
    sm_run_free(b);
}

static void expect_error(sm_model *m, int micro, int backward, const sm_run_opts *o,
                         const char *needle, const char *what)
{
    sm_error err = {{0}};
    sm_run *r = sm_run_new_with(m, B, S, micro, backward, o, &err);
    tap_ok(!r && strstr(err.msg, needle), "%s: refused (%s)", what, err.msg);
    sm_run_free(r);
}

static void test_errors(sm_model *m)
{
    expect_error(m, MICRO, 1, &(sm_run_opts){.pipeline = "1f1b", .pp = 3}, "workers",
                 "3 ranks on 2 workers");
    expect_error(m, 2, 1, &(sm_run_opts){.pipeline = "dualpipe", .pp = 2}, "micro",
                 "dualpipe with 2 micro-batches");
    expect_error(m, MICRO, 0, &(sm_run_opts){.pipeline = "gpipe", .pp = 2}, "backward",
                 "a forward-only pipelined run");
    expect_error(m, MICRO, 1, &(sm_run_opts){.pp = 2}, "pipeline schedule",
                 "pp 2 without a schedule");
    expect_error(m, MICRO, 1, &(sm_run_opts){.pipeline = "zb", .pp = 2}, "unknown",
                 "an unknown schedule");
}

int main(void)
{
    sm_config c = tu_tiny_config();
    sm_error err = {{0}};
    sm_engine_opts e = {.ncpus = 2, .sched = "dualpipe"};
    if (sm_engine_init(&e, &err)) {
        tap_ok(0, "engine: %s", err.msg);
        return tap_done();
    }
    sm_model *m = sm_model_new(&c, 1, &err);
    if (!m) {
        tap_ok(0, "model: %s", err.msg);
        sm_engine_shutdown();
        return tap_done();
    }
    sm_model_init_random(m, 11, 0.02);
    int live = sm_graph_live_tensors(m->g), ids = sm_graph_ntensors(m->g);
    test_schedules(m);
    test_two_runs(m);
    test_errors(m);
    tap_ok(sm_graph_live_tensors(m->g) == live,
           "the runs' tensors are released with them (%d alive before, %d after)", live,
           sm_graph_live_tensors(m->g));
    tap_ok(sm_graph_ntensors(m->g) == peak_live,
           "released ids are reused: %d ids for at most %d tensors alive at once (%d at start)",
           sm_graph_ntensors(m->g), peak_live, ids);
    test_stage_cuts();
    sm_model_free(m);
    sm_engine_shutdown();
    return tap_done();
}
