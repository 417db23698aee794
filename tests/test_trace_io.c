/* Tests of the trace io (trace/) on a small hand-made trace whose summary is known:
 * the Chrome writer's output read back (names with quotes and line breaks, null predictions,
 * lanes, marks, counters), every summary figure (per-op totals and shares, per-worker busy and
 * idle, the stage bubble, the critical path over two step graphs, the compute/communication
 * overlap), the Paje writer's time order, the merge of two ranks, and --trace-steps parsing.
 * Hostile input: outputs that are one of the inputs are refused, a failed merge leaves no
 * output, absurd times and dependencies are refused naming the event and the field, and the
 * critical path never exceeds the graphs' span.
 *
 * The trace (times in us, two workers, graph 0 then graph 1):
 *   A w0 [0,10]  forward        id 0            predicted 5
 *   B w1 [0,4]   communication  id 1
 *   C w0 [10,20] forward        id 2  deps 0
 *   D w1 [12,16] communication  id 3  deps 0
 *   E w1 [20,25] backward-input id 4  deps 2 3
 *   F w1 [30,32] communication  id 5
 *   G w0 [40,45] forward        id 6            (graph 1)
 *   H w1 [45,50] forward        id 7  deps 6    (graph 1) */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace/writer.h"
#include "trace/read.h"
#include "tests/tap.h"

static char dir[] = "/tmp/starmoe-trace-XXXXXX";

typedef struct spec {
    const char *op, *cat;
    int worker;
    double start, end;
    int graph;
    uint64_t deps[2];
    int ndeps;
} spec;

static const spec tasks[] = {
    {"fwd \"op\"\n", "forward", 0, 0, 10, 0, {0}, 0},
    {"comm_op", "communication", 1, 0, 4, 0, {0}, 0},
    {"fwd \"op\"\n", "forward", 0, 10, 20, 0, {0}, 1},
    {"comm_op", "communication", 1, 12, 16, 0, {0}, 1},
    {"bwd_op", "backward-input", 1, 20, 25, 0, {2, 3}, 2},
    {"comm_op", "communication", 1, 30, 32, 0, {0}, 0},
    {"fwd \"op\"\n", "forward", 0, 40, 45, 1, {0}, 0},
    {"fwd \"op\"\n", "forward", 1, 45, 50, 1, {6}, 1},
};
#define NTASKS (int)(sizeof tasks / sizeof *tasks)

static int write_trace(const char *path, sm_trace_format format)
{
    sm_error err;
    sm_trace_meta meta[] = {{"command", "test"}, {"scheduler", "none"}};
    sm_trace_writer *w = sm_trace_writer_open(path, format, 0, meta, 2, &err);
    if (!w) return -1;
    int rc = sm_trace_writer_lane(w, 0, "CPU \"0\"") | sm_trace_writer_lane(w, 1, "CPU 1");
    sm_trace_arg args[] = {{"step", NULL, 1}, {"tasks", NULL, NTASKS}};
    rc |= sm_trace_writer_instant(w, "step 1", "step", 0, args, 2);
    for (int i = 0; i < NTASKS; i++) {
        const spec *s = &tasks[i];
        sm_trace_task t = {.id = (uint64_t)i, .graph = s->graph, .step = 1, .name = s->op,
                           .op = s->op, .cat = s->cat, .micro = -1, .layer = i % 3,
                           .expert = -1, .worker = s->worker, .submit_ns = 0, .ready_ns = 0,
                           .start_ns = (int64_t)(s->start * 1000),
                           .end_ns = (int64_t)(s->end * 1000),
                           .predicted_us = i == 0 ? 5 : NAN, .flops = 1e6, .bytes = 4096,
                           .deps = s->deps, .ndeps = s->ndeps};
        rc |= sm_trace_writer_task(w, &t);
    }
    rc |= sm_trace_writer_flow(w, 0, 0, 5000, 0, 15000);
    rc |= sm_trace_writer_counter(w, "ready", "tasks", 12000, 3);
    rc |= sm_trace_writer_counter(w, "ready", "tasks", 1000, 1);
    if (rc) return -1;
    return sm_trace_writer_close(w, &err);
}

