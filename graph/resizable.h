/* Resizable buffers: a StarPU data interface for host buffers whose size is known only when
 * the task writing them runs (a routed expert's rows: as many as tokens chose it). The buffer
 * looks like a StarPU vector to kernels (STARPU_VECTOR_GET_PTR/NX work unchanged); the task
 * that writes it sets its size with sm_resizable_resize, which reallocates exactly. Through
 * StarPU-MPI a buffer travels at its current size: the message is its element count and its
 * elements, and the receiving buffer takes that size. Host memory only (CPU workers). */
#ifndef STARMOE_RESIZABLE_H
#define STARMOE_RESIZABLE_H

#include <stddef.h>
#include <starpu.h>

/* Registers an empty buffer (no elements) of elemsize-byte elements on the host. */
void sm_resizable_register(starpu_data_handle_t *handle, size_t elemsize);
/* Unregisters it and frees its memory. */
void sm_resizable_unregister(starpu_data_handle_t handle);
/* Whether a handle is a resizable buffer. */
int sm_resizable_is(starpu_data_handle_t handle);
/* The current size in bytes (0 when not yet written). */
size_t sm_resizable_bytes(starpu_data_handle_t handle);
/* In a task that writes the buffer (its interface pointer from the task's buffers): makes it
 * hold nx elements, keeping the first min(old, nx) ones, and returns its memory (NULL for
 * nx = 0). Aborts with a message when memory runs out, as kernels do. */
void *sm_resizable_resize(void *buffer, size_t nx);

#endif
