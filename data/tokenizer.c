/* Byte-level BPE tokenizer (see tokenizer.h): hash tables, the pre-tokeniser, training with
 * incremental pair counts and a lazy max-heap, the text file format, and a caching encoder. */
#include "data/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/aprintf.h"
#include "base/atomic_file.h"
#include "base/file.h"
#include "io/safetensors.h"

#define N_BYTES 256
#define MAGIC "starmoe-bpe"
#define FORMAT_VERSION 1
/* The encoder's chunk cache is dropped when it grows past these sizes. */
#define CACHE_MAX_CHUNKS (1u << 20)
#define CACHE_MAX_IDS ((size_t)1 << 24)

/* ---- growable arrays and hashing ---- */

int sm_grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    void *p;
    size_t nc = *cap ? *cap : 16;
    if (need <= *cap) return 0;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return -1;
        nc *= 2;
    }
    if (nc > SIZE_MAX / elem) return -1;
    memcpy(&p, pp, sizeof p);
    p = realloc(p, nc * elem);
    if (!p) return -1;
    memcpy(pp, &p, sizeof p);
    *cap = nc;
    return 0;
}

uint64_t sm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(const unsigned char *s, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    return sm_mix64(h ^ n);
}

static uint64_t pair_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

typedef struct span {
    size_t off, len;
} span;

/* ---- open-addressing index table: maps keys stored by the caller to dense entry indices ---- */

typedef struct idx_table {
    uint32_t *slots;             /* entry index + 1, 0 = empty; a power of two of them */
    size_t mask;
    uint64_t *hashes;            /* per entry, for rehashing */
    size_t n, hcap;
} idx_table;

/* Does entry idx hold the key described by ctx? */
typedef int (*idx_eq)(const void *ctx, uint32_t idx);

/* Slot holding the key (hash h), or the empty slot where it belongs. */
static size_t idx_probe(const idx_table *t, uint64_t h, idx_eq eq, const void *ctx)
{
    size_t i = h & t->mask;
    while (t->slots[i]) {
        uint32_t e = t->slots[i] - 1;
        if (t->hashes[e] == h && eq(ctx, e)) break;
        i = (i + 1) & t->mask;
    }
    return i;
}

static int idx_rehash(idx_table *t, size_t nslots)
{
    uint32_t *s = calloc(nslots, sizeof *s);
    if (!s) return -1;
    for (size_t e = 0; e < t->n; e++) {
        size_t i = t->hashes[e] & (nslots - 1);
        while (s[i]) i = (i + 1) & (nslots - 1);
        s[i] = (uint32_t)e + 1;
    }
    free(t->slots);
    t->slots = s;
    t->mask = nslots - 1;
    return 0;
}

/* Entry index of the key, -1 when absent. */
static int64_t idx_find(const idx_table *t, uint64_t h, idx_eq eq, const void *ctx)
{
    if (!t->slots) return -1;
    size_t i = idx_probe(t, h, eq, ctx);
    return t->slots[i] ? (int64_t)t->slots[i] - 1 : -1;
}

/* Finds or adds the key; *added is 1 when it is new (the caller then stores it at *idx). */
static int idx_insert(idx_table *t, uint64_t h, idx_eq eq, const void *ctx, uint32_t *idx,
                      int *added)
{
    if ((!t->slots || (t->n + 1) * 2 > t->mask + 1) &&
        idx_rehash(t, t->slots ? 2 * (t->mask + 1) : 64))
        return -1;
    size_t i = idx_probe(t, h, eq, ctx);
    *added = !t->slots[i];
    if (!*added) {
        *idx = t->slots[i] - 1;
        return 0;
    }
    if (t->n >= UINT32_MAX - 1 || SM_GROW(t->hashes, t->hcap, t->n + 1)) return -1;
    t->hashes[t->n] = h;
    t->slots[i] = (uint32_t)++t->n;
    *idx = (uint32_t)t->n - 1;
    return 0;
}

static void idx_clear(idx_table *t)
{
    if (t->slots) memset(t->slots, 0, (t->mask + 1) * sizeof *t->slots);
    t->n = 0;
}

static void idx_free(idx_table *t)
{
    free(t->slots);
    free(t->hashes);
}

/* ---- byte-string table: interns chunks ---- */

typedef struct strtab {
    idx_table idx;
    span *spans;                 /* per entry, into bytes */
    size_t scap;
    unsigned char *bytes;
    size_t nbytes, bcap;
} strtab;

typedef struct str_key {
    const strtab *t;
    const unsigned char *s;
    size_t n;
} str_key;