static void test_read_back(const char *path)
{
    sm_trace_data d;
    sm_error err;
    char buf[64];
    int rc = sm_trace_load(&d, path, &err);
    tap_ok(rc == 0, "the written trace loads (%s)", rc ? err.msg : "ok");
    tap_ok(d.nslices == NTASKS && d.nlanes == 2, "8 slices on 2 lanes (%zu, %d)", d.nslices,
           d.nlanes);
    tap_ok(d.nslices == NTASKS && !strcmp(d.ops.v[d.slices[0].op], "fwd \"op\"\n") &&
               !strcmp(sm_trace_lane_name(&d, d.slices[0].lane, buf, sizeof buf), "CPU \"0\""),
           "quotes and line breaks survive in op and lane names");
    tap_ok(d.nslices == NTASKS && d.slices[0].predicted == 5 && isnan(d.slices[1].predicted),
           "predictions read back, null as none");
    tap_ok(d.nslices == NTASKS && d.slices[4].ndeps == 2 && d.deps[d.slices[4].deps_at + 1] == 3,
           "dependencies read back");
    tap_ok(d.nmarks == 1 && d.marks[0].tasks == NTASKS && d.npoints == 2 && d.counters.n == 1 &&
               !strcmp(d.counters.v[0], "ready tasks"),
           "marks and counters read back");
    tap_ok(!strcmp(sm_trace_meta_str(&d, "command"), "test"), "metadata read back");
    sm_trace_data_free(&d);
}

static void test_summary(const char *path)
{
    sm_trace_data d;
    sm_trace_stats s;
    sm_error err;
    if (sm_trace_load(&d, path, &err) || sm_trace_summarise(&d, &s, &err)) {
        tap_ok(0, "summary: %s", err.msg);
        return;
    }
    tap_close(s.makespan, 50, 1e-9, "makespan: first start to last end");
    tap_close(s.busy, 45, 1e-9, "busy time: the sum of durations");
    tap_ok(s.nops == 3 && !strcmp(d.ops.v[s.ops[0].op], "fwd \"op\"\n") && s.ops[0].count == 4 &&
               fabs(s.ops[0].total - 30) < 1e-9 && fabs(s.ops[0].share - 30.0 / 45) < 1e-9,
           "op families by total time, with count, total and share");
    tap_ok(s.ops[0].npredicted == 1 && s.ops[0].predicted == 5 && s.ops[0].measured == 10,
           "prediction against measurement, over the predicted tasks");
    tap_ok(s.nworkers == 2 && fabs(s.workers[0].busy - 25) < 1e-9 &&
               fabs(s.workers[0].idle - 25) < 1e-9 && fabs(s.workers[1].busy - 20) < 1e-9 &&
               fabs(s.workers[1].idle - 30) < 1e-9,
           "per worker: busy and idle (they add up to the makespan)");
    tap_ok(s.nstages == 1 && s.stages[0].workers == 2 && fabs(s.stages[0].span - 42) < 1e-9 &&
               fabs(s.stages[0].bubble - 39) < 1e-9,
           "stage bubble: idle time inside each graph's span (29 + 10 us)");
    tap_ok(s.graphs == 2 && fabs(s.critical_path - 35) < 1e-9 && s.critical_tasks == 5 &&
               fabs(s.graphs_span - 42) < 1e-9,
           "critical path: A-C-E (25 us) + G-H (10 us), against spans 32 + 10 us (got %g, %zu)",
           s.critical_path, s.critical_tasks);
    tap_ok(fabs(s.comm - 10) < 1e-9 && fabs(s.comm_overlapped - 8) < 1e-9,
           "overlap: 8 of 10 us of communication while another worker computed (got %g of %g)",
           s.comm_overlapped, s.comm);
    sm_trace_stats_free(&s);
    sm_trace_data_free(&d);
}

