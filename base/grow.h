/* Growing arrays: one helper for every growable array of the graph, the tracer and the trace
 * io (capacity doubles, so appending is amortised constant time). */
#ifndef STARMOE_GROW_H
#define STARMOE_GROW_H

#include <stdlib.h>

/* Makes the array at *(T **)array hold at least n elements of elem_size bytes, updating *cap
 * (its capacity in elements). 0 on success; -1 when out of memory (the array is unchanged). */
static inline int sm_grow(void *array, size_t *cap, size_t n, size_t elem_size)
{
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    void *p = realloc(*(void **)array, c * elem_size);
    if (!p) return -1;
    *(void **)array = p;
    *cap = c;
    return 0;
}

#endif
