/* Data parallelism over the ranks of an mpirun (every rank runs its share of the global batch,
 * with or without expert parallelism): in the same step graph, StarPU-MPI transfers give every
 * rank all ranks' per-micro-batch loss parts, balance-loss parts and routing plans (so the loss
 * sums run in the order of one rank's, and the router bias update counts the global expert
 * loads), and make every gradient the sum over the ranks by a chain in rank order: rank q adds
 * its micro-batches' gradients to the running sum of ranks 0..q-1 it receives and passes it on
 * (as soon as its part is ready), and the last rank sends the total back to all. The additions
 * thus associate as one rank's over the same micro-batches, whatever the timing: bit for bit
 * one rank's in deterministic mode.
 *
 * The gradients travel in buckets, one message each way per bucket: gradients of one chain and
 * one layer (sm_param.layer: the embedding, and the final norm with the head), taken in reverse
 * checkpoint order (the order the backward finishes them) up to SM_BUCKET_VALUES floats (a
 * larger gradient is a bucket of its own). A bucket is thus complete as soon as its layer's
 * backward is, and its sums go on while the backward of the layers before runs. The grouping
 * depends only on the model and the chain, so it is the same on every rank of the chain. A
 * bucket of several gradients is packed into one tensor (a pack task) for each send, and
 * unpacked (an unpack task) into the members' running sums or totals after each receive; a
 * bucket of one gradient goes as the gradient itself. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <starpu_mpi.h>
#include "model/comm.h"
#include <starmoe/engine.h>
#include "tasks/dense.h"

/* The ranks a gradient is summed over: first, first + stride, ... (all ranks, or for a routed
 * expert sharded over expert parallelism, the ranks holding the same experts). */
typedef struct sm_chain {
    int n;
    const int *rank;             /* [n], in summing order (interned: equal chains share it) */
} sm_chain;

/* Gradients of one chain and one layer summed over the ranks as one message each way. */
typedef struct sm_bucket {
    sm_chain chain;
    int layer;                   /* the members' layer (sm_param.layer) */
    int n;                       /* members, in the order the backward finishes them */
    sm_tensor **g, **partial;    /* [n]: each member's gradient, and its running sum (or NULL) */
    size_t numel;                /* floats of the members together */
    sm_tensor *t;                /* several members: them one after another; NULL: one member */
    starpu_mpi_tag_t tag;        /* its first member's (sm_dp_grad_tag) */
} sm_bucket;

/* The most floats a bucket of several gradients holds (4 MB). */
enum { SM_BUCKET_VALUES = 1 << 20 };

struct sm_dp {
    sm_run *r;
    int rank, size;
    int nsum;                    /* gradients summed over the ranks, in a fixed order */
    sm_tensor **sum;             /* [nsum] */
    int *param;                  /* [nsum]: the parameter index of each */
    sm_chain *chain;             /* [nsum] */
    sm_tensor **partial;         /* [nsum]: on rank q > 0, the sum of ranks 0..q-1's */
    sm_tensor **partial_of;      /* [nall]: the partial sum of parameter i's gradient, or NULL */
    int nchains;
    sm_chain *chains;            /* the distinct chains (their rank lists owned here) */
    int nbuckets;
    sm_bucket *bucket;           /* [nbuckets], in the order their members' backward ends */
    sm_tensor **bucket_g, **bucket_partial;  /* [nsum]: the buckets' members, bucket by bucket */
    int nslots;                  /* per-micro-batch tensors every rank gets from all */
    sm_tensor ***all;            /* [nslots][shares * micro], share by share; NULL: none */
    sm_tensor_list owned;
};

/* Message tags: one per bucket of gradients (both directions) and one per shared tensor, the
 * same on every rank; a receiver tells senders apart by their rank. */
enum { SM_DP_TAG = 0x44500000 };

/* The shared slots: the loss parts, then per block (layers, then MTP blocks) its plans and
 * balance-loss parts, then each MTP depth's loss parts. */
static int sm_slot_plans(int l) { return 1 + 2 * l; }
static int sm_slot_bal(int l) { return 2 + 2 * l; }
static int sm_slot_mtp_loss(const sm_run *r, int k) { return 2 * sm_run_blocks(r) + k; }

