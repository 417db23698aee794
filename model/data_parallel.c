/* Data parallelism over the ranks of an mpirun (parallel.dp, parallel.ep 1): each rank runs its
 * share of the global batch, then, in the same step graph, StarPU-MPI transfers make every
 * rank's gradients, loss and balance loss the global ones (gathered to rank 0, summed there in
 * rank order by one task per tensor, sent back: the same sums whatever the timing) and give
 * every rank all ranks' routing plans, so the router bias update counts the global expert
 * loads. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <starpu_mpi.h>
#include <starmoe/engine.h>
#include "tasks/dense.h"

struct sm_dp {
    sm_run *r;
    int rank, size;
    int nsum;                    /* tensors summed over the ranks, in a fixed order */
    sm_tensor **sum;             /* [nsum]: the loss, the balance loss, every gradient */
    sm_tensor ***peer;           /* [nsum][size]: on rank 0, the other ranks' copies */
    sm_tensor ***plans;          /* [L][micro * size]: every rank's plans, rank by rank */
    sm_tensor_list owned;
};

/* Message tags: one per summed tensor (both directions) and one per plan, the same on every
 * rank; a receiver tells senders apart by their rank. */
enum { SM_DP_TAG = 0x44500000 };

static sm_tensor *sm_dp_like(sm_dp *d, const sm_tensor *t, int rank, sm_error *err)
{
    char name[300];
    snprintf(name, sizeof name, "%s.rank%d", t->name, rank);
    return sm_tensor_new_in(d->r->m->g, &d->owned, name, t->dtype, SM_ACT, t->ndim, t->shape,
                            err);
}

/* The tensors summed over the ranks: the loss, the balance loss and, with a backward pass,
 * every gradient (checkpoint order). */
static int sm_dp_sums(sm_dp *d, sm_error *err)
{
    sm_run *r = d->r;
    sm_model *m = r->m;
    d->sum = calloc((size_t)m->nall + 2, sizeof *d->sum);
    d->peer = calloc((size_t)m->nall + 2, sizeof *d->peer);
    if (!d->sum || !d->peer) return sm_fail(err, "data parallelism: out of memory");
    d->sum[d->nsum++] = r->loss;
    d->sum[d->nsum++] = r->bal_total;
    for (int i = 0; r->backward && i < m->nall; i++)
        if (m->all[i].g) d->sum[d->nsum++] = m->all[i].g;
    for (int k = 0; d->rank == 0 && k < d->nsum; k++) {
        if (!(d->peer[k] = calloc(d->size, sizeof **d->peer)))
            return sm_fail(err, "data parallelism: out of memory");
        for (int q = 1; q < d->size; q++)
            if (!(d->peer[k][q] = sm_dp_like(d, d->sum[k], q, err))) return -1;
    }
    return 0;
}

/* Every rank's routing plans per MoE layer (the router's own for this rank). */
static int sm_dp_plans(sm_dp *d, sm_error *err)
{
    sm_run *r = d->r;
    int L = r->m->dims.L;
    if (!(d->plans = calloc(L, sizeof *d->plans)))
        return sm_fail(err, "data parallelism: out of memory");
    for (int l = 0; r->backward && l < L; l++) {
        if (!r->m->layers[l].moe) continue;
        if (!(d->plans[l] = calloc((size_t)r->micro * d->size, sizeof **d->plans)))
            return sm_fail(err, "data parallelism: out of memory");
        for (int q = 0; q < d->size; q++)
            for (int mb = 0; mb < r->micro; mb++) {
                sm_tensor *own = r->mb[mb].layers[l].plan;
                sm_tensor **slot = &d->plans[l][q * r->micro + mb];
                if (!(*slot = q == d->rank ? own : sm_dp_like(d, own, q, err))) return -1;
            }
    }
    return 0;
}

sm_dp *sm_dp_new(sm_run *r, sm_error *err)
{
    sm_dp *d = calloc(1, sizeof *d);
    if (!d) {
        sm_fail(err, "data parallelism: out of memory");
        return NULL;
    }
    *d = (sm_dp){.r = r, .rank = sm_engine_rank(), .size = sm_engine_size()};
    if (sm_dp_sums(d, err) || sm_dp_plans(d, err)) {
        sm_dp_free(d);
        return NULL;
    }
    return d;
}

