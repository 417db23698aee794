/* Launching under mpirun: the rank and size from mpirun's environment, StarPU-MPI started
 * (MPI finalised at exit, after a barrier), and the start-up agreement of
 * sm_engine_check_launch (the layout checks of every rank and a hash of the build and the run
 * config, exchanged between all ranks through StarPU-MPI's own thread, within
 * parallel.timeout_s; then an agreed layout runs only as data parallelism in a command that
 * runs it, model/data_parallel.c). */
#define _GNU_SOURCE
#include "model/parallel.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <starpu_mpi.h>
#include <starmoe/engine.h>
#include "base/clock.h"
#include "model/comm.h"

static int sm_mpi_up;
static void *sm_mpi_kept[2];     /* what pending requests of an abandoned exchange still use */

/* Gives up on an exchange whose requests stay pending: no unregistering, no shutdown, no
 * barrier at exit, and their buffers kept. */
static void sm_abandon(void *flags, void *records)
{
    sm_comm_abandon();
    sm_mpi_kept[0] = flags;
    sm_mpi_kept[1] = records;
}

/* A whole number from the first of the variables that is set, else dflt. */
static int sm_env_int(const char *a, const char *b, int dflt)
{
    const char *v = getenv(a);
    if (!v && b) v = getenv(b);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && end != v && !*end && n >= 0 && n <= 1 << 20 ? (int)n : dflt;
}

int sm_parallel_launched(void) { return sm_env_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", 1); }

int sm_parallel_local_ranks(void)
{
    return sm_env_int("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", sm_parallel_launched());
}

int sm_engine_size(void) { return sm_parallel_launched(); }

int sm_engine_rank(void)
{
    return sm_parallel_launched() > 1 ? sm_env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK", 0) : 0;
}

/* At exit: every rank has printed its messages once all reach this barrier, so mpirun, which
 * stops the job as soon as one rank exits with an error, cuts no rank's message short. A rank
 * whose peers do not come within SM_EXIT_GRACE_S leaves without finalising (mpirun then stops
 * them). */
enum { SM_EXIT_GRACE_S = 10 };

static void sm_mpi_finish(void)
{
    MPI_Request req;
    int done = 0;
    if (sm_comm_abandoned() || MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS) return;
    for (double end = sm_now() + SM_EXIT_GRACE_S; !done && sm_now() < end; usleep(1000))
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) MPI_Finalize();
}

int sm_parallel_start(struct starpu_conf *conf)
{
    int provided, inited;
    if (sm_parallel_local_ranks() > 1) {
        /* ranks bound to the same cores would all run on the first ones */
        setenv("STARPU_WORKERS_NOBIND", "1", 0);
        setenv("STARPU_MPI_NOBIND", "1", 0);
    }
    /* MPI as StarPU-MPI would start it, but finalised at exit by sm_mpi_finish */
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return -EIO;
        atexit(sm_mpi_finish);
    }
    int rc = starpu_mpi_init_conf(NULL, NULL, 0, MPI_COMM_WORLD, conf);
    sm_mpi_up = rc == 0;
    return rc;
}

void sm_parallel_sync(void)
{
    if (sm_mpi_up && !sm_comm_abandoned()) starpu_mpi_barrier(MPI_COMM_WORLD);
}

double sm_launch_timeout(const sm_launch *l) { return l->timeout_s > 0 ? l->timeout_s : 120; }

enum { SM_GATHER_TAG = 0x47410000 };

