/* hashlab.index._hamming: Hamming-space search kernels, a CPython extension built at install.
 *
 * Codes are packed rows of `nb` bytes (big-endian bits inside each byte, as numpy.packbits
 * and faiss write them). Distances are XOR + popcount.
 *
 * Portable build, runtime dispatch: no -march flag. The distance loops are compiled several
 * times with per-function target attributes (plain C, POPCNT, AVX2, AVX-512 VPOPCNTDQ) and
 * the best one the CPU supports is picked once at import (`__builtin_cpu_supports`), so a
 * wheel built on one x86-64 machine runs on any other. HASHLAB_CPU=plain|popcnt|avx2|avx512
 * forces a lower level (tests compare every level against each other).
 *
 * Threads: OpenMP inside each call, with the GIL released; Python never loops over threads.
 *
 * Kernels (rows are the caller's row numbers; `keys` are int64 tie keys, one per row; `skip`
 * is an optional bit-packed (little bit order) mask of rows never returned):
 * - knn_scan: exact top-k by (distance, key) over a row range: per query a candidate buffer
 *   and a lexicographic threshold (tau, keycut) reject almost every row with one compare.
 * - range_scan / mih_range: every row within an inclusive radius, written into flat output
 *   arrays (offsets, rows, distances) like faiss's RangeSearchResult: hits are collected in
 *   per-chunk buffers, counted, and then counting-sorted by distance (radius + 1 values)
 *   straight into the output; ties within a distance are put in key order.
 * - mih_range / mih_knn: multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012, TPAMI
 *   2014). Table j keys each code by `key_bits` chosen bit positions (disjoint across
 *   tables); a CSR directory (2^key_bits + 1 offsets) maps a key to a bucket of positions,
 *   and a uint32 permutation (None for a table whose rows are already sorted by its key)
 *   maps positions to rows. If d(q, x) <= r some table's key is within floor(r/m) of the
 *   query's key (pigeonhole, Prop. 1); with m = 1 this is plain bucket hashing with
 *   r flips (faiss's IndexBinaryHash, made exact). k-NN grows the probe radius rho until
 *   the k-th distance is <= m(rho+1)-1 (Sec. 4.1). Key distances of a candidate in the
 *   other tables are popcounts of (code ^ query) & mask_j, so keys need no extraction.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HL_X86 1
#else
#define HL_X86 0
#endif

#define HL_INLINE static inline __attribute__((always_inline))

HL_INLINE uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

HL_INLINE uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Inlined into functions of every target: the popcount becomes POPCNT where the caller's
 * target has it and a bit-twiddling sequence where it does not. */
HL_INLINE int hamming(const uint8_t *a, const uint8_t *b, const int nb) {
    int d = 0, i = 0;
    for (; i + 8 <= nb; i += 8) d += __builtin_popcountll(load64(a + i) ^ load64(b + i));
    for (; i + 4 <= nb; i += 4) d += __builtin_popcount(load32(a + i) ^ load32(b + i));
    for (; i < nb; i++) d += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    return d;
}

HL_INLINE int masked_hamming(const uint8_t *a, const uint8_t *b, const uint8_t *mask,
                             const int nb) {
    int d = 0, i = 0;
    for (; i + 8 <= nb; i += 8)
        d += __builtin_popcountll((load64(a + i) ^ load64(b + i)) & load64(mask + i));
    for (; i < nb; i++) d += __builtin_popcount((unsigned)((a[i] ^ b[i]) & mask[i]));
    return d;
}

HL_INLINE int is_skipped(const uint8_t *skip, int64_t row) {
    return skip != NULL && ((skip[row >> 3] >> (row & 7)) & 1);
}

/* ---------------------------------------------------------- chunk filters (dispatched) -
 * filter(db, nb, q, c0, c1, t, out_row, out_d): rows r in [c0, c1) with d(q, r) <= t,
 * written as (r - c0, d); returns how many. One call per query per cache-sized chunk. */
typedef int64_t (*filter_fn)(const uint8_t *, int, const uint8_t *, int64_t, int64_t, int,
                             int32_t *, int32_t *);

#define HL_FILTER_BODY                                                                     \
    int64_t n = 0;                                                                         \
    const uint8_t *p = db + c0 * nb;                                                       \
    switch (nb) {                                                                          \
    case 4:                                                                                \
        for (int64_t r = c0; r < c1; r++, p += 4) {                                        \
            int d = hamming(q, p, 4);                                                      \
            out_row[n] = (int32_t)(r - c0);                                                \
            out_d[n] = d;                                                                  \
            n += d <= t;                                                                   \
        }                                                                                  \
        break;                                                                             \
    case 8:                                                                                \
        for (int64_t r = c0; r < c1; r++, p += 8) {                                        \
            int d = hamming(q, p, 8);                                                      \
            out_row[n] = (int32_t)(r - c0);                                                \
            out_d[n] = d;                                                                  \
            n += d <= t;                                                                   \
        }                                                                                  \
        break;                                                                             \
    case 16:                                                                               \
        for (int64_t r = c0; r < c1; r++, p += 16) {                                       \
            int d = hamming(q, p, 16);                                                     \
            out_row[n] = (int32_t)(r - c0);                                                \
            out_d[n] = d;                                                                  \
            n += d <= t;                                                                   \
        }                                                                                  \
        break;                                                                             \
    case 32:                                                                               \
        for (int64_t r = c0; r < c1; r++, p += 32) {                                       \
            int d = hamming(q, p, 32);                                                     \
            out_row[n] = (int32_t)(r - c0);                                                \
            out_d[n] = d;                                                                  \
            n += d <= t;                                                                   \
        }                                                                                  \
        break;                                                                             \
    default:                                                                               \
        for (int64_t r = c0; r < c1; r++, p += nb) {                                       \
            int d = hamming(q, p, nb);                                                     \
            out_row[n] = (int32_t)(r - c0);                                                \
            out_d[n] = d;                                                                  \
            n += d <= t;                                                                   \
        }                                                                                  \
    }                                                                                      \
    return n;

#define HL_FILTER_ARGS                                                                     \
    const uint8_t *db, int nb, const uint8_t *q, int64_t c0, int64_t c1, int t,            \
        int32_t *out_row, int32_t *out_d

static int64_t filter_plain(HL_FILTER_ARGS) { HL_FILTER_BODY }

#if HL_X86
__attribute__((target("popcnt"))) static int64_t filter_popcnt(HL_FILTER_ARGS) {
    HL_FILTER_BODY
}

__attribute__((target("popcnt,avx2"))) static int64_t filter_avx2(HL_FILTER_ARGS) {
    HL_FILTER_BODY
}

/* AVX-512 VPOPCNTDQ: 16 codes of 32 bits, 8 of 64 bits or 4 of 128 bits per instruction;
 * a compare mask says which rows pass, and only those are written. */
