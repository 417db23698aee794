/* Training metrics: a metrics.jsonl appender (one compact JSON object per line,
 *   {"step":100,"kind":"train","loss":3.21,"lr":0.003,...}
 * flushed line by line) and an SVG loss curve drawn from that file: the "loss" of "train" lines
 * as a thin line, the "val_loss" of "eval" lines as markers joined by a line. */
#ifndef STARMOE_METRICS_H
#define STARMOE_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <starmoe/error.h>

typedef struct sm_metrics {
    FILE *f;
    char *path;
} sm_metrics;

/* One value of a line. Non-finite values are written as null. */
typedef struct sm_metric {
    const char *key;
    double value;
} sm_metric;

/* Opens path for appending (created when missing). resume_step >= 0: the run resumes after that
 * step, so every line whose step is above it is dropped first (the file is rewritten atomically),
 * as is a partial last line left by a crash; the file then never holds two lines for one step
 * and kind. resume_step < 0: nothing is dropped. A line that is not a JSON object with an integer
 * "step" is an error naming the file and the line number. */
int sm_metrics_open(sm_metrics *m, const char *path, int64_t resume_step, sm_error *err);

/* Appends {"step": step, "kind": kind, key: value, ...} and flushes. Keys "step" and "kind" are
 * reserved. */
int sm_metrics_write(sm_metrics *m, const char *kind, int64_t step, const sm_metric *kv, int n,
                     sm_error *err);

/* Closes; reports a failed final flush. m may be already closed. */
int sm_metrics_close(sm_metrics *m, sm_error *err);

/* Reads a metrics.jsonl and writes svg_path atomically: a self-contained SVG (no scripts) with
 * the train and eval loss against the step, ticked and labelled axes, a title (NULL: "Loss") and
 * a legend. A file without loss values gives a chart that says so. */
int sm_metrics_plot_svg(const char *jsonl_path, const char *svg_path, const char *title,
                        sm_error *err);

#endif
