/* embedlog native hot path: prototypes only (parsed by cffi's cdef; no macros, no includes).
 * Every function that can fail returns a negative value and sets errno (or returns an
 * EL_E* code where noted). None allocates memory or touches Python objects. */

/* ---- checksums and hashing ---- */
uint32_t el_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t el_crc32c_sw(uint32_t crc, const void *buf, size_t len);
int el_crc32c_hw_available(void);
int32_t el_murmur2(const void *buf, size_t len);
int el_partitions_for_keys(const void *keys, const int32_t *key_lens, int32_t n,
                           int32_t num_partitions, int32_t *out);

/* ---- RecordBatch v2 (FORMAT.md section 3) ---- */
typedef struct {
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int32_t magic;
    uint32_t crc;
    int32_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int32_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
} el_batch_header;

/* Encode n records into out (the records section of a batch). key_lens/value_lens
 * of -1 mean null. timestamps may be NULL (every
 * delta 0); otherwise record i's delta is timestamps[i] - base_timestamp. headers may be NULL (no headers);
 * otherwise headers[hdr_offs[i] .. hdr_offs[i]+hdr_lens[i]) is record i's encoded header
 * section (count varint + headers). keys_size/values_size are the blobs' sizes: the
 * lengths must add up to them. Returns bytes written, -1 if cap is too small, or -2 if
 * the lengths do not add up (the caller passed item counts, not byte counts).
 * offset_deltas: each record's offsetDelta (NULL: 0..n-1; compaction leaves gaps). */
int64_t el_encode_records(void *out, size_t cap,
                          const void *keys, size_t keys_size, const int32_t *key_lens,
                          const void *values, size_t values_size, const int32_t *value_lens,
                          const int64_t *timestamps, int64_t base_timestamp,
                          const void *headers, const int32_t *hdr_lens,
                          const int32_t *offset_deltas, int32_t n);

/* Fill the 61-byte header at buf (total batch length len) and compute the CRC. */
void el_finish_batch(void *buf, size_t len, const el_batch_header *h);

/* Parse and check the header of the batch at buf. Returns 0, or an EL_E* code (< 0):
 * -1 fewer bytes than the header/batch needs, -2 bad magic, -3 bad length, -4 bad CRC. */
int el_parse_header(const void *buf, size_t len, int verify_crc, el_batch_header *h);

/* Parse `count` records from an (uncompressed) records section. Returns a bitmask
 * (>= 0) of properties that let the caller skip work: 1 every timestamp delta is 0,
 * 2 offset deltas are exactly 0..count-1, 4 no null key, 8 no null value, 16 no
 * headers; or -5 (malformed: overrun, bad varint, leftover bytes). Reported byte
 * offsets are origin + (position relative to buf), to index the caller's buffer. */
int el_parse_records(const void *buf, size_t len, int32_t count, int32_t origin,
                     int64_t *ts_delta, int32_t *offset_delta,
                     int32_t *key_off, int32_t *key_len,
                     int32_t *value_off, int32_t *value_len,
                     int32_t *hdr_off, int32_t *hdr_count);

/* Write the keys and values of n records as one stream of Python's marshal format: a
 * 2-tuple of lists (keys, values), each item bytes (type 's', little-endian int32 length,
 * the bytes of src[off[i] .. off[i]+len[i])) or None (len -1). marshal.loads() of it
 * builds both lists in one C-level loop, with no intermediate tuple (DESIGN section 1):
 * the bytes are opaque payloads after lengths this function writes, so nothing of src
 * is read as a type code. The offsets must lie within src (el_parse_records' do).
 * Returns the stream's length, or -1 if cap is too small (it needs 15 + 10 n + the sum
 * of the non-negative lengths). */
int64_t el_marshal_columns(const void *src, const int32_t *key_off, const int32_t *key_len,
                           const int32_t *value_off, const int32_t *value_len, int32_t n,
                           void *out, size_t cap);

/* Copy n fields src[off[i] .. off[i]+len[i]) one after another into dst from byte
 * dst_pos, in Apache Arrow's binary layout: offsets[i + 1] = the end of field i in dst
 * (the caller sets offsets[0]); validity bit (bit_start + i) is set for len[i] >= 0 and
 * left clear for a null (len -1: nothing copied; validity must start zeroed). dst must
 * hold every non-negative length. Returns the new dst position; *nulls is increased by
 * the nulls seen. */