static int str_eq(const void *ctx, uint32_t idx)
{
    const str_key *k = ctx;
    const span *sp = &k->t->spans[idx];
    return sp->len == k->n && memcmp(k->t->bytes + sp->off, k->s, k->n) == 0;
}

static int64_t strtab_find(const strtab *t, const unsigned char *s, size_t n)
{
    str_key k = {t, s, n};
    return idx_find(&t->idx, hash_bytes(s, n), str_eq, &k);
}

static int strtab_intern(strtab *t, const unsigned char *s, size_t n, uint32_t *idx, int *added)
{
    str_key k = {t, s, n};
    if (SM_GROW(t->spans, t->scap, t->idx.n + 1) || SM_GROW(t->bytes, t->bcap, t->nbytes + n) ||
        idx_insert(&t->idx, hash_bytes(s, n), str_eq, &k, idx, added))
        return -1;
    if (*added) {
        memcpy(t->bytes + t->nbytes, s, n);
        t->spans[*idx] = (span){t->nbytes, n};
        t->nbytes += n;
    }
    return 0;
}

static void strtab_clear(strtab *t)
{
    idx_clear(&t->idx);
    t->nbytes = 0;
}

static void strtab_free(strtab *t)
{
    idx_free(&t->idx);
    free(t->spans);
    free(t->bytes);
}

/* ---- pair table: interns (left, right) pairs ---- */

typedef struct pairtab {
    idx_table idx;
    uint64_t *keys;              /* per entry: pair_key(left, right) */
    size_t kcap;
} pairtab;

typedef struct pair_ctx {
    const pairtab *t;
    uint64_t key;
} pair_ctx;

static int pair_eq(const void *ctx, uint32_t idx)
{
    const pair_ctx *k = ctx;
    return k->t->keys[idx] == k->key;
}

static int64_t pair_find(const pairtab *t, uint64_t key)
{
    pair_ctx k = {t, key};
    return idx_find(&t->idx, sm_mix64(key), pair_eq, &k);
}

static int pair_intern(pairtab *t, uint64_t key, uint32_t *idx, int *added)
{
    pair_ctx k = {t, key};
    if (SM_GROW(t->keys, t->kcap, t->idx.n + 1) ||
        idx_insert(&t->idx, sm_mix64(key), pair_eq, &k, idx, added))
        return -1;
    t->keys[*idx] = key;
    return 0;
}

static void pairtab_free(pairtab *t)
{
    idx_free(&t->idx);
    free(t->keys);
}

/* ---- binary heap of fixed-size entries ordered by a `before` function ---- */

#define HEAP_MAX_ELEM 32

typedef struct heap {
    unsigned char *v;
    size_t n, cap, size;
    int (*before)(const void *a, const void *b);
} heap;

static void *heap_at(const heap *h, size_t i) { return h->v + i * h->size; }

/* Both sifts move a hole instead of swapping, and drop the entry in at the end. */
static int heap_push(heap *h, const void *e)
{
    if (sm_grow(&h->v, &h->cap, h->n + 1, h->size)) return -1;
    size_t i = h->n++;
    while (i > 0 && h->before(e, heap_at(h, (i - 1) / 2))) {
        memcpy(heap_at(h, i), heap_at(h, (i - 1) / 2), h->size);
        i = (i - 1) / 2;
    }
    memcpy(heap_at(h, i), e, h->size);
    return 0;
}

/* Removes the first entry into out; the heap must not be empty. */
static void heap_pop(heap *h, void *out)
{
    unsigned char last[HEAP_MAX_ELEM];
    size_t i = 0, c;
    memcpy(out, heap_at(h, 0), h->size);
    memcpy(last, heap_at(h, --h->n), h->size);
    while ((c = 2 * i + 1) < h->n) {
        if (c + 1 < h->n && h->before(heap_at(h, c + 1), heap_at(h, c))) c++;
        if (!h->before(heap_at(h, c), last)) break;
        memcpy(heap_at(h, i), heap_at(h, c), h->size);
        i = c;
    }
    memcpy(heap_at(h, i), last, h->size);
}

/* ---- UTF-8 and pre-tokenisation ---- */

enum { CL_LETTER, CL_DIGIT, CL_SPACE, CL_NEWLINE, CL_CJK, CL_OTHER, CL_INVALID };

