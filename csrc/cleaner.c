/*
 * Compaction's per-record work (embedlog/storage/_cleaner.py, FORMAT.md §14; prototypes in
 * native.h): the key map and the filter pass, over whole buffers of RecordBatch v2.
 *
 * Key map: Kafka's SkimpyOffsetMap. An open-addressing table (linear probing) of 24-byte
 * slots, a 128-bit digest of the key (MurmurHash3 x64-128's mixing, the tail zero-padded)
 * and the offset of the key's latest record plus one (0: empty slot). Keys themselves are
 * not kept, so the memory is 24 bytes a slot whatever the keys' sizes; two keys with the
 * same digest would be taken for one (a 2^-128 chance a pair, as Kafka takes with MD5).
 * The caller owns the slots (zeroed) and says when the table is full (`grow_at`); it then
 * gives a larger table (el_keymap_rehash) or stops the map there, as Kafka's cleaner does
 * when log.cleaner.dedupe.buffer.size is reached.
 *
 * Filter pass: every batch is checked (header, CRC-32C, records section) and copied as it
 * is when every record stays, dropped when none does, else rewritten with the records
 * that stay: same baseOffset, lastOffsetDelta, producer id/epoch, base sequence and
 * leader epoch, each record keeping its offset (gaps in the offsetDeltas), timestamp and
 * headers, and a new CRC (the same result as _records.rebuild_batch). Compressed batches
 * are the caller's (status 1): Python decompresses them.
 *
 * Nothing here allocates or calls into Python.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include "native.h"
#include "el_bytes.h"

#define ATTR_COMPRESSION 0x07
#define ATTR_LOG_APPEND_TIME 0x08
#define ATTR_TRANSACTIONAL 0x10
#define ATTR_CONTROL 0x20
#define ATTR_DELETE_HORIZON 0x40

typedef struct {
    uint64_t h1, h2;
    int64_t offset1;    /* offset + 1; 0 = empty */
} slot_t;

/* ------------------------------------------------------------------ digest */

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline void mix_block(uint64_t *h1, uint64_t *h2, uint64_t k1, uint64_t k2)
{
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; *h1 ^= k1;
    *h1 = rotl64(*h1, 27); *h1 += *h2; *h1 = *h1 * 5 + 0x52dce729;
    k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; *h2 ^= k2;
    *h2 = rotl64(*h2, 31); *h2 += *h1; *h2 = *h2 * 5 + 0x38495ab5;
}

static inline void digest(const uint8_t *p, size_t n, uint64_t *out1, uint64_t *out2)
{
    uint64_t h1 = 0x9747b28cULL, h2 = 0x9747b28cULL;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        mix_block(&h1, &h2, load_le64(p + i), load_le64(p + i + 8));
    uint8_t tail[16] = {0};
    memcpy(tail, p + i, n - i);
    mix_block(&h1, &h2, load_le64(tail), load_le64(tail + 8));
    h1 ^= (uint64_t)n; h2 ^= (uint64_t)n;
    h1 += h2; h2 += h1;
    h1 = fmix64(h1); h2 = fmix64(h2);
    h1 += h2; h2 += h1;
    *out1 = h1;
    *out2 = h2;
}

/* ------------------------------------------------------------------ table */

static inline uint64_t home(const el_keymap *m, uint64_t h1)
{
    return (uint64_t)(((unsigned __int128)h1 * (uint64_t)m->capacity) >> 64);
}

static inline slot_t *find_slot(const el_keymap *m, uint64_t h1, uint64_t h2)
{
    slot_t *slots = m->slots;
    uint64_t cap = (uint64_t)m->capacity;
    uint64_t i = home(m, h1);
    for (;;) {   /* ends: the caller keeps entries below capacity */
        slot_t *s = &slots[i];
        if (s->offset1 == 0 || (s->h1 == h1 && s->h2 == h2))
            return s;
        if (++i == cap) i = 0;
    }
}

static inline void map_put_digest(el_keymap *m, uint64_t h1, uint64_t h2, int64_t offset)
{
    slot_t *s = find_slot(m, h1, h2);
    if (s->offset1 == 0) {
        s->h1 = h1;
        s->h2 = h2;
        m->entries++;
    }
    if (offset + 1 > s->offset1) s->offset1 = offset + 1;
}

static inline void map_put(el_keymap *m, const uint8_t *key, size_t n, int64_t offset)
{
    uint64_t h1, h2;
    digest(key, n, &h1, &h2);
    map_put_digest(m, h1, h2, offset);
}