__attribute__((target("popcnt,avx2,avx512f,avx512bw,avx512vl,avx512vpopcntdq"))) static int64_t
filter_avx512(HL_FILTER_ARGS) {
    int64_t n = 0, r = c0;
    if (nb == 8) {
        __m512i qv = _mm512_set1_epi64((long long)load64(q));
        __m512i tv = _mm512_set1_epi64(t);
        for (; r + 8 <= c1; r += 8) {
            __m512i x = _mm512_loadu_si512((const void *)(db + r * 8));
            __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv));
            __mmask8 m = _mm512_cmple_epu64_mask(d, tv);
            if (__builtin_expect(m != 0, 0)) {
                int64_t dd[8];
                _mm512_storeu_si512((void *)dd, d);
                while (m) {
                    int i = __builtin_ctz(m);
                    m &= m - 1;
                    out_row[n] = (int32_t)(r + i - c0);
                    out_d[n++] = (int32_t)dd[i];
                }
            }
        }
    } else if (nb == 4) {
        __m512i qv = _mm512_set1_epi32((int)load32(q));
        __m512i tv = _mm512_set1_epi32(t);
        for (; r + 16 <= c1; r += 16) {
            __m512i x = _mm512_loadu_si512((const void *)(db + r * 4));
            __m512i d = _mm512_popcnt_epi32(_mm512_xor_si512(x, qv));
            __mmask16 m = _mm512_cmple_epu32_mask(d, tv);
            if (__builtin_expect(m != 0, 0)) {
                int32_t dd[16];
                _mm512_storeu_si512((void *)dd, d);
                while (m) {
                    int i = __builtin_ctz(m);
                    m &= m - 1;
                    out_row[n] = (int32_t)(r + i - c0);
                    out_d[n++] = dd[i];
                }
            }
        }
    } else if (nb == 16) {
        uint64_t q0 = load64(q), q1 = load64(q + 8);
        __m512i qv = _mm512_set_epi64((long long)q1, (long long)q0, (long long)q1,
                                      (long long)q0, (long long)q1, (long long)q0,
                                      (long long)q1, (long long)q0);
        __m512i tv = _mm512_set1_epi64(t);
        for (; r + 4 <= c1; r += 4) {
            __m512i x = _mm512_loadu_si512((const void *)(db + r * 16));
            __m512i w = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv));
            /* add each row's two 64-bit counts: lane 2i gets w[2i] + w[2i+1] */
            __m512i d = _mm512_add_epi64(w, _mm512_shuffle_epi32(w, _MM_PERM_BADC));
            __mmask8 m = _mm512_cmple_epu64_mask(d, tv) & 0x55;
            if (__builtin_expect(m != 0, 0)) {
                int64_t dd[8];
                _mm512_storeu_si512((void *)dd, d);
                while (m) {
                    int i = __builtin_ctz(m);
                    m &= m - 1;
                    out_row[n] = (int32_t)(r + i / 2 - c0);
                    out_d[n++] = (int32_t)dd[i];
                }
            }
        }
    }
    const uint8_t *p = db + r * nb;
    for (; r < c1; r++, p += nb) {
        int d = hamming(q, p, nb);
        out_row[n] = (int32_t)(r - c0);
        out_d[n] = d;
        n += d <= t;
    }
    return n;
}
#endif

/* MIH verification is random row access: only POPCNT matters there. */
typedef struct hl_tables hl_tables;

static filter_fn g_filter = filter_plain;
static int g_level = 0; /* 0 plain, 1 popcnt, 2 avx2, 3 avx512 */
static const char *g_level_names[] = {"plain", "popcnt", "avx2", "avx512-vpopcntdq"};

/* ---------------------------------------------------------------- top-k selection ---- */

typedef struct {
    int32_t d;
    int64_t key;
    int64_t row;
} hl_item;

typedef struct {
    hl_item *buf;
    int64_t len, cap;
    int32_t tau; /* accept (d, key) iff d < tau || (d == tau && key < keycut) */
    int64_t keycut;
} hl_topk;

static int cmp_item(const void *pa, const void *pb) {
    const hl_item *a = pa, *b = pb;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return (a->key > b->key) - (a->key < b->key);
}

static int cmp_key(const void *pa, const void *pb) {
    const hl_item *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

static int topk_init(hl_topk *s, int k, int nbits) {
    s->cap = 4 * (int64_t)k + 64;
    s->buf = malloc(sizeof(hl_item) * s->cap);
    s->len = 0;
    s->tau = nbits + 1;
    s->keycut = INT64_MAX;
    return s->buf ? 0 : -1;
}

/* Keep exactly the k smallest items by (d, key) and tighten the threshold to the k-th. */
static void topk_compress(hl_topk *s, int k, int nbits, int64_t *hist) {
    if (s->len < k) return;
    memset(hist, 0, sizeof(int64_t) * (nbits + 2));
    for (int64_t i = 0; i < s->len; i++) hist[s->buf[i].d]++;
    int32_t t = 0;
    int64_t below = 0;
    while (below + hist[t] < k) below += hist[t++];
    int64_t w = 0;
    for (int64_t i = 0; i < s->len; i++)
        if (s->buf[i].d < t) {
            hl_item tmp = s->buf[i];
            s->buf[i] = s->buf[w];
            s->buf[w++] = tmp;
        }
    int64_t tie_start = w;
    for (int64_t i = tie_start; i < s->len; i++)
        if (s->buf[i].d == t) {
            hl_item tmp = s->buf[i];
            s->buf[i] = s->buf[w];
            s->buf[w++] = tmp;
        }
    /* of the ties keep the (k - below) smallest keys: ties are broken by key */
    qsort(s->buf + tie_start, (size_t)(w - tie_start), sizeof(hl_item), cmp_key);
    s->len = k;
    s->tau = t;
    s->keycut = s->buf[k - 1].key;
}

HL_INLINE void topk_push(hl_topk *s, int32_t d, int64_t key, int64_t row, int k, int nbits,
                         int64_t *hist) {
    if (!(d < s->tau || (d == s->tau && key < s->keycut))) return;
    if (s->len == s->cap) topk_compress(s, k, nbits, hist);
    if (!(d < s->tau || (d == s->tau && key < s->keycut))) return;
    s->buf[s->len].d = d;
    s->buf[s->len].key = key;
    s->buf[s->len].row = row;
    s->len++;
}

static void topk_finish(hl_topk *s, int k, int32_t *out_d, int64_t *out_row) {
    qsort(s->buf, (size_t)s->len, sizeof(hl_item), cmp_item);
    for (int i = 0; i < k; i++) {
        out_d[i] = i < s->len ? s->buf[i].d : -1;
        out_row[i] = i < s->len ? s->buf[i].row : -1;
    }
}

/* ---------------------------------------------------------------- hit buffers -------- */

/* Hits of a block of consecutive queries, in query order: rows, distances, per-query counts. */
typedef struct {
    int64_t *rows;
    int32_t *d;
    int64_t len, cap;
} hl_hits;

static int hits_push(hl_hits *h, int64_t row, int32_t d) {
    if (h->len == h->cap) {
        int64_t cap = h->cap ? 2 * h->cap : 256;
        int64_t *rows = realloc(h->rows, sizeof(int64_t) * cap);
        if (!rows) return -1;
        h->rows = rows;
        int32_t *dd = realloc(h->d, sizeof(int32_t) * cap);
        if (!dd) return -1;
        h->d = dd;
        h->cap = cap;
    }
    h->rows[h->len] = row;
    h->d[h->len] = d;
    h->len++;
    return 0;
}

/* Sort (key, row) items by key: inlined quicksort (median of three) with insertion sort for
 * short runs; several times faster than qsort's comparator calls on the hit lists. */
static void sort_by_key(hl_item *a, int64_t n) {
    while (n > 24) {
        int64_t mid = n / 2;
        int64_t ka = a[0].key, kb = a[mid].key, kc = a[n - 1].key;
        int64_t pivot = ka < kb ? (kb < kc ? kb : (ka < kc ? kc : ka))
                                : (ka < kc ? ka : (kb < kc ? kc : kb));
        int64_t i = 0, j = n - 1;
        while (i <= j) {
            while (a[i].key < pivot) i++;
            while (a[j].key > pivot) j--;
            if (i <= j) {
                hl_item t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        /* recurse into the smaller part, loop on the larger: stack depth O(log n) */
        if (j + 1 < n - i) {
            sort_by_key(a, j + 1);
            a += i;
            n -= i;
        } else {
            sort_by_key(a + i, n - i);
            n = j + 1;
        }
    }
    for (int64_t i = 1; i < n; i++) {
        hl_item t = a[i];
        int64_t j = i - 1;
        while (j >= 0 && a[j].key > t.key) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = t;
    }
}

/* Counting sort of one query's hits by distance (0..radius) into out, ties by key. */
static int emit_sorted(const int64_t *rows, const int32_t *d, int64_t n, int radius,
                       const int64_t *keys, int64_t *out_rows, int32_t *out_d) {
    int64_t small[258];
    int64_t *start = radius + 2 <= 258 ? small : malloc(sizeof(int64_t) * (radius + 2));
    if (!start) return -1;
    memset(start, 0, sizeof(int64_t) * (radius + 2));
    for (int64_t i = 0; i < n; i++) start[d[i] + 1]++;
    for (int r = 0; r <= radius; r++) start[r + 1] += start[r];
    int64_t *cursor = start; /* start[r] advances to the end of group r */
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = cursor[d[i]]++;
        out_rows[pos] = rows[i];
        out_d[pos] = d[i];
    }
    /* cursor[r] is now the end of group r; group r starts at cursor[r - 1] (0 for r = 0) */
    int err = 0;
    for (int r = 0; r <= radius && !err; r++) {
        int64_t a = r == 0 ? 0 : cursor[r - 1], b = cursor[r];
        int sorted = 1;
        for (int64_t i = a + 1; i < b && sorted; i++)
            sorted = keys[out_rows[i - 1]] <= keys[out_rows[i]];
        if (sorted) continue;
        hl_item *tmp = malloc(sizeof(hl_item) * (b - a));
        if (!tmp) {
            err = -1;
            break;
        }
        for (int64_t i = a; i < b; i++) {
            tmp[i - a].key = keys[out_rows[i]];
            tmp[i - a].row = out_rows[i];
        }
        sort_by_key(tmp, b - a);
        for (int64_t i = a; i < b; i++) out_rows[i] = tmp[i - a].row;
        free(tmp);
    }
    if (start != small) free(start);
    return err;
}

/* ---------------------------------------------------------------- Python glue -------- */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t min_bytes,
                      const char *what) {
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS
                                               : PyBUF_C_CONTIGUOUS) != 0)
        return -1;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected at least %zd", what,
                     view->len, min_bytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* An optional buffer: None gives NULL. */
