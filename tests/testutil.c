/* Shared helpers of the test programs (see testutil.h). */
#include "tests/testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starmoe/config.h>
#include "io/checkpoint.h"

void tu_seed(tu_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double tu_normal(tu_rng *r)
{
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill(tu_rng *r, float *x, size_t n, float std)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * tu_normal(r));
}

float *tu_alloc_randn(tu_rng *r, size_t n, float std)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    tu_fill(r, x, n, std);
    return x;
}

float *tu_alloc_zero(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

double tu_max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

double tu_rel_frob(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}

double tu_fd_check(float *x, const float *grad, size_t n, size_t nprobe, double h, double floor,
                   tu_loss_fn loss, void *ctx)
{
    size_t stride = (nprobe >= n || nprobe == 0) ? 1 : n / nprobe;
    double worst_abs = 0, scale = floor;
    for (size_t i = 0; i < n; i += stride) {
        float keep = x[i];
        x[i] = (float)(keep + h);
        double lp = loss(ctx);
        x[i] = (float)(keep - h);
        double lm = loss(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double e = fabs(fd - grad[i]);
        if (e > worst_abs || isnan(e)) worst_abs = isnan(e) ? INFINITY : e;
        if (fabs(fd) > scale) scale = fabs(fd);
    }
    return worst_abs / scale;
}

/* Appends "name": {"size": N, "crc32c": "hex"} for dir/name to out. */
static int tu_manifest_entry(FILE *out, const char *dir, const char *name, int first)
{
    char path[4200], buf[65536];
    size_t n;
    long size = 0;
    uint32_t crc = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return printf("# %s: cannot read\n", path), -1;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crc = sm_crc32c(crc, buf, n);
        size += (long)n;
    }
    fclose(f);
    fprintf(out, "%s\"%s\": {\"size\": %ld, \"crc32c\": \"%08x\"}", first ? "" : ", ", name,
            size, (unsigned)crc);
    return 0;
}

int tu_ckpt_reseal(const char *dir, int64_t step)
{
    struct dirent **names;
    char path[4200], *text = NULL;
    size_t len = 0;
    int n = scandir(dir, &names, NULL, alphasort), rc = n < 0 ? -1 : 0, first = 1;
    FILE *out = open_memstream(&text, &len);
    if (!out) rc = -1;
    if (out)
        fprintf(out, "{\"format\": \"starmoe-checkpoint\", \"version\": 1, \"step\": %lld, "
                     "\"files\": {", (long long)step);
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (rc == 0 && name[0] != '.' && strcmp(name, "manifest.json") != 0) {
            rc = tu_manifest_entry(out, dir, name, first);
            first = 0;
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    if (out) {
        fprintf(out, "}}\n");
        fclose(out);
    }
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = rc == 0 ? fopen(path, "w") : NULL;
    if (f && fwrite(text, 1, len, f) != len) rc = -1;
    if (!f || fclose(f) != 0) rc = -1;
    if (rc) printf("# %s: cannot reseal\n", dir);
    free(text);
    return rc;
}

const char *tu_srcdir(void)
{
    const char *s = getenv("STARMOE_SRCDIR");
    return s && *s ? s : "..";
}

sm_config tu_tiny_config(void)
{
    sm_config c;
    sm_error err;
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/fixtures/dsv3-tiny-a/config.json", tu_srcdir());
    if (sm_config_load_json(&c, path, &err)) printf("# %s\n", err.msg);
    return c;
}
