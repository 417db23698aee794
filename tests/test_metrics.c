/* Tests of io/metrics.c: metrics.jsonl lines (compact, step and kind first, null for non-finite
 * values, reserved keys refused), truncation on resume (later steps and a partial last line
 * dropped, never two lines for a step), and the SVG loss curve (well-formed XML with the
 * polylines, markers, axis labels, escaped title and legend). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/metrics.h"
#include "tests/tap.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/starmoe-metrics-XXXXXX";
static char jsonl[512], svg[512];

/* The whole file, malloc'd ("" when unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n = 0;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    char *s = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
    if (f && s && n > 0) {
        rewind(f);
        if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    }
    if (f) fclose(f);
    return s;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* Counts lines of `kind` at `step` in the jsonl file; -1 when a line does not parse. */
static int lines_at(int64_t step, const char *kind)
{
    FILE *f = fopen(jsonl, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o) n = -1000;
        else if (json_integer_value(json_object_get(o, "step")) == step &&
                 strcmp(json_string_value(json_object_get(o, "kind")), kind) == 0)
            n++;
        json_decref(o);
    }
    if (f) fclose(f);
    return n;
}

static int write_train(sm_metrics *m, int64_t step, double loss, sm_error *err)
{
    sm_metric kv[] = {{"loss", loss}, {"lr", 3e-3}, {"tokens_per_s", 1234.5}};
    return sm_metrics_write(m, "train", step, kv, 3, err);
}

static void test_append(void)
{
    sm_metrics m;
    sm_error err = {{0}};
    int r = sm_metrics_open(&m, jsonl, -1, &err);
    for (int s = 1; s <= 10 && r == 0; s++) {
        r = write_train(&m, s, 5.0 - 0.25 * s, &err);
        if (r == 0 && s % 5 == 0) {
            sm_metric kv[] = {{"loss", 4.5 - 0.1 * s}};
            r = sm_metrics_write(&m, "eval", s, kv, 1, &err);
        }
    }
    tap_ok(r == 0, "12 lines appended %s", err.msg);
    char *text = slurp(jsonl);
    tap_ok(count(text, "\n") == 12, "one line per record (%d)", count(text, "\n"));
    tap_ok(strncmp(text, "{\"step\":1,\"kind\":\"train\",\"loss\":4.75,\"lr\":0.003,"
                         "\"tokens_per_s\":1234.5}\n", 66) == 0,
           "compact line, step and kind first: %.66s", text);
    free(text);
    tap_ok(lines_at(5, "eval") == 1 && lines_at(5, "train") == 1, "train and eval lines at step 5");

    sm_metric odd[] = {{"loss", NAN}, {"grad_norm", INFINITY}};
    r = sm_metrics_write(&m, "train", 11, odd, 2, &err);
    text = slurp(jsonl);
    tap_ok(r == 0 && strstr(text, "{\"step\":11,\"kind\":\"train\",\"loss\":null,"
                                  "\"grad_norm\":null}\n"),
           "non-finite values are written as null");
    free(text);
    sm_metric reserved[] = {{"step", 1}};
    tap_ok(sm_metrics_write(&m, "train", 12, reserved, 1, &err) == -1 &&
               strstr(err.msg, jsonl) && strstr(err.msg, "'step'"),
           "reserved key -> %s", err.msg);
    sm_metric twice[] = {{"loss", 1}, {"loss", 2}};
    tap_ok(sm_metrics_write(&m, "train", 12, twice, 2, &err) == -1 && strstr(err.msg, "'loss'"),
           "repeated key -> %s", err.msg);
    tap_ok(sm_metrics_close(&m, &err) == 0, "close");
    tap_ok(sm_metrics_write(&m, "train", 12, twice, 1, &err) == -1 && strstr(err.msg, "closed"),
           "writing after close -> %s", err.msg);
}

static void test_resume(void)
{
    sm_metrics m;
    sm_error err = {{0}};
    int r = sm_metrics_open(&m, jsonl, 6, &err);
    if (r == 0) r = write_train(&m, 7, 3.2, &err);
    if (r == 0) r = sm_metrics_close(&m, &err);
    tap_ok(r == 0, "reopen resuming at step 6 and append step 7 %s", err.msg);
    int dup = 0;
    for (int s = 1; s <= 7; s++) dup |= lines_at(s, "train") != 1;
    tap_ok(!dup && lines_at(5, "eval") == 1 && lines_at(10, "eval") == 0 &&
               lines_at(8, "train") == 0 && lines_at(11, "train") == 0,
           "steps 1..7 once each, later lines gone");

    FILE *f = fopen(jsonl, "a");
    fputs("{\"step\":8,\"kind\":\"tr", f);
    fclose(f);
    r = sm_metrics_open(&m, jsonl, 7, &err);
    if (r == 0) r = write_train(&m, 8, 3.1, &err);
    sm_metrics_close(&m, NULL);
    char *text = slurp(jsonl);
    tap_ok(r == 0 && lines_at(8, "train") == 1 && count(text, "\n") == 9 &&
               text[strlen(text) - 1] == '\n',
           "a partial last line (a crash mid-write) is dropped %s", err.msg);
    free(text);

    r = sm_metrics_open(&m, jsonl, -1, &err);
    if (r == 0) r = write_train(&m, 9, 3.0, &err);
    sm_metrics_close(&m, NULL);
    tap_ok(r == 0 && lines_at(8, "train") == 1 && lines_at(9, "train") == 1,
           "resume_step < 0 keeps everything");

    f = fopen(jsonl, "a");
    fputs("not json\n", f);
    fclose(f);
    tap_ok(sm_metrics_open(&m, jsonl, 9, &err) == -1 && strstr(err.msg, jsonl) &&
               strstr(err.msg, ":11:"),
           "a malformed line names file and line: %s", err.msg);
    unlink(jsonl);
    tap_ok(sm_metrics_open(&m, jsonl, 5, &err) == 0 && sm_metrics_close(&m, &err) == 0,
           "resuming without a file starts one %s", err.msg);
}

