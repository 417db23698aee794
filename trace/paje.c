/* Paje traces for ViTE and pajeng: a rank container holding one container per worker; a task
 * is the worker's "Task" state from its start (value: the op, coloured by category) back to
 * "idle" at its end; instants are "Mark" events with a label, counters are variables of the
 * rank, dependencies are links between workers. Paje wants events in time order, so a step's
 * events are buffered and sorted before they are written; definitions (op values, counters)
 * go out as they first appear, ahead of the events that use them. Times are milliseconds. */
#include "trace/writer.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "base/grow.h"
#include "base/phase.h"

/* Kinds in the order they are written when they share a time: a state ends before the next
 * one starts on the same worker. */
enum { PJ_IDLE, PJ_STATE, PJ_VAR, PJ_MARK, PJ_LINK_START, PJ_LINK_END };

typedef struct pj_event {
    int64_t ns;
    uint64_t seq, key;           /* insertion order; link key */
    int kind, container, value;  /* container: worker (the other end for a link's start) */
    double v;
} pj_event;

typedef struct pj_names {
    char **v;
    size_t n, cap;
} pj_names;

struct sm_paje {
    FILE *f;
    int rank;
    pj_event *ev;
    size_t nev, cap;
    uint64_t seq;
    int64_t last_ns;
    pj_names ops, counters, labels;
    int *lanes;                  /* the workers' tids */
    size_t nlanes, cap_lanes;
    int oom;
};

static const char *pj_header =
    "%EventDef PajeDefineContainerType 0\n%  Alias string\n%  Type string\n%  Name string\n"
    "%EndEventDef\n"
    "%EventDef PajeDefineStateType 1\n%  Alias string\n%  Type string\n%  Name string\n"
    "%EndEventDef\n"
    "%EventDef PajeDefineEventType 2\n%  Alias string\n%  Type string\n%  Name string\n"
    "%EndEventDef\n"
    "%EventDef PajeDefineVariableType 3\n%  Alias string\n%  Type string\n%  Name string\n"
    "%  Color color\n%EndEventDef\n"
    "%EventDef PajeDefineLinkType 4\n%  Alias string\n%  Type string\n"
    "%  StartContainerType string\n%  EndContainerType string\n%  Name string\n%EndEventDef\n"
    "%EventDef PajeDefineEntityValue 5\n%  Alias string\n%  Type string\n%  Name string\n"
    "%  Color color\n%EndEventDef\n"
    "%EventDef PajeCreateContainer 6\n%  Time date\n%  Alias string\n%  Type string\n"
    "%  Container string\n%  Name string\n%EndEventDef\n"
    "%EventDef PajeDestroyContainer 7\n%  Time date\n%  Type string\n%  Name string\n"
    "%EndEventDef\n"
    "%EventDef PajeSetState 8\n%  Time date\n%  Type string\n%  Container string\n"
    "%  Value string\n%EndEventDef\n"
    "%EventDef PajeNewEvent 9\n%  Time date\n%  Type string\n%  Container string\n"
    "%  Value string\n%  Label string\n%EndEventDef\n"
    "%EventDef PajeSetVariable 10\n%  Time date\n%  Type string\n%  Container string\n"
    "%  Value double\n%EndEventDef\n"
    "%EventDef PajeStartLink 11\n%  Time date\n%  Type string\n%  Container string\n"
    "%  Value string\n%  StartContainer string\n%  Key string\n%EndEventDef\n"
    "%EventDef PajeEndLink 12\n%  Time date\n%  Type string\n%  Container string\n"
    "%  Value string\n%  EndContainer string\n%  Key string\n%EndEventDef\n"
    "0 CT_Rank 0 \"Rank\"\n"
    "0 CT_Worker CT_Rank \"Worker\"\n"
    "1 ST_Task CT_Worker \"Task\"\n"
    "2 ET_Mark CT_Rank \"Mark\"\n"
    "4 LT_Dep CT_Rank CT_Worker CT_Worker \"Dependency\"\n"
    "5 V_idle ST_Task \"idle\" \"0.9 0.9 0.9\"\n"
    "5 V_dep LT_Dep \"dependency\" \"0 0 0\"\n"
    "5 V_mark ET_Mark \"mark\" \"1 0 0\"\n";

/* A name as a Paje string field: quoted, with quotes and line breaks replaced. */
static void pj_put_str(FILE *f, const char *s)
{
    putc('"', f);
    for (; *s; s++) putc(*s == '"' ? '\'' : (*s == '\n' || *s == '\r') ? ' ' : *s, f);
    putc('"', f);
}

static void pj_put_time(FILE *f, int64_t ns)
{
    if (ns < 0) {
        putc('-', f);
        ns = -ns;
    }
    fprintf(f, "%" PRId64 ".%06d", ns / 1000000, (int)(ns % 1000000));
}

/* Appends a copy of name; its index, -1 when out of memory. */
static int pj_add(pj_names *t, const char *name)
{
    if (sm_grow(&t->v, &t->cap, t->n + 1, sizeof *t->v) || !(t->v[t->n] = strdup(name)))
        return -1;
    return (int)t->n++;
}

/* Index of name in the table, added when missing (*added says so); -1 when out of memory. */
static int pj_intern(pj_names *t, const char *name, int *added)
{
    *added = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] == name || !strcmp(t->v[i], name)) return (int)i;
    *added = 1;
    return pj_add(t, name);
}

static void pj_names_free(pj_names *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    t->n = t->cap = 0;
    t->v = NULL;
}

sm_paje *sm_paje_open(FILE *f, int rank)
{
    sm_paje *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->f = f;
    p->rank = rank;
    fputs(pj_header, f);
    fprintf(f, "6 0.000000 C_rank CT_Rank 0 \"rank %d\"\n", rank);
    return p;
}