/* This rank's tensor of slot s for micro-batch mb; NULL where the slot has none (dense
 * layers, and plans without a backward pass: only the bias update needs them). */
static sm_tensor *sm_slot_own(const sm_run *r, int s, int mb)
{
    if (s == 0) return r->mb[mb].loss_part;
    if (s > 2 * sm_run_blocks(r)) return r->mb[mb].mtp[s - sm_slot_mtp_loss(r, 1)].loss_part;
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

static int sm_chain_pos(sm_chain ch, int rank)
{
    for (int i = 0; i < ch.n; i++)
        if (ch.rank[i] == rank) return i;
    return -1;
}

static int sm_chain_same(sm_chain a, sm_chain b)
{
    return a.n == b.n && memcmp(a.rank, b.rank, a.n * sizeof *a.rank) == 0;
}

/* The chain of `n` ranks at `list`, interned in d. */
static int sm_chain_intern(sm_dp *d, const int *list, int n, sm_chain *out, sm_error *err)
{
    for (int c = 0; c < d->nchains; c++)
        if (sm_chain_same(d->chains[c], (sm_chain){n, list})) {
            *out = d->chains[c];
            return 0;
        }
    sm_chain *grown = realloc(d->chains, (size_t)(d->nchains + 1) * sizeof *grown);
    int *copy = malloc((size_t)n * sizeof *copy);
    if (grown) d->chains = grown;
    if (!grown || !copy) {
        free(copy);
        return sm_fail(err, "data parallelism: out of memory");
    }
    memcpy(copy, list, (size_t)n * sizeof *copy);
    *out = d->chains[d->nchains++] = (sm_chain){n, copy};
    return 0;
}

/* The ranks parameter p's gradient is summed over, in the order one rank would sum its
 * parts: the shares of the batch in order (for the routed experts of a model sharded over
 * expert parallelism, the shares holding their shard, one per data-parallel group), each by
 * the ranks computing it (with pipeline ranks on MPI ranks, those running p's stage, in
 * direction order: DualPipe's two), then the ranks holding p that add nothing (the other
 * pipeline ranks, unless the model is sharded by stages). */
static int sm_chain_of(sm_dp *d, const sm_param *p, sm_chain *out, sm_error *err)
{
    const sm_run *r = d->r;
    int sharded = r->m->shard_ep > 1 && p->expert >= 0, stride = sharded ? r->ep : 1, n = 0;
    int first = sharded ? r->ep_index : 0, list[d->size], seen[d->size];
    memset(seen, 0, sizeof seen);
    for (int s = first; s < r->shares; s += stride) {
        int at = n;
        if (r->pp_ranks > 1 && r->pl) n += sm_pipeline_producers(r, p, s, list + n);
        else list[n++] = s;
        for (int i = at; i < n; i++) seen[list[i]] = 1;
    }
    for (int q = first; q < d->size; q += stride)
        if (!seen[q] && sm_pipeline_rank_holds(r, q, p)) list[n++] = q;
    return sm_chain_intern(d, list, n, out, err);
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
        sm_chain ch;
        if (!m->all[i].g) continue;
        if (sm_chain_of(d, &m->all[i], &ch, err)) return -1;
        if (ch.n == 1) continue;                     /* held by this rank alone */
        d->sum[d->nsum] = m->all[i].g;
        d->param[d->nsum] = i;
        d->chain[d->nsum] = ch;
        int at = sm_chain_pos(ch, d->rank);
        if (at > 0) {
            sm_tensor *t = sm_dp_like(d, m->all[i].g, ch.rank[at - 1], err);
            if (!t) return -1;
            d->partial[d->nsum] = d->partial_of[i] = t;
        }
        d->nsum++;
    }
    return 0;
}

/* The chain's messages of parameter i's gradient (or of the bucket it starts): its running
 * sum from the previous rank (tag), its own sum (running sum included) to the next (tag), the
 * total from the last rank (tag + 1). */
static starpu_mpi_tag_t sm_dp_grad_tag(int i) { return SM_DP_TAG + 2 * (starpu_mpi_tag_t)i; }

