/* Hamming-space search kernels for hashlab.index (compiled on first use, loaded with ctypes).
 *
 * Codes are packed rows of `nb` bytes (big-endian bits inside each byte, as numpy.packbits
 * and faiss write them). Distances are XOR + popcount on 64-bit words.
 *
 * - hl_knn_scan: exact top-k by (distance, id) over a row range. Queries are processed in
 *   blocks against cache-sized chunks of the database so that each chunk is read from memory
 *   once per block; each query keeps a small candidate buffer and a lexicographic threshold
 *   (tau, idcut) so that almost every row is rejected with one compare (partial selection).
 * - hl_range_scan: every row within an inclusive radius.
 * - hl_mih_range / hl_mih_knn: multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012,
 *   TPAMI 2014). The code holds m disjoint keys of `keybits` bits; table j maps a key to a
 *   bucket of rows through a CSR directory (dirs[j], 2^keybits + 1 offsets) and a row
 *   permutation (perms[j]; NULL means the rows themselves are sorted by key j). An item
 *   within distance r of a query has some key within floor(r/m) of the query's key
 *   (pigeonhole, Sec. 3 of the paper); k-NN grows the probe radius rho until the k-th
 *   distance found is <= m(rho+1)-1 (Sec. 4), which proves nothing unseen can enter.
 *
 * All functions are re-entrant; the Python side calls them from several threads at once
 * (ctypes releases the GIL), each on its own slice of queries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* `nb` is a compile-time constant at every hot call site (see the dispatch switches), so
 * the loops below unroll into a handful of XOR/POPCNT instructions. */
HL_INLINE int hamming(const uint8_t *a, const uint8_t *b, const int nb) {
    int d = 0, i = 0;
    for (; i + 8 <= nb; i += 8) d += __builtin_popcountll(load64(a + i) ^ load64(b + i));
    for (; i + 4 <= nb; i += 4) d += __builtin_popcount(load32(a + i) ^ load32(b + i));
    for (; i < nb; i++) d += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    return d;
}

HL_INLINE int is_dead(const uint8_t *dead, int64_t row) {
    return dead != NULL && ((dead[row >> 3] >> (row & 7)) & 1);
}

/* ---------------------------------------------------------------- top-k selection ---- */

typedef struct {
    int32_t d;
    int64_t id;
    int64_t row;
} hl_item;

typedef struct {
    hl_item *buf;
    int64_t len, cap;
    int32_t tau;   /* accept (d, id) iff d < tau || (d == tau && id < idcut) */
    int64_t idcut;
} hl_topk;