static int get_optional(PyObject *obj, Py_buffer *view, Py_ssize_t min_bytes, const char *what,
                        const void **ptr) {
    view->obj = NULL;
    if (obj == Py_None) {
        *ptr = NULL;
        return 0;
    }
    if (get_buffer(obj, view, 0, min_bytes, what)) return -1;
    *ptr = view->buf;
    return 0;
}

static void release(Py_buffer *view) {
    if (view->obj) PyBuffer_Release(view);
}

static int clamp_threads(int nthreads) {
#ifdef _OPENMP
    if (nthreads < 1) nthreads = omp_get_max_threads();
    return nthreads < 1 ? 1 : nthreads;
#else
    (void)nthreads;
    return 1;
#endif
}

#define HL_CHUNK_BYTES (64 * 1024)
#define HL_QUERY_BLOCK 16
#define HL_RANGE_QUERY_CHUNK 8

/* --- knn_scan ------------------------------------------------------------------------- */

/* Top-k of queries [q0, q1) over rows [r0, r1) into states st[0..q1-q0). */
static int knn_scan_part(const uint8_t *db, int nb, int nbits, const int64_t *keys,
                         const uint8_t *skip, const uint8_t *q, int64_t q0, int64_t q1,
                         int64_t r0, int64_t r1, int k, hl_topk *st) {
    int64_t chunk = HL_CHUNK_BYTES / nb;
    if (chunk < 256) chunk = 256;
    int64_t *hist = malloc(sizeof(int64_t) * (nbits + 2));
    int32_t *crow = malloc(sizeof(int32_t) * chunk);
    int32_t *cd = malloc(sizeof(int32_t) * chunk);
    int err = !hist || !crow || !cd;
    filter_fn filter = g_filter;
    for (int64_t qb = q0; qb < q1 && !err; qb += HL_QUERY_BLOCK) {
        int64_t qe = qb + HL_QUERY_BLOCK < q1 ? qb + HL_QUERY_BLOCK : q1;
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
            int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
            for (int64_t qi = qb; qi < qe; qi++) {
                hl_topk *s = &st[qi - q0];
                int64_t n = filter(db, nb, q + qi * nb, c0, c1, s->tau, crow, cd);
                for (int64_t i = 0; i < n; i++) {
                    int64_t row = c0 + crow[i];
                    if (is_skipped(skip, row)) continue;
                    topk_push(s, cd[i], keys[row], row, k, nbits, hist);
                }
            }
        }
    }
    free(hist);
    free(crow);
    free(cd);
    return err ? -1 : 0;
}