/* Length of the valid UTF-8 sequence at s (its code point in *cp), 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    unsigned c = s[0];
    size_t len;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if ((c & 0xF0) == 0xE0) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if (n < len) return 0;
    uint32_t v = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min_cp[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int sm_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp;
    for (size_t pos = 0, l; pos < n; pos += l)
        if (!(l = utf8_decode(u + pos, n - pos, &cp))) return 0;
    return 1;
}

static int is_cjk(uint32_t cp)
{
    return (cp >= 0x3000 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7AF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFF00 && cp <= 0xFFEF) ||
           (cp >= 0x20000 && cp <= 0x2FFFF);
}

static int ascii_class(unsigned c)
{
    if ((unsigned)((c | 32) - 'a') < 26) return CL_LETTER;
    if ((unsigned)(c - '0') < 10) return CL_DIGIT;
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f') return CL_SPACE;
    if (c == '\n' || c == '\r') return CL_NEWLINE;
    return CL_OTHER;
}

/* Class of the code point (or invalid byte) at s; *len its length in bytes. */
static int classify(const unsigned char *s, size_t n, size_t *len)
{
    uint32_t cp;
    if (s[0] < 0x80) {
        *len = 1;
        return ascii_class(s[0]);
    }
    *len = utf8_decode(s, n, &cp);
    if (!*len) {
        *len = 1;
        return CL_INVALID;
    }
    return is_cjk(cp) ? CL_CJK : CL_LETTER;
}

/* Bytes of the run of class cls at s (digit runs stop after 3 digits). */
static size_t run_len(const unsigned char *s, size_t n, int cls)
{
    size_t pos = 0, count = 0, l;
    while (pos < n && !(cls == CL_DIGIT && count == 3) && classify(s + pos, n - pos, &l) == cls) {
        pos += l;
        count++;
    }
    return pos;
}

/* Class of the code point at s when a leading space may join it (letter, digit, other), or -1. */
static int word_class(const unsigned char *s, size_t n)
{
    size_t l;
    int cls = classify(s, n, &l);
    return cls == CL_LETTER || cls == CL_DIGIT || cls == CL_OTHER ? cls : -1;
}

/* Chunk starting with a space character: " word", or a run of spaces. */
static size_t space_chunk(const unsigned char *s, size_t n)
{
    int cls = n > 1 && s[0] == ' ' ? word_class(s + 1, n - 1) : -1;
    if (cls >= 0) return 1 + run_len(s + 1, n - 1, cls);
    size_t e = run_len(s, n, CL_SPACE);
    if (e > 1 && e < n && s[e - 1] == ' ' && word_class(s + e, n - e) >= 0) return e - 1;
    return e;
}

size_t sm_tokenizer_chunk(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t l;
    if (len == 0) return 0;
    int cls = classify(s, len, &l);
    if (cls == CL_CJK || cls == CL_INVALID) return l;
    if (cls == CL_SPACE) return space_chunk(s, len);
    return run_len(s, len, cls);
}

/* ---- the tokenizer: merges and the bytes of every token ---- */

struct sm_tokenizer {
    int nmerges;
    pairtab ranks;               /* the merges in order: entry index == rank */
    span *tok;                   /* per id below 256 + nmerges: its bytes in tok_bytes */
    size_t tcap;
    unsigned char *tok_bytes;
    size_t nbytes, bcap;
};

void sm_tokenizer_free(sm_tokenizer *t)
{
    if (!t) return;
    pairtab_free(&t->ranks);
    free(t->tok);
    free(t->tok_bytes);
    free(t);
}

/* A tokenizer with the 256 byte tokens and no merge. */
static sm_tokenizer *tokenizer_new(sm_error *err)
{
    sm_tokenizer *t = calloc(1, sizeof *t);
    if (!t || SM_GROW(t->tok, t->tcap, N_BYTES) || SM_GROW(t->tok_bytes, t->bcap, N_BYTES)) {
        sm_tokenizer_free(t);
        sm_fail(err, "tokenizer: out of memory");
        return NULL;
    }
    for (int i = 0; i < N_BYTES; i++) {
        t->tok[i] = (span){(size_t)i, 1};
        t->tok_bytes[i] = (unsigned char)i;
    }
    t->nbytes = N_BYTES;
    return t;
}

/* Appends the merge (left, right) as id 256 + nmerges. Returns 0, 1 when the pair is already a
 * merge, -1 when out of memory. Both ids must be defined. */
static int tokenizer_add_merge(sm_tokenizer *t, int32_t left, int32_t right)
{
    uint32_t idx;
    int added;
    size_t id = N_BYTES + (size_t)t->nmerges;
    span l = t->tok[left], r = t->tok[right];
    if (SM_GROW(t->tok, t->tcap, id + 1) ||
        SM_GROW(t->tok_bytes, t->bcap, t->nbytes + l.len + r.len) ||
        pair_intern(&t->ranks, pair_key(left, right), &idx, &added))
        return -1;
    if (!added) return 1;
    memcpy(t->tok_bytes + t->nbytes, t->tok_bytes + l.off, l.len);
    memcpy(t->tok_bytes + t->nbytes + l.len, t->tok_bytes + r.off, r.len);
    t->tok[id] = (span){t->nbytes, l.len + r.len};
    t->nbytes += l.len + r.len;
    t->nmerges++;
    return 0;
}