/* Paje events must come in time order (the writer sorts a batch). */
static void test_paje(const char *path)
{
    tap_ok(write_trace(path, SM_TRACE_PAJE) == 0, "Paje trace written");
    FILE *f = fopen(path, "r");
    char line[512];
    double last = -1;
    int events = 0, sorted = 1, states = 0;
    while (f && fgets(line, sizeof line, f)) {
        int id;
        double t;
        if (sscanf(line, "%d %lf", &id, &t) != 2 || id < 8) continue;
        events++;
        states += id == 8;
        sorted &= t >= last;
        last = t;
    }
    if (f) fclose(f);
    tap_ok(events > 0 && sorted, "Paje events in time order (%d events)", events);
    tap_ok(states == 2 * NTASKS, "a state per task start and end (%d)", states);
}

static void test_merge(const char *path, const char *merged)
{
    sm_error err;
    const char *inputs[] = {path, path};
    sm_trace_data d;
    sm_trace_stats s;
    int rc = sm_trace_merge(inputs, 2, merged, &err);
    tap_ok(rc == 0, "merge of two ranks (%s)", rc ? err.msg : "ok");
    if (rc || sm_trace_load(&d, merged, &err)) return;
    int pids = d.nlanes == 4 && d.lanes[0].pid == 0 && d.lanes[3].pid == 1;
    tap_ok(d.nslices == 2 * NTASKS && pids, "both ranks' slices, under pids 0 and 1");
    tap_ok(d.nslices == 2 * NTASKS && d.slices[NTASKS].id == NTASKS &&
               d.deps[d.slices[NTASKS + 4].deps_at] == NTASKS + 2,
           "the second rank's task ids and dependencies are shifted");
    tap_ok(sm_trace_summarise(&d, &s, &err) == 0 && fabs(s.critical_path - 35) < 1e-9 &&
               fabs(s.busy - 90) < 1e-9,
           "the merged trace summarises (critical path per graph across ranks)");
    sm_trace_stats_free(&s);
    sm_trace_data_free(&d);
}

/* The whole file, malloc'd (NULL when unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = calloc(1, (size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Files left in the test folder besides the ones it keeps (t.json, t.paje, merged.json). */
static int stray_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "t.json") &&
             strcmp(e->d_name, "t.paje") && strcmp(e->d_name, "merged.json");
    if (d) closedir(d);
    return d ? n : -1;
}

/* An output that is one of the inputs (by name, by another name, through a link) is refused
 * and the input is left as it was. */
static void test_output_is_input(const char *path)
{
    char other[600], link[600];
    sm_error err;
    char *before = slurp(path);
    snprintf(other, sizeof other, "%s/../%s/t.json", dir, strrchr(dir, '/') + 1);
    snprintf(link, sizeof link, "%s/link.json", dir);
    int linked = symlink("t.json", link) == 0;
    const char *same[] = {path, other, link};
    for (int i = 0; i < 3; i++) {
        const char *inputs[] = {path, path};
        int rc = sm_trace_merge(inputs, 2, same[i], &err);
        tap_ok(rc != 0 && strstr(err.msg, "the output is the input"),
               "merge -o %s (an input) is refused (%s)", same[i], rc ? err.msg : "accepted");
        rc = sm_trace_html(path, same[i], &err);
        tap_ok(rc != 0 && strstr(err.msg, "the output is the input"),
               "html -o %s (its input) is refused (%s)", same[i], rc ? err.msg : "accepted");
    }
    char *after = slurp(path);
    tap_ok(linked && before && after && !strcmp(before, after), "the input is unchanged");
    unlink(link);
    free(before);
    free(after);
}

/* A merge that fails on its second input leaves no output (nor a temporary file), and keeps
 * an existing output as it was. */
static void test_failed_merge(const char *path, const char *merged)
{
    char bad[600], fresh[600];
    sm_error err;
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.json", dir);
    write_text(bad, "{\"traceEvents\":[{\"name\":\"x\",\"ph\":\"X\"},\n");
    const char *inputs[] = {path, bad};
    int rc = sm_trace_merge(inputs, 2, fresh, &err);
    tap_ok(rc != 0 && access(fresh, F_OK) != 0, "a failed merge creates no output (%s)",
           rc ? err.msg : "accepted");
    char *before = slurp(merged);
    rc = sm_trace_merge(inputs, 2, merged, &err);
    char *after = slurp(merged);
    tap_ok(rc != 0 && before && after && !strcmp(before, after),
           "a failed merge leaves the existing output as it was");
    unlink(bad);
    tap_ok(stray_files() == 0, "no temporary file is left behind");
    free(before);
    free(after);
}

