/*
 * embedlog native hot path (see FORMAT.md and native.h).
 *
 * CRC-32C: Castagnoli, reflected polynomial 0x82F63B78, init and xorout 0xFFFFFFFF,
 *   check value 0xE3069283 for "123456789". SSE4.2 crc32q (x86-64) or ARMv8 crc32cx,
 *   chosen at run time, three interleaved streams combined with a GF(2) shift
 *   operator; slicing-by-8 tables otherwise.
 * murmur2: Kafka's Utils.murmur2 (seed 0x9747b28c), returned as Java's signed int32.
 * RecordBatch v2: big-endian header, zig-zag varints in records (FORMAT.md §3).
 * Durability: fdatasync on Linux, F_FULLFSYNC on macOS.
 * Cross-process state: a seqlock over u64 fields and a futex word in a shared mmap.
 *
 * No function here allocates or calls into Python; cffi releases the GIL around
 * every call, so blocking calls (pread, pwrite, fdatasync, locks, futex) do not
 * stall other Python threads.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include "native.h"
#include "el_bytes.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <nmmintrin.h>
#define EL_X86 1
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#include <arm_acle.h>
#define EL_ARM 1
#endif

/* ------------------------------------------------------------------ CRC-32C */

#define CRC32C_POLY 0x82F63B78u
#define CRC_LONG 8192
#define CRC_SHORT 256

static uint32_t crc_table[8][256];        /* slicing-by-8 */
static uint32_t crc_long_shift[4][256];   /* advance a register over CRC_LONG zero bytes */
static uint32_t crc_short_shift[4][256];  /* ... over CRC_SHORT zero bytes */
static int crc_hw = 0;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *dst, const uint32_t *src)
{
    for (int n = 0; n < 32; n++)
        dst[n] = gf2_times(src, src[n]);
}

/* Operator that advances a CRC register over `len` zero bytes (len a power of two). */
static void zeros_operator(uint32_t *op, size_t len)
{
    uint32_t a[32], b[32];
    a[0] = CRC32C_POLY;                 /* one zero bit */
    for (int n = 1; n < 32; n++)
        a[n] = 1u << (n - 1);
    gf2_square(b, a);                   /* two bits */
    gf2_square(a, b);                   /* four bits */
    for (;;) {
        gf2_square(b, a);               /* 8 bits, 32 bits, ... */
        len >>= 1;
        if (len == 0) { memcpy(op, b, sizeof b); return; }
        gf2_square(a, b);
        len >>= 1;
        if (len == 0) { memcpy(op, a, sizeof a); return; }
    }
}