int sm_tokenizer_vocab_size(const sm_tokenizer *t) { return N_BYTES + t->nmerges + 1; }

int32_t sm_tokenizer_eot(const sm_tokenizer *t) { return N_BYTES + t->nmerges; }

int sm_tokenizer_token_bytes(const sm_tokenizer *t, int32_t id)
{
    if (id < 0 || id > sm_tokenizer_eot(t)) return -1;
    return id == sm_tokenizer_eot(t) ? 0 : (int)t->tok[id].len;
}

static int check_vocab_size(long long v, const char *where, sm_error *err)
{
    if (v >= N_BYTES + 1 && v <= SM_TOKENIZER_MAX_VOCAB) return 0;
    return sm_fail(err, "%s: vocab size %lld outside [%d, %d]", where, v, N_BYTES + 1,
                   SM_TOKENIZER_MAX_VOCAB);
}

/* ---- training ---- */

typedef struct occ_list {
    uint32_t *v;                 /* chunks that contained the pair (maybe no longer) */
    size_t n, cap;
} occ_list;

typedef struct pair_state {
    int64_t count;               /* weighted occurrences */
    occ_list occ;
    uint32_t stamp;              /* last merge step that increased the count */
} pair_state;

typedef struct chunk {
    size_t off, len;             /* symbols in trainer.sym */
    int64_t weight;              /* occurrences of the chunk in the corpus */
    uint32_t stamp;              /* last merge step that rewrote it */
} chunk;

typedef struct heap_entry {
    int64_t count;               /* the pair's count when pushed */
    uint64_t key;
    uint32_t pair;
} heap_entry;

typedef struct trainer {
    sm_tokenizer *tok;
    int32_t *sym;                /* every unique chunk's symbols, rewritten in place */
    chunk *chunks;
    size_t nchunks;
    pairtab pairs;
    pair_state *ps;
    size_t pcap;
    heap heap;                   /* lazy: an entry is stale when its count differs */
    uint32_t *touched;           /* pairs whose count rose in the current step */
    size_t ntouched, tcap;
    uint32_t step;
} trainer;

_Static_assert(sizeof(heap_entry) <= HEAP_MAX_ELEM, "heap entry too large");

/* Higher count first, then the smaller (left, right). */
static int entry_before(const void *a, const void *b)
{
    const heap_entry *x = a, *y = b;
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}

/* Interns each chunk (of two bytes or more: shorter ones hold no pair) and counts it. */
static int count_chunks(strtab *st, int64_t **counts, const char *const *docs,
                        const size_t *lens, size_t ndocs)
{
    size_t ccap = 0;
    for (size_t d = 0; d < ndocs; d++)
        for (size_t pos = 0, cl; pos < lens[d]; pos += cl) {
            uint32_t idx;
            int added;
            cl = sm_tokenizer_chunk(docs[d] + pos, lens[d] - pos);
            if (cl < 2) continue;
            if (strtab_intern(st, (const unsigned char *)docs[d] + pos, cl, &idx, &added) ||
                SM_GROW(*counts, ccap, (size_t)idx + 1))
                return -1;
            if (added) (*counts)[idx] = 0;
            (*counts)[idx]++;
        }
    return 0;
}

/* Adds delta to the count of (x, y) as seen in chunk k. */
static int pair_delta(trainer *tr, int32_t x, int32_t y, int64_t delta, uint32_t k)
{
    uint32_t p;
    int added;
    if (pair_intern(&tr->pairs, pair_key(x, y), &p, &added)) return -1;
    if (added) {
        if (SM_GROW(tr->ps, tr->pcap, (size_t)p + 1)) return -1;
        tr->ps[p] = (pair_state){0};
    }
    pair_state *s = &tr->ps[p];
    s->count += delta;
    if (delta <= 0) return 0;
    if (s->occ.n == 0 || s->occ.v[s->occ.n - 1] != k) {
        if (SM_GROW(s->occ.v, s->occ.cap, s->occ.n + 1)) return -1;
        s->occ.v[s->occ.n++] = k;
    }
    if (s->stamp == tr->step) return 0;
    s->stamp = tr->step;
    if (SM_GROW(tr->touched, tr->tcap, tr->ntouched + 1)) return -1;
    tr->touched[tr->ntouched++] = p;
    return 0;
}

