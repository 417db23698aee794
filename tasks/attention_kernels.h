/* Pure float32 kernels of Multi-head Latent Attention's core (no StarPU): RoPE on interleaved
 * pairs with the YaRN frequency correction, the softmax scale with YaRN's mscale, and causal
 * attention over the MLA layout, forward and backward.
 *
 * Layouts, rows = B*S tokens (token b*S + s), row-major:
 *   q   [T, H*(dn+dr)]   per head [q_nope (dn) | q_rope (dr)], rope part NOT yet rotated
 *   kv  [T, dc+dr]       output of kv_a_proj_with_mqa: [latent (dc) | k_rope (dr)], k_rope not rotated
 *   kvu [T, H*(dn+dv)]   output of kv_b_proj: per head [k_nope (dn) | v (dv)]
 *   o   [T, H*dv]        heads concatenated, head-major
 * The softmax probabilities are not saved: the backward recomputes them bitwise as the forward
 * computed them, from q, kv and kvu (scratch of [64, S] floats in the forward, [S, S] in the
 * backward, per call).
 * RoPE: pair j of a rope slice is (x[2j], x[2j+1]) rotated by angle s*theta_j (position s in
 * its sequence). cos/sin tables are [S, dr/2]. */
#ifndef STARMOE_ATTENTION_KERNELS_H
#define STARMOE_ATTENTION_KERNELS_H

typedef struct sm_yarn {
    double factor;               /* s */
    int original_max_position_embeddings;
    double beta_fast, beta_slow;
    double mscale_all_dim;       /* softmax temperature factor m */
} sm_yarn;

typedef struct sm_mla_dims {
    int B, S, H;                 /* sequences, positions, heads */
    int dn, dr, dv, dc;          /* nope, rope, value, kv latent widths */
    float scale;                 /* softmax scale (from sm_mla_softmax_scale) */
} sm_mla_dims;

/* theta[j] = base^(-2j/dr), j < dr/2, YaRN-corrected when yarn is not NULL (official
 * precompute_freqs_cis: corr range clamped to [0, dr-1], ramp, theta/factor blend). */
void sm_rope_freqs(double *theta, int dr, double base, const sm_yarn *yarn);
/* cos/sin [S, dr/2] of s*theta[j], computed in double, stored as float. */
void sm_rope_table(float *cos_t, float *sin_t, const double *theta, int S, int dr);
/* dqk^-0.5, times (0.1*m*ln(factor)+1)^2 when yarn is not NULL and factor > 1. */
double sm_mla_softmax_scale(int dqk, const sm_yarn *yarn);

/* y = x rotated by +angle (sign 1) or -angle (sign -1) on the dr/2 interleaved pairs
 * (x[2j], x[2j+1]); c, s are the cos/sin row of the position (y may be x). */
void sm_rope_rotate(float *y, const float *x, const float *c, const float *s, int dr, float sign);
/* The softmax of row[0 .. n) in place (n >= 1; lane-partial sums in a fixed order), and
 * row[n .. width) = 0: a causal row whose position sees n keys. */
void sm_softmax_prefix(float *row, int n, int width);

/* Forward: o from q, kv, kvu. */
void sm_mla_attn_fwd(float *o, const float *q, const float *kv, const float *kvu,
                     const float *cos_t, const float *sin_t, const sm_mla_dims *m);
/* Backward: from dout [T, H*dv] and the forward's inputs, writes dq [T, H*(dn+dr)] (gradient
 * w.r.t. the un-rotated q), dkpe [T, dr] (gradient w.r.t. the un-rotated shared k_rope) and
 * dkvu [T, H*(dn+dv)]. All three are overwritten. */
void sm_mla_attn_bwd(float *dq, float *dkpe, float *dkvu, const float *dout, const float *q,
                     const float *kv, const float *kvu, const float *cos_t, const float *sin_t,
                     const sm_mla_dims *m);

#endif
