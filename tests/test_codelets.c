/* Per-op codelet tests through StarPU: every insert helper of tasks/ (dense, attention, MoE,
 * optimizer, MTP, cache, FP8) runs on small tensors in an executing graph, once per
 * implementation (the CPU codelets now; each implementation is one entry of `impls`, selected
 * by a scheduling context of its workers), and is compared with its pure kernel called here on the same inputs
 * (bitwise where the implementation runs the same code); a resizable row tensor (a routed
 * expert's buffer) must also have the size the kernel gives it. Its recorded task is checked: op
 * name, buffers in the documented order with the weakest correct access modes (R inputs, W
 * pure outputs, RW only where a value is kept or accumulated), flops by the formula. Write
 * poisoning is on, so a kernel that reads a write-only buffer fails; the poisoning and the
 * size check themselves are checked first. A helper declared in a tasks/ header without a case fails the test. The cases
 * are in tests/codelets_<family>.c, the harness in tests/codelet_harness.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/engine.h>
#include "tests/codelet_harness.h"
#include "tests/tap.h"

/* ---- implementations ---- */

static const impl impls[] = {{"cpu", STARPU_CPU_WORKER, 1}};

/* ---- checks of one case ---- */

static const char *mode_name(enum starpu_data_access_mode m)
{
    return m == STARPU_R ? "R" : m == STARPU_W ? "W" : m == STARPU_RW ? "RW" : "?";
}

/* The one recorded task: op, buffers and modes in order, flops, and where it ran. */
static int task_as_documented(fx *f, const char *name, want w)
{
    if (sm_graph_ntasks(f->g) != 1) {
        tap_diag("%s: %zu tasks recorded, want 1", name, sm_graph_ntasks(f->g));
        return 0;
    }
    const sm_task_record *r = sm_graph_task(f->g, 0);
    int ok = 1;
    if (strcmp(r->meta.op, w.op) != 0) {
        tap_diag("%s: op %s, want %s", name, r->meta.op, w.op);
        ok = 0;
    }
    if (fabs(r->flops - w.flops) > 1e-12 * fmax(1, fabs(w.flops))) {
        tap_diag("%s: %.17g flops, want %.17g", name, r->flops, w.flops);
        ok = 0;
    }
    if (r->naccess != w.n) {
        tap_diag("%s: %d buffers, want %d", name, r->naccess, w.n);
        return 0;
    }
    for (int i = 0; i < w.n; i++) {
        enum starpu_data_access_mode m;
        const sm_tensor *t = sm_graph_access(f->g, r, i, &m);
        if (t != w.acc[i].t || m != w.acc[i].mode) {
            tap_diag("%s: buffer %d is %s %s, want %s %s", name, i, mode_name(m), t->name,
                     mode_name(w.acc[i].mode), w.acc[i].t->name);
            ok = 0;
        }
    }
    if (!r->done || starpu_worker_get_type(r->worker) != f->im->worker) {
        tap_diag("%s: ran on worker %d, not a %s worker", name, r->worker, f->im->name);
        ok = 0;
    }
    return ok;
}

/* Element i of a and b of `size` bytes are the same (bitwise), or close floats. */
static int same_value(const fx *f, const void *a, const void *b, size_t i, size_t size,
                      sm_dtype dt)
{
    if (f->im->bitwise || dt != SM_F32)
        return memcmp((const char *)a + i * size, (const char *)b + i * size, size) == 0;
    float x = ((const float *)a)[i], y = ((const float *)b)[i];
    return fabsf(x - y) <= 1e-4f * (1 + fabsf(y)) || (isnan(x) && isnan(y));
}

/* Every tensor of the case has its reference size (a resizable one: as the task left it) and
 * holds its reference values. */
static int values_match(fx *f, const char *name)
{
    int ok = 1;
    for (int k = 0; k < f->n; k++) {
        const ct *x = &f->v[k];
        size_t size = sm_dtype_size(x->t->dtype);
        const void *got = sm_tensor_acquire(x->t, STARPU_R);
        size_t numel = sm_tensor_bytes(x->t) / size;
        if (numel != x->numel) {
            tap_diag("%s: %s holds %zu elements, the kernel gives %zu", name, x->t->name, numel,
                     x->numel);
            ok = 0;
        }
        for (size_t i = 0; numel == x->numel && i < numel; i++)
            if (!same_value(f, got, x->ref, i, size, x->t->dtype)) {
                double g = x->t->dtype == SM_F32 ? ((const float *)got)[i]
                         : x->t->dtype == SM_I32 ? ((const int32_t *)got)[i]
                                                 : ((const double *)got)[i];
                double r = x->t->dtype == SM_F32 ? RF(x)[i]
                         : x->t->dtype == SM_I32 ? RI(x)[i] : RD(x)[i];
                tap_diag("%s: %s[%zu] = %.9g, the kernel gives %.9g", name, x->t->name, i, g, r);
                ok = 0;
                break;
            }
        sm_tensor_release(x->t);
    }
    return ok;
}

