/* The messages of expert parallelism: a routed expert's row buffers sent between the ranks of
 * an expert-parallel group by StarPU-MPI, inside the step graph (each transfer starts when the
 * task writing its buffer is done; the tasks reading a received buffer wait for it). Buffers
 * are resizable, so a message carries exactly the rows the routing sent (model/model.h). */
#include "model/model.h"

#include <starpu_mpi.h>
#include "model/comm.h"

/* Tags of expert parallelism, above those of data parallelism and the start-up check: one per
 * (step parity, what, layer, micro-batch, expert, source), the same on every rank. */
static const starpu_mpi_tag_t SM_EP_TAG = (starpu_mpi_tag_t)1 << 40;

static starpu_mpi_tag_t sm_ep_tag(const sm_run *r, int what, int l, int mb, int e, int src)
{
    int64_t k = (int64_t)r->step_parity * SM_EP_KINDS + what;
    k = k * r->m->dims.blocks + l;
    k = k * r->micro + mb;
    k = k * r->m->dims.E + e;
    return SM_EP_TAG + k * r->ep + src;
}

int sm_ep_send(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src, int to,
               sm_error *err)
{
    if (r->planning) return 0;
    return sm_comm_send(t->handle, r->ep_first + to, sm_ep_tag(r, what, l, mb, e, src), t->name,
                        err);
}

int sm_ep_recv(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src,
               int from, sm_error *err)
{
    if (r->planning) return 0;
    return sm_comm_recv(t->handle, r->ep_first + from, sm_ep_tag(r, what, l, mb, e, src),
                        t->name, err);
}

/* Distinct expert-parallel ranks holding the experts in list[0..K-1]. */
static int sm_ranks_of(const sm_run *r, const int32_t *list, int K)
{
    int n = 0;
    for (int k = 0; k < K; k++) {
        int owner = sm_expert_owner(r, list[k]), seen = 0;
        for (int j = 0; j < k; j++) seen |= sm_expert_owner(r, list[j]) == owner;
        n += !seen;
    }
    return n;
}

/* The K experts of highest biased score s + bias over all experts (no group limit), into
 * top[0..K-1]. */
static void sm_top_unlimited(const float *s, const float *bias, int E, int K, int32_t *top)
{
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= top[j] == e;
            float v = s[e] + (bias ? bias[e] : 0.0f);
            if (!taken && (best < 0 || v > s[best] + (bias ? bias[best] : 0.0f))) best = e;
        }
        top[k] = best;
    }
}

/* Adds one token's experts list[0..K-1] to c. */
static void sm_count_route(const sm_run *r, const int32_t *list, int K, sm_ep_route_count *c)
{
    int n = sm_ranks_of(r, list, K), here = 0;
    for (int k = 0; k < K; k++) {
        c->remote_pairs += !sm_expert_here(r, list[k]);
        here |= sm_expert_here(r, list[k]);
    }
    c->remote_ranks += n - here;
    c->ranks += n;
    if (n > c->ranks_max) c->ranks_max = n;
}

void sm_ep_traffic_of(sm_run *r, sm_ep_traffic *t)
{
    int32_t top[r->m->dims.K];
    *t = (sm_ep_traffic){0};
    for (int l = 0; l < sm_run_blocks(r); l++) {
        const sm_layer_params *p = &r->m->layers[l];
        const sm_router_dims *d = &sm_shape_of(r, l)->router;
        if (!p->moe) continue;
        const float *bias = sm_tensor_acquire(p->bias.w, STARPU_R);
        for (int mb = 0; mb < r->micro; mb++) {
            sm_layer_acts *a = &r->mb[mb].layers[l];
            const int32_t *plan = sm_tensor_acquire(a->plan, STARPU_R);
            const float *s = sm_tensor_acquire(a->s, STARPU_R);
            for (int i = 0; i < d->T; i++) {
                sm_count_route(r, plan + (size_t)i * d->K, d->K, &t->routed);
                sm_top_unlimited(s + (size_t)i * d->E, bias, d->E, d->K, top);
                sm_count_route(r, top, d->K, &t->unlimited);
                t->tokens++;
            }
            sm_tensor_release(a->s);
            sm_tensor_release(a->plan);
        }
        sm_tensor_release(p->bias.w);
    }
}