void sm_parallel_gather(const void *mine, size_t bytes, void *all)
{
    int me = sm_engine_rank(), n = sm_engine_size();
    starpu_data_handle_t h;
    if (me == 0) memcpy(all, mine, bytes);
    for (int r = me == 0 ? 1 : n; r < n; r++) {
        starpu_vector_data_register(&h, STARPU_MAIN_RAM, (uintptr_t)((char *)all + r * bytes),
                                    (uint32_t)bytes, 1);
        starpu_mpi_recv(h, r, SM_GATHER_TAG + r, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        starpu_data_unregister(h);
    }
    if (me == 0) return;
    starpu_vector_data_register(&h, STARPU_MAIN_RAM, (uintptr_t)mine, (uint32_t)bytes, 1);
    starpu_mpi_send(h, 0, SM_GATHER_TAG + me, MPI_COMM_WORLD);
    starpu_data_unregister(h);
}

enum { SM_AGREE_TAG = 0x41470000 };

/* A received word: set when it has arrived (StarPU-MPI's thread), then released. */
typedef struct sm_arrival {
    starpu_data_handle_t h;
    atomic_int arrived;
} sm_arrival;

static void sm_arrived(void *arg)
{
    sm_arrival *a = arg;
    starpu_data_release(a->h);
    atomic_store(&a->arrived, 1);
}

/* Receives int *word from rank `from` (tag), *a tracking its arrival. */
static int sm_agree_recv(sm_arrival *a, int *word, int from, int64_t tag, sm_error *err)
{
    starpu_vector_data_register(&a->h, STARPU_MAIN_RAM, (uintptr_t)word, 1, sizeof *word);
    atomic_init(&a->arrived, 0);
    if (sm_comm_recv(a->h, from, tag, "agreement", err)) return -1;
    return starpu_data_acquire_cb(a->h, STARPU_R, sm_arrived, a) ? sm_fail(err, "agreement: "
                                  "StarPU refused to wait for rank %d", from) : 0;
}

/* Waits until the n words of a have arrived, at most timeout_s. */
static int sm_agree_wait(sm_arrival *a, const int *from, int n, double timeout_s,
                         const char *what, sm_error *err)
{
    double end = sm_now() + timeout_s;
    for (int i = 0; i < n; i++)
        while (!atomic_load(&a[i].arrived)) {
            if (sm_now() > end) {
                sm_comm_abandon();
                return sm_fail(err, "%s: rank %d did not answer within parallel.timeout_s %g s "
                                    "(stopped, or too slow: raise parallel.timeout_s)", what,
                               from[i], timeout_s);
            }
            usleep(1000);
        }
    return 0;
}

int sm_parallel_agree(int ok, double timeout_s, const char *what, sm_error *err)
{
    int me = sm_engine_rank(), n = sm_engine_size(), verdict = ok ? -1 : me, rc = 0;
    if (n == 1) return verdict;
    int *word = calloc(n, sizeof *word), *from = calloc(n, sizeof *from);
    sm_arrival *a = calloc(n, sizeof *a);
    starpu_data_handle_t mine;
    if (!word || !from || !a) {
        free(word), free(from), free(a);
        sm_fail(err, "%s: out of memory", what);
        return -2;
    }
    word[0] = ok;
    starpu_vector_data_register(&mine, STARPU_MAIN_RAM, (uintptr_t)&word[0], 1, sizeof *word);
    int nrecv = me == 0 ? n - 1 : 1;
    for (int i = 0; i < nrecv && rc == 0; i++) {
        from[i] = me == 0 ? i + 1 : 0;
        rc = sm_agree_recv(&a[i], me == 0 ? &word[i + 1] : &verdict, from[i],
                           SM_AGREE_TAG + (me == 0 ? i + 1 : 0), err);
    }
    if (rc == 0 && me > 0) rc = sm_comm_send(mine, 0, SM_AGREE_TAG + me, "agreement", err);
    if (rc == 0) rc = sm_agree_wait(a, from, nrecv, timeout_s, what, err);
    if (rc == 0 && me == 0) {
        for (int r = 0; r < n && verdict < 0; r++)
            if (!word[r]) verdict = r;
        word[0] = verdict;
        for (int r = 1; r < n && rc == 0; r++)
            rc = sm_comm_send(mine, r, SM_AGREE_TAG, "agreement", err);
    }
    if (!sm_comm_abandoned()) {
        for (int i = 0; i < nrecv; i++)
            if (a[i].h) starpu_data_unregister(a[i].h);
        starpu_data_unregister(mine);
    }
    free(word), free(from), free(a);
    return rc ? -2 : verdict;
}

void sm_parallel_stop(void)
{
    if (!sm_mpi_up || sm_comm_abandoned()) return;
    starpu_mpi_shutdown();
    if (starpu_is_initialized()) starpu_shutdown();
    sm_mpi_up = 0;
}

/* ---- the start-up agreement ---- */

static uint64_t sm_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* FNV-1a of the file holding this code (the library, or the program it is linked into) and of
 * the identity text: ranks that run other builds or other configs get other hashes. */
static uint64_t sm_launch_hash(const char *identity)
{
    uint64_t h = 0xcbf29ce484222325ull;
    Dl_info info;
    FILE *f = dladdr((void *)sm_launch_hash, &info) && info.dli_fname
                  ? fopen(info.dli_fname, "rb") : NULL;
    char buf[1 << 16];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) h = sm_fnv1a(h, buf, n);
    if (f) fclose(f);
    return sm_fnv1a(h, identity, strlen(identity));
}