/* Events no run writes: each refused, naming the event and the field. */
static void test_absurd_events(void)
{
    static const struct {
        const char *events, *want;
    } cases[] = {
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":-5,\"dur\":1,\"pid\":0,\"tid\":0}",
         "event 0 (\"a\"): \"ts\" is -5 us"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":1e16,\"dur\":1,\"pid\":0,\"tid\":0}",
         "event 0 (\"a\"): \"ts\" is 1e+16 us"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":5,\"dur\":-2,\"pid\":0,\"tid\":0}",
         "event 0 (\"a\"): \"dur\" is -2 us"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":9e14,\"dur\":9e14,\"pid\":0,\"tid\":0}",
         "event 0 (\"a\"): the task ends at 1.8e+15 us"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":5,\"dur\":1,\"pid\":0,\"tid\":0,"
         "\"args\":{\"ready_us\":7}}", "event 0 (\"a\"): \"ready_us\" 7.000 is after the start"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":5,\"dur\":1,\"pid\":0,\"tid\":0,"
         "\"args\":{\"submit_us\":4,\"ready_us\":3}}", "\"submit_us\" 4.000 is after"},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":5,\"dur\":1,\"pid\":0,\"tid\":0,"
         "\"args\":{\"flops\":-1}}", "event 0 (\"a\"): \"flops\" is -1"},
        {"{\"name\":\"r\",\"ph\":\"C\",\"ts\":-1,\"pid\":0,\"args\":{\"n\":1}}",
         "event 0 (\"r\"): \"ts\" is -1 us"},
        {"{\"name\":\"m\",\"ph\":\"i\",\"ts\":2e15,\"pid\":0}", "event 0 (\"m\"): \"ts\""},
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":NaN,\"dur\":1,\"pid\":0,\"tid\":0}",
         "event 0"},
        /* a dependency on another step graph's task */
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":0,\"dur\":10,\"pid\":0,\"tid\":0,"
         "\"args\":{\"id\":0,\"graph\":0}},\n{\"name\":\"b\",\"ph\":\"X\",\"ts\":10,"
         "\"dur\":10,\"pid\":0,\"tid\":0,\"args\":{\"id\":1,\"graph\":1,\"deps\":[0]}}",
         ":2: event 1 (op \"b\"): \"deps\": task 0 is in step graph 0"},
        /* a dependency that ends after its consumer starts */
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":0,\"dur\":10,\"pid\":0,\"tid\":0,"
         "\"args\":{\"id\":0}},\n{\"name\":\"b\",\"ph\":\"X\",\"ts\":0,\"dur\":10,"
         "\"pid\":0,\"tid\":1,\"args\":{\"id\":1,\"deps\":[0]}}",
         "event 1 (op \"b\"): \"deps\": task 0 ends at 10.000 us, after this task starts"},
        /* two tasks with one id */
        {"{\"name\":\"a\",\"ph\":\"X\",\"ts\":0,\"dur\":1,\"pid\":0,\"tid\":0,"
         "\"args\":{\"id\":3}},{\"name\":\"b\",\"ph\":\"X\",\"ts\":1,\"dur\":1,\"pid\":0,"
         "\"tid\":0,\"args\":{\"id\":3}}", "event 1 (op \"b\"): \"id\" 3 is also the id of "
         "event 0"},
    };
    char path[600], text[1024];
    snprintf(path, sizeof path, "%s/absurd.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sm_trace_data d;
        sm_error err = {{0}};
        snprintf(text, sizeof text, "{\"traceEvents\":[%s]}\n", cases[i].events);
        write_text(path, text);
        int rc = sm_trace_load(&d, path, &err);
        tap_ok(rc != 0 && strstr(err.msg, cases[i].want), "refused: %s (%s)", cases[i].want,
               rc ? err.msg : "accepted");
        sm_trace_data_free(&d);
    }
    unlink(path);
}