void sm_dp_free(sm_dp *d)
{
    if (!d) return;
    sm_graph_step_begin(d->r->m->g);
    sm_tensor_list_drop(d->r->m->g, &d->owned);
    for (int k = 0; d->peer && k < d->nsum; k++) free(d->peer[k]);
    for (int l = 0; d->plans && l < d->r->m->dims.L; l++) free(d->plans[l]);
    free(d->plans);
    free(d->peer);
    free(d->sum);
    free(d);
}

static int sm_dp_sent(int rc, const char *what, const sm_tensor *t, sm_error *err)
{
    return rc ? sm_fail(err, "data parallelism: StarPU-MPI refused to %s '%s' (%d)", what,
                        t->name, rc)
              : 0;
}

/* t summed over the ranks in rank order, on every rank: gathered to rank 0, summed by one task
 * after t's last writer, sent back. */
static int sm_dp_sum_one(sm_dp *d, int k, sm_error *err)
{
    sm_tensor *t = d->sum[k];
    starpu_mpi_tag_t tag = SM_DP_TAG + 2 * (starpu_mpi_tag_t)k;
    if (d->rank != 0)
        return sm_dp_sent(starpu_mpi_isend_detached(t->handle, 0, tag, MPI_COMM_WORLD, NULL,
                                                    NULL), "send", t, err) ||
               sm_dp_sent(starpu_mpi_irecv_detached(t->handle, 0, tag + 1, MPI_COMM_WORLD,
                                                    NULL, NULL), "receive", t, err);
    for (int q = 1; q < d->size; q++)
        if (sm_dp_sent(starpu_mpi_irecv_detached(d->peer[k][q]->handle, q, tag, MPI_COMM_WORLD,
                                                 NULL, NULL), "receive", t, err))
            return -1;
    sm_op_ctx c = {.g = d->r->m->g, .layer = -1, .micro = -1, .err = err};
    if (sm_insert_sum_tensors(&c, t, d->peer[k] + 1, d->size - 1, 1)) return -1;
    for (int q = 1; q < d->size; q++)
        if (sm_dp_sent(starpu_mpi_isend_detached(t->handle, q, tag + 1, MPI_COMM_WORLD, NULL,
                                                 NULL), "send", t, err))
            return -1;
    return 0;
}

/* This rank's plans of layer l to every other rank, theirs from them. */
static int sm_dp_share_plans(sm_dp *d, int l, starpu_mpi_tag_t tag, sm_error *err)
{
    int micro = d->r->micro;
    for (int mb = 0; mb < micro; mb++)
        for (int q = 0; q < d->size; q++) {
            if (q == d->rank) continue;
            sm_tensor *own = d->plans[l][d->rank * micro + mb];
            sm_tensor *theirs = d->plans[l][q * micro + mb];
            if (sm_dp_sent(starpu_mpi_isend_detached(own->handle, q, tag + mb,
                                                     MPI_COMM_WORLD, NULL, NULL), "send", own,
                           err) ||
                sm_dp_sent(starpu_mpi_irecv_detached(theirs->handle, q, tag + mb,
                                                     MPI_COMM_WORLD, NULL, NULL), "receive",
                           theirs, err))
                return -1;
        }
    return 0;
}

int sm_dp_submit(sm_dp *d, sm_error *err)
{
    /* each transfer starts as soon as its tensor's last writer is done */
    for (int k = 0; k < d->nsum; k++)
        if (sm_dp_sum_one(d, k, err)) return -1;
    starpu_mpi_tag_t tag = SM_DP_TAG + 2 * (starpu_mpi_tag_t)d->nsum;
    for (int l = 0; l < d->r->m->dims.L; l++, tag += d->r->micro)
        if (d->plans[l] && sm_dp_share_plans(d, l, tag, err)) return -1;
    return 0;
}

sm_tensor **sm_dp_layer_plans(sm_dp *d, int l, int *n)
{
    *n = d->r->micro * d->size;
    return d->plans[l];
}