int64_t el_gather(const void *src, const int32_t *off, const int32_t *len, int32_t n,
                  void *dst, int64_t dst_pos, int64_t *offsets, uint8_t *validity, int64_t bit_start,
                  int64_t *nulls);

/* out[i] = base + d32[i], or base + d64[i], or (both NULL) base + step * i, for i < n:
 * a batch's record offsets or timestamps as one int64 column. Returns the sum of the
 * positive values of `sum_of` (NULL: 0), so a caller can size a buffer for n lengths. */
int64_t el_fill_i64(int64_t *out, int64_t base, const int32_t *d32, const int64_t *d64, int64_t step,
                    int32_t n, const int32_t *sum_of);

/* The batch boundaries of n records to send (Producer.produce_batch): stops[j] is the
 * end (exclusive) of the j-th run of records from 0 whose sizes (key + value + header
 * lengths, -1 counted as 0; key_lens and hdr_lens may be NULL) plus `overhead` each add
 * up to at most `limit`; a record over the limit goes alone. key_ends/value_ends/hdr_ends
 * [j] get the byte end of run j in the joined columns (NULL where the lengths are).
 * Only the first `cap` runs are written; the return value is the number of runs there
 * are (call again with more room if it exceeds cap). *first_over gets the index of the
 * first record whose size exceeds max_size, or -1. */
int32_t el_batch_bounds(const int32_t *key_lens, const int32_t *value_lens, const int32_t *hdr_lens,
                        int32_t n, int64_t limit, int32_t overhead, int64_t max_size, int32_t cap,
                        int32_t *stops, int64_t *key_ends, int64_t *value_ends, int64_t *hdr_ends,
                        int32_t *first_over);

/* ---- files ---- */
typedef struct {
    int64_t position;
    int64_t base_offset;
    int32_t last_offset_delta;
    int32_t size;
    int64_t max_timestamp;
    int32_t records_count;
    int32_t attributes;
    int64_t producer_id;
    int32_t producer_epoch;
    int32_t base_sequence;
} el_batch_info;

/* Scan a segment fd from pos to end (end < 0: to EOF), checking each batch's header,
 * length and CRC. Writes up to cap batch infos. *stop_pos is set to the position just
 * after the last valid batch seen, *stop_reason to 0 (reached end / cap), or an EL_E*
 * code for the first invalid batch (-1 torn). Returns batches found, or -1 on I/O error. */
int64_t el_scan_fd(int fd, int64_t pos, int64_t end, void *scratch, size_t scratch_len,
                   el_batch_info *out, int64_t cap, int64_t *stop_pos, int *stop_reason);

/* The I/O table (SQLite's VFS idea): the file functions below reach the system only
 * through these pointers, which default to the system's calls (pwrite, pwritev of two
 * buffers, pread, fdatasync or F_FULLFSYNC, ftruncate). Each returns what the system
 * call does: a count, or 0, or -1 with errno set. Tests point them at their own
 * functions (cffi callbacks) to return short counts, EINTR or errors to the retry
 * loops; el_vfs_reset() puts the system's back. Not thread-safe to change while in use. */
typedef struct {
    int64_t (*pwrite)(int fd, const void *buf, size_t len, int64_t pos);
    int64_t (*pwritev2)(int fd, const void *a, size_t alen, const void *b, size_t blen, int64_t pos);
    int64_t (*pread)(int fd, void *buf, size_t len, int64_t pos);
    int (*fdatasync)(int fd);
    int (*ftruncate)(int fd, int64_t len);
} el_vfs_t;
extern el_vfs_t el_vfs;
void el_vfs_reset(void);

int el_pwrite_all(int fd, const void *buf, size_t len, int64_t pos);
/* Write a then b at pos (one pwritev when possible), retrying short writes. */
int el_pwrite2(int fd, const void *a, size_t alen, const void *b, size_t blen, int64_t pos);
int64_t el_pread_all(int fd, void *buf, size_t len, int64_t pos);
int el_fdatasync(int fd);
int el_ftruncate(int fd, int64_t len);

/* ---- cross-process primitives ---- */
/* Open-file-description byte-range lock; waits up to timeout_ns (<0: forever). */
int el_lock(int fd, int64_t start, int64_t len, int exclusive, int64_t timeout_ns);
int el_unlock(int fd, int64_t start, int64_t len);