static int push_pair(trainer *tr, uint32_t p)
{
    heap_entry e = {tr->ps[p].count, tr->pairs.keys[p], p};
    return heap_push(&tr->heap, &e);
}

/* Turns the interned chunks into symbol sequences and counts every adjacent pair. */
static int trainer_setup(trainer *tr, const strtab *st, const int64_t *counts)
{
    tr->nchunks = st->idx.n;
    tr->sym = malloc((st->nbytes ? st->nbytes : 1) * sizeof *tr->sym);
    tr->chunks = malloc((tr->nchunks ? tr->nchunks : 1) * sizeof *tr->chunks);
    if (!tr->sym || !tr->chunks) return -1;
    for (size_t i = 0; i < st->nbytes; i++) tr->sym[i] = st->bytes[i];
    for (uint32_t k = 0; k < tr->nchunks; k++) {
        tr->chunks[k] = (chunk){st->spans[k].off, st->spans[k].len, counts[k], 0};
        const int32_t *s = tr->sym + tr->chunks[k].off;
        for (size_t i = 0; i + 1 < tr->chunks[k].len; i++)
            if (pair_delta(tr, s[i], s[i + 1], counts[k], k)) return -1;
    }
    for (uint32_t p = 0; p < tr->pairs.idx.n; p++)
        if (push_pair(tr, p)) return -1;
    return 0;
}

/* Rewrites chunk k replacing each (a, b) by c, left to right, and updates the neighbours'
 * pair counts; the left neighbour is read after rewriting so runs like "abab" stay exact. */
static int merge_chunk(trainer *tr, uint32_t k, int32_t a, int32_t b, int32_t c)
{
    chunk *ch = &tr->chunks[k];
    int32_t *s = tr->sym + ch->off;
    size_t n = ch->len, out = 0;
    int64_t w = ch->weight;
    for (size_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (out > 0 && (pair_delta(tr, s[out - 1], a, -w, k) ||
                            pair_delta(tr, s[out - 1], c, w, k)))
                return -1;
            if (i + 2 < n && (pair_delta(tr, b, s[i + 2], -w, k) ||
                              pair_delta(tr, c, s[i + 2], w, k)))
                return -1;
            s[out++] = c;
            i += 2;
        } else {
            s[out++] = s[i++];
        }
    }
    ch->len = out;
    return 0;
}

/* Applies pair p as the next merge to every chunk that holds it. */
static int trainer_merge(trainer *tr, uint32_t p)
{
    uint64_t key = tr->pairs.keys[p];
    int32_t a = (int32_t)(key >> 32), b = (int32_t)(key & 0xFFFFFFFFu);
    int32_t c = N_BYTES + tr->tok->nmerges;
    occ_list occ = tr->ps[p].occ;   /* tr->ps may move while new pairs appear */
    int rc = 0;
    tr->ps[p].occ = (occ_list){0};
    tr->step++;
    tr->ntouched = 0;
    for (size_t i = 0; i < occ.n && !rc; i++) {
        uint32_t k = occ.v[i];
        if (tr->chunks[k].stamp == tr->step) continue;
        tr->chunks[k].stamp = tr->step;
        rc = merge_chunk(tr, k, a, b, c);
    }
    free(occ.v);
    tr->ps[p].count = 0;
    if (rc || tokenizer_add_merge(tr->tok, a, b)) return -1;
    for (size_t i = 0; i < tr->ntouched; i++)
        if (tr->ps[tr->touched[i]].count > 0 && push_pair(tr, tr->touched[i])) return -1;
    return 0;
}

/* Length in bytes of the token that merging the pair `key` would make. */
static size_t merged_bytes(const sm_tokenizer *t, uint64_t key)
{
    return t->tok[key >> 32].len + t->tok[key & 0xFFFFFFFFu].len;
}

/* Merges the most frequent pair until nmerges merges exist or no pair occurs twice; a pair that
 * would make a token longer than SM_TOKENIZER_MAX_TOKEN_BYTES is left out of the heap. */
static int trainer_run(trainer *tr, int nmerges)
{
    while (tr->tok->nmerges < nmerges && tr->heap.n > 0) {
        heap_entry e;
        heap_pop(&tr->heap, &e);
        int64_t cur = tr->ps[e.pair].count;
        if (cur != e.count) {
            if (cur > 0 && push_pair(tr, e.pair)) return -1;
            continue;
        }
        if (cur < 2) break;
        if (merged_bytes(tr->tok, tr->pairs.keys[e.pair]) > SM_TOKENIZER_MAX_TOKEN_BYTES) continue;
        if (trainer_merge(tr, e.pair)) return -1;
    }
    return 0;
}