static int sm_check_layout(const sm_launch *l, int nranks, sm_error *err)
{
    int pp = l->pp > 1 ? l->pp : 1;
    long n = (long)pp * l->ep * l->dp;
    if (n != nranks)
        return sm_fail(err, "launch layout: parallel.pp %d x parallel.ep %d x parallel.dp %d = "
                       "%ld rank%s, but %d rank%s launched (run mpirun -np %ld, or set "
                       "parallel.pp, parallel.ep and parallel.dp to multiply to %d)", pp, l->ep,
                       l->dp, n, n == 1 ? "" : "s", nranks, nranks == 1 ? " was" : "s were", n,
                       nranks);
    if (l->n_routed_experts % l->ep)
        return sm_fail(err, "launch layout: parallel.ep %d does not divide "
                       "model.n_routed_experts %d (each expert-parallel rank holds the same "
                       "number of experts)", l->ep, l->n_routed_experts);
    if (l->batch % (l->ep * l->dp))
        return sm_fail(err, "launch layout: %s %d does not split over the %d ranks of parallel.ep "
                       "%d x parallel.dp %d (each rank runs its own sequences: make it a "
                       "multiple of %d)", l->batch_field, l->batch, l->ep * l->dp, l->ep, l->dp,
                       l->ep * l->dp);
    return 0;
}

/* A rank's start-up record: {hash, failed, pid, host} */
enum { SM_RECORD = 4, SM_LAUNCH_TAG = 0x534d0000 };

/* FNV-1a of this host's name: ranks with the same one share the host. */
static uint64_t sm_host_hash(void)
{
    char name[256] = "";
    gethostname(name, sizeof name - 1);
    return sm_fnv1a(0xcbf29ce484222325ull, name, strlen(name));
}