/* A minimal XML well-formedness check: every tag closes in order, attributes are quoted. */
static int well_formed(const char *s)
{
    char stack[64][32];
    int depth = 0;
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        const char *end = strchr(p, '>');
        if (!end || count(p, "\"") % 2) return 0;
        int closing = p[1] == '/', selfclose = end[-1] == '/';
        size_t n = strcspn(p + 1 + closing, " />");
        if (n >= 32) return 0;
        if (closing) {
            if (depth == 0 || strncmp(stack[depth - 1], p + 2, n) || stack[depth - 1][n]) return 0;
            depth--;
        } else if (!selfclose) {
            if (depth == 64) return 0;
            snprintf(stack[depth++], 32, "%.*s", (int)n, p + 1);
        }
        p = end;
    }
    return depth == 0;
}

static void test_svg(void)
{
    sm_metrics m;
    sm_error err = {{0}};
    tu_rng rng;
    tu_seed(&rng, 7);
    int r = sm_metrics_open(&m, jsonl, -1, &err);
    for (int s = 1; s <= 600 && r == 0; s++) {
        double loss = 2.1 + 4.1 * exp(-s / 90.0) + 0.08 * tu_normal(&rng);
        r = write_train(&m, s, loss, &err);
        if (r == 0 && s % 50 == 0) {
            sm_metric kv[] = {{"val_loss", 2.25 + 4.0 * exp(-s / 90.0)}, {"ppl", 10}};
            r = sm_metrics_write(&m, "eval", s, kv, 2, &err);
        }
    }
    sm_metrics_close(&m, NULL);
    if (r == 0) r = sm_metrics_plot_svg(jsonl, svg, "tiny <MoE> & friends", &err);
    char *text = slurp(svg);
    tap_ok(r == 0 && strncmp(text, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0 &&
               strstr(text, "</svg>\n"),
           "loss.svg written %s", err.msg);
    tap_ok(well_formed(text), "well-formed XML");
    tap_ok(count(text, "<polyline") == 2 && count(text, "<circle") == 13,
           "train and val polylines, 12 markers + 1 in the legend");
    tap_ok(strstr(text, ">step</text>") && strstr(text, ">loss</text>") &&
               strstr(text, "train loss") && strstr(text, "val loss"),
           "axis labels and legend");
    tap_ok(strstr(text, "tiny &lt;MoE&gt; &amp; friends") != NULL, "the title is escaped");
    tap_ok(!strstr(text, "<script") && !strstr(text, "nan") && !strstr(text, "inf"),
           "no scripts, no nan/inf coordinates");
    free(text);

    FILE *f = fopen(jsonl, "w");
    fclose(f);
    r = sm_metrics_plot_svg(jsonl, svg, NULL, &err);
    text = slurp(svg);
    tap_ok(r == 0 && well_formed(text) && strstr(text, "no loss values yet") &&
               strstr(text, ">Loss</text>"),
           "an empty file gives an empty chart %s", err.msg);
    free(text);
    f = fopen(jsonl, "w");
    fputs("{\"step\":3,\"kind\":\"eval\",\"val_loss\":2.5}\n", f);
    fclose(f);
    r = sm_metrics_plot_svg(jsonl, svg, NULL, &err);
    text = slurp(svg);
    tap_ok(r == 0 && well_formed(text) && count(text, "<circle") == 2,
           "a single eval point %s", err.msg);
    free(text);
    r = sm_metrics_open(&m, jsonl, -1, &err);
    for (int s = 1; s <= 20000 && r == 0; s++) r = write_train(&m, s, 3 + tu_normal(&rng), &err);
    sm_metrics_close(&m, NULL);
    if (r == 0) r = sm_metrics_plot_svg(jsonl, svg, NULL, &err);
    text = slurp(svg);
    tap_ok(r == 0 && well_formed(text) && strlen(text) < 60000,
           "20000 noisy steps: min/max per pixel column keeps the SVG small (%zu bytes) %s",
           strlen(text), err.msg);
    free(text);
    tap_ok(sm_metrics_plot_svg("/nonexistent-starmoe/m.jsonl", svg, NULL, &err) == -1 &&
               strstr(err.msg, "/nonexistent-starmoe/m.jsonl"),
           "a missing metrics file -> %s", err.msg);
}

int main(void)
{
    if (!mkdtemp(dir)) return tap_ok(0, "mkdtemp"), tap_done();
    snprintf(jsonl, sizeof jsonl, "%s/metrics.jsonl", dir);
    snprintf(svg, sizeof svg, "%s/loss.svg", dir);
    test_append();
    test_resume();
    test_svg();
    unlink(jsonl);
    unlink(svg);
    rmdir(dir);
    return tap_done();
}