static inline int64_t map_get(const el_keymap *m, const uint8_t *key, size_t n)
{
    uint64_t h1, h2;
    digest(key, n, &h1, &h2);
    return find_slot(m, h1, h2)->offset1 - 1;
}

/* The probes of a batch's keys are cache misses (the table is larger than the caches):
 * its digests are computed first, then each slot is fetched PREFETCH records ahead. */
#define PREFETCH 24

typedef struct {
    uint64_t h1, h2;
    int64_t offset;          /* the record's offset; -1: no key */
    int64_t ts_delta;
    int32_t value_null;
} probe_t;

size_t el_clean_scratch_bytes(int32_t n) { return (size_t)n * (sizeof(probe_t) + 1); }

static inline void prefetch_slot(const el_keymap *m, const probe_t *p)
{
    if (p->offset >= 0) __builtin_prefetch((const slot_t *)m->slots + home(m, p->h1), 1, 0);
}

void el_keymap_advise(const el_keymap *m)
{
#ifdef MADV_HUGEPAGE
    /* Probes land anywhere in the table: 2 MiB pages save most of their TLB misses. */
    uintptr_t start = ((uintptr_t)m->slots + 0x1fffff) & ~(uintptr_t)0x1fffff;
    uintptr_t end = ((uintptr_t)m->slots + (uintptr_t)m->capacity * sizeof(slot_t)) & ~(uintptr_t)0x1fffff;
    if (end > start) madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)m;
#endif
}

void el_keymap_rehash(const el_keymap *from, el_keymap *to)
{
    const slot_t *old = from->slots;
    for (int64_t i = 0; i < from->capacity; i++) {
        if (old[i].offset1 == 0) continue;
        slot_t *s = find_slot(to, old[i].h1, old[i].h2);
        if (s->offset1 == 0) to->entries++;
        *s = old[i];
    }
    to->end_offset = from->end_offset;
}

void el_keymap_put_many(el_keymap *m, const void *keys_, const int32_t *key_lens, const int64_t *offsets,
                        int32_t n)
{
    const uint8_t *keys = keys_;
    for (int32_t i = 0; i < n; i++) {
        if (key_lens[i] < 0) continue;
        map_put(m, keys, (size_t)key_lens[i], offsets[i]);
        keys += key_lens[i];
    }
}

void el_keymap_get_many(const el_keymap *m, const void *keys_, const int32_t *key_lens, int32_t n,
                        int64_t *out)
{
    const uint8_t *keys = keys_;
    for (int32_t i = 0; i < n; i++) {
        if (key_lens[i] < 0) { out[i] = -1; continue; }
        out[i] = map_get(m, keys, (size_t)key_lens[i]);
        keys += key_lens[i];
    }
}

/* ------------------------------------------------------------------ records */

typedef struct {
    int64_t ts_delta, offset_delta;
    const uint8_t *key, *value, *headers;
    int32_t key_len, value_len;
    size_t headers_len;      /* the header section, its count varint included */
} record_t;

/* One record at p (the checks of el_parse_records); NULL if malformed. */
static const uint8_t *parse_record(const uint8_t *p, const uint8_t *end, record_t *r)
{
    int64_t v;
    if (!(p = get_varint(p, end, 5, &v)) || v < 6 || v > end - p) return NULL;
    const uint8_t *rend = p + v;
    p++; /* attributes */
    if (!(p = get_varint(p, rend, 10, &r->ts_delta))) return NULL;
    if (!(p = get_varint(p, rend, 5, &v)) || v < 0 || v > INT32_MAX) return NULL;
    r->offset_delta = v;
    if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return NULL;
    r->key = p;
    r->key_len = (int32_t)v;
    if (v > 0) p += v;
    if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return NULL;
    r->value = p;
    r->value_len = (int32_t)v;
    if (v > 0) p += v;
    r->headers = p;
    if (!(p = get_varint(p, rend, 5, &v)) || v < 0) return NULL;
    for (int64_t h = v; h > 0; h--) {
        if (!(p = get_varint(p, rend, 5, &v)) || v < 0 || v > rend - p) return NULL;
        p += v;
        if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return NULL;
        if (v > 0) p += v;
    }
    if (p != rend) return NULL;
    r->headers_len = (size_t)(rend - r->headers);
    return rend;
}

/* Header of the batch at buf[*pos]: 0 and its size in *total; 1 if it is not whole in
 * buf and more may follow (not final); else an EL_E* code. */