/* Bucket b of sum k: its chain's bucket of the same layer, unless k would make it hold more
 * than SM_BUCKET_VALUES floats; -1: a new one. */
static int sm_bucket_joined(const sm_dp *d, int k, int layer)
{
    for (int b = d->nbuckets - 1; b >= 0 && d->bucket[b].layer == layer; b--)
        if (sm_chain_same(d->bucket[b].chain, d->chain[k]))
            return d->bucket[b].numel + d->sum[k]->numel <= SM_BUCKET_VALUES ? b : -1;
    return -1;
}

/* The buckets of the summed gradients, and the tensors of those of several members. */
static int sm_dp_buckets(sm_dp *d, sm_error *err)
{
    sm_model *m = d->r->m;
    int *of = calloc((size_t)d->nsum + 1, sizeof *of);  /* each sum's bucket */
    d->bucket = calloc((size_t)d->nsum + 1, sizeof *d->bucket);
    d->bucket_g = calloc((size_t)d->nsum + 1, sizeof *d->bucket_g);
    d->bucket_partial = calloc((size_t)d->nsum + 1, sizeof *d->bucket_partial);
    if (!of || !d->bucket || !d->bucket_g || !d->bucket_partial) {
        free(of);
        return sm_fail(err, "data parallelism: out of memory");
    }
    for (int k = d->nsum - 1; k >= 0; k--) {
        int layer = m->all[d->param[k]].layer, b = sm_bucket_joined(d, k, layer);
        if (b < 0) {
            b = d->nbuckets++;
            d->bucket[b] = (sm_bucket){.chain = d->chain[k], .layer = layer,
                                       .tag = sm_dp_grad_tag(d->param[k])};
        }
        d->bucket[b].numel += d->sum[k]->numel;
        d->bucket[b].n++;
        of[k] = b;
    }
    for (int b = 0, at = 0; b < d->nbuckets; b++) {
        d->bucket[b].g = d->bucket_g + at;
        d->bucket[b].partial = d->bucket_partial + at;
        at += d->bucket[b].n;
        d->bucket[b].n = 0;          /* counted again as the members go in */
    }
    for (int k = d->nsum - 1; k >= 0; k--) {
        sm_bucket *b = &d->bucket[of[k]];
        b->partial[b->n] = d->partial[k];
        b->g[b->n++] = d->sum[k];
    }
    free(of);
    for (int b = 0; b < d->nbuckets; b++) {
        sm_bucket *bk = &d->bucket[b];
        char name[300];
        int64_t numel = (int64_t)bk->numel;
        if (bk->n == 1) continue;
        snprintf(name, sizeof name, "bucket.%s", bk->g[0]->name);
        bk->t = sm_tensor_new_in(m->g, &d->owned, name, SM_F32, SM_ACT, 1, &numel, err);
        if (!bk->t) return -1;
    }
    return 0;
}

