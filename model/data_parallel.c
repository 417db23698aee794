/* Data parallelism over the ranks of an mpirun (every rank runs its share of the global batch,
 * with or without expert parallelism): in the same step graph, StarPU-MPI transfers give every
 * rank all ranks' per-micro-batch loss parts, balance-loss parts and routing plans (so the loss
 * sums run in the order of one rank's, and the router bias update counts the global expert
 * loads), and make every gradient the sum over the ranks by a chain in rank order: rank q adds
 * its micro-batches' gradients to the running sum of ranks 0..q-1 it receives and passes it on
 * (as soon as its part is ready), and the last rank sends the total back to all. The additions
 * thus associate as one rank's over the same micro-batches, whatever the timing: bit for bit
 * one rank's in deterministic mode. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <starpu_mpi.h>
#include "model/comm.h"
#include <starmoe/engine.h>
#include "tasks/dense.h"

/* The ranks a gradient is summed over: first, first + stride, ... (all ranks, or for a routed
 * expert sharded over expert parallelism, the ranks holding the same experts). */
typedef struct sm_chain {
    int first, stride, last;
} sm_chain;

struct sm_dp {
    sm_run *r;
    int rank, size;
    int nsum;                    /* gradients summed over the ranks, in a fixed order */
    sm_tensor **sum;             /* [nsum] */
    int *param;                  /* [nsum]: the parameter index of each */
    sm_chain *chain;             /* [nsum] */
    sm_tensor **partial;         /* [nsum]: on rank q > 0, the sum of ranks 0..q-1's */
    sm_tensor **partial_of;      /* [nall]: the partial sum of parameter i's gradient, or NULL */
    int nslots;                  /* per-micro-batch tensors every rank gets from all */
    sm_tensor ***all;            /* [nslots][size * micro], rank by rank; NULL: none */
    sm_tensor_list owned;
};

/* Message tags: one per gradient (both directions) and one per shared tensor, the same on
 * every rank; a receiver tells senders apart by their rank. */
enum { SM_DP_TAG = 0x44500000 };

/* The shared slots: the loss parts, then per layer its plans and balance-loss parts. */
static int sm_slot_plans(int l) { return 1 + 2 * l; }
static int sm_slot_bal(int l) { return 2 + 2 * l; }

/* This rank's tensor of slot s for micro-batch mb; NULL where the slot has none (dense
 * layers, and plans without a backward pass: only the bias update needs them). */
static sm_tensor *sm_slot_own(const sm_run *r, int s, int mb)
{
    if (s == 0) return r->mb[mb].loss_part;
    int l = (s - 1) / 2;
    if (!r->m->layers[l].moe) return NULL;
    if (s == sm_slot_plans(l)) return r->backward ? r->mb[mb].layers[l].plan : NULL;
    return r->mb[mb].layers[l].bal_loss;
}

static sm_tensor *sm_dp_like(sm_dp *d, const sm_tensor *t, int rank, sm_error *err)
{
    char name[300];
    snprintf(name, sizeof name, "%s.rank%d", t->name, rank);
    return sm_tensor_new_in(d->r->m->g, &d->owned, name, t->dtype, SM_ACT, t->ndim, t->shape,
                            err);
}

/* The ranks parameter p's gradient is summed over: every rank, but for the routed experts of
 * a model sharded over expert parallelism, whose gradients live on the ranks of their shard
 * (one per data-parallel group, in rank order: as one rank orders their micro-batches). */
static sm_chain sm_chain_of(const sm_dp *d, const sm_param *p)
{
    int sharded = d->r->m->shard_ep > 1 && p->expert >= 0;
    int stride = sharded ? d->r->ep : 1, first = sharded ? d->r->ep_index : 0;
    return (sm_chain){first, stride, first + stride * (d->size / stride - 1)};
}

/* The gradients summed over the ranks (checkpoint order), with a backward pass, and the
 * running sums this rank receives. */
static int sm_dp_sums(sm_dp *d, sm_error *err)
{
    sm_run *r = d->r;
    sm_model *m = r->m;
    d->sum = calloc((size_t)m->nall + 1, sizeof *d->sum);
    d->param = calloc((size_t)m->nall + 1, sizeof *d->param);
    d->chain = calloc((size_t)m->nall + 1, sizeof *d->chain);
    d->partial = calloc((size_t)m->nall + 1, sizeof *d->partial);
    d->partial_of = calloc((size_t)m->nall + 1, sizeof *d->partial_of);
    if (!d->sum || !d->param || !d->chain || !d->partial || !d->partial_of)
        return sm_fail(err, "data parallelism: out of memory");
    for (int i = 0; r->backward && i < m->nall; i++) {
        if (!m->all[i].g) continue;
        sm_chain ch = sm_chain_of(d, &m->all[i]);
        if (ch.first == ch.last) continue;           /* held by this rank alone */
        d->sum[d->nsum] = m->all[i].g;
        d->param[d->nsum] = i;
        d->chain[d->nsum] = ch;
        if (d->rank > ch.first) {
            sm_tensor *t = sm_dp_like(d, m->all[i].g, d->rank - ch.stride, err);
            if (!t) return -1;
            d->partial[d->nsum] = d->partial_of[i] = t;
        }
        d->nsum++;
    }
    return 0;
}