static int next_batch(const uint8_t *buf, size_t len, int64_t pos, int final, el_batch_header *h, size_t *total)
{
    size_t left = len - (size_t)pos;
    int rc = el_parse_header(buf + pos, left, 1, h);
    if (rc == EL_ETRUNC && !final) return 1;
    if (rc) return rc;
    *total = (size_t)h->batch_length + LOG_OVERHEAD;
    if (h->records_count < 0 || (h->records_count > 0 && (size_t)h->records_count > *total - BATCH_OVERHEAD))
        return EL_EMALFORMED;
    return 0;
}

/* Parse and check the n records of a batch into probes (digests, offsets, timestamps). */
static int parse_batch(const el_batch_header *h, const uint8_t *p, const uint8_t *end, probe_t *probes)
{
    int64_t prev = -1;
    record_t r;
    for (int32_t i = 0; i < h->records_count; i++) {
        if (!(p = parse_record(p, end, &r)) || r.offset_delta <= prev) return EL_EMALFORMED;
        prev = r.offset_delta;
        probe_t *q = &probes[i];
        q->ts_delta = r.ts_delta;
        q->value_null = r.value_len < 0;
        if (r.key_len >= 0) {
            digest(r.key, (size_t)r.key_len, &q->h1, &q->h2);
            q->offset = h->base_offset + r.offset_delta;
        } else {
            q->offset = -1;
        }
    }
    return p != end || prev > h->last_offset_delta ? EL_EMALFORMED : 0;
}

int el_keymap_scan(el_keymap *m, const void *buf_, size_t len, int final, int64_t *pos,
                   void *scratch, size_t scratch_len)
{
    const uint8_t *buf = buf_;
    probe_t *probes = scratch;
    el_batch_header h;
    size_t total;
    while ((size_t)*pos < len) {
        int rc = next_batch(buf, len, *pos, final, &h, &total);
        if (rc == 1) return 0;
        if (rc) return rc;
        int32_t n = h.records_count;
        if (n > 0 && (h.attributes & ATTR_CONTROL)) {
            /* A transaction marker's key is its type, not a record key: never mapped. */
            m->end_offset = h.base_offset + h.last_offset_delta + 1;
        } else if (n > 0) {
            if (h.attributes & ATTR_COMPRESSION) return 1;
            if (m->entries + n > m->grow_at) return 2;
            if (scratch_len < el_clean_scratch_bytes(n)) return 4;
            if ((rc = parse_batch(&h, buf + *pos + BATCH_OVERHEAD, buf + *pos + total, probes))) return rc;
            for (int32_t i = 0; i < n && i < PREFETCH; i++) prefetch_slot(m, &probes[i]);
            for (int32_t i = 0; i < n; i++) {
                if (i + PREFETCH < n) prefetch_slot(m, &probes[i + PREFETCH]);
                if (probes[i].offset >= 0) map_put_digest(m, probes[i].h1, probes[i].h2, probes[i].offset);
            }
            m->end_offset = h.base_offset + h.last_offset_delta + 1;
        }
        *pos += (int64_t)total;
    }
    return 0;
}

/* ------------------------------------------------------------------ filter */

static void rewrite(const el_batch_header *h, const uint8_t *records, const uint8_t *end, const uint8_t *keep,
                    int32_t kept, int64_t base_ts, int64_t max_ts, int32_t attributes, uint8_t *out, int64_t *out_len)
{
    uint8_t *start = out + *out_len, *q = start + BATCH_OVERHEAD;
    const uint8_t *p = records;
    int lat = h->attributes & ATTR_LOG_APPEND_TIME;
    record_t r;
    for (int32_t i = 0; i < h->records_count; i++) {
        p = parse_record(p, end, &r);          /* checked by the first pass */
        if (!keep[i]) continue;
        int64_t tsd = (lat ? h->max_timestamp : h->base_timestamp + r.ts_delta) - base_ts;
        size_t body = 1 + uvarint_size(zigzag(tsd)) + uvarint_size(zigzag(r.offset_delta)) +
                      uvarint_size(zigzag(r.key_len)) + (r.key_len > 0 ? (size_t)r.key_len : 0) +
                      uvarint_size(zigzag(r.value_len)) + (r.value_len > 0 ? (size_t)r.value_len : 0) +
                      r.headers_len;
        q = put_uvarint(q, zigzag((int64_t)body));
        *q++ = 0;
        q = put_uvarint(q, zigzag(tsd));
        q = put_uvarint(q, zigzag(r.offset_delta));
        q = put_uvarint(q, zigzag(r.key_len));
        if (r.key_len > 0) { memcpy(q, r.key, (size_t)r.key_len); q += r.key_len; }
        q = put_uvarint(q, zigzag(r.value_len));
        if (r.value_len > 0) { memcpy(q, r.value, (size_t)r.value_len); q += r.value_len; }
        memcpy(q, r.headers, r.headers_len);
        q += r.headers_len;
    }
    el_batch_header nh = *h;
    nh.attributes = attributes;
    nh.base_timestamp = base_ts;
    nh.max_timestamp = max_ts;
    nh.records_count = kept;
    el_finish_batch(start, (size_t)(q - start), &nh);
    *out_len += q - start;
}