static void shift_table(uint32_t table[4][256], size_t len)
{
    uint32_t op[32];
    zeros_operator(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = gf2_times(op, n);
        table[1][n] = gf2_times(op, n << 8);
        table[2][n] = gf2_times(op, n << 16);
        table[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t crc_shift(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^
           table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

__attribute__((constructor)) static void el_native_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            crc_table[k][n] = (crc_table[k - 1][n] >> 8) ^ crc_table[0][crc_table[k - 1][n] & 0xff];
    shift_table(crc_long_shift, CRC_LONG);
    shift_table(crc_short_shift, CRC_SHORT);
#if defined(EL_X86)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#elif defined(EL_ARM) && defined(HWCAP_CRC32)
    crc_hw = (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0;
#endif
}

/* Raw register in, raw register out (no pre/post inversion). */
static uint32_t crc_sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        uint64_t w = load_le64(p) ^ crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(EL_X86)
#define HW_ATTR __attribute__((target("sse4.2")))
#define HW_CRC8(c, p) ((uint32_t)_mm_crc32_u8((c), *(p)))
#define HW_CRC64(c, p) ((uint32_t)_mm_crc32_u64((c), load_le64(p)))
#elif defined(EL_ARM)
#define HW_ATTR __attribute__((target("+crc")))
#define HW_CRC8(c, p) __crc32cb((c), *(p))
#define HW_CRC64(c, p) __crc32cd((c), load_le64(p))
#endif

#if defined(HW_ATTR)
/* Three streams over adjacent blocks of `block` bytes, combined with the shift table. */
HW_ATTR static inline uint32_t crc_hw_3way(uint32_t crc, const uint8_t **pp, size_t *lenp,
                                            size_t block, uint32_t table[4][256])
{
    const uint8_t *p = *pp;
    size_t len = *lenp;
    while (len >= 3 * block) {
        uint32_t c0 = crc, c1 = 0, c2 = 0;
        const uint8_t *end = p + block;
        do {
            c0 = HW_CRC64(c0, p);
            c1 = HW_CRC64(c1, p + block);
            c2 = HW_CRC64(c2, p + 2 * block);
            p += 8;
        } while (p < end);
        crc = crc_shift(table, c0) ^ c1;
        crc = crc_shift(table, crc) ^ c2;
        p += 2 * block;
        len -= 3 * block;
    }
    *pp = p;
    *lenp = len;
    return crc;
}

HW_ATTR static uint32_t crc_hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        crc = HW_CRC8(crc, p);
        p++;
        len--;
    }
    crc = crc_hw_3way(crc, &p, &len, CRC_LONG, crc_long_shift);
    crc = crc_hw_3way(crc, &p, &len, CRC_SHORT, crc_short_shift);
    while (len >= 8) {
        crc = HW_CRC64(crc, p);
        p += 8;
        len -= 8;
    }
    while (len--) {
        crc = HW_CRC8(crc, p);
        p++;
    }
    return crc;
}
#endif

uint32_t el_crc32c_sw(uint32_t crc, const void *buf_, size_t len)
{
    const uint8_t *buf = buf_;
    return ~crc_sw_raw(~crc, buf, len);
}

uint32_t el_crc32c(uint32_t crc, const void *buf_, size_t len)
{
    const uint8_t *buf = buf_;
#if defined(HW_ATTR)
    if (crc_hw)
        return ~crc_hw_raw(~crc, buf, len);
#endif
    return ~crc_sw_raw(~crc, buf, len);
}

int el_crc32c_hw_available(void) { return crc_hw; }

/* ------------------------------------------------------------------ murmur2 */

int32_t el_murmur2(const void *data_, size_t len)
{
    const uint8_t *data = data_;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const uint8_t *q = data + 4 * i;
        uint32_t k = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + (len & ~(size_t)3);
    switch (len % 4) {
    case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)tail[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int el_partitions_for_keys(const void *keys_, const int32_t *key_lens, int32_t n,
                           int32_t num_partitions, int32_t *out)
{
    const uint8_t *keys = keys_;
    if (num_partitions <= 0) { errno = EINVAL; return -1; }
    for (int32_t i = 0; i < n; i++) {
        if (key_lens[i] < 0) { out[i] = -1; continue; }
        uint32_t h = (uint32_t)el_murmur2(keys, (size_t)key_lens[i]) & 0x7fffffffu;
        out[i] = (int32_t)(h % (uint32_t)num_partitions);
        keys += key_lens[i];
    }
    return 0;
}

/* ------------------------------------------------------------------ varints */

/* ------------------------------------------------------------------ RecordBatch v2 */

int64_t el_encode_records(void *out_, size_t cap,
                          const void *keys_, size_t keys_size, const int32_t *key_lens,
                          const void *values_, size_t values_size, const int32_t *value_lens,
                          const int64_t *timestamps, int64_t base_timestamp,
                          const void *headers_, const int32_t *hdr_lens,
                          const int32_t *offset_deltas, int32_t n)
{
    uint8_t *out = out_;
    const uint8_t *keys = keys_;
    const uint8_t *values = values_;
    const uint8_t *headers = headers_;
    uint8_t *p = out, *end = out + cap;
    size_t ksum = 0, vsum = 0;
    for (int32_t i = 0; i < n; i++) {
        if (key_lens[i] > 0) ksum += (size_t)key_lens[i];
        if (value_lens[i] > 0) vsum += (size_t)value_lens[i];
    }
    if (ksum != keys_size || vsum != values_size)
        return -2;
    for (int32_t i = 0; i < n; i++) {
        int64_t tsd = timestamps ? timestamps[i] - base_timestamp : 0;
        int32_t kl = key_lens[i], vl = value_lens[i];
        int32_t hl = headers ? hdr_lens[i] : 1;
        int64_t od = offset_deltas ? offset_deltas[i] : i;
        size_t body = 1 + uvarint_size(zigzag(tsd)) + uvarint_size(zigzag(od)) +
                      uvarint_size(zigzag(kl)) + (kl > 0 ? (size_t)kl : 0) +
                      uvarint_size(zigzag(vl)) + (vl > 0 ? (size_t)vl : 0) + (size_t)hl;
        if ((size_t)(end - p) < body + 5)
            return -1;
        p = put_uvarint(p, zigzag((int64_t)body));
        *p++ = 0; /* record attributes: unused */
        p = put_uvarint(p, zigzag(tsd));
        p = put_uvarint(p, zigzag(od));
        p = put_uvarint(p, zigzag(kl));
        if (kl > 0) { memcpy(p, keys, (size_t)kl); p += kl; keys += kl; }
        p = put_uvarint(p, zigzag(vl));
        if (vl > 0) { memcpy(p, values, (size_t)vl); p += vl; values += vl; }
        if (headers) { memcpy(p, headers, (size_t)hl); p += hl; headers += hl; }
        else *p++ = 0;
    }
    return (int64_t)(p - out);
}

void el_finish_batch(void *buf_, size_t len, const el_batch_header *h)
{
    uint8_t *buf = buf_;
    put_be64(buf + 0, (uint64_t)h->base_offset);
    put_be32(buf + 8, (uint32_t)(len - LOG_OVERHEAD));
    put_be32(buf + 12, (uint32_t)h->partition_leader_epoch);
    buf[16] = 2;
    put_be16(buf + 21, (uint16_t)h->attributes);
    put_be32(buf + 23, (uint32_t)h->last_offset_delta);
    put_be64(buf + 27, (uint64_t)h->base_timestamp);
    put_be64(buf + 35, (uint64_t)h->max_timestamp);
    put_be64(buf + 43, (uint64_t)h->producer_id);
    put_be16(buf + 51, (uint16_t)h->producer_epoch);
    put_be32(buf + 53, (uint32_t)h->base_sequence);
    put_be32(buf + 57, (uint32_t)h->records_count);
    put_be32(buf + 17, el_crc32c(0, buf + 21, len - 21));
}

static void read_header(const uint8_t *buf, el_batch_header *h)
{
    h->base_offset = (int64_t)get_be64(buf);
    h->batch_length = (int32_t)get_be32(buf + 8);
    h->partition_leader_epoch = (int32_t)get_be32(buf + 12);
    h->magic = (int8_t)buf[16];
    h->crc = get_be32(buf + 17);
    h->attributes = (int16_t)get_be16(buf + 21);
    h->last_offset_delta = (int32_t)get_be32(buf + 23);
    h->base_timestamp = (int64_t)get_be64(buf + 27);
    h->max_timestamp = (int64_t)get_be64(buf + 35);
    h->producer_id = (int64_t)get_be64(buf + 43);
    h->producer_epoch = (int16_t)get_be16(buf + 51);
    h->base_sequence = (int32_t)get_be32(buf + 53);
    h->records_count = (int32_t)get_be32(buf + 57);
}

int el_parse_header(const void *buf_, size_t len, int verify_crc, el_batch_header *h)
{
    const uint8_t *buf = buf_;
    if (len < BATCH_OVERHEAD) {
        /* The magic byte and length may already be readable: report them first. */
        if (len >= 17 && buf[16] != 2) return EL_EMAGIC;
        return EL_ETRUNC;
    }
    read_header(buf, h);
    if (h->magic != 2) return EL_EMAGIC;
    if (h->batch_length < BATCH_OVERHEAD - LOG_OVERHEAD) return EL_ESIZE;
    size_t total = (size_t)h->batch_length + LOG_OVERHEAD;
    if (len < total) return EL_ETRUNC;
    if (verify_crc && el_crc32c(0, buf + 21, total - 21) != h->crc) return EL_ECRC;
    return 0;
}

int el_parse_records(const void *buf_, size_t len, int32_t count, int32_t origin,
                     int64_t *ts_delta, int32_t *offset_delta,
                     int32_t *key_off, int32_t *key_len,
                     int32_t *value_off, int32_t *value_len,
                     int32_t *hdr_off, int32_t *hdr_count)
{
    const uint8_t *buf = buf_;
    const uint8_t *p = buf, *end = buf + len;
    int64_t v;
    int flags = 31;
    for (int32_t i = 0; i < count; i++) {
        if (!(p = get_varint(p, end, 5, &v)) || v < 6 || v > end - p) return EL_EMALFORMED;
        const uint8_t *rend = p + v;
        p++; /* attributes */
        if (!(p = get_varint(p, rend, 10, &ts_delta[i]))) return EL_EMALFORMED;
        if (!(p = get_varint(p, rend, 5, &v)) || v < 0 || v > INT32_MAX) return EL_EMALFORMED;
        offset_delta[i] = (int32_t)v;
        if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return EL_EMALFORMED;
        key_off[i] = origin + (int32_t)(p - buf);
        key_len[i] = (int32_t)v;
        if (v > 0) p += v;
        if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return EL_EMALFORMED;
        value_off[i] = origin + (int32_t)(p - buf);
        value_len[i] = (int32_t)v;
        if (v > 0) p += v;
        if (!(p = get_varint(p, rend, 5, &v)) || v < 0) return EL_EMALFORMED;
        hdr_count[i] = (int32_t)v;
        hdr_off[i] = origin + (int32_t)(p - buf);
        for (int64_t h = hdr_count[i]; h > 0; h--) {
            if (!(p = get_varint(p, rend, 5, &v)) || v < 0 || v > rend - p) return EL_EMALFORMED;
            p += v;
            if (!(p = get_varint(p, rend, 5, &v)) || v < -1 || v > rend - p) return EL_EMALFORMED;
            if (v > 0) p += v;
        }
        if (p != rend) return EL_EMALFORMED;
        if (ts_delta[i] != 0) flags &= ~1;
        if (offset_delta[i] != i) flags &= ~2;
        if (key_len[i] < 0) flags &= ~4;
        if (value_len[i] < 0) flags &= ~8;
        if (hdr_count[i] != 0) flags &= ~16;
    }
    return p == end ? flags : EL_EMALFORMED;
}

/* marshal's type codes (Python/marshal.c; unchanged since marshal version 0). */
#define MARSHAL_TUPLE '('
#define MARSHAL_LIST '['
#define MARSHAL_BYTES 's'
#define MARSHAL_NONE 'N'

static uint8_t *put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

static uint8_t *marshal_fields(uint8_t *p, const uint8_t *src, const int32_t *off, const int32_t *len, int32_t n)
{
    *p++ = MARSHAL_LIST;
    p = put_le32(p, (uint32_t)n);
    for (int32_t i = 0; i < n; i++) {
        int32_t l = len[i];
        if (l < 0) {
            *p++ = MARSHAL_NONE;
        } else {
            *p++ = MARSHAL_BYTES;
            p = put_le32(p, (uint32_t)l);
            memcpy(p, src + off[i], (size_t)l);
            p += l;
        }
    }
    return p;
}

int64_t el_marshal_columns(const void *src, const int32_t *key_off, const int32_t *key_len,
                           const int32_t *value_off, const int32_t *value_len, int32_t n,
                           void *out, size_t cap)
{
    if (n < 0) return -1;
    int64_t need = 5 + 2 * (5 + 5 * (int64_t)n);
    for (int32_t i = 0; i < n; i++) {
        if (key_len[i] > 0) need += key_len[i];
        if (value_len[i] > 0) need += value_len[i];
    }
    if (need > (int64_t)cap) return -1;
    uint8_t *p = out;
    *p++ = MARSHAL_TUPLE;
    p = put_le32(p, 2);
    p = marshal_fields(p, src, key_off, key_len, n);
    p = marshal_fields(p, src, value_off, value_len, n);
    return (int64_t)(p - (uint8_t *)out);
}

/* ------------------------------------------------------------------ columns */

int64_t el_gather(const void *src, const int32_t *off, const int32_t *len, int32_t n,
                  void *dst, int64_t dst_pos, int64_t *offsets, uint8_t *validity, int64_t bit_start,
                  int64_t *nulls)
{
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    int64_t pos = dst_pos, missing = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t l = len[i];
        if (l >= 0) {
            memcpy(d + pos, s + off[i], (size_t)l);
            pos += l;
            int64_t bit = bit_start + i;
            validity[bit >> 3] |= (uint8_t)(1u << (bit & 7));
        } else {
            missing++;
        }
        offsets[i + 1] = pos;
    }
    *nulls += missing;
    return pos;
}

int64_t el_fill_i64(int64_t *out, int64_t base, const int32_t *d32, const int64_t *d64, int64_t step,
                    int32_t n, const int32_t *sum_of)
{
    int64_t total = 0;
    if (out) {
        if (d32)
            for (int32_t i = 0; i < n; i++) out[i] = base + d32[i];
        else if (d64)
            for (int32_t i = 0; i < n; i++) out[i] = base + d64[i];
        else
            for (int32_t i = 0; i < n; i++) out[i] = base + step * i;
    }
    if (sum_of)
        for (int32_t i = 0; i < n; i++) if (sum_of[i] > 0) total += sum_of[i];
    return total;
}

typedef struct { int32_t *stops; int64_t *key_ends, *value_ends, *hdr_ends; } el_runs;

static void put_run(const el_runs *r, int32_t j, int32_t stop, int64_t kend, int64_t vend, int64_t hend)
{
    r->stops[j] = stop;
    if (r->key_ends) r->key_ends[j] = kend;
    r->value_ends[j] = vend;
    if (r->hdr_ends) r->hdr_ends[j] = hend;
}

int32_t el_batch_bounds(const int32_t *key_lens, const int32_t *value_lens, const int32_t *hdr_lens,
                        int32_t n, int64_t limit, int32_t overhead, int64_t max_size, int32_t cap,
                        int32_t *stops, int64_t *key_ends, int64_t *value_ends, int64_t *hdr_ends,
                        int32_t *first_over)
{
    el_runs r = {stops, key_ends, value_ends, hdr_ends};
    int32_t runs = 0;
    int64_t used = 0, kend = 0, vend = 0, hend = 0;
    *first_over = -1;
    for (int32_t i = 0; i < n; i++) {
        int64_t kl = key_lens && key_lens[i] > 0 ? key_lens[i] : 0;
        int64_t vl = value_lens[i] > 0 ? value_lens[i] : 0;
        int64_t hl = hdr_lens ? hdr_lens[i] : 0;
        int64_t size = kl + vl + hl;
        if (size > max_size && *first_over < 0) *first_over = i;
        if (used > 0 && used + size + overhead > limit) {
            if (runs < cap) put_run(&r, runs, i, kend, vend, hend);
            runs++;
            used = 0;
        }
        used += size + overhead;
        kend += kl; vend += vl; hend += hl;
    }
    if (n > 0) {
        if (runs < cap) put_run(&r, runs, n, kend, vend, hend);
        runs++;
    }
    return runs;
}

/* ------------------------------------------------------------------ file I/O */

/* The I/O table (SQLite's VFS idea, embedlog/storage/_io.py): the loops below reach the system
 * only through these pointers, so a test can make a call return a short count, EINTR
 * or an error, and check what the loop does with it. No raw syscall(). */
static int64_t sys_pwrite(int fd, const void *buf, size_t len, int64_t pos)
{
    return pwrite(fd, buf, len, (off_t)pos);
}

static int64_t sys_pwritev2(int fd, const void *a, size_t alen, const void *b, size_t blen, int64_t pos)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    return pwritev(fd, iov, 2, (off_t)pos);
}

static int64_t sys_pread(int fd, void *buf, size_t len, int64_t pos)
{
    return pread(fd, buf, len, (off_t)pos);
}

static int sys_fdatasync(int fd)
{
#if defined(__APPLE__)
    if (fcntl(fd, F_FULLFSYNC) == 0) return 0;
    return fsync(fd);
#else
    return fdatasync(fd);
#endif
}

static int sys_ftruncate(int fd, int64_t len)
{
    return ftruncate(fd, (off_t)len);
}

el_vfs_t el_vfs = {sys_pwrite, sys_pwritev2, sys_pread, sys_fdatasync, sys_ftruncate};

void el_vfs_reset(void)
{
    el_vfs.pwrite = sys_pwrite;
    el_vfs.pwritev2 = sys_pwritev2;
    el_vfs.pread = sys_pread;
    el_vfs.fdatasync = sys_fdatasync;
    el_vfs.ftruncate = sys_ftruncate;
}

int el_pwrite_all(int fd, const void *buf_, size_t len, int64_t pos)
{
    const uint8_t *buf = buf_;
    while (len) {
        int64_t w = el_vfs.pwrite(fd, buf, len, pos);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) { errno = EIO; return -1; }
        buf += w;
        len -= (size_t)w;
        pos += w;
    }
    return 0;
}

int el_pwrite2(int fd, const void *a_, size_t alen, const void *b_, size_t blen, int64_t pos)
{
    int64_t w;
    do { w = el_vfs.pwritev2(fd, a_, alen, b_, blen, pos); } while (w < 0 && errno == EINTR);
    if (w < 0) return -1;
    if ((size_t)w == alen + blen) return 0;
    /* A short write: finish what is left with the single-buffer loop. */
    if ((size_t)w < alen) {
        if (el_pwrite_all(fd, (const uint8_t *)a_ + w, alen - (size_t)w, pos + w) < 0) return -1;
        return el_pwrite_all(fd, b_, blen, pos + (int64_t)alen);
    }
    return el_pwrite_all(fd, (const uint8_t *)b_ + (w - (int64_t)alen), blen - (size_t)(w - (int64_t)alen), pos + w);
}

int64_t el_pread_all(int fd, void *buf_, size_t len, int64_t pos)
{
    uint8_t *buf = buf_;
    size_t got = 0;
    while (got < len) {
        int64_t r = el_vfs.pread(fd, buf + got, len - got, pos + (int64_t)got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

int el_fdatasync(int fd)
{
    int rc;
    do { rc = el_vfs.fdatasync(fd); } while (rc < 0 && errno == EINTR);
    return rc;
}

int el_ftruncate(int fd, int64_t len)
{
    int rc;
    do { rc = el_vfs.ftruncate(fd, len); } while (rc < 0 && errno == EINTR);
    return rc;
}

int64_t el_scan_fd(int fd, int64_t pos, int64_t end, void *scratch_, size_t scratch_len,
                   el_batch_info *out, int64_t cap, int64_t *stop_pos, int *stop_reason)
{
    uint8_t *scratch = scratch_;
    if (end < 0) {
        struct stat st;
        if (fstat(fd, &st) < 0) return -1;
        end = (int64_t)st.st_size;
    }
    if (scratch_len < BATCH_OVERHEAD) { errno = EINVAL; return -1; }
    int64_t n = 0, win_pos = pos;
    size_t win_len = 0;
    *stop_reason = 0;
    while (n < cap && pos < end) {
        if (end - pos < BATCH_OVERHEAD) { *stop_reason = EL_ETRUNC; break; }
        if (pos < win_pos || pos + BATCH_OVERHEAD > win_pos + (int64_t)win_len) {
            size_t want = (size_t)(end - pos) < scratch_len ? (size_t)(end - pos) : scratch_len;
            int64_t r = el_pread_all(fd, scratch, want, pos);
            if (r < 0) return -1;
            win_pos = pos;
            win_len = (size_t)r;
            if (win_len < BATCH_OVERHEAD) { *stop_reason = EL_ETRUNC; break; }
        }
        el_batch_header h;
        read_header(scratch + (pos - win_pos), &h);
        if (h.magic != 2) { *stop_reason = EL_EMAGIC; break; }
        if (h.batch_length < BATCH_OVERHEAD - LOG_OVERHEAD) { *stop_reason = EL_ESIZE; break; }
        int64_t total = (int64_t)h.batch_length + LOG_OVERHEAD;
        if (pos + total > end) { *stop_reason = EL_ETRUNC; break; }
        int64_t cpos = pos + 21, remaining = total - 21;
        int64_t avail = win_pos + (int64_t)win_len - cpos;
        if (avail > remaining) avail = remaining;
        uint32_t crc = el_crc32c(0, scratch + (cpos - win_pos), (size_t)avail);
        cpos += avail;
        remaining -= avail;
        while (remaining > 0) {
            size_t want = (size_t)(end - cpos) < scratch_len ? (size_t)(end - cpos) : scratch_len;
            int64_t r = el_pread_all(fd, scratch, want, cpos);
            if (r < 0) return -1;
            if (r == 0) break;
            win_pos = cpos;
            win_len = (size_t)r;
            int64_t take = r < remaining ? r : remaining;
            crc = el_crc32c(crc, scratch, (size_t)take);
            cpos += take;
            remaining -= take;
        }
        if (remaining > 0) { *stop_reason = EL_ETRUNC; break; }
        if (crc != h.crc) { *stop_reason = EL_ECRC; break; }
        el_batch_info *b = &out[n++];
        b->position = pos;
        b->base_offset = h.base_offset;
        b->last_offset_delta = h.last_offset_delta;
        b->size = (int32_t)total;
        b->max_timestamp = h.max_timestamp;
        b->records_count = h.records_count;
        b->attributes = h.attributes;
        b->producer_id = h.producer_id;
        b->producer_epoch = h.producer_epoch;
        b->base_sequence = h.base_sequence;
        pos += total;
    }
    *stop_pos = pos;
    return n;
}

/* ------------------------------------------------------------------ locks */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

#if defined(F_OFD_SETLK)
#define EL_SETLK F_OFD_SETLK
#define EL_SETLKW F_OFD_SETLKW
#else
#define EL_SETLK F_SETLK
#define EL_SETLKW F_SETLKW
#endif

int el_lock(int fd, int64_t start, int64_t len, int exclusive, int64_t timeout_ns)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)start;
    fl.l_len = (off_t)len;
    if (timeout_ns < 0) {
        int rc;
        do { rc = fcntl(fd, EL_SETLKW, &fl); } while (rc < 0 && errno == EINTR);
        return rc;
    }
    int64_t deadline = now_ns() + timeout_ns, pause = 2000;
    for (;;) {
        if (fcntl(fd, EL_SETLK, &fl) == 0) return 0;
        if (errno != EAGAIN && errno != EACCES && errno != EINTR) return -1;
        int64_t left = deadline - now_ns();
        if (left <= 0) { errno = EAGAIN; return -1; }
        sleep_ns(pause < left ? pause : left);
        if (pause < 1000000) pause *= 2;
    }
}

int el_unlock(int fd, int64_t start, int64_t len)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)start;
    fl.l_len = (off_t)len;
    return fcntl(fd, EL_SETLK, &fl);
}

