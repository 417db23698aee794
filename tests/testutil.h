/* Shared helpers of the test programs: a seeded RNG, random fills, comparisons, and a
 * central finite-difference gradient check driven by a scalar loss callback. */
#ifndef STARMOE_TESTUTIL_H
#define STARMOE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct tu_rng { uint64_t s; } tu_rng;

void tu_seed(tu_rng *r, uint64_t seed);
double tu_uniform(tu_rng *r);                      /* [0, 1) */
double tu_normal(tu_rng *r);                       /* N(0, 1) */
void tu_fill(tu_rng *r, float *x, size_t n, float std);
float *tu_alloc_randn(tu_rng *r, size_t n, float std); /* malloc'd */
float *tu_alloc_zero(size_t n);                        /* calloc'd */

double tu_max_abs_diff(const float *a, const float *b, size_t n);
double tu_max_abs(const float *a, size_t n);
/* ||a - b||_F / max(||b||_F, tiny) */
double tu_rel_frob(const float *a, const float *b, size_t n);

/* Loss callback for finite differences: returns a scalar computed from the current values of
 * the parameter being perturbed (the callback reads it through ctx). */
typedef double (*tu_loss_fn)(void *ctx);

/* Compares analytic gradient `grad` of x (n entries) against central differences of loss(ctx)
 * with step h, at `nprobe` positions spread over x (all when nprobe >= n). Returns the largest
 * relative error max|g - fd| / max(max|fd|, floor) over the probes. Restores x. */
double tu_fd_check(float *x, const float *grad, size_t n, size_t nprobe, double h, double floor,
                   tu_loss_fn loss, void *ctx);

/* Rewrites DIR/manifest.json for the files in DIR as they are now (every file but the manifest
 * and hidden ones), with the given step: what a forger who edits a checkpoint and recomputes
 * its CRCs does. 0, or -1 with a diagnostic line on stdout. */
int tu_ckpt_reseal(const char *dir, int64_t step);

/* The project's source folder (STARMOE_SRCDIR, else ..): fixtures are under tests/fixtures. */
const char *tu_srcdir(void);
/* The official tiny fixture's config (fixtures/dsv3-tiny-a/config.json); prints a diagnostic
 * line when it cannot be read. */
struct sm_config tu_tiny_config(void);

#endif
