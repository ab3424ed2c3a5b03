/* Byte helpers shared by native.c and cleaner.c (internal: not parsed by cffi's cdef).
 * Big-endian fields and zig-zag varints of RecordBatch v2 (FORMAT.md section 3). */
#ifndef EL_BYTES_H
#define EL_BYTES_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline size_t uvarint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

static inline uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static inline uint8_t *put_uvarint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads a zig-zag varint of at most maxbytes; returns NULL on overrun or overlong. */
static inline const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, int maxbytes, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0, shift = 0; i < maxbytes; i++, shift += 7) {
        if (p >= end) return NULL;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return p;
        }
    }
    return NULL;
}

static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }
static inline void put_be64(uint8_t *p, uint64_t v) { put_be32(p, (uint32_t)(v >> 32)); put_be32(p + 4, (uint32_t)v); }
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t get_be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline uint64_t get_be64(const uint8_t *p) { return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4); }

#define BATCH_OVERHEAD 61
#define LOG_OVERHEAD 12
#define EL_ETRUNC -1
#define EL_EMAGIC -2
#define EL_ESIZE -3
#define EL_ECRC -4
#define EL_EMALFORMED -5

#endif