/* ------------------------------------------------------------------ shared state */
/* Layout (FORMAT.md §6): u64 magic at 0, u64 seq at 8, u32 notify at 16, u32 waiters
 * at 20, then fields as u64 from byte 64. The writer holds the partition lock. */

#define ST_SEQ(b) ((uint64_t *)((b) + 8))
#define ST_NOTIFY(b) ((uint32_t *)((b) + 16))
#define ST_WAITERS(b) ((uint32_t *)((b) + 20))
#define ST_FIELDS(b) ((uint64_t *)((b) + 64))

int el_state_load(const void *base_, uint64_t *out, int32_t n)
{
    const uint8_t *base = base_;
    const uint64_t *seq = ST_SEQ(base), *f = ST_FIELDS(base);
    for (int spins = 0; spins < 200000; spins++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            if (spins > 1000) sleep_ns(1000);
            continue;
        }
        for (int32_t i = 0; i < n; i++)
            out[i] = __atomic_load_n(&f[i], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(seq, __ATOMIC_RELAXED) == s1) return 0;
    }
    errno = EAGAIN; /* a writer died while publishing; the next writer repairs it */
    return -1;
}

static void futex_wake_all(uint32_t *addr)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

void el_state_publish(void *base_, const uint64_t *in, int32_t n)
{
    uint8_t *base = base_;
    uint64_t *seq = ST_SEQ(base), *f = ST_FIELDS(base);
    uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
    if (s & 1) s++; /* the previous writer died mid-publish */
    __atomic_store_n(seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (int32_t i = 0; i < n; i++)
        __atomic_store_n(&f[i], in[i], __ATOMIC_RELAXED);
    __atomic_store_n(seq, s + 2, __ATOMIC_RELEASE);
    __atomic_add_fetch(ST_NOTIFY(base), 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(ST_WAITERS(base), __ATOMIC_SEQ_CST) > 0)
        futex_wake_all(ST_NOTIFY(base));
}

uint32_t el_state_notify_value(const void *base_)
{
    const uint8_t *base = base_;
    return __atomic_load_n(ST_NOTIFY(base), __ATOMIC_SEQ_CST);
}

int el_state_wait(void *base_, uint32_t seen, int64_t timeout_ns)
{
    uint8_t *base = base_;
    uint32_t *word = ST_NOTIFY(base);
    __atomic_add_fetch(ST_WAITERS(base), 1, __ATOMIC_SEQ_CST);
    int changed = __atomic_load_n(word, __ATOMIC_SEQ_CST) != seen;
    if (!changed && timeout_ns != 0) {
#if defined(__linux__)
        struct timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            tsp = &ts;
        }
        syscall(SYS_futex, word, FUTEX_WAIT, seen, tsp, NULL, 0);
#else
        int64_t deadline = now_ns() + (timeout_ns > 0 ? timeout_ns : INT64_MAX / 2);
        while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seen && now_ns() < deadline)
            sleep_ns(200000);
#endif
    }
    __atomic_sub_fetch(ST_WAITERS(base), 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(word, __ATOMIC_SEQ_CST) != seen;
}

uint64_t el_atomic_load_u64(const void *addr_)
{
    const uint8_t *addr = addr_;
    return __atomic_load_n((const uint64_t *)addr, __ATOMIC_ACQUIRE);
}

void el_atomic_store_u64(void *addr_, uint64_t value)
{
    uint8_t *addr = addr_;
    __atomic_store_n((uint64_t *)addr, value, __ATOMIC_RELEASE);
}

uint64_t el_atomic_update_u64(void *addr_, uint64_t set, uint64_t clear, uint64_t forbid)
{
    uint64_t *addr = addr_;
    uint64_t cur = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
    for (;;) {
        if (cur & forbid)
            return cur;
        uint64_t next = (cur | set) & ~clear;
        if (__atomic_compare_exchange_n(addr, &cur, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return next;
    }
}

uint64_t el_atomic_max_u64(void *addr_, uint64_t value)
{
    uint64_t *addr = addr_;
    uint64_t cur = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
    while (cur < value &&
           !__atomic_compare_exchange_n(addr, &cur, value, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {}
    return cur < value ? value : cur;
}