/* Shared state block: seqlock-protected u64 fields plus a futex word (FORMAT.md §6). */
int el_state_load(const void *base, uint64_t *out, int32_t n);
void el_state_publish(void *base, const uint64_t *in, int32_t n);
uint32_t el_state_notify_value(const void *base);
int el_state_wait(void *base, uint32_t seen, int64_t timeout_ns);
uint64_t el_atomic_load_u64(const void *addr);
void el_atomic_store_u64(void *addr, uint64_t value);
/* Raise *addr to value if it is lower (compare-and-swap loop); returns the result. */
uint64_t el_atomic_max_u64(void *addr, uint64_t value);
/* One atomic read-modify-write of a flags word: (old | set) & ~clear, unless old has any
 * `forbid` bit (then nothing changes). Returns the word as it is afterwards. */
uint64_t el_atomic_update_u64(void *addr, uint64_t set, uint64_t clear, uint64_t forbid);

/* ---- compaction (csrc/cleaner.c): the key map and the filter pass ---- */
/* Kafka's SkimpyOffsetMap: `slots` is capacity x 24 zeroed bytes the caller owns (a
 * 16-byte key digest and the key's latest offset + 1). The caller keeps grow_at below
 * capacity; entries counts the keys, end_offset is one past the last batch put (-1: none). */
typedef struct {
    void *slots;
    int64_t capacity;
    int64_t grow_at;
    int64_t entries;
    int64_t end_offset;
} el_keymap;

/* Put the keys of the whole batches in buf from *pos (each checked: header, CRC,
 * records section), advancing *pos past each. Returns 0 at the end of buf (a batch cut
 * off at the end is left at *pos unless `final`: then it is an error), 1 at a
 * compressed batch (the caller's: it decompresses it and calls el_keymap_put_many), 2
 * before a batch whose records could take entries past grow_at, or an EL_E* code (< 0)
 * for the batch at *pos, or 4 (as el_clean_scan) if scratch is too small. Keyless records
 * are not put. */
int el_keymap_scan(el_keymap *m, const void *buf, size_t len, int final, int64_t *pos,
                   void *scratch, size_t scratch_len);
/* Ask for huge pages under a large table (a hint: nothing happens where unsupported). */
void el_keymap_advise(const el_keymap *m);
/* Move every key of `from` into the (larger, zeroed) table `to`. */
void el_keymap_rehash(const el_keymap *from, el_keymap *to);
/* Put or look up n keys, one after another in `keys` (key_lens -1: no key, skipped;
 * looked up: -1). A key missing from the map is -1. */
void el_keymap_put_many(el_keymap *m, const void *keys, const int32_t *key_lens, const int64_t *offsets,
                        int32_t n);
void el_keymap_get_many(const el_keymap *m, const void *keys, const int32_t *key_lens, int32_t n,
                        int64_t *out);

typedef struct {
    int64_t now;                 /* in: ms */
    int64_t horizon;             /* in: now + delete.retention.ms */
    int64_t records_in;
    int64_t records_out;
    int64_t tombstones_removed;
    int64_t next_horizon;        /* earliest horizon of a tombstone kept (INT64_MAX: none) */
} el_clean_stats;

/* The filter pass over the whole batches in buf from *pos: a record stays unless the
 * map has a later offset for its key; a tombstone whose batch's delete horizon has
 * passed goes. Each batch's result is appended to out at *out_len: as is, rewritten
 * (same offsets, new CRC) or nothing. Returns 0 at the end of buf (as el_keymap_scan), 1
 * at a compressed batch (the caller's), 3 when out has no room for the next batch
 * (drain it; with an empty out, give a larger one: the batch's size + 10 per record),
 * 4 when scratch is smaller than el_clean_scratch_bytes(the batch's records_count), or
 * an EL_E* code for the batch at *pos. */
int el_clean_scan(const el_keymap *m, const void *buf, size_t len, int final, int64_t *pos,
                  void *out, size_t out_cap, int64_t *out_len, void *scratch, size_t scratch_len,
                  el_clean_stats *s);
/* Bytes of scratch the two scans need for a batch of n records. */
size_t el_clean_scratch_bytes(int32_t n);