static PyObject *py_knn_scan(PyObject *self, PyObject *args) {
    PyObject *o_db, *o_keys, *o_skip, *o_q, *o_outd, *o_outr;
    Py_ssize_t r0, r1;
    int nb, nbits, k, nthreads;
    if (!PyArg_ParseTuple(args, "OOOOnniiiOOi", &o_db, &o_keys, &o_skip, &o_q, &r0, &r1, &nb,
                          &nbits, &k, &o_outd, &o_outr, &nthreads))
        return NULL;
    Py_buffer b_db, b_keys, b_skip, b_q, b_outd, b_outr;
    const void *skip;
    if (get_buffer(o_db, &b_db, 0, r1 * nb, "codes")) return NULL;
    if (get_buffer(o_keys, &b_keys, 0, r1 * 8, "keys")) goto fail0;
    if (get_optional(o_skip, &b_skip, (r1 + 7) / 8, "skip mask", &skip)) goto fail1;
    if (get_buffer(o_q, &b_q, 0, 0, "queries")) goto fail2;
    int64_t nq = b_q.len / nb;
    if (get_buffer(o_outd, &b_outd, 1, nq * k * 4, "distance output")) goto fail3;
    if (get_buffer(o_outr, &b_outr, 1, nq * k * 8, "row output")) goto fail4;
    int err = 0;
    nthreads = clamp_threads(nthreads);
    Py_BEGIN_ALLOW_THREADS;
    const uint8_t *db = b_db.buf, *q = b_q.buf;
    const int64_t *keys = b_keys.buf;
    int32_t *out_d = b_outd.buf;
    int64_t *out_r = b_outr.buf;
    if (nq >= 2 * nthreads || r1 - r0 < 65536 || nthreads == 1) {
        /* enough queries: each thread takes blocks of queries over every row */
        int64_t nblocks = (nq + HL_QUERY_BLOCK - 1) / HL_QUERY_BLOCK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(| : err)
        for (int64_t b = 0; b < nblocks; b++) {
            int64_t qa = b * HL_QUERY_BLOCK, qe = qa + HL_QUERY_BLOCK < nq ? qa + HL_QUERY_BLOCK : nq;
            hl_topk st[HL_QUERY_BLOCK];
            int bad = 0, made = 0;
            for (int64_t i = qa; i < qe; i++, made++)
                if (topk_init(&st[i - qa], k, nbits)) {
                    bad = 1;
                    break;
                }
            if (!bad) bad = knn_scan_part(db, nb, nbits, keys, skip, q, qa, qe, r0, r1, k, st);
            for (int64_t i = qa; i < qa + made; i++) {
                if (!bad) topk_finish(&st[i - qa], k, out_d + i * k, out_r + i * k);
                free(st[i - qa].buf);
            }
            err |= bad;
        }
    } else {
        /* few queries (single-query latency): split the rows, then merge the partial top-k */
        hl_topk *st = calloc((size_t)(nq * nthreads), sizeof(hl_topk));
        if (!st) err = 1;
        else {
#pragma omp parallel num_threads(nthreads) reduction(| : err)
            {
#ifdef _OPENMP
                int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
                int t = 0, nt = 1;
#endif
                int64_t a = r0 + (r1 - r0) * t / nt, b = r0 + (r1 - r0) * (t + 1) / nt;
                hl_topk *mine = st + (int64_t)t * nq;
                int bad = 0;
                for (int64_t i = 0; i < nq; i++) bad |= topk_init(&mine[i], k, nbits);
                if (!bad) bad = knn_scan_part(db, nb, nbits, keys, skip, q, 0, nq, a, b, k, mine);
                err |= bad;
            }
            int64_t *hist = malloc(sizeof(int64_t) * (nbits + 2));
            if (!hist) err = 1;
            for (int64_t i = 0; i < nq && !err; i++) {
                hl_topk *all = &st[i];
                for (int t = 1; t < nthreads; t++) {
                    hl_topk *o = &st[(int64_t)t * nq + i];
                    for (int64_t j = 0; j < o->len; j++)
                        topk_push(all, o->buf[j].d, o->buf[j].key, o->buf[j].row, k, nbits, hist);
                }
                topk_finish(all, k, out_d + i * k, out_r + i * k);
            }
            free(hist);
            for (int64_t i = 0; i < nq * nthreads; i++) free(st[i].buf);
            free(st);
        }
    }
    Py_END_ALLOW_THREADS;
    release(&b_outr);
    release(&b_outd);
    release(&b_q);
    release(&b_skip);
    release(&b_keys);
    release(&b_db);
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail4:
    release(&b_outd);
fail3:
    release(&b_q);
fail2:
    release(&b_skip);
fail1:
    release(&b_keys);
fail0:
    release(&b_db);
    return NULL;
}

/* --- range search: shared collection into flat outputs ------------------------------- */

typedef struct {
    const uint8_t *db;
    int nb, nbits, radius;
    const int64_t *keys;
    const uint8_t *skip;
    const uint8_t *q;
    int64_t r0, r1;
    /* multi-index tables (m == 0: linear scan) */
    int m, key_bits;
    const int32_t *positions; /* (m, key_bits) bit positions of each table's key */
    const uint8_t *masks;     /* (m, nb) byte masks of each table's key bits */
    const uint32_t **dirs;
    const uint32_t **perms;
} hl_range_job;

/* Key of code `p` for table j: its key bits, first position as the most significant bit. */
HL_INLINE uint32_t gather_key(const uint8_t *p, const int32_t *pos, int key_bits) {
    uint32_t key = 0;
    for (int i = 0; i < key_bits; i++)
        key = (key << 1) | ((p[pos[i] >> 3] >> (7 - (pos[i] & 7))) & 1u);
    return key;
}

/* Next integer with the same number of set bits (Gosper's hack). */
HL_INLINE uint64_t next_combination(uint64_t x) {
    uint64_t c = x & -x, r = x + c;
    return (((r ^ x) >> 2) / c) | r;
}

/* Visit every bucket whose key is exactly `rho` bits from `qkey` in table j; run BODY for
 * each row in it. Probes are random accesses, so they go in batches: prefetch the
 * directory entries of a batch, then the bucket starts, then verify. */
