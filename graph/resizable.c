/* The resizable buffer interface (resizable.h). Its descriptor is StarPU's vector descriptor
 * (id, ptr, nx, elemsize), so kernels read it with the vector macros; its own interface id
 * keeps StarPU-MPI from sending it as a fixed-size MPI datatype: StarPU-MPI packs it instead,
 * with the size first. Buffers are registered on the host with no memory; the task writing one
 * reallocates it to the size it needs, and the buffer keeps that memory until the next resize
 * or its release, on every node (only the host holds the data). Large buffers have their own
 * anonymous mapping, resized with mremap, so that memory a buffer gives up goes back to the
 * system at once: on the heap, a step resizing every expert's buffers leaves the holes of the
 * moved ones resident (about 250 MB on SMALL's training step). Small ones stay on the heap. */
#define _GNU_SOURCE
#include "graph/resizable.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Buffers of at least this many bytes are mapped (glibc's default mmap threshold). */
#define SM_MAP_MIN ((size_t)128 << 10)

static int sm_mapped(size_t bytes) { return bytes >= SM_MAP_MIN; }

/* A mapping's length: bytes rounded up to whole pages. */
static size_t sm_map_len(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

/* Memory for a buffer of `bytes` (> 0) bytes; NULL when there is none. */
static void *sm_mem_new(size_t bytes)
{
    if (!sm_mapped(bytes)) return malloc(bytes);
    void *p = mmap(NULL, sm_map_len(bytes), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void sm_mem_free(void *p, size_t bytes)
{
    if (!p) return;
    if (sm_mapped(bytes)) munmap(p, sm_map_len(bytes));
    else free(p);
}

/* p (`old` bytes, p NULL when 0) resized to `bytes` (> 0) bytes, its first min(old, bytes)
 * kept; NULL (p untouched) when memory runs out. */
static void *sm_mem_resize(void *p, size_t old, size_t bytes)
{
    if (!p) return sm_mem_new(bytes);
    if (!sm_mapped(old) && !sm_mapped(bytes)) return realloc(p, bytes);
    if (sm_mapped(old) && sm_mapped(bytes)) {
        void *q = mremap(p, sm_map_len(old), sm_map_len(bytes), MREMAP_MAYMOVE);
        return q == MAP_FAILED ? NULL : q;
    }
    void *q = sm_mem_new(bytes);
    if (!q) return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    sm_mem_free(p, old);
    return q;
}

typedef struct starpu_vector_interface sm_resizable;

static enum starpu_data_interface_id sm_resizable_id = STARPU_UNKNOWN_INTERFACE_ID;

/* The home node's descriptor keeps the pointer; no other node ever holds the data. */
static void sm_resizable_register_handle(starpu_data_handle_t h, unsigned home, void *itf)
{
    const sm_resizable *src = itf;
    for (unsigned node = 0; node < STARPU_MAXNODES; node++) {
        sm_resizable *dst = starpu_data_get_interface_on_node(h, node);
        *dst = (sm_resizable){.id = src->id, .nx = src->nx, .elemsize = src->elemsize,
                              .ptr = node == home ? src->ptr : 0};
    }
}

static starpu_ssize_t sm_resizable_alloc(void *itf, unsigned node)
{
    sm_resizable *v = itf;
    size_t bytes = (size_t)v->nx * v->elemsize;
    (void)node;
    void *p = bytes ? sm_mem_new(bytes) : NULL;
    if (bytes && !p) return -ENOMEM;
    v->ptr = (uintptr_t)p;
    return (starpu_ssize_t)bytes;
}

static void sm_resizable_free(void *itf, unsigned node)
{
    sm_resizable *v = itf;
    (void)node;
    sm_mem_free((void *)v->ptr, (size_t)v->nx * v->elemsize);
    v->ptr = 0;
}

static void *sm_resizable_to_pointer(void *itf, unsigned node)
{
    (void)node;
    return (void *)((sm_resizable *)itf)->ptr;
}

static sm_resizable *sm_resizable_host(starpu_data_handle_t h)
{
    return starpu_data_get_interface_on_node(h, STARPU_MAIN_RAM);
}

static size_t sm_resizable_size(starpu_data_handle_t h)
{
    const sm_resizable *v = sm_resizable_host(h);
    return (size_t)v->nx * v->elemsize;
}

/* Performance models key on the element size only: the row count changes from step to step. */
static uint32_t sm_resizable_footprint(starpu_data_handle_t h)
{
    return starpu_hash_crc32c_be((uint32_t)sm_resizable_host(h)->elemsize, sm_resizable_id);
}

static int sm_resizable_compare(void *a, void *b)
{
    return ((sm_resizable *)a)->elemsize == ((sm_resizable *)b)->elemsize;
}

static void sm_resizable_display(starpu_data_handle_t h, FILE *f)
{
    fprintf(f, "%u\t", (unsigned)sm_resizable_host(h)->nx);
}

static starpu_ssize_t sm_resizable_describe(void *itf, char *buf, size_t size)
{
    return snprintf(buf, size, "R%ux%u", (unsigned)((sm_resizable *)itf)->nx,
                    (unsigned)((sm_resizable *)itf)->elemsize);
}

static int sm_resizable_copy(void *src, unsigned src_node, void *dst, unsigned dst_node)
{
    sm_resizable *s = src;
    void *p = sm_resizable_resize(dst, s->nx);
    (void)src_node;
    (void)dst_node;
    if (s->nx) memcpy(p, (void *)s->ptr, (size_t)s->nx * s->elemsize);
    return 0;
}

static const struct starpu_data_copy_methods sm_resizable_copies = {
    .ram_to_ram = sm_resizable_copy};

/* A message is the element count (8 bytes) then the elements: never empty, as StarPU-MPI
 * needs. */
static int sm_resizable_pack(starpu_data_handle_t h, unsigned node, void **ptr,
                             starpu_ssize_t *count)
{
    const sm_resizable *v = starpu_data_get_interface_on_node(h, node);
    size_t bytes = (size_t)v->nx * v->elemsize;
    uint64_t nx = v->nx;
    *count = (starpu_ssize_t)(sizeof nx + bytes);
    if (!ptr) return 0;
    char *p = (char *)starpu_malloc_on_node_flags(node, (size_t)*count, 0);
    if (!p) {
        fprintf(stderr, "starmoe: out of memory packing a %zu-byte message\n", bytes);
        abort();
    }
    memcpy(p, &nx, sizeof nx);
    if (bytes) memcpy(p + sizeof nx, (void *)v->ptr, bytes);
    *ptr = p;
    return 0;
}

static int sm_resizable_unpack(starpu_data_handle_t h, unsigned node, void *ptr, size_t count)
{
    sm_resizable *v = starpu_data_get_interface_on_node(h, node);
    uint64_t nx;
    memcpy(&nx, ptr, sizeof nx);
    if (count != sizeof nx + nx * v->elemsize) {
        fprintf(stderr, "starmoe: a resizable buffer's message has %zu bytes, not the %zu its "
                        "count says\n", count, (size_t)(sizeof nx + nx * v->elemsize));
        abort();
    }
    void *dst = sm_resizable_resize(v, (size_t)nx);
    if (nx) memcpy(dst, (char *)ptr + sizeof nx, (size_t)nx * v->elemsize);
    starpu_free_on_node_flags(node, (uintptr_t)ptr, count, 0);
    return 0;
}

static struct starpu_data_interface_ops sm_resizable_ops = {
    .register_data_handle = sm_resizable_register_handle,
    .allocate_data_on_node = sm_resizable_alloc,
    .free_data_on_node = sm_resizable_free,
    .copy_methods = &sm_resizable_copies,
    .to_pointer = sm_resizable_to_pointer,
    .get_size = sm_resizable_size,
    .footprint = sm_resizable_footprint,
    .compare = sm_resizable_compare,
    .display = sm_resizable_display,
    .describe = sm_resizable_describe,
    .interface_size = sizeof(sm_resizable),
    .dontcache = 1,
    .pack_data = sm_resizable_pack,
    .unpack_data = sm_resizable_unpack,
    .name = "STARMOE_RESIZABLE_INTERFACE"};

void sm_resizable_register(starpu_data_handle_t *handle, size_t elemsize)
{
    static starpu_pthread_mutex_t lock = STARPU_PTHREAD_MUTEX_INITIALIZER;
    STARPU_PTHREAD_MUTEX_LOCK(&lock);
    if (sm_resizable_id == STARPU_UNKNOWN_INTERFACE_ID) {
        sm_resizable_id = (enum starpu_data_interface_id)starpu_data_interface_get_next_id();
        sm_resizable_ops.interfaceid = sm_resizable_id;
    }
    STARPU_PTHREAD_MUTEX_UNLOCK(&lock);
    sm_resizable v = {.id = sm_resizable_id, .elemsize = elemsize};
    starpu_data_register(handle, STARPU_MAIN_RAM, &v, &sm_resizable_ops);
}

void sm_resizable_unregister(starpu_data_handle_t handle)
{
    /* the home node's memory is ours, not StarPU's: read its pointer once the tasks are done */
    starpu_data_acquire(handle, STARPU_R);
    void *p = (void *)sm_resizable_host(handle)->ptr;
    size_t bytes = sm_resizable_size(handle);
    starpu_data_release(handle);
    starpu_data_unregister(handle);
    sm_mem_free(p, bytes);
}

int sm_resizable_is(starpu_data_handle_t handle)
{
    return sm_resizable_id != STARPU_UNKNOWN_INTERFACE_ID &&
           starpu_data_get_interface_id(handle) == sm_resizable_id;
}

size_t sm_resizable_bytes(starpu_data_handle_t handle) { return sm_resizable_size(handle); }

void *sm_resizable_resize(void *buffer, size_t nx)
{
    sm_resizable *v = buffer;
    size_t old = (size_t)v->nx * v->elemsize;
    if (nx == v->nx) return (void *)v->ptr;
    void *p = nx ? sm_mem_resize((void *)v->ptr, old, nx * v->elemsize) : NULL;
    if (nx && !p) {
        fprintf(stderr, "starmoe: out of memory resizing a buffer to %zu bytes\n",
                nx * v->elemsize);
        abort();
    }
    if (!nx) sm_mem_free((void *)v->ptr, old);
    v->ptr = (uintptr_t)p;
    v->nx = (uint32_t)nx;
    return p;
}