/* Waits for the case's task, checks its record and every tensor, and releases the case. */
void fx_check(fx *f, const char *name, int rc, want w)
{
    sm_graph_wait(f->g);
    tap_ok(rc == 0 && task_as_documented(f, name, w),
           "%s %s: task recorded as documented (%s, %d buffers, modes, flops)", f->im->name,
           name, w.op, w.n);
    tap_ok(rc == 0 && values_match(f, name), "%s %s: outputs %s the kernel's, inputs unchanged",
           f->im->name, name, f->im->bitwise ? "bitwise equal to" : "close to");
    fx_end(f);
}

void fx_expect(fx *f, int cond, const char *what) { tap_ok(cond, "%s %s", f->im->name, what); }

/* ---- every helper has a case ---- */

/* Each op-family header with its cases. */
static const struct {
    const char *header;
    const helper_case *cases;
} families[] = {{"dense.h", codelet_cases_dense}, {"attention.h", codelet_cases_attention},
                {"moe.h", codelet_cases_moe}, {"optim.h", codelet_cases_optim},
                {"mtp.h", codelet_cases_mtp}, {"mla_cache.h", codelet_cases_mla_cache},
                {"fp8.h", codelet_cases_fp8}};
enum { NFAMILIES = sizeof families / sizeof families[0] };

static int has_case(const helper_case *cases, const char *helper)
{
    for (; cases->helper; cases++)
        if (strcmp(cases->helper, helper) == 0) return 1;
    return 0;
}

/* Every `int sm_insert_<name>(` a family's header declares has a case in its table, and the
 * table has no other. */
static void check_coverage(void)
{
    for (int k = 0; k < NFAMILIES; k++) {
        char path[1200], line[512];
        int declared = 0, covered = 0, ncases = 0;
        snprintf(path, sizeof path, "%s/tasks/%s", tu_srcdir(), families[k].header);
        FILE *fp = fopen(path, "r");
        if (!fp) tap_diag("cannot open %s", path);
        while (fp && fgets(line, sizeof line, fp)) {
            char name[128];
            if (sscanf(line, "int %127[a-z0-9_](", name) != 1) continue;
            if (strncmp(name, "sm_insert_", 10) != 0) continue;
            declared++;
            if (has_case(families[k].cases, name)) covered++;
            else tap_diag("%s (tasks/%s) has no case", name, families[k].header);
        }
        if (fp) fclose(fp);
        while (families[k].cases[ncases].helper) ncases++;
        tap_ok(fp && declared > 0 && covered == declared && ncases == declared,
               "each insert helper of tasks/%s has a case (%d declared, %d covered, %d cases)",
               families[k].header, declared, covered, ncases);
    }
}

/* ---- write poisoning ---- */

static float seen_w_f32, seen_rw;
static int32_t seen_w_i32;
static double seen_w_f64;

enum { READ_WRITES_F32, READ_WRITES_I32, READ_WRITES_F64, READ_WRITES_RW, READ_WRITES_NBUF };

/* Reads what it should only write (the first three buffers, W) and its RW buffer. */
static void read_writes_cpu(void *b[], void *arg)
{
    (void)arg;
    seen_w_f32 = SM_BUF(b, READ_WRITES_F32, float)[0];
    seen_w_i32 = SM_BUF(b, READ_WRITES_I32, int32_t)[0];
    seen_w_f64 = SM_BUF(b, READ_WRITES_F64, double)[0];
    seen_rw = SM_BUF(b, READ_WRITES_RW, float)[0];
}
SM_CODELET(read_writes, read_writes_cpu);