static void sm_count_done(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

/* Sends mine (SM_RECORD words) to every other rank and receives theirs into all[rank], waiting
 * at most timeout_s; a rank that does not answer is named. */
static int sm_exchange(const uint64_t *mine, uint64_t *all, double timeout_s, sm_error *err)
{
    int me = sm_engine_rank(), n = sm_engine_size();
    starpu_data_handle_t h[n];
    /* on the heap: a peer's late answer may still land after a time-out */
    atomic_int *got = calloc((size_t)n + 1, sizeof *got), *sent = got + n;
    if (!got) return sm_fail(err, "start-up: out of memory");
    memcpy(all + (size_t)me * SM_RECORD, mine, SM_RECORD * sizeof *mine);
    for (int r = 0; r < n; r++) {
        atomic_init(&got[r], r == me);
        starpu_vector_data_register(&h[r], STARPU_MAIN_RAM, (uintptr_t)(all + r * SM_RECORD),
                                    SM_RECORD, sizeof *all);
    }
    int posted = 0;
    for (int r = 0; r < n; r++)
        if (r != me)
            posted |= starpu_mpi_irecv_detached(h[r], r, SM_LAUNCH_TAG + r, MPI_COMM_WORLD,
                                                sm_count_done, &got[r]);
    for (int r = 0; r < n; r++)
        if (r != me)
            posted |= starpu_mpi_isend_detached(h[me], r, SM_LAUNCH_TAG + me, MPI_COMM_WORLD,
                                                sm_count_done, sent);
    if (posted) {
        sm_abandon(got, all);
        return sm_fail(err, "start-up: StarPU-MPI refused the layout check's messages");
    }
    double deadline = sm_now() + timeout_s;
    int missing = -1;
    for (;;) {
        missing = -1;
        for (int r = n - 1; r >= 0; r--)
            if (!atomic_load(&got[r])) missing = r;
        if (missing < 0 && atomic_load(sent) == n - 1) break;
        if (sm_now() > deadline) {
            sm_abandon(got, all);
            if (missing < 0)
                return sm_fail(err, "start-up: the other ranks did not take rank %d's layout "
                               "check within parallel.timeout_s %g s", me, timeout_s);
            return sm_fail(err, "start-up: rank %d did not send its layout check within "
                           "parallel.timeout_s %g s", missing, timeout_s);
        }
        usleep(1000);
    }
    for (int r = 0; r < n; r++) starpu_data_unregister(h[r]);
    free(got);
    return 0;
}

/* The agreement of all ranks on the exchanged records. */
static int sm_agree(const uint64_t *all, int n, const sm_error *mine, int failed, sm_error *err)
{
    for (int r = 1; r < n; r++)
        if (all[r * SM_RECORD] != all[0])
            return sm_fail(err, "start-up: rank %d runs another build or another run config "
                           "than rank 0 (hash %016" PRIx64 ", rank 0's %016" PRIx64 "): launch "
                           "the same binary with the same config on every rank", r,
                           all[r * SM_RECORD], all[0]);
    if (failed) return sm_fail(err, "%s", mine->msg);
    for (int r = 0; r < n; r++)
        if (all[r * SM_RECORD + 1])
            return sm_fail(err, "start-up: rank %d refused the launch layout (its error names "
                           "the field)", r);
    return 0;
}

int sm_engine_check_launch(const sm_launch *given, sm_error *err)
{
    int n = sm_engine_size();
    sm_error local = {{0}};
    sm_launch l = *given;       /* zero fields take the defaults: one rank, 120 s */
    if (l.ep < 1) l.ep = 1;
    if (l.dp < 1) l.dp = 1;
    l.timeout_s = sm_launch_timeout(&l);
    if (!l.batch_field) l.batch_field = "the batch";
    int failed = sm_check_layout(&l, n, &local) != 0;
    if (n == 1) return failed ? sm_fail(err, "%s", local.msg) : 0;
    if (!sm_mpi_up)
        return sm_fail(err, "start-up: %d ranks launched but the engine did not start "
                       "StarPU-MPI", n);
    uint64_t *all = calloc((size_t)n * SM_RECORD, sizeof *all);
    if (!all) return sm_fail(err, "start-up: out of memory");
    uint64_t mine[SM_RECORD] = {sm_launch_hash(l.identity ? l.identity : ""), failed,
                                (uint64_t)getpid(), sm_host_hash()};
    int rc = sm_exchange(mine, all, l.timeout_s, err);
    if (rc == 0) rc = sm_agree(all, n, &local, failed, err);
    if (rc == 0) {
        /* a rank lost on this host is named by the others when mpirun stops them */
        for (int r = 0; r < n && r < SM_COMM_MAX_RANKS; r++)
            sm_comm_peer(r, all[r * SM_RECORD + 3] == mine[3] ? (int)all[r * SM_RECORD + 2] : 0);
        sm_comm_watch_signals();
    }
    if (!sm_comm_abandoned()) free(all);
    return rc;
}