static void trainer_free(trainer *tr)
{
    for (size_t p = 0; p < tr->pairs.idx.n; p++) free(tr->ps[p].occ.v);
    free(tr->ps);
    pairtab_free(&tr->pairs);
    free(tr->sym);
    free(tr->chunks);
    free(tr->heap.v);
    free(tr->touched);
}

sm_tokenizer *sm_tokenizer_train(const char *const *docs, const size_t *lens, size_t ndocs,
                                 int vocab_size, sm_error *err)
{
    trainer tr = {.heap = {.size = sizeof(heap_entry), .before = entry_before}};
    strtab st = {0};
    int64_t *counts = NULL;
    if (check_vocab_size(vocab_size, "tokenizer training", err)) return NULL;
    if (!(tr.tok = tokenizer_new(err))) return NULL;
    int rc = count_chunks(&st, &counts, docs, lens, ndocs) || trainer_setup(&tr, &st, counts) ||
             trainer_run(&tr, vocab_size - N_BYTES - 1);
    strtab_free(&st);
    free(counts);
    trainer_free(&tr);
    if (rc) {
        sm_tokenizer_free(tr.tok);
        sm_fail(err, "tokenizer training: out of memory");
        return NULL;
    }
    return tr.tok;
}

/* ---- file format ---- */

int sm_tokenizer_save(const sm_tokenizer *t, const char *path, sm_error *err)
{
    size_t cap = 64 + (size_t)t->nmerges * 24, n;
    char *buf = malloc(cap);
    if (!buf) return sm_fail(err, "%s: out of memory", path);
    n = (size_t)snprintf(buf, cap, "%s %d %d\n", MAGIC, FORMAT_VERSION, sm_tokenizer_vocab_size(t));
    for (int i = 0; i < t->nmerges; i++) {
        uint64_t key = t->ranks.keys[i];
        n += (size_t)snprintf(buf + n, cap - n, "%u %u\n", (unsigned)(key >> 32),
                              (unsigned)(key & 0xFFFFFFFFu));
    }
    int rc = sm_atomic_write_file(path, buf, n, err);
    free(buf);
    return rc;
}

typedef struct cursor {
    const char *p, *end, *path;
    int line;
} cursor;

static int parse_fail(const cursor *c, sm_error *err, const char *what)
{
    return sm_fail(err, "%s:%d: %s", c->path, c->line, what);
}

/* Expects the exact text s. */
static int expect(cursor *c, const char *s, const char *what, sm_error *err)
{
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0) return parse_fail(c, err, what);
    c->p += n;
    return 0;
}

/* A decimal number without sign, at most max. */
static int parse_uint(cursor *c, long long max, long long *v, const char *what, sm_error *err)
{
    char msg[128];
    *v = 0;
    if (c->p == c->end || *c->p < '0' || *c->p > '9') {
        snprintf(msg, sizeof msg, "expected %s", what);
        return parse_fail(c, err, msg);
    }
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        *v = *v * 10 + (*c->p - '0');
        if (*v > max) {
            snprintf(msg, sizeof msg, "%s is too large", what);
            return parse_fail(c, err, msg);
        }
    }
    return 0;
}

/* A merge id on line c->line, which defines id `defining`: must be an already defined token. */
static int parse_id(cursor *c, long long defining, long long vocab, int32_t *id, sm_error *err)
{
    long long v;
    char msg[160];
    if (parse_uint(c, SM_TOKENIZER_MAX_VOCAB, &v, "a token id", err)) return -1;
    if (v >= vocab - 1) {
        snprintf(msg, sizeof msg, "id %lld out of range: merges use ids below %lld", v, vocab - 1);
        return parse_fail(c, err, msg);
    }
    if (v >= defining) {
        snprintf(msg, sizeof msg, "id %lld is not defined yet (this line defines id %lld)", v,
                 defining);
        return parse_fail(c, err, msg);
    }
    *id = (int32_t)v;
    return 0;
}

static int parse_header(cursor *c, long long *vocab, sm_error *err)
{
    long long version;
    if (expect(c, MAGIC " ", "missing magic '" MAGIC "'", err) ||
        parse_uint(c, 1000000, &version, "a format version", err))
        return -1;
    if (version != FORMAT_VERSION) return parse_fail(c, err, "unsupported format version");
    if (expect(c, " ", "expected a space before the vocab size", err) ||
        parse_uint(c, SM_TOKENIZER_MAX_VOCAB, vocab, "the vocab size", err) ||
        expect(c, "\n", "expected end of line after the vocab size", err))
        return -1;
    char *where = sm_aprintf("%s:%d", c->path, c->line);
    int rc = where ? check_vocab_size(*vocab, where, err) : sm_fail(err, "%s: out of memory",
                                                                    c->path);
    free(where);
    if (rc) return -1;
    c->line++;
    return 0;
}