void sm_paje_free(sm_paje *p)
{
    if (!p) return;
    pj_names_free(&p->ops);
    pj_names_free(&p->counters);
    pj_names_free(&p->labels);
    free(p->lanes);
    free(p->ev);
    free(p);
}

int sm_paje_lane(sm_paje *p, int tid, const char *name)
{
    if (sm_grow(&p->lanes, &p->cap_lanes, p->nlanes + 1, sizeof *p->lanes)) return p->oom = -1;
    p->lanes[p->nlanes++] = tid;
    fprintf(p->f, "6 0.000000 W%d CT_Worker C_rank ", tid);
    pj_put_str(p->f, name);
    putc('\n', p->f);
    return 0;
}

static int pj_push(sm_paje *p, int64_t ns, int kind, int container, int value, uint64_t key,
                   double v)
{
    if (sm_grow(&p->ev, &p->cap, p->nev + 1, sizeof *p->ev)) return p->oom = -1;
    p->ev[p->nev++] = (pj_event){ns, p->seq++, key, kind, container, value, v};
    return 0;
}

/* The colour of a task category (base/phase.h) as Paje writes it: "r g b" in [0, 1]. */
static void pj_color(const char *cat, char out[32])
{
    int phase = sm_phase_by_name(cat);
    const char *hex = phase < 0 ? SM_PHASE_UNKNOWN_COLOR : sm_phase_info_of(phase)->color;
    unsigned rgb = (unsigned)strtoul(hex + 1, NULL, 16);
    snprintf(out, 32, "%.3g %.3g %.3g", (rgb >> 16) / 255.0, (rgb >> 8 & 0xff) / 255.0,
             (rgb & 0xff) / 255.0);
}

int sm_paje_task(sm_paje *p, const sm_trace_task *t)
{
    int added, op = pj_intern(&p->ops, t->op, &added);
    if (op < 0) return p->oom = -1;
    if (added) {
        char color[32];
        pj_color(t->cat, color);
        fprintf(p->f, "5 v%d ST_Task ", op);
        pj_put_str(p->f, t->op);
        fprintf(p->f, " \"%s\"\n", color);
    }
    if (pj_push(p, t->start_ns, PJ_STATE, t->worker, op, 0, 0)) return -1;
    return pj_push(p, t->end_ns, PJ_IDLE, t->worker, 0, 0, 0);
}

int sm_paje_flow(sm_paje *p, uint64_t id, int from_tid, int64_t from_ns, int to_tid,
                 int64_t to_ns)
{
    if (pj_push(p, from_ns, PJ_LINK_START, from_tid, 0, id, 0)) return -1;
    return pj_push(p, to_ns, PJ_LINK_END, to_tid, 0, id, 0);
}

int sm_paje_counter(sm_paje *p, const char *name, int64_t ts_ns, double value)
{
    int added, c = pj_intern(&p->counters, name, &added);
    if (c < 0) return p->oom = -1;
    if (added) {
        fprintf(p->f, "3 V%d CT_Rank ", c);
        pj_put_str(p->f, name);
        fputs(" \"0 0 1\"\n", p->f);
    }
    return pj_push(p, ts_ns, PJ_VAR, 0, c, 0, value);
}

int sm_paje_instant(sm_paje *p, const char *name, int64_t ts_ns)
{
    int label = pj_add(&p->labels, name);
    if (label < 0) return p->oom = -1;
    return pj_push(p, ts_ns, PJ_MARK, 0, label, 0, 0);
}

static int pj_cmp(const void *a, const void *b)
{
    const pj_event *x = a, *y = b;
    if (x->ns != y->ns) return x->ns < y->ns ? -1 : 1;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One event line: the event number, the time, the fields. */
static void pj_write_event(sm_paje *p, const pj_event *e)
{
    static const int ids[] = {8, 8, 10, 9, 11, 12};
    FILE *f = p->f;
    fprintf(f, "%d ", ids[e->kind]);
    pj_put_time(f, e->ns);
    switch (e->kind) {
    case PJ_STATE: fprintf(f, " ST_Task W%d v%d\n", e->container, e->value); break;
    case PJ_IDLE: fprintf(f, " ST_Task W%d V_idle\n", e->container); break;
    case PJ_VAR: fprintf(f, " V%d C_rank %.17g\n", e->value, e->v); break;
    case PJ_MARK:
        fputs(" ET_Mark C_rank V_mark ", f);
        pj_put_str(f, p->labels.v[e->value]);
        putc('\n', f);
        break;
    default: /* a link's start or end */
        fprintf(f, " LT_Dep C_rank V_dep W%d k%" PRIu64 "\n", e->container, e->key);
    }
    if (e->ns > p->last_ns) p->last_ns = e->ns;
}

int sm_paje_flush(sm_paje *p)
{
    if (p->oom) return -1;
    qsort(p->ev, p->nev, sizeof *p->ev, pj_cmp);
    for (size_t i = 0; i < p->nev; i++) pj_write_event(p, &p->ev[i]);
    p->nev = 0;
    pj_names_free(&p->labels);
    return 0;
}

int sm_paje_finish(sm_paje *p)
{
    if (sm_paje_flush(p)) return -1;
    for (size_t i = 0; i < p->nlanes; i++) {
        fputs("7 ", p->f);
        pj_put_time(p->f, p->last_ns);
        fprintf(p->f, " CT_Worker W%d\n", p->lanes[i]);
    }
    fputs("7 ", p->f);
    pj_put_time(p->f, p->last_ns);
    fputs(" CT_Rank C_rank\n", p->f);
    return 0;
}
