/* The messages of expert parallelism: a routed expert's row buffers sent between the ranks of
 * an expert-parallel group by StarPU-MPI, inside the step graph (each transfer starts when the
 * task writing its buffer is done; the tasks reading a received buffer wait for it). Buffers
 * are resizable, so a message carries exactly the rows the routing sent (model/model.h). */
#include "model/model.h"

#include <starpu_mpi.h>

/* Tags of expert parallelism, above those of data parallelism and the start-up check: one per
 * (step parity, what, layer, micro-batch, expert, source), the same on every rank. */
static const starpu_mpi_tag_t SM_EP_TAG = (starpu_mpi_tag_t)1 << 40;

static starpu_mpi_tag_t sm_ep_tag(const sm_run *r, int what, int l, int mb, int e, int src)
{
    int64_t k = (int64_t)r->step_parity * 4 + what;
    k = k * r->m->dims.L + l;
    k = k * r->micro + mb;
    k = k * r->m->dims.E + e;
    return SM_EP_TAG + k * r->ep + src;
}

static int sm_ep_refused(int rc, const char *what, const sm_tensor *t, int peer, sm_error *err)
{
    return rc ? sm_fail(err, "expert parallelism: StarPU-MPI refused to %s '%s' (rank %d, code "
                        "%d)", what, t->name, peer, rc)
              : 0;
}

int sm_ep_send(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src, int to,
               sm_error *err)
{
    int rank = r->ep_first + to;
    return sm_ep_refused(starpu_mpi_isend_detached(t->handle, rank,
                                                   sm_ep_tag(r, what, l, mb, e, src),
                                                   MPI_COMM_WORLD, NULL, NULL),
                         "send", t, rank, err);
}

int sm_ep_recv(const sm_run *r, sm_tensor *t, int what, int l, int mb, int e, int src,
               int from, sm_error *err)
{
    int rank = r->ep_first + from;
    return sm_ep_refused(starpu_mpi_irecv_detached(t->handle, rank,
                                                   sm_ep_tag(r, what, l, mb, e, src),
                                                   MPI_COMM_WORLD, NULL, NULL),
                         "receive", t, rank, err);
}