/* Parses the merge lines into t. */
static int parse_merges(cursor *c, sm_tokenizer *t, long long vocab, sm_error *err)
{
    char msg[160];
    while (N_BYTES + t->nmerges < vocab - 1) {
        int32_t l, r;
        long long def = N_BYTES + t->nmerges;
        if (c->p == c->end) {
            snprintf(msg, sizeof msg, "missing merges: the vocab size needs %lld, found %d",
                     vocab - 1 - N_BYTES, t->nmerges);
            return parse_fail(c, err, msg);
        }
        if (parse_id(c, def, vocab, &l, err) || expect(c, " ", "expected a space", err) ||
            parse_id(c, def, vocab, &r, err) || expect(c, "\n", "expected end of line", err))
            return -1;
        size_t bytes = merged_bytes(t, pair_key(l, r));
        if (bytes > SM_TOKENIZER_MAX_TOKEN_BYTES) {
            snprintf(msg, sizeof msg, "merge %d (id %lld) makes a token of %zu bytes, more than "
                     "the %d allowed", t->nmerges + 1, def, bytes, SM_TOKENIZER_MAX_TOKEN_BYTES);
            return parse_fail(c, err, msg);
        }
        int rc = tokenizer_add_merge(t, l, r);
        if (rc < 0) return sm_fail(err, "%s: out of memory", c->path);
        if (rc > 0) return parse_fail(c, err, "duplicate merge");
        c->line++;
    }
    if (c->p != c->end) return parse_fail(c, err, "trailing data after the last merge");
    return 0;
}

sm_tokenizer *sm_tokenizer_load(const char *path, sm_error *err)
{
    size_t len;
    long long vocab = 0;
    char *buf = sm_read_file(path, &len, err);
    if (!buf) return NULL;
    cursor c = {buf, buf + len, path, 1};
    sm_tokenizer *t = tokenizer_new(err);
    if (t && (parse_header(&c, &vocab, err) || parse_merges(&c, t, vocab, err))) {
        sm_tokenizer_free(t);
        t = NULL;
    }
    free(buf);
    return t;
}

/* ---- encoding ---- */

typedef struct bpe_node {
    int32_t id;                  /* -1 once merged into its left neighbour */
    int32_t prev, next;          /* -1 at the ends */
} bpe_node;

struct sm_encoder {
    const sm_tokenizer *tok;
    strtab cache;                /* chunk -> entry; cached[entry] spans its ids in pool */
    span *cached;
    size_t ccap;
    int32_t *pool;
    size_t npool, pcap;
    bpe_node *nodes;             /* scratch for one chunk */
    size_t ncap;
    heap heap;                   /* candidate merges: rank << 32 | position, smallest first */
};

static int u64_before(const void *a, const void *b)
{
    return *(const uint64_t *)a < *(const uint64_t *)b;
}

sm_encoder *sm_encoder_new(const sm_tokenizer *t, sm_error *err)
{
    sm_encoder *e = calloc(1, sizeof *e);
    if (!e) {
        sm_fail(err, "encoder: out of memory");
        return NULL;
    }
    e->tok = t;
    e->heap = (heap){.size = sizeof(uint64_t), .before = u64_before};
    return e;
}

void sm_encoder_free(sm_encoder *e)
{
    if (!e) return;
    strtab_free(&e->cache);
    free(e->cached);
    free(e->pool);
    free(e->nodes);
    free(e->heap.v);
    free(e);
}

/* Queues the merge of node i with its right neighbour, if that pair is a merge. */
static int push_candidate(sm_encoder *e, int32_t i)
{
    int32_t j = e->nodes[i].next;
    if (j < 0) return 0;
    int64_t rank = pair_find(&e->tok->ranks, pair_key(e->nodes[i].id, e->nodes[j].id));
    uint64_t cand = (uint64_t)rank << 32 | (uint32_t)i;
    return rank < 0 ? 0 : heap_push(&e->heap, &cand);
}

/* Merges node i with its right neighbour into token 256 + rank, if still that pair. */
static int apply_candidate(sm_encoder *e, uint64_t cand)
{
    int32_t i = (int32_t)(cand & 0xFFFFFFFFu), rank = (int32_t)(cand >> 32);
    bpe_node *nd = e->nodes;
    int32_t j = nd[i].next;
    if (nd[i].id < 0 || j < 0 || pair_key(nd[i].id, nd[j].id) != e->tok->ranks.keys[rank])
        return 0;
    nd[i].id = N_BYTES + rank;
    nd[j].id = -1;
    nd[i].next = nd[j].next;
    if (nd[i].next >= 0) nd[nd[i].next].prev = i;
    return (nd[i].prev >= 0 && push_candidate(e, nd[i].prev)) || push_candidate(e, i);
}