static int cmp_item(const void *pa, const void *pb) {
    const hl_item *a = pa, *b = pb;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cmp_id(const void *pa, const void *pb) {
    const hl_item *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

static int topk_init(hl_topk *s, int k, int nbits) {
    s->cap = 4 * (int64_t)k + 64;
    s->buf = malloc(sizeof(hl_item) * s->cap);
    s->len = 0;
    s->tau = nbits + 1;
    s->idcut = INT64_MAX;
    return s->buf ? 0 : -1;
}

/* Keep exactly the k smallest items by (d, id) and tighten the threshold to the k-th. */
static void topk_compress(hl_topk *s, int k, int nbits, int64_t *hist) {
    if (s->len < k) return;
    memset(hist, 0, sizeof(int64_t) * (nbits + 2));
    for (int64_t i = 0; i < s->len; i++) hist[s->buf[i].d]++;
    int32_t t = 0;
    int64_t below = 0;
    while (below + hist[t] < k) below += hist[t++];
    /* two swap partitions: [d < t | d == t | d > t]; swaps keep every item */
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
    /* of the ties keep the (k - below) smallest ids: ties are broken by id */
    qsort(s->buf + tie_start, (size_t)(w - tie_start), sizeof(hl_item), cmp_id);
    s->len = k;
    s->tau = t;
    s->idcut = s->buf[k - 1].id;
}

HL_INLINE void topk_push(hl_topk *s, int32_t d, int64_t id, int64_t row, int k, int nbits,
                         int64_t *hist) {
    if (!(d < s->tau || (d == s->tau && id < s->idcut))) return;
    if (s->len == s->cap) topk_compress(s, k, nbits, hist);
    if (!(d < s->tau || (d == s->tau && id < s->idcut))) return;
    s->buf[s->len].d = d;
    s->buf[s->len].id = id;
    s->buf[s->len].row = row;
    s->len++;
}

static void topk_finish(hl_topk *s, int k, int32_t *out_d, int64_t *out_id, int64_t *out_row) {
    qsort(s->buf, (size_t)s->len, sizeof(hl_item), cmp_item);
    for (int i = 0; i < k; i++) {
        if (i < s->len) {
            out_d[i] = s->buf[i].d;
            out_id[i] = s->buf[i].id;
            out_row[i] = s->buf[i].row;
        } else {
            out_d[i] = -1;
            out_id[i] = -1;
            out_row[i] = -1;
        }
    }
}

/* ---------------------------------------------------------------- linear scans ------- */

#define HL_CHUNK_BYTES (128 * 1024)
#define HL_QUERY_BLOCK 16

HL_INLINE int knn_scan_nb(const uint8_t *db, int64_t r0, int64_t r1, const int nb, int nbits,
                          const int64_t *ids, const uint8_t *dead, const uint8_t *q,
                          int64_t nq, int k, int32_t *out_d, int64_t *out_id,
                          int64_t *out_row) {
    int64_t chunk = HL_CHUNK_BYTES / nb;
    if (chunk < 256) chunk = 256;
    int64_t *hist = malloc(sizeof(int64_t) * (nbits + 2));
    hl_topk *st = malloc(sizeof(hl_topk) * (nq > 0 ? nq : 1));
    if (!hist || !st) {
        free(hist);
        free(st);
        return -1;
    }
    int err = 0;
    for (int64_t i = 0; i < nq; i++)
        if (topk_init(&st[i], k, nbits)) err = 1;
    if (!err) {
        for (int64_t qb = 0; qb < nq; qb += HL_QUERY_BLOCK) {
            int64_t qe = qb + HL_QUERY_BLOCK < nq ? qb + HL_QUERY_BLOCK : nq;
            for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
                int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
                for (int64_t qi = qb; qi < qe; qi++) {
                    const uint8_t *qp = q + qi * nb;
                    hl_topk *s = &st[qi];
                    int32_t tau = s->tau;
                    const uint8_t *p = db + c0 * nb;
                    for (int64_t r = c0; r < c1; r++, p += nb) {
                        int32_t d = hamming(qp, p, nb);
                        if (__builtin_expect(d <= tau, 0)) {
                            if (is_dead(dead, r)) continue;
                            topk_push(s, d, ids[r], r, k, nbits, hist);
                            tau = s->tau;
                        }
                    }
                }
            }
        }
        for (int64_t i = 0; i < nq; i++)
            topk_finish(&st[i], k, out_d + i * k, out_id + i * k, out_row + i * k);
    }
    for (int64_t i = 0; i < nq; i++) free(st[i].buf);
    free(st);
    free(hist);
    return err ? -1 : 0;
}

int hl_knn_scan(const uint8_t *db, int64_t r0, int64_t r1, int nb, int nbits,
                const int64_t *ids, const uint8_t *dead, const uint8_t *q, int64_t nq, int k,
                int32_t *out_d, int64_t *out_id, int64_t *out_row) {
    switch (nb) {
    case 4: return knn_scan_nb(db, r0, r1, 4, nbits, ids, dead, q, nq, k, out_d, out_id, out_row);
    case 8: return knn_scan_nb(db, r0, r1, 8, nbits, ids, dead, q, nq, k, out_d, out_id, out_row);
    case 16: return knn_scan_nb(db, r0, r1, 16, nbits, ids, dead, q, nq, k, out_d, out_id, out_row);
    case 32: return knn_scan_nb(db, r0, r1, 32, nbits, ids, dead, q, nq, k, out_d, out_id, out_row);
    default: return knn_scan_nb(db, r0, r1, nb, nbits, ids, dead, q, nq, k, out_d, out_id, out_row);
    }
}

/* growable (row, distance) list per query */
typedef struct {
    int64_t *rows;
    int32_t *d;
    int64_t len, cap;
} hl_hits;

static int hits_push(hl_hits *h, int64_t row, int32_t d) {
    if (h->len == h->cap) {
        int64_t cap = h->cap ? 2 * h->cap : 64;
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

/* Concatenate per-query hit lists into malloc'd outputs (lims has nq + 1 entries). */
static int hits_collect(hl_hits *hits, int64_t nq, int64_t *lims, int64_t **rows_out,
                        int32_t **d_out) {
    lims[0] = 0;
    for (int64_t i = 0; i < nq; i++) lims[i + 1] = lims[i] + hits[i].len;
    int64_t total = lims[nq];
    *rows_out = malloc(sizeof(int64_t) * (total ? total : 1));
    *d_out = malloc(sizeof(int32_t) * (total ? total : 1));
    if (!*rows_out || !*d_out) return -1;
    for (int64_t i = 0; i < nq; i++) {
        if (hits[i].len) {
            memcpy(*rows_out + lims[i], hits[i].rows, sizeof(int64_t) * hits[i].len);
            memcpy(*d_out + lims[i], hits[i].d, sizeof(int32_t) * hits[i].len);
        }
    }
    return 0;
}

static void hits_free(hl_hits *hits, int64_t nq) {
    for (int64_t i = 0; i < nq; i++) {
        free(hits[i].rows);
        free(hits[i].d);
    }
    free(hits);
}

void hl_free(void *p) { free(p); }

HL_INLINE int range_scan_nb(const uint8_t *db, int64_t r0, int64_t r1, const int nb,
                            const uint8_t *dead, const uint8_t *q, int64_t nq, int radius,
                            hl_hits *hits) {
    int64_t chunk = HL_CHUNK_BYTES / nb;
    if (chunk < 256) chunk = 256;
    for (int64_t qb = 0; qb < nq; qb += HL_QUERY_BLOCK) {
        int64_t qe = qb + HL_QUERY_BLOCK < nq ? qb + HL_QUERY_BLOCK : nq;
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
            int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
            for (int64_t qi = qb; qi < qe; qi++) {
                const uint8_t *qp = q + qi * nb;
                const uint8_t *p = db + c0 * nb;
                for (int64_t r = c0; r < c1; r++, p += nb) {
                    int32_t d = hamming(qp, p, nb);
                    if (__builtin_expect(d <= radius, 0)) {
                        if (is_dead(dead, r)) continue;
                        if (hits_push(&hits[qi], r, d)) return -1;
                    }
                }
            }
        }
    }
    return 0;
}

int hl_range_scan(const uint8_t *db, int64_t r0, int64_t r1, int nb, const uint8_t *dead,
                  const uint8_t *q, int64_t nq, int radius, int64_t *lims, int64_t **rows_out,
                  int32_t **d_out) {
    hl_hits *hits = calloc(nq > 0 ? nq : 1, sizeof(hl_hits));
    if (!hits) return -1;
    int err;
    switch (nb) {
    case 4: err = range_scan_nb(db, r0, r1, 4, dead, q, nq, radius, hits); break;
    case 8: err = range_scan_nb(db, r0, r1, 8, dead, q, nq, radius, hits); break;
    case 16: err = range_scan_nb(db, r0, r1, 16, dead, q, nq, radius, hits); break;
    case 32: err = range_scan_nb(db, r0, r1, 32, dead, q, nq, radius, hits); break;
    default: err = range_scan_nb(db, r0, r1, nb, dead, q, nq, radius, hits); break;
    }
    if (!err) err = hits_collect(hits, nq, lims, rows_out, d_out);
    hits_free(hits, nq);
    return err;
}

/* ---------------------------------------------------------------- multi-index hashing - */

/* Bits [off, off + keybits) of a packed code as an integer (keybits <= 32). */
HL_INLINE uint32_t extract_key(const uint8_t *code, int nb, int off, int keybits) {
    int byte = off >> 3;
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) v = (v << 8) | (byte + i < nb ? code[byte + i] : 0);
    int shift = 40 - (off & 7) - keybits;
    return (uint32_t)((v >> shift) & ((keybits == 32) ? 0xffffffffull : ((1ull << keybits) - 1)));
}

void hl_extract_keys(const uint8_t *codes, int64_t n, int nb, int off, int keybits,
                     uint32_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = extract_key(codes + i * nb, nb, off, keybits);
}

/* Stable counting sort of rows by key: offsets (nbuckets + 1) and the row permutation. */
int hl_counting_sort(const uint32_t *keys, int64_t n, int64_t nbuckets, uint32_t *offsets,
                     uint32_t *perm) {
    memset(offsets, 0, sizeof(uint32_t) * (nbuckets + 1));
    for (int64_t i = 0; i < n; i++) offsets[keys[i] + 1]++;
    for (int64_t b = 0; b < nbuckets; b++) offsets[b + 1] += offsets[b];
    uint32_t *cursor = malloc(sizeof(uint32_t) * (nbuckets ? nbuckets : 1));
    if (!cursor) return -1;
    memcpy(cursor, offsets, sizeof(uint32_t) * nbuckets);
    for (int64_t i = 0; i < n; i++) perm[cursor[keys[i]]++] = (uint32_t)i;
    free(cursor);
    return 0;
}

/* Next integer with the same number of set bits (Gosper's hack). */
HL_INLINE uint64_t next_combination(uint64_t x) {
    uint64_t c = x & -x, r = x + c;
    return (((r ^ x) >> 2) / c) | r;
}

typedef struct {
    const uint8_t *codes;
    int nb, nbits, m, keybits;
    const int32_t *key_off;
    const uint32_t *const *perms;
    const uint32_t *const *dirs;
    const uint8_t *dead;
} hl_mih;

static void mih_unpack(hl_mih *t, const uint8_t *codes, int nb, int nbits, int m,
                       const int32_t *key_off, int keybits, const uint64_t *perm_addrs,
                       const uint64_t *dir_addrs, const uint8_t *dead) {
    t->codes = codes;
    t->nb = nb;
    t->nbits = nbits;
    t->m = m;
    t->keybits = keybits;
    t->key_off = key_off;
    t->perms = (const uint32_t *const *)perm_addrs;
    t->dirs = (const uint32_t *const *)dir_addrs;
    t->dead = dead;
}

/* Probe every key at exactly `rho` bits from the query key of table j; run BODY per row.
 * Probes are random accesses (directory, then bucket), so they go in batches: prefetch
 * every directory entry of the batch, then every bucket start, then verify; the memory
 * system then serves many misses at once instead of one after another. */
#define HL_PROBE_BATCH 64
#define MIH_FOR_EACH_ROW(T, J, QKEY, RHO, BODY)                                           \
    do {                                                                                  \
        const uint32_t *dir_ = (T)->dirs[J];                                              \
        const uint32_t *perm_ = (T)->perms[J];                                            \
        uint64_t limit_ = 1ull << (T)->keybits;                                           \
        uint64_t mask_ = (RHO) == 0 ? 0 : ((1ull << (RHO)) - 1);                          \
        uint32_t keys_[HL_PROBE_BATCH];                                                   \
        while (mask_ < limit_) {                                                          \
            int nk_ = 0;                                                                  \
            while (nk_ < HL_PROBE_BATCH && mask_ < limit_) {                              \
                uint32_t key_ = (QKEY) ^ (uint32_t)mask_;                                 \
                keys_[nk_++] = key_;                                                      \
                __builtin_prefetch(dir_ + key_);                                          \
                mask_ = (RHO) == 0 ? limit_ : next_combination(mask_);                    \
            }                                                                             \
            for (int i_ = 0; i_ < nk_; i_++) {                                            \
                uint32_t b0_ = dir_[keys_[i_]];                                           \
                if (perm_) __builtin_prefetch(perm_ + b0_);                               \
                else __builtin_prefetch((T)->codes + (int64_t)b0_ * (T)->nb);             \
            }                                                                             \
            probes_ += nk_;                                                               \
            for (int i_ = 0; i_ < nk_; i_++) {                                            \
                uint32_t b0_ = dir_[keys_[i_]], b1_ = dir_[keys_[i_] + 1];                \
                for (uint32_t pos_ = b0_; pos_ < b1_; pos_++) {                           \
                    int64_t row = perm_ ? (int64_t)perm_[pos_] : (int64_t)pos_;           \
                    BODY                                                                  \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    } while (0)

int hl_mih_range(const uint8_t *codes, int nb, int nbits, int m, const int32_t *key_off,
                 int keybits, const uint64_t *perm_addrs, const uint64_t *dir_addrs,
                 const uint8_t *dead, const uint8_t *q, int64_t nq, int radius, int64_t *lims,
                 int64_t **rows_out, int32_t **d_out) {
    hl_mih t;
    mih_unpack(&t, codes, nb, nbits, m, key_off, keybits, perm_addrs, dir_addrs, dead);
    hl_hits *hits = calloc(nq > 0 ? nq : 1, sizeof(hl_hits));
    uint32_t qkey[64];
    if (!hits || m > 64) {
        free(hits);
        return -1;
    }
    int rho_max = radius / m;
    if (rho_max > keybits) rho_max = keybits;
    int64_t probes_ = 0;
    int err = 0;
    for (int64_t qi = 0; qi < nq && !err; qi++) {
        const uint8_t *qp = q + qi * nb;
        for (int j = 0; j < m; j++) qkey[j] = extract_key(qp, nb, key_off[j], keybits);
        for (int j = 0; j < m && !err; j++) {
            for (int rho = 0; rho <= rho_max && !err; rho++) {
                MIH_FOR_EACH_ROW(&t, j, qkey[j], rho, {
                    if (is_dead(dead, row)) continue;
                    const uint8_t *p = codes + row * nb;
                    int32_t d = hamming(qp, p, nb);
                    if (d > radius) continue;
                    int seen = 0;
                    for (int i = 0; i < j && !seen; i++)
                        seen = __builtin_popcount(extract_key(p, nb, key_off[i], keybits) ^
                                                  qkey[i]) <= rho_max;
                    if (seen) continue;
                    if (hits_push(&hits[qi], row, d)) {
                        err = 1;
                        break;
                    }
                });
            }
        }
    }
    if (!err) err = hits_collect(hits, nq, lims, rows_out, d_out);
    hits_free(hits, nq);
    return err ? -1 : 0;
}

static double binomial(int n, int r) {
    if (r < 0 || r > n) return 0.0;
    double b = 1.0;
    for (int i = 1; i <= r; i++) b = b * (n - r + i) / i;
    return b;
}

/* Work units: one per row of a linear scan. A probe costs a random directory access and a
 * verified candidate a random row access, both far dearer than a streamed row. */
#define HL_PROBE_COST 24.0
#define HL_VERIFY_COST 4.0

int hl_mih_knn(const uint8_t *codes, int64_t n_indexed, int nb, int nbits, int m,
               const int32_t *key_off, int keybits, const uint64_t *perm_addrs,
               const uint64_t *dir_addrs, const uint8_t *dead, const int64_t *ids,
               const uint8_t *q, int64_t nq, int k, double work_budget, int32_t *out_d,
               int64_t *out_id, int64_t *out_row, uint8_t *failed) {
    hl_mih t;
    mih_unpack(&t, codes, nb, nbits, m, key_off, keybits, perm_addrs, dir_addrs, dead);
    int64_t *hist = malloc(sizeof(int64_t) * (nbits + 2));
    if (!hist || m > 64) {
        free(hist);
        return -1;
    }
    uint32_t qkey[64];
    int kd[64];
    double mean_bucket = (double)n_indexed / (double)(1ull << keybits);
    int err = 0;
    for (int64_t qi = 0; qi < nq && !err; qi++) {
        const uint8_t *qp = q + qi * nb;
        hl_topk s;
        if (topk_init(&s, k, nbits)) {
            err = 1;
            break;
        }
        for (int j = 0; j < m; j++) qkey[j] = extract_key(qp, nb, key_off[j], keybits);
        double work = 0.0;
        int done = 0;
        failed[qi] = 0;
        for (int rho = 0; rho <= keybits && !done; rho++) {
            double round_probes = m * binomial(keybits, rho);
            double expected = round_probes * (HL_PROBE_COST + HL_VERIFY_COST * mean_bucket);
            if (work + expected > work_budget) {
                failed[qi] = 1;
                break;
            }
            int64_t probes_ = 0, verified = 0;
            for (int j = 0; j < m; j++) {
                MIH_FOR_EACH_ROW(&t, j, qkey[j], rho, {
                    if (is_dead(dead, row)) continue;
                    const uint8_t *p = codes + row * nb;
                    /* rows whose key is closer in another table (or as close in an earlier
                     * one) were verified already */
                    int seen = 0;
                    for (int i = 0; i < m && !seen; i++) {
                        if (i == j) continue;
                        kd[i] = __builtin_popcount(extract_key(p, nb, key_off[i], keybits) ^
                                                   qkey[i]);
                        seen = kd[i] < rho || (i < j && kd[i] == rho);
                    }
                    if (seen) continue;
                    verified++;
                    topk_push(&s, hamming(qp, p, nb), ids[row], row, k, nbits, hist);
                });
            }
            work += probes_ * HL_PROBE_COST + verified * HL_VERIFY_COST;
            if (s.len >= k) {
                topk_compress(&s, k, nbits, hist);
                if (s.tau <= m * (rho + 1) - 1) done = 1;
            }
            if (rho == keybits) done = 1; /* every bucket probed: all rows seen */
        }
        if (!failed[qi]) topk_finish(&s, k, out_d + qi * k, out_id + qi * k, out_row + qi * k);
        free(s.buf);
    }
    free(hist);
    return err ? -1 : 0;
}