/* Every rank's tensors of every slot (this rank's own among them). */
static int sm_dp_slots(sm_dp *d, sm_error *err)
{
    sm_run *r = d->r;
    /* the shares of a pipeline rank's group exchange them; pipeline ranks share their
     * sequences (model/pipeline.c sends what the other stages need) */
    d->nslots = r->shares > 1 ? 1 + 2 * sm_run_blocks(r) + r->D : 0;
    if (!(d->all = calloc(d->nslots + 1, sizeof *d->all)))
        return sm_fail(err, "data parallelism: out of memory");
    for (int s = 0; s < d->nslots; s++) {
        if (!sm_slot_own(r, s, 0)) continue;
        if (!(d->all[s] = calloc((size_t)r->micro * r->shares, sizeof **d->all)))
            return sm_fail(err, "data parallelism: out of memory");
        for (int q = 0; q < r->shares; q++)
            for (int mb = 0; mb < r->micro; mb++) {
                sm_tensor *own = sm_slot_own(r, s, mb);
                sm_tensor **t = &d->all[s][q * r->micro + mb];
                if (!(*t = q == r->share ? own
                                         : sm_dp_like(d, own, sm_rank_at(r, r->pp_index, q), err)))
                    return -1;
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
    if (sm_dp_sums(d, err) || sm_dp_buckets(d, err) || sm_dp_slots(d, err)) {
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
    free(d->bucket_partial);
    free(d->bucket_g);
    free(d->bucket);
    free(d->partial_of);
    free(d->partial);
    for (int c = 0; c < d->nchains; c++) free((int *)d->chains[c].rank);
    free(d->chains);
    free(d->chain);
    free(d->param);
    free(d->sum);
    free(d);
}

/* This rank's tensors of slot s to the ranks of the other shares of its pipeline rank, theirs
 * from them. */
static int sm_dp_share_slot(sm_dp *d, int s, starpu_mpi_tag_t tag, sm_error *err)
{
    const sm_run *r = d->r;
    int micro = r->micro;
    for (int mb = 0; mb < micro; mb++)
        for (int q = 0; q < r->shares; q++) {
            int peer = sm_rank_at(r, r->pp_index, q);
            if (q == r->share) continue;
            sm_tensor *own = d->all[s][r->share * micro + mb];
            sm_tensor *theirs = d->all[s][q * micro + mb];
            if (sm_comm_send(own->handle, peer, tag + mb, own->name, err) ||
                sm_comm_recv(theirs->handle, peer, tag + mb, theirs->name, err))
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

/* The step-wide tasks of the sums (outside layers and micro-batches). */
static sm_op_ctx sm_dp_ctx(const sm_dp *d, sm_error *err)
{
    return (sm_op_ctx){.g = d->r->m->g, .layer = -1, .micro = -1, .err = err};
}

int sm_dp_receive_partials(sm_dp *d, sm_error *err)
{
    sm_op_ctx c = sm_dp_ctx(d, err);
    for (int b = 0; b < d->nbuckets; b++) {
        const sm_bucket *bk = &d->bucket[b];
        sm_tensor *in = bk->t ? bk->t : bk->partial[0];
        int at = sm_chain_pos(bk->chain, d->rank);
        if (at == 0) continue;
        if (sm_comm_recv(in->handle, bk->chain.rank[at - 1], bk->tag, in->name, err) ||
            (bk->t && sm_insert_unpack(&c, bk->t, bk->partial, bk->n)))
            return -1;
    }
    return 0;
}

sm_tensor *sm_dp_partial(const sm_dp *d, int param) { return d->partial_of[param]; }

/* Bucket bk's sums here, running sum included, to the next rank and the total back from the
 * last; on the last rank, the total to every other. */
static int sm_dp_sum_bucket(sm_dp *d, const sm_bucket *bk, sm_error *err)
{
    sm_op_ctx c = sm_dp_ctx(d, err);
    sm_chain ch = bk->chain;
    sm_tensor *t = bk->t ? bk->t : bk->g[0];
    int at = sm_chain_pos(ch, d->rank), last = ch.rank[ch.n - 1];
    if (bk->t && sm_insert_pack(&c, bk->t, bk->g, bk->n)) return -1;
    if (at == ch.n - 1) {
        for (int i = 0; i < ch.n - 1; i++)
            if (sm_comm_send(t->handle, ch.rank[i], bk->tag + 1, t->name, err)) return -1;
        return 0;
    }
    if (sm_comm_send(t->handle, ch.rank[at + 1], bk->tag, t->name, err) ||
        sm_comm_recv(t->handle, last, bk->tag + 1, t->name, err))
        return -1;
    return bk->t ? sm_insert_unpack(&c, bk->t, bk->g, bk->n) : 0;
}

int sm_dp_sum_grads(sm_dp *d, sm_error *err)
{
    /* each bucket's transfers start as soon as its members' last writers are done */
    for (int b = 0; b < d->nbuckets; b++)
        if (sm_dp_sum_bucket(d, &d->bucket[b], err)) return -1;
    return 0;
}

sm_tensor **sm_dp_loss_parts(sm_dp *d, int k)
{
    return d->nslots ? d->all[k ? sm_slot_mtp_loss(d->r, k) : 0] : NULL;
}
sm_tensor **sm_dp_layer_plans(sm_dp *d, int l) { return d->all[sm_slot_plans(l)]; }
sm_tensor **sm_dp_layer_bal(sm_dp *d, int l) { return d->all[sm_slot_bal(l)]; }