/* Applies the merges in rank order to one chunk (lowest rank first, leftmost first, as in
 * training) and appends its ids to the pool. */
static int bpe_chunk(sm_encoder *e, const unsigned char *s, size_t n)
{
    if (SM_GROW(e->nodes, e->ncap, n) || SM_GROW(e->pool, e->pcap, e->npool + n)) return -1;
    for (size_t i = 0; i < n; i++)
        e->nodes[i] = (bpe_node){s[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    e->heap.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_candidate(e, (int32_t)i)) return -1;
    while (e->heap.n > 0) {
        uint64_t cand;
        heap_pop(&e->heap, &cand);
        if (apply_candidate(e, cand)) return -1;
    }
    for (int32_t i = 0; i >= 0; i = e->nodes[i].next) e->pool[e->npool++] = e->nodes[i].id;
    return 0;
}

/* The ids of a chunk of two bytes or more, from the cache or freshly encoded into it. */
static int cached_chunk(sm_encoder *e, const unsigned char *s, size_t n, span *ids)
{
    int64_t hit = strtab_find(&e->cache, s, n);
    uint32_t idx;
    int added;
    if (hit >= 0) {
        *ids = e->cached[hit];
        return 0;
    }
    if (e->cache.idx.n >= CACHE_MAX_CHUNKS || e->npool >= CACHE_MAX_IDS) {
        strtab_clear(&e->cache);
        e->npool = 0;
    }
    size_t start = e->npool;
    if (bpe_chunk(e, s, n) || strtab_intern(&e->cache, s, n, &idx, &added) ||
        SM_GROW(e->cached, e->ccap, (size_t)idx + 1))
        return -1;
    e->cached[idx] = *ids = (span){start, e->npool - start};
    return 0;
}

/* Appends the ids of one chunk. */
static int encode_chunk(sm_encoder *e, const unsigned char *s, size_t n, int32_t **ids,
                        size_t *nids, size_t *cap)
{
    span sp = {0, 1};
    if (n > 1 && cached_chunk(e, s, n, &sp)) return -1;
    if (SM_GROW(*ids, *cap, *nids + sp.len)) return -1;
    if (n == 1) (*ids)[*nids] = s[0];
    else memcpy(*ids + *nids, e->pool + sp.off, sp.len * sizeof **ids);
    *nids += sp.len;
    return 0;
}

int sm_encoder_append(sm_encoder *e, const char *text, size_t len, int32_t **ids, size_t *n,
                      size_t *cap, sm_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0, cl; pos < len; pos += cl) {
        cl = sm_tokenizer_chunk(text + pos, len - pos);
        if (cl > INT32_MAX)
            return sm_fail(err, "encode: a chunk of %zu bytes at byte %zu is too long", cl, pos);
        if (encode_chunk(e, s + pos, cl, ids, n, cap))
            return sm_fail(err, "encode: out of memory at byte %zu", pos);
    }
    return 0;
}

int sm_tokenizer_encode(const sm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                        size_t *n, sm_error *err)
{
    size_t cap = 0;
    sm_encoder *e = sm_encoder_new(t, err);
    *ids = NULL;
    *n = 0;
    int rc = !e || SM_GROW(*ids, cap, 1) ? sm_fail(err, "encode: out of memory")
                                      : sm_encoder_append(e, text, len, ids, n, &cap, err);
    sm_encoder_free(e);
    if (rc) {
        free(*ids);
        *ids = NULL;
    }
    return rc;
}

/* ---- decoding ---- */

char *sm_tokenizer_decode(const sm_tokenizer *t, const int32_t *ids, size_t n, size_t *len,
                          sm_error *err)
{
    size_t total = 0;
    int32_t eot = sm_tokenizer_eot(t);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] > eot) {
            sm_fail(err, "decode: id %d at position %zu outside the vocabulary [0, %d)", ids[i], i,
                    eot + 1);
            return NULL;
        }
        total += ids[i] == eot ? 0 : t->tok[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) {
        sm_fail(err, "decode: out of memory for %zu bytes", total);
        return NULL;
    }
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != eot) {
            memcpy(out + *len, t->tok_bytes + t->tok[ids[i]].off, t->tok[ids[i]].len);
            *len += t->tok[ids[i]].len;
        }
    out[*len] = '\0';
    return out;
}