#define HL_PROBE_BATCH 64
#define MIH_FOR_EACH_ROW(J, QKEY, RHO, BODY)                                               \
    do {                                                                                   \
        const uint32_t *dir_ = dirs[J];                                                    \
        const uint32_t *perm_ = perms[J];                                                  \
        uint64_t limit_ = 1ull << key_bits;                                                \
        uint64_t mask_ = (RHO) == 0 ? 0 : ((1ull << (RHO)) - 1);                           \
        uint32_t keys_[HL_PROBE_BATCH];                                                    \
        while (mask_ < limit_) {                                                           \
            int nk_ = 0;                                                                   \
            while (nk_ < HL_PROBE_BATCH && mask_ < limit_) {                               \
                uint32_t key_ = (QKEY) ^ (uint32_t)mask_;                                  \
                keys_[nk_++] = key_;                                                       \
                __builtin_prefetch(dir_ + key_);                                           \
                mask_ = (RHO) == 0 ? limit_ : next_combination(mask_);                     \
            }                                                                              \
            for (int i_ = 0; i_ < nk_; i_++) {                                             \
                uint32_t b0_ = dir_[keys_[i_]];                                            \
                if (perm_) __builtin_prefetch(perm_ + b0_);                                \
                else __builtin_prefetch(db + (int64_t)b0_ * nb);                           \
            }                                                                              \
            probes_ += nk_;                                                                \
            for (int i_ = 0; i_ < nk_; i_++) {                                             \
                uint32_t b0_ = dir_[keys_[i_]], b1_ = dir_[keys_[i_] + 1];                 \
                for (uint32_t pos_ = b0_; pos_ < b1_; pos_++) {                            \
                    int64_t row = perm_ ? (int64_t)perm_[pos_] : (int64_t)pos_;            \
                    BODY                                                                   \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* Table 0 without a permutation holds its buckets as contiguous row ranges: visit the
 * buckets exactly `rho` flips from `qkey` and hand each range to the dispatched (vector)
 * filter in pieces of at most `piece` rows; EMIT(row, d) runs for rows with d <= *THRESH
 * (re-read per piece, so a k-NN threshold that tightens is used at once). */
#define SORTED_TABLE_PROBE(RHO, QKEY, QP, THRESH, PIECE, CROW, CD, EMIT)                     \
    do {                                                                                   \
        const uint32_t *dir_ = dirs[0];                                                    \
        uint64_t limit_ = 1ull << key_bits;                                                \
        uint64_t mask_ = (RHO) == 0 ? 0 : ((1ull << (RHO)) - 1);                           \
        filter_fn filter_ = g_filter;                                                      \
        while (mask_ < limit_) {                                                           \
            uint32_t key_ = (QKEY) ^ (uint32_t)mask_;                                      \
            mask_ = (RHO) == 0 ? limit_ : next_combination(mask_);                         \
            if (mask_ < limit_) __builtin_prefetch(dir_ + ((QKEY) ^ (uint32_t)mask_));     \
            probes_++;                                                                     \
            int64_t b0_ = dir_[key_], b1_ = dir_[key_ + 1];                                \
            for (int64_t c0_ = b0_; c0_ < b1_; c0_ += (PIECE)) {                           \
                int64_t c1_ = c0_ + (PIECE) < b1_ ? c0_ + (PIECE) : b1_;                   \
                int64_t n_ = filter_(db, nb, (QP), c0_, c1_, (THRESH), (CROW), (CD));      \
                for (int64_t i_ = 0; i_ < n_; i_++) {                                      \
                    int64_t row = c0_ + (CROW)[i_];                                        \
                    int32_t d = (CD)[i_];                                                  \
                    if (is_skipped(skip, row)) continue;                                   \
                    EMIT                                                                   \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* Hits of queries [qa, qe) appended to h (query order), counts per query into counts. */
HL_INLINE int range_collect_impl(const hl_range_job *job, int64_t qa, int64_t qe, hl_hits *h,
                                 int64_t *counts, int32_t *crow, int32_t *cd) {
    const uint8_t *db = job->db, *skip = job->skip;
    const int nb = job->nb;
    const int radius = job->radius;
    if (job->m == 0) {
        int64_t chunk = HL_CHUNK_BYTES / nb;
        if (chunk < 256) chunk = 256;
        filter_fn filter = g_filter;
        for (int64_t qi = qa; qi < qe; qi++) {
            int64_t before = h->len;
            const uint8_t *qp = job->q + qi * nb;
            for (int64_t c0 = job->r0; c0 < job->r1; c0 += chunk) {
                int64_t c1 = c0 + chunk < job->r1 ? c0 + chunk : job->r1;
                int64_t n = filter(db, nb, qp, c0, c1, radius, crow, cd);
                for (int64_t i = 0; i < n; i++) {
                    int64_t row = c0 + crow[i];
                    if (is_skipped(skip, row)) continue;
                    if (hits_push(h, row, cd[i])) return -1;
                }
            }
            counts[qi] = h->len - before;
        }
        return 0;
    }
    const int m = job->m, key_bits = job->key_bits;
    const uint32_t **dirs = job->dirs, **perms = job->perms;
    int64_t piece = HL_CHUNK_BYTES / nb;
    if (piece < 256) piece = 256;
    int rho_max = radius / m;
    if (rho_max > key_bits) rho_max = key_bits;
    uint32_t qkey[64];
    int64_t probes_ = 0;
    for (int64_t qi = qa; qi < qe; qi++) {
        int64_t before = h->len;
        const uint8_t *qp = job->q + qi * nb;
        for (int j = 0; j < m; j++) qkey[j] = gather_key(qp, job->positions + j * key_bits, key_bits);
        for (int j = 0; j < m; j++) {
            for (int rho = 0; rho <= rho_max; rho++) {
                int err = 0;
                if (j == 0 && perms[0] == NULL) {
                    /* the first table has nothing to de-duplicate against */
                    SORTED_TABLE_PROBE(rho, qkey[0], qp, radius, piece, crow, cd, {
                        if (hits_push(h, row, d)) {
                            err = 1;
                            break;
                        }
                    });
                    if (err) return -1;
                    continue;
                }
                MIH_FOR_EACH_ROW(j, qkey[j], rho, {
                    if (is_skipped(skip, row)) continue;
                    const uint8_t *p = db + row * nb;
                    int32_t d = hamming(qp, p, nb);
                    if (d > radius) continue;
                    /* found already through an earlier table? */
                    int seen = 0;
                    for (int i = 0; i < j && !seen; i++)
                        seen = masked_hamming(p, qp, job->masks + i * nb, nb) <= rho_max;
                    if (seen) continue;
                    if (hits_push(h, row, d)) {
                        err = 1;
                        break;
                    }
                });
                if (err) return -1;
            }
        }
        counts[qi] = h->len - before;
    }
    return 0;
}

typedef int (*collect_fn)(const hl_range_job *, int64_t, int64_t, hl_hits *, int64_t *,
                          int32_t *, int32_t *);

static int collect_plain(const hl_range_job *job, int64_t qa, int64_t qe, hl_hits *h,
                         int64_t *counts, int32_t *crow, int32_t *cd) {
    return range_collect_impl(job, qa, qe, h, counts, crow, cd);
}

#if HL_X86
__attribute__((target("popcnt"))) static int collect_popcnt(const hl_range_job *job, int64_t qa,
                                                             int64_t qe, hl_hits *h,
                                                             int64_t *counts, int32_t *crow,
                                                             int32_t *cd) {
    return range_collect_impl(job, qa, qe, h, counts, crow, cd);
}
#endif

static collect_fn g_collect = collect_plain;

/* Run a range job over nq queries; returns (offsets, rows, distances) as bytearrays. */
static PyObject *run_range(hl_range_job *job, int64_t nq, int nthreads) {
    int64_t nchunks = (nq + HL_RANGE_QUERY_CHUNK - 1) / HL_RANGE_QUERY_CHUNK;
    hl_hits *hits = calloc((size_t)(nchunks ? nchunks : 1), sizeof(hl_hits));
    PyObject *o_off = PyByteArray_FromStringAndSize(NULL, (nq + 1) * 8);
    if (!hits || !o_off) {
        free(hits);
        Py_XDECREF(o_off);
        return PyErr_NoMemory();
    }
    int64_t *offsets = (int64_t *)PyByteArray_AS_STRING(o_off);
    int64_t *counts = offsets + 1;
    int err = 0;
    nthreads = clamp_threads(nthreads);
    int64_t chunk = HL_CHUNK_BYTES / job->nb;
    if (chunk < 256) chunk = 256;
    Py_BEGIN_ALLOW_THREADS;
#pragma omp parallel num_threads(nthreads) reduction(| : err)
    {
        int32_t *crow = malloc(sizeof(int32_t) * chunk);
        int32_t *cd = malloc(sizeof(int32_t) * chunk);
        int bad = !crow || !cd;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunks; c++) {
            if (bad) continue;
            int64_t qa = c * HL_RANGE_QUERY_CHUNK;
            int64_t qe = qa + HL_RANGE_QUERY_CHUNK < nq ? qa + HL_RANGE_QUERY_CHUNK : nq;
            bad |= g_collect(job, qa, qe, &hits[c], counts, crow, cd);
        }
        free(crow);
        free(cd);
        err |= bad;
    }
    Py_END_ALLOW_THREADS;
    int64_t total = 0;
    if (!err) {
        offsets[0] = 0;
        for (int64_t i = 0; i < nq; i++) offsets[i + 1] += offsets[i]; /* counts -> offsets */
        total = offsets[nq];
    }
    PyObject *o_rows = err ? NULL : PyByteArray_FromStringAndSize(NULL, total * 8);
    PyObject *o_d = err ? NULL : PyByteArray_FromStringAndSize(NULL, total * 4);
    if (o_rows && o_d) {
        int64_t *rows = (int64_t *)PyByteArray_AS_STRING(o_rows);
        int32_t *d = (int32_t *)PyByteArray_AS_STRING(o_d);
        Py_BEGIN_ALLOW_THREADS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(| : err)
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t qa = c * HL_RANGE_QUERY_CHUNK;
            int64_t qe = qa + HL_RANGE_QUERY_CHUNK < nq ? qa + HL_RANGE_QUERY_CHUNK : nq;
            int64_t at = 0;
            for (int64_t qi = qa; qi < qe; qi++) {
                int64_t n = offsets[qi + 1] - offsets[qi];
                err |= emit_sorted(hits[c].rows + at, hits[c].d + at, n, job->radius, job->keys,
                                   rows + offsets[qi], d + offsets[qi]);
                at += n;
            }
        }
        Py_END_ALLOW_THREADS;
    } else {
        err = 1;
    }
    for (int64_t c = 0; c < nchunks; c++) {
        free(hits[c].rows);
        free(hits[c].d);
    }
    free(hits);
    if (err) {
        Py_DECREF(o_off);
        Py_XDECREF(o_rows);
        Py_XDECREF(o_d);
        return PyErr_NoMemory();
    }
    return Py_BuildValue("NNN", o_off, o_rows, o_d);
}

static PyObject *py_range_scan(PyObject *self, PyObject *args) {
    PyObject *o_db, *o_keys, *o_skip, *o_q;
    Py_ssize_t r0, r1;
    int nb, nbits, radius, nthreads;
    if (!PyArg_ParseTuple(args, "OOOOnniiii", &o_db, &o_keys, &o_skip, &o_q, &r0, &r1, &nb,
                          &nbits, &radius, &nthreads))
        return NULL;
    Py_buffer b_db, b_keys, b_skip, b_q;
    const void *skip;
    PyObject *result = NULL;
    if (get_buffer(o_db, &b_db, 0, r1 * nb, "codes")) return NULL;
    if (get_buffer(o_keys, &b_keys, 0, r1 * 8, "keys")) goto done0;
    if (get_optional(o_skip, &b_skip, (r1 + 7) / 8, "skip mask", &skip)) goto done1;
    if (get_buffer(o_q, &b_q, 0, 0, "queries")) goto done2;
    hl_range_job job = {b_db.buf, nb, nbits, radius, b_keys.buf, skip, b_q.buf, r0, r1,
                        0, 0, NULL, NULL, NULL, NULL};
    result = run_range(&job, b_q.len / nb, nthreads);
    release(&b_q);
done2:
    release(&b_skip);
done1:
    release(&b_keys);
done0:
    release(&b_db);
    return result;
}

/* Tables from Python: (positions int32 (m, b), masks uint8 (m, nb), [directory...],
 * [permutation or None ...]). Fills the job; views[] must hold 2 + 2m buffers. */
static int parse_tables(PyObject *tables, hl_range_job *job, Py_buffer *views, int *n_views,
                        const uint32_t **dirs, const uint32_t **perms, int64_t n_rows) {
    PyObject *o_pos, *o_masks, *o_dirs, *o_perms;
    int key_bits;
    *n_views = 0;
    if (!PyArg_ParseTuple(tables, "iOOOO", &key_bits, &o_pos, &o_masks, &o_dirs, &o_perms))
        return -1;
    if (!PyList_Check(o_dirs) || !PyList_Check(o_perms) ||
        PyList_GET_SIZE(o_dirs) != PyList_GET_SIZE(o_perms) || PyList_GET_SIZE(o_dirs) < 1 ||
        PyList_GET_SIZE(o_dirs) > 64 || key_bits < 1 || key_bits > 30) {
        PyErr_SetString(PyExc_ValueError, "tables: expected 1..64 tables of 1..30-bit keys");
        return -1;
    }
    int m = (int)PyList_GET_SIZE(o_dirs);
    if (get_buffer(o_pos, &views[(*n_views)++], 0, (Py_ssize_t)m * key_bits * 4, "positions"))
        goto fail;
    if (get_buffer(o_masks, &views[(*n_views)++], 0, (Py_ssize_t)m * job->nb, "masks")) goto fail;
    job->positions = views[0].buf;
    job->masks = views[1].buf;
    for (int j = 0; j < m; j++) {
        Py_buffer *v = &views[(*n_views)++];
        if (get_buffer(PyList_GET_ITEM(o_dirs, j), v, 0, (((Py_ssize_t)1 << key_bits) + 1) * 4,
                       "directory"))
            goto fail;
        dirs[j] = v->buf;
        if (dirs[j][(1u << key_bits)] > (uint32_t)n_rows) {
            PyErr_SetString(PyExc_ValueError, "directory points beyond the codes");
            goto fail;
        }
        const void *perm;
        v = &views[(*n_views)++];
        if (get_optional(PyList_GET_ITEM(o_perms, j), v, dirs[j][1u << key_bits] * 4,
                         "permutation", &perm))
            goto fail;
        perms[j] = perm;
    }
    job->m = m;
    job->key_bits = key_bits;
    job->dirs = dirs;
    job->perms = perms;
    return 0;
fail:
    for (int i = 0; i < *n_views; i++) release(&views[i]);
    *n_views = 0;
    return -1;
}

static PyObject *py_mih_range(PyObject *self, PyObject *args) {
    PyObject *o_db, *o_keys, *o_skip, *o_q, *o_tables;
    Py_ssize_t n_rows;
    int nb, nbits, radius, nthreads;
    if (!PyArg_ParseTuple(args, "OOOOniiiOi", &o_db, &o_keys, &o_skip, &o_q, &n_rows, &nb,
                          &nbits, &radius, &o_tables, &nthreads))
        return NULL;
    Py_buffer b_db, b_keys, b_skip, b_q, views[130];
    const uint32_t *dirs[64], *perms[64];
    int n_views = 0;
    const void *skip;
    PyObject *result = NULL;
    if (get_buffer(o_db, &b_db, 0, n_rows * nb, "codes")) return NULL;
    if (get_buffer(o_keys, &b_keys, 0, n_rows * 8, "keys")) goto done0;
    if (get_optional(o_skip, &b_skip, (n_rows + 7) / 8, "skip mask", &skip)) goto done1;
    if (get_buffer(o_q, &b_q, 0, 0, "queries")) goto done2;
    hl_range_job job = {b_db.buf, nb, nbits, radius, b_keys.buf, skip, b_q.buf, 0, n_rows,
                        0, 0, NULL, NULL, NULL, NULL};
    if (parse_tables(o_tables, &job, views, &n_views, dirs, perms, n_rows) == 0) {
        result = run_range(&job, b_q.len / nb, nthreads);
        for (int i = 0; i < n_views; i++) release(&views[i]);
    }
    release(&b_q);
done2:
    release(&b_skip);
done1:
    release(&b_keys);
done0:
    release(&b_db);
    return result;
}

/* --- mih_knn ----------------------------------------------------------------------------- */

static double binomial(int n, int r) {
    if (r < 0 || r > n) return 0.0;
    double b = 1.0;
    for (int i = 1; i <= r; i++) b = b * (n - r + i) / i;
    return b;
}

/* Work units: one per row of a linear scan. A probe is a random directory access and a
 * verified candidate a random row access, both far dearer than a streamed row. */
#define HL_PROBE_COST 24.0
#define HL_VERIFY_COST 4.0

HL_INLINE int mih_knn_impl(const hl_range_job *job, int64_t qi, int k, double budget,
                           double mean_bucket, int32_t *out_d, int64_t *out_r, uint8_t *failed,
                           int64_t *hist, int32_t *crow, int32_t *cd) {
    int64_t piece = HL_CHUNK_BYTES / job->nb;
    if (piece < 256) piece = 256;
    const uint8_t *db = job->db, *skip = job->skip;
    const int nb = job->nb, nbits = job->nbits, m = job->m, key_bits = job->key_bits;
    const uint32_t **dirs = job->dirs, **perms = job->perms;
    const int64_t *keys = job->keys;
    const uint8_t *qp = job->q + qi * nb;
    uint32_t qkey[64];
    hl_topk s;
    if (topk_init(&s, k, nbits)) return -1;
    for (int j = 0; j < m; j++) qkey[j] = gather_key(qp, job->positions + j * key_bits, key_bits);
    double work = 0.0;
    int done = 0;
    failed[qi] = 0;
    for (int rho = 0; rho <= key_bits && !done; rho++) {
        double expected = m * binomial(key_bits, rho) * (HL_PROBE_COST + HL_VERIFY_COST * mean_bucket);
        if (work + expected > budget) {
            failed[qi] = 1;
            break;
        }
        int64_t probes_ = 0, verified = 0;
        if (m == 1 && perms[0] == NULL && crow != NULL) {
            /* bucket hashing on the sorted rows: nothing to de-duplicate */
            SORTED_TABLE_PROBE(rho, qkey[0], qp, s.tau, piece, crow, cd, {
                verified++;
                topk_push(&s, d, keys[row], row, k, nbits, hist);
            });
        }
        for (int j = 0; j < m && !(m == 1 && perms[0] == NULL && crow != NULL); j++) {
            MIH_FOR_EACH_ROW(j, qkey[j], rho, {
                if (is_skipped(skip, row)) continue;
                const uint8_t *p = db + row * nb;
                /* rows whose key is closer in another table (or as close in an earlier one)
                 * were verified already */
                int seen = 0;
                for (int i = 0; i < m && !seen; i++) {
                    if (i == j) continue;
                    int kd = masked_hamming(p, qp, job->masks + i * nb, nb);
                    seen = kd < rho || (i < j && kd == rho);
                }
                if (seen) continue;
                verified++;
                topk_push(&s, hamming(qp, p, nb), keys[row], row, k, nbits, hist);
            });
        }
        work += probes_ * HL_PROBE_COST + verified * HL_VERIFY_COST;
        if (s.len >= k) {
            topk_compress(&s, k, nbits, hist);
            if (s.tau <= m * (rho + 1) - 1) done = 1;
        }
        if (rho == key_bits) done = 1; /* every bucket probed: all rows seen */
    }
    if (!failed[qi]) topk_finish(&s, k, out_d + qi * k, out_r + qi * k);
    free(s.buf);
    return 0;
}

typedef int (*knn_fn)(const hl_range_job *, int64_t, int, double, double, int32_t *, int64_t *,
                      uint8_t *, int64_t *, int32_t *, int32_t *);

static int mih_knn_plain(const hl_range_job *job, int64_t qi, int k, double budget, double mb,
                         int32_t *out_d, int64_t *out_r, uint8_t *failed, int64_t *hist,
                         int32_t *crow, int32_t *cd) {
    return mih_knn_impl(job, qi, k, budget, mb, out_d, out_r, failed, hist, crow, cd);
}

#if HL_X86
__attribute__((target("popcnt"))) static int mih_knn_popcnt(const hl_range_job *job, int64_t qi,
                                                             int k, double budget, double mb,
                                                             int32_t *out_d, int64_t *out_r,
                                                             uint8_t *failed, int64_t *hist,
                                                             int32_t *crow, int32_t *cd) {
    return mih_knn_impl(job, qi, k, budget, mb, out_d, out_r, failed, hist, crow, cd);
}
#endif

static knn_fn g_mih_knn = mih_knn_plain;

static PyObject *py_mih_knn(PyObject *self, PyObject *args) {
    PyObject *o_db, *o_keys, *o_skip, *o_q, *o_tables, *o_outd, *o_outr, *o_failed;
    Py_ssize_t n_rows;
    int nb, nbits, k, nthreads;
    double budget;
    if (!PyArg_ParseTuple(args, "OOOOniiidOOOOi", &o_db, &o_keys, &o_skip, &o_q, &n_rows, &nb,
                          &nbits, &k, &budget, &o_tables, &o_outd, &o_outr, &o_failed,
                          &nthreads))
        return NULL;
    Py_buffer b_db, b_keys, b_skip, b_q, b_outd, b_outr, b_failed, views[130];
    const uint32_t *dirs[64], *perms[64];
    int n_views = 0, err = 0, ok = 0;
    const void *skip;
    if (get_buffer(o_db, &b_db, 0, n_rows * nb, "codes")) return NULL;
    if (get_buffer(o_keys, &b_keys, 0, n_rows * 8, "keys")) goto done0;
    if (get_optional(o_skip, &b_skip, (n_rows + 7) / 8, "skip mask", &skip)) goto done1;
    if (get_buffer(o_q, &b_q, 0, 0, "queries")) goto done2;
    int64_t nq = b_q.len / nb;
    if (get_buffer(o_outd, &b_outd, 1, nq * k * 4, "distance output")) goto done3;
    if (get_buffer(o_outr, &b_outr, 1, nq * k * 8, "row output")) goto done4;
    if (get_buffer(o_failed, &b_failed, 1, nq, "failed flags")) goto done5;
    hl_range_job job = {b_db.buf, nb, nbits, 0, b_keys.buf, skip, b_q.buf, 0, n_rows,
                        0, 0, NULL, NULL, NULL, NULL};
    if (parse_tables(o_tables, &job, views, &n_views, dirs, perms, n_rows) == 0) {
        ok = 1;
        nthreads = clamp_threads(nthreads);
        double mean_bucket = (double)n_rows / (double)(1ull << job.key_bits);
        int32_t *out_d = b_outd.buf;
        int64_t *out_r = b_outr.buf;
        uint8_t *failed = b_failed.buf;
        Py_BEGIN_ALLOW_THREADS;
#pragma omp parallel num_threads(nthreads) reduction(| : err)
        {
            int64_t *hist = malloc(sizeof(int64_t) * (nbits + 2));
            int64_t piece = HL_CHUNK_BYTES / nb < 256 ? 256 : HL_CHUNK_BYTES / nb;
            int32_t *crow = malloc(sizeof(int32_t) * piece), *cd = malloc(sizeof(int32_t) * piece);
            int bad = !hist || !crow || !cd;
#pragma omp for schedule(dynamic, 4)
            for (int64_t qi = 0; qi < nq; qi++)
                if (!bad)
                    bad |= g_mih_knn(&job, qi, k, budget, mean_bucket, out_d, out_r, failed, hist,
                                     crow, cd);
            free(hist);
            free(crow);
            free(cd);
            err |= bad;
        }
        Py_END_ALLOW_THREADS;
        for (int i = 0; i < n_views; i++) release(&views[i]);
    }
    release(&b_failed);
done5:
    release(&b_outr);
done4:
    release(&b_outd);
done3:
    release(&b_q);
done2:
    release(&b_skip);
done1:
    release(&b_keys);
done0:
    release(&b_db);
    if (!ok) return NULL;
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* --- table building --------------------------------------------------------------------- */

static PyObject *py_gather_keys(PyObject *self, PyObject *args) {
    PyObject *o_db, *o_pos, *o_out;
    Py_ssize_t n;
    int nb, key_bits, nthreads;
    if (!PyArg_ParseTuple(args, "OniOiOi", &o_db, &n, &nb, &o_pos, &key_bits, &o_out, &nthreads))
        return NULL;
    Py_buffer b_db, b_pos, b_out;
    if (get_buffer(o_db, &b_db, 0, n * nb, "codes")) return NULL;
    if (get_buffer(o_pos, &b_pos, 0, key_bits * 4, "positions")) {
        release(&b_db);
        return NULL;
    }
    if (get_buffer(o_out, &b_out, 1, n * 4, "key output")) {
        release(&b_pos);
        release(&b_db);
        return NULL;
    }
    const int32_t *pos = b_pos.buf;
    for (int i = 0; i < key_bits; i++)
        if (pos[i] < 0 || pos[i] >= nb * 8) {
            release(&b_out);
            release(&b_pos);
            release(&b_db);
            PyErr_SetString(PyExc_ValueError, "key bit position outside the code");
            return NULL;
        }
    nthreads = clamp_threads(nthreads);
    const uint8_t *db = b_db.buf;
    uint32_t *out = b_out.buf;
    Py_BEGIN_ALLOW_THREADS;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i = 0; i < n; i++) out[i] = gather_key(db + i * nb, pos, key_bits);
    Py_END_ALLOW_THREADS;
    release(&b_out);
    release(&b_pos);
    release(&b_db);
    Py_RETURN_NONE;
}

/* Stable counting sort of rows by key: offsets (nbuckets + 1) and the row permutation. */
static PyObject *py_counting_sort(PyObject *self, PyObject *args) {
    PyObject *o_keys, *o_off, *o_perm;
    Py_ssize_t n, nbuckets;
    if (!PyArg_ParseTuple(args, "OnnOO", &o_keys, &n, &nbuckets, &o_off, &o_perm)) return NULL;
    Py_buffer b_keys, b_off, b_perm;
    if (get_buffer(o_keys, &b_keys, 0, n * 4, "keys")) return NULL;
    if (get_buffer(o_off, &b_off, 1, (nbuckets + 1) * 4, "offsets")) {
        release(&b_keys);
        return NULL;
    }
    if (get_buffer(o_perm, &b_perm, 1, n * 4, "permutation")) {
        release(&b_off);
        release(&b_keys);
        return NULL;
    }
    const uint32_t *keys = b_keys.buf;
    uint32_t *offsets = b_off.buf, *perm = b_perm.buf;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    memset(offsets, 0, sizeof(uint32_t) * (nbuckets + 1));
    for (int64_t i = 0; i < n; i++) {
        if (keys[i] >= (uint64_t)nbuckets) {
            err = 1;
            break;
        }
        offsets[keys[i] + 1]++;
    }
    if (!err) {
        for (int64_t b = 0; b < nbuckets; b++) offsets[b + 1] += offsets[b];
        uint32_t *cursor = malloc(sizeof(uint32_t) * (nbuckets ? nbuckets : 1));
        if (!cursor) err = 2;
        else {
            memcpy(cursor, offsets, sizeof(uint32_t) * nbuckets);
            for (int64_t i = 0; i < n; i++) perm[cursor[keys[i]]++] = (uint32_t)i;
            free(cursor);
        }
    }
    Py_END_ALLOW_THREADS;
    release(&b_perm);
    release(&b_off);
    release(&b_keys);
    if (err == 1) {
        PyErr_SetString(PyExc_ValueError, "a key is beyond the number of buckets");
        return NULL;
    }
    if (err == 2) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* --- dispatch ------------------------------------------------------------------------- */

static int set_level(int level) {
    g_level = 0;
    g_filter = filter_plain;
    g_collect = collect_plain;
    g_mih_knn = mih_knn_plain;
#if HL_X86
    __builtin_cpu_init();
    int have[4] = {1, __builtin_cpu_supports("popcnt"), __builtin_cpu_supports("avx2"),
                   __builtin_cpu_supports("avx512f") &&
                       __builtin_cpu_supports("avx512vpopcntdq") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")};
    if (level >= 1 && have[1]) {
        g_level = 1;
        g_filter = filter_popcnt;
        g_collect = collect_popcnt;
        g_mih_knn = mih_knn_popcnt;
    }
    if (level >= 2 && have[1] && have[2]) {
        g_level = 2;
        g_filter = filter_avx2;
    }
    if (level >= 3 && have[1] && have[3]) {
        g_level = 3;
        g_filter = filter_avx512;
    }
#else
    (void)level;
#endif
    return g_level;
}

static PyObject *py_set_cpu_level(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    int wanted = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, g_level_names[i]) == 0 || (i == 3 && strcmp(name, "avx512") == 0))
            wanted = i;
    if (strcmp(name, "best") == 0) wanted = 3;
    if (wanted < 0) {
        PyErr_Format(PyExc_ValueError,
                     "unknown CPU level %R; expected plain, popcnt, avx2, avx512 or best",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    return PyUnicode_FromString(g_level_names[set_level(wanted)]);
}

static PyObject *py_cpu_level(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(g_level_names[g_level]);
}

static PyObject *py_openmp_threads(PyObject *self, PyObject *noargs) {
#ifdef _OPENMP
    return PyLong_FromLong(omp_get_max_threads());
#else
    return PyLong_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"knn_scan", py_knn_scan, METH_VARARGS, "Exact top-k by (distance, key) over a row range."},
    {"range_scan", py_range_scan, METH_VARARGS, "Rows within a radius: (offsets, rows, d)."},
    {"mih_range", py_mih_range, METH_VARARGS, "Radius search through multi-index tables."},
    {"mih_knn", py_mih_knn, METH_VARARGS, "Top-k through multi-index tables (growing radius)."},
    {"gather_keys", py_gather_keys, METH_VARARGS, "Keys of chosen bit positions per row."},
    {"counting_sort", py_counting_sort, METH_VARARGS, "Stable bucket offsets + permutation."},
    {"set_cpu_level", py_set_cpu_level, METH_VARARGS, "Use at most this CPU level."},
    {"cpu_level", py_cpu_level, METH_NOARGS, "The CPU level in use."},
    {"openmp_threads", py_openmp_threads, METH_NOARGS, "OpenMP threads (0: built without)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hamming",
                                    "hashlab's compiled Hamming search kernels.", -1, methods};

PyMODINIT_FUNC PyInit__hamming(void) {
    int level = 3;
    const char *forced = getenv("HASHLAB_CPU");
    if (forced && *forced) {
        if (strcmp(forced, "plain") == 0) level = 0;
        else if (strcmp(forced, "popcnt") == 0) level = 1;
        else if (strcmp(forced, "avx2") == 0) level = 2;
    }
    set_level(level);
    return PyModule_Create(&module);
}