/* Every rank's tensors of every slot (this rank's own among them). */
static int sm_dp_slots(sm_dp *d, sm_error *err)
{
    sm_run *r = d->r;
    d->nslots = 1 + 2 * r->m->dims.L;
    if (!(d->all = calloc(d->nslots, sizeof *d->all)))
        return sm_fail(err, "data parallelism: out of memory");
    for (int s = 0; s < d->nslots; s++) {
        if (!sm_slot_own(r, s, 0)) continue;
        if (!(d->all[s] = calloc((size_t)r->micro * d->size, sizeof **d->all)))
            return sm_fail(err, "data parallelism: out of memory");
        for (int q = 0; q < d->size; q++)
            for (int mb = 0; mb < r->micro; mb++) {
                sm_tensor *own = sm_slot_own(r, s, mb);
                sm_tensor **t = &d->all[s][q * r->micro + mb];
                if (!(*t = q == d->rank ? own : sm_dp_like(d, own, q, err))) return -1;
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
    if (sm_dp_sums(d, err) || sm_dp_slots(d, err)) {
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
    for (int s = 0; d->all && s < d->nslots; s++) free(d->all[s]);
    free(d->all);
    free(d->partial_of);
    free(d->partial);
    free(d->chain);
    free(d->param);
    free(d->sum);
    free(d);
}

/* The chain's messages of parameter i's gradient: its running sum from the previous rank
 * (tag), its own sum (running sum included) to the next (tag), the total from the last rank
 * (tag + 1). */
static starpu_mpi_tag_t sm_dp_grad_tag(int i) { return SM_DP_TAG + 2 * (starpu_mpi_tag_t)i; }

/* This rank's tensors of slot s to every other rank, theirs from them. */
static int sm_dp_share_slot(sm_dp *d, int s, starpu_mpi_tag_t tag, sm_error *err)
{
    int micro = d->r->micro;
    for (int mb = 0; mb < micro; mb++)
        for (int q = 0; q < d->size; q++) {
            if (q == d->rank) continue;
            sm_tensor *own = d->all[s][d->rank * micro + mb];
            sm_tensor *theirs = d->all[s][q * micro + mb];
            if (sm_comm_send(own->handle, q, tag + mb, own->name, err) ||
                sm_comm_recv(theirs->handle, q, tag + mb, theirs->name, err))
                return -1;
        }
    return 0;
}

int sm_dp_share(sm_dp *d, sm_error *err)
{
    starpu_mpi_tag_t tag = sm_dp_grad_tag(d->r->m->nall);
    for (int s = 0; s < d->nslots; s++, tag += d->r->micro)
        if (d->all[s] && sm_dp_share_slot(d, s, tag, err)) return -1;
    return 0;
}

int sm_dp_receive_partials(sm_dp *d, sm_error *err)
{
    for (int k = 0; k < d->nsum; k++)
        if (d->partial[k] && sm_comm_recv(d->partial[k]->handle, d->rank - d->chain[k].stride,
                                          sm_dp_grad_tag(d->param[k]), d->partial[k]->name, err))
            return -1;
    return 0;
}

sm_tensor *sm_dp_partial(const sm_dp *d, int param) { return d->partial_of[param]; }

int sm_dp_sum_grads(sm_dp *d, sm_error *err)
{
    /* each transfer starts as soon as its gradient's last writer is done */
    for (int k = 0; k < d->nsum; k++) {
        sm_tensor *g = d->sum[k];
        sm_chain ch = d->chain[k];
        starpu_mpi_tag_t tag = sm_dp_grad_tag(d->param[k]);
        if (d->rank < ch.last &&
            (sm_comm_send(g->handle, d->rank + ch.stride, tag, g->name, err) ||
             sm_comm_recv(g->handle, ch.last, tag + 1, g->name, err)))
            return -1;
        for (int q = ch.first; d->rank == ch.last && q < ch.last; q += ch.stride)
            if (sm_comm_send(g->handle, q, tag + 1, g->name, err)) return -1;
    }
    return 0;
}

sm_tensor **sm_dp_loss_parts(sm_dp *d) { return d->all[0]; }
sm_tensor **sm_dp_layer_plans(sm_dp *d, int l) { return d->all[sm_slot_plans(l)]; }
sm_tensor **sm_dp_layer_bal(sm_dp *d, int l) { return d->all[sm_slot_bal(l)]; }