/* The critical path is summed per step graph and never exceeds the graphs' span, even for data
 * the loader would refuse: A [0,10] in graph 0 and B [10,20] in graph 1 depending on A (the
 * chain A-B counted for graph 1 on top of A for graph 0 gave 30 us against a span of 20), and
 * B [0,10] depending on A [0,10] in one graph (20 us of chain in a 10 us span). */
static void test_critical_within_span(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/chain.json", dir);
    write_text(path, "{\"traceEvents\":[{\"name\":\"a\",\"ph\":\"X\",\"ts\":0,\"dur\":10,"
                     "\"pid\":0,\"tid\":0,\"args\":{\"id\":0}},{\"name\":\"b\",\"ph\":\"X\","
                     "\"ts\":10,\"dur\":10,\"pid\":0,\"tid\":1,\"args\":{\"id\":1,"
                     "\"deps\":[0]}}]}\n");
    sm_trace_data d;
    sm_trace_stats s;
    sm_error err;
    int rc = sm_trace_load(&d, path, &err);
    tap_ok(rc == 0, "a two-task chain loads (%s)", rc ? err.msg : "ok");
    if (rc) return;
    d.slices[1].graph = 1;
    rc = sm_trace_summarise(&d, &s, &err);
    tap_ok(rc == 0 && s.graphs == 2 && s.critical_path <= s.graphs_span &&
               fabs(s.critical_path - 20) < 1e-9,
           "a chain does not cross step graphs (critical path %g us, span %g us)",
           s.critical_path, s.graphs_span);
    sm_trace_stats_free(&s);
    d.slices[1].graph = 0;
    d.slices[1].ts = 0;
    rc = sm_trace_summarise(&d, &s, &err);
    tap_ok(rc == 0 && s.critical_path <= s.graphs_span && fabs(s.graphs_span - 10) < 1e-9,
           "overlapping dependent tasks: critical path %g us within the span %g us",
           s.critical_path, s.graphs_span);
    sm_trace_stats_free(&s);
    sm_trace_data_free(&d);
    unlink(path);
}

static void test_steps(void)
{
    static const struct {
        const char *text;
        int64_t a, b;
    } good[] = {{"2:5", 2, 5}, {"3:", 3, -1}, {":4", 0, 4}, {"7", 7, 7}, {"0:0", 0, 0}};
    static const char *bad[] = {"5:2", "x", "1:2:3", "", "-1:3", "2:x", "1 :2"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        sm_trace_opts o = SM_TRACE_OPTS_DEFAULT;
        sm_error err;
        int rc = sm_trace_parse_steps(good[i].text, &o, &err);
        tap_ok(rc == 0 && o.first_step == good[i].a && o.last_step == good[i].b,
               "--trace-steps '%s' = %lld..%lld", good[i].text, (long long)good[i].a,
               (long long)good[i].b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sm_trace_opts o = SM_TRACE_OPTS_DEFAULT;
        sm_error err;
        tap_ok(sm_trace_parse_steps(bad[i], &o, &err) != 0 && strstr(err.msg, "--trace-steps"),
               "--trace-steps '%s' is refused", bad[i]);
    }
}

int main(void)
{
    char path[512], paje[512], merged[512];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/t.json", dir);
    snprintf(paje, sizeof paje, "%s/t.paje", dir);
    snprintf(merged, sizeof merged, "%s/merged.json", dir);
    tap_ok(write_trace(path, SM_TRACE_CHROME) == 0, "Chrome trace written");
    test_read_back(path);
    test_summary(path);
    test_paje(paje);
    test_merge(path, merged);
    test_output_is_input(path);
    test_failed_merge(path, merged);
    test_absurd_events();
    test_critical_within_span();
    test_steps();
    unlink(path);
    unlink(paje);
    unlink(merged);
    rmdir(dir);
    return tap_done();
}