/* Runs read_writes on buffers holding 3, 7, 5 and 9. */
static void run_read_writes(fx *f)
{
    ct *a = fx_tensor(f, "a", SM_F32, 4, (float[]){3, 3, 3, 3});
    ct *b = fx_tensor(f, "b", SM_I32, 2, (int32_t[]){7, 7});
    ct *c = fx_tensor(f, "c", SM_F64, 3, (double[]){5, 5, 5});
    ct *d = fx_tensor(f, "d", SM_F32, 1, (float[]){9});
    sm_access acc[READ_WRITES_NBUF] = {[READ_WRITES_F32] = SM_W(a->t),
                                       [READ_WRITES_I32] = SM_W(b->t),
                                       [READ_WRITES_F64] = SM_W(c->t),
                                       [READ_WRITES_RW] = SM_RW(d->t)};
    sm_op_insert(&f->c, &sm_cl_read_writes, "read_writes", SM_FORWARD, -1, acc, READ_WRITES_NBUF,
                 NULL, 0, 0);
    sm_graph_wait(f->g);
    fx_end(f);
}

static void test_poison(fx *f)
{
    const char *env = getenv("STARMOE_POISON_WRITES");
    tap_ok(sm_codelet_poison_on == (env && strcmp(env, "1") == 0),
           "write poisoning follows STARMOE_POISON_WRITES (%s): %s", env ? env : "unset",
           sm_codelet_poison_on ? "on" : "off");
    sm_codelet_poison_writes(1);
    run_read_writes(f);
    uint32_t bits;
    memcpy(&bits, &seen_w_f32, sizeof bits);
    tap_ok(bits == 0x7fc00000u && seen_w_i32 == 0x7fc00000 && isnan(seen_w_f64) &&
               seen_rw == 9.0f,
           "poisoned: a kernel reading its W buffers sees NaN (f32 %g, i32 0x%x, f64 %g), its "
           "RW buffer keeps %g", seen_w_f32, (unsigned)seen_w_i32, seen_w_f64, seen_rw);
    sm_codelet_poison_writes(0);
    run_read_writes(f);
    tap_ok(seen_w_f32 == 3.0f && seen_w_i32 == 7 && seen_w_f64 == 5.0,
           "not poisoned: the same kernel sees the old values (%g, %d, %g)", seen_w_f32,
           seen_w_i32, seen_w_f64);
    sm_codelet_poison_writes(1);
}

/* ---- the size check of resizable tensors ---- */

/* A resizable tensor of 3 rows fails the check against a reference of 4 rows, and passes it
 * against its own 3. */
static void test_size_check(fx *f)
{
    ct *x = fx_rows(f, "rows", 3, 2);
    fx_resize(x, 4 * 2);
    int longer = values_match(f, "size check (a failure is expected)");
    fx_resize(x, 3 * 2);
    int same = values_match(f, "size check");
    tap_ok(!longer && same, "a resizable tensor of 3 rows fails the check against 4 reference "
                            "rows (%s), passes it against 3 (%s)",
           longer ? "passed" : "failed", same ? "passed" : "failed");
    fx_end(f);
}

/* ---- implementations: each runs every case on its own workers ---- */

static void run_impl(sm_graph *g, const impl *im)
{
    int ids[STARPU_NMAXWORKERS];
    int n = starpu_worker_get_ids_by_type(im->worker, ids, STARPU_NMAXWORKERS);
    if (n <= 0) {
        printf("ok %d - # SKIP %s: no worker of this kind\n", ++tap_n, im->name);
        return;
    }
    unsigned ctx = starpu_sched_ctx_create(ids, n, im->name, STARPU_SCHED_CTX_POLICY_NAME,
                                           "eager", 0);
    starpu_sched_ctx_set_context(&ctx);
    fx f = {.g = g, .im = im, .c = {.g = g, .layer = -1, .micro = -1}};
    tu_seed(&f.rng, 20261207);
    sm_graph_step_begin(g);
    for (int k = 0; k < NFAMILIES; k++)
        for (const helper_case *c = families[k].cases; c->helper; c++) c->run(&f);
    unsigned global = 0;
    starpu_sched_ctx_set_context(&global);
    starpu_sched_ctx_delete(ctx);
}

int main(void)
{
    sm_error err = {{0}};
    check_coverage();
    sm_engine_opts e = {.ncpus = 2};
    if (sm_engine_init(&e, &err)) {
        tap_ok(0, "engine: %s", err.msg);
        return tap_done();
    }
    sm_graph *g = sm_graph_new(1);
    fx f = {.g = g, .im = &impls[0], .c = {.g = g, .layer = -1, .micro = -1}};
    test_poison(&f);
    test_size_check(&f);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) run_impl(g, &impls[i]);
    sm_graph_free(g);
    sm_engine_shutdown();
    return tap_done();
}