int el_clean_scan(const el_keymap *m, const void *buf_, size_t len, int final, int64_t *pos,
                  void *out_, size_t out_cap, int64_t *out_len, void *scratch, size_t scratch_len,
                  el_clean_stats *s)
{
    const uint8_t *buf = buf_;
    uint8_t *out = out_;
    el_batch_header h;
    size_t total;
    while ((size_t)*pos < len) {
        int rc = next_batch(buf, len, *pos, final, &h, &total);
        if (rc == 1) return 0;
        if (rc) return rc;
        int32_t n = h.records_count;
        if (n == 0) {                        /* an empty batch carries nothing we keep */
            *pos += (int64_t)total;
            continue;
        }
        if (h.attributes & ATTR_CONTROL) {   /* transaction markers are kept as they are (#19) */
            if (out_cap - (size_t)*out_len < total) return 3;
            memcpy(out + *out_len, buf + *pos, total);
            *out_len += (int64_t)total;
            s->records_in += n;
            s->records_out += n;
            *pos += (int64_t)total;
            continue;
        }
        if (h.attributes & ATTR_COMPRESSION) return 1;
        /* A rewrite can only grow by the timestamp deltas' varints (at most 9 bytes more each). */
        if (out_cap - (size_t)*out_len < total + 10 * (size_t)n) return 3;
        if (scratch_len < el_clean_scratch_bytes(n)) return 4;
        const uint8_t *records = buf + *pos + BATCH_OVERHEAD, *end = buf + *pos + total;
        probe_t *probes = scratch;
        uint8_t *keep = (uint8_t *)(probes + n);
        if ((rc = parse_batch(&h, records, end, probes))) return rc;
        int horizon_set = h.attributes & ATTR_DELETE_HORIZON, lat = h.attributes & ATTR_LOG_APPEND_TIME;
        int tombstones = 0;
        int32_t kept = 0, removed = 0;
        int64_t first_ts = 0, max_ts = INT64_MIN;
        for (int32_t i = 0; i < n && i < PREFETCH; i++) prefetch_slot(m, &probes[i]);
        for (int32_t i = 0; i < n; i++) {
            const probe_t *q = &probes[i];
            if (i + PREFETCH < n) prefetch_slot(m, &probes[i + PREFETCH]);
            int k = 1;
            if (q->offset >= 0) {
                int64_t newest = find_slot(m, q->h1, q->h2)->offset1 - 1;
                k = newest < 0 || q->offset >= newest;
                if (k && q->value_null) {
                    if (horizon_set && s->now >= h.base_timestamp) {
                        k = 0;                   /* delete.retention.ms has passed since first cleaned */
                        removed++;
                    } else {
                        tombstones = 1;
                    }
                }
            }
            keep[i] = (uint8_t)k;
            if (k) {
                int64_t ts = lat ? h.max_timestamp : h.base_timestamp + q->ts_delta;
                if (kept++ == 0) first_ts = ts;
                if (ts > max_ts) max_ts = ts;
            }
        }
        s->records_in += n;
        s->tombstones_removed += removed;
        if (tombstones) {
            int64_t due = horizon_set ? h.base_timestamp : s->horizon;
            if (due < s->next_horizon) s->next_horizon = due;
        }
        if (kept == n && (horizon_set || !tombstones)) {
            memcpy(out + *out_len, buf + *pos, total);      /* unchanged: copied as is */
            *out_len += (int64_t)total;
        } else if (kept) {
            int64_t base_ts = horizon_set ? h.base_timestamp : tombstones ? s->horizon : first_ts;
            int32_t attributes = (h.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL | ATTR_LOG_APPEND_TIME |
                                                  ATTR_DELETE_HORIZON)) | (tombstones ? ATTR_DELETE_HORIZON : 0);
            rewrite(&h, records, end, keep, kept, base_ts, lat ? h.max_timestamp : max_ts, attributes, out, out_len);
        }
        s->records_out += kept;
        *pos += (int64_t)total;
    }
    return 0;
}
