/* The hot loops of bench/tsdb_block.py: Prometheus' XOR ("Gorilla") chunk encoding, its
 * chunk records and chunk references, and CRC32-Castagnoli, as the TSDB block format
 * (prometheus/tsdb/docs/format/{chunks,index}.md) defines them. Built by tsdb_block.py
 * with the machine's C compiler and loaded with ctypes; Python would take hours to encode
 * the billions of samples of a week of 10,000 Deployments.
 *
 * A series is given as a base window of n values repeated `tiles` times: tile k's value at
 * step j is base[j] + k * delta (a counter keeps counting; delta 0 repeats a gauge), at
 * t0 + (k * n + j) * step_ms. present[j] == 0 leaves step j out of the first tile; with
 * fill_later, later tiles carry base[last present] there (a series that appeared stays).
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t crc32c(const uint8_t *p, size_t n) {
    if (!crc_ready) crc_init();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* A bit stream as Prometheus' bstream: `count` bits are free in the last byte. */
typedef struct {
    uint8_t *buf;
    size_t len;
    int count;
} bstream;

static void write_bit(bstream *b, int bit) {
    if (b->count == 0) {
        b->buf[b->len++] = 0;
        b->count = 8;
    }
    if (bit) b->buf[b->len - 1] |= (uint8_t)(1u << (b->count - 1));
    b->count--;
}

static void write_byte(bstream *b, uint8_t byte) {
    if (b->count == 0) {
        b->buf[b->len++] = 0;
        b->count = 8;
    }
    b->buf[b->len - 1] |= (uint8_t)(byte >> (8 - b->count));
    b->buf[b->len++] = (uint8_t)(b->count == 8 ? 0 : byte << b->count);
}

static void write_bits(bstream *b, uint64_t u, int nbits) {
    if (nbits == 0) return;
    u <<= 64 - nbits;
    while (nbits >= 8) {
        write_byte(b, (uint8_t)(u >> 56));
        u <<= 8;
        nbits -= 8;
    }
    while (nbits > 0) {
        write_bit(b, (int)(u >> 63));
        u <<= 1;
        nbits--;
    }
}

static size_t put_uvarint(uint8_t *p, uint64_t x) {
    size_t i = 0;
    while (x >= 0x80) {
        p[i++] = (uint8_t)(x | 0x80);
        x >>= 7;
    }
    p[i++] = (uint8_t)x;
    return i;
}

static size_t put_varint(uint8_t *p, int64_t x) {
    uint64_t ux = (uint64_t)x << 1;
    if (x < 0) ux = ~ux;
    return put_uvarint(p, ux);
}

static int bit_range(int64_t x, int nbits) {
    return -((1LL << (nbits - 1)) - 1) <= x && x <= (1LL << (nbits - 1));
}

typedef struct {
    bstream b;
    uint16_t num;
    int64_t t, t_delta;
    uint64_t v;
    uint8_t leading, trailing;
} xor_chunk;

static void xor_start(xor_chunk *c, uint8_t *at) {
    c->b.buf = at;
    c->b.buf[0] = c->b.buf[1] = 0;
    c->b.len = 2;
    c->b.count = 0;
    c->num = 0;
    c->leading = 0xFF;
    c->trailing = 0;
    c->t = c->t_delta = 0;
    c->v = 0;
}

static void xor_write_value(xor_chunk *c, uint64_t v) {
    uint64_t delta = v ^ c->v;
    if (delta == 0) {
        write_bit(&c->b, 0);
        return;
    }
    write_bit(&c->b, 1);
    uint8_t lead = (uint8_t)__builtin_clzll(delta);
    uint8_t trail = (uint8_t)__builtin_ctzll(delta);
    if (lead >= 32) lead = 31;
    if (c->leading != 0xFF && lead >= c->leading && trail >= c->trailing) {
        write_bit(&c->b, 0);
        write_bits(&c->b, delta >> c->trailing, 64 - c->leading - c->trailing);
        return;
    }
    c->leading = lead;
    c->trailing = trail;
    write_bit(&c->b, 1);
    write_bits(&c->b, lead, 5);
    int sigbits = 64 - lead - trail;
    write_bits(&c->b, (uint64_t)(sigbits & 63), 6); /* 64 is written as 0 */
    write_bits(&c->b, delta >> trail, sigbits);
}

static void xor_append(xor_chunk *c, int64_t t, double value) {
    uint64_t v;
    memcpy(&v, &value, sizeof v);
    uint8_t tmp[10];
    int64_t t_delta = 0;
    if (c->num == 0) {
        size_t n = put_varint(tmp, t);
        for (size_t i = 0; i < n; i++) write_byte(&c->b, tmp[i]);
        write_bits(&c->b, v, 64);
    } else if (c->num == 1) {
        t_delta = t - c->t;
        size_t n = put_uvarint(tmp, (uint64_t)t_delta);
        for (size_t i = 0; i < n; i++) write_byte(&c->b, tmp[i]);
        xor_write_value(c, v);
    } else {
        t_delta = t - c->t;
        int64_t dod = t_delta - c->t_delta;
        if (dod == 0) {
            write_bit(&c->b, 0);
        } else if (bit_range(dod, 14)) {
            write_bits(&c->b, 0x2, 2);
            write_bits(&c->b, (uint64_t)dod, 14);
        } else if (bit_range(dod, 17)) {
            write_bits(&c->b, 0x6, 3);
            write_bits(&c->b, (uint64_t)dod, 17);
        } else if (bit_range(dod, 20)) {
            write_bits(&c->b, 0xE, 4);
            write_bits(&c->b, (uint64_t)dod, 20);
        } else {
            write_bits(&c->b, 0xF, 4);
            write_bits(&c->b, (uint64_t)dod, 64);
        }
        xor_write_value(c, v);
    }
    c->t = t;
    c->v = v;
    c->t_delta = t_delta;
    c->num++;
    c->b.buf[0] = (uint8_t)(c->num >> 8);
    c->b.buf[1] = (uint8_t)(c->num & 0xFF);
}

/* Closes a chunk encoded at scratch into a record at out: uvarint(data length),
 * encoding (1: XOR), data, CRC32-C of encoding and data (big-endian). */
static size_t close_record(const xor_chunk *c, uint8_t *out) {
    size_t n = put_uvarint(out, c->b.len);
    out[n] = 1;
    memcpy(out + n + 1, c->b.buf, c->b.len);
    uint32_t crc = crc32c(out + n, c->b.len + 1);
    size_t end = n + 1 + c->b.len;
    out[end] = (uint8_t)(crc >> 24);
    out[end + 1] = (uint8_t)(crc >> 16);
    out[end + 2] = (uint8_t)(crc >> 8);
    out[end + 3] = (uint8_t)crc;
    return end + 4;
}

/* Encodes one series (see the file's comment) as chunk records of up to per_chunk samples
 * written at out; metas gets (mint, maxt, offset in out) per chunk. Returns the bytes
 * written; *n_chunks and *n_samples are set. scratch holds one chunk's data (per_chunk *
 * 20 + 16 bytes); out needs (samples * 20 + chunks * 40) bytes. */
size_t encode_series(int64_t t0, int64_t step_ms, const double *base, const uint8_t *present,
                     int64_t n, int64_t tiles, double delta, int fill_later, int64_t per_chunk,
                     uint8_t *scratch, uint8_t *out, int64_t *metas, int64_t *n_chunks,
                     int64_t *n_samples) {
    xor_chunk c;
    size_t written = 0;
    int64_t chunks = 0, samples = 0, mint = 0;
    double last = 0.0;
    int seen = 0;
    xor_start(&c, scratch);
    for (int64_t k = 0; k < tiles; k++) {
        for (int64_t j = 0; j < n; j++) {
            double value;
            if (present[j]) {
                value = base[j];
                last = base[j];
                seen = 1;
            } else if (k > 0 && fill_later && seen) {
                value = last;
            } else {
                continue;
            }
            int64_t t = t0 + (k * n + j) * step_ms;
            if (c.num == 0) mint = t;
            xor_append(&c, t, value + (double)k * delta);
            samples++;
            if (c.num == per_chunk) {
                metas[3 * chunks] = mint;
                metas[3 * chunks + 1] = c.t;
                metas[3 * chunks + 2] = (int64_t)written;
                written += close_record(&c, out + written);
                chunks++;
                xor_start(&c, scratch);
            }
        }
    }
    if (c.num > 0) {
        metas[3 * chunks] = mint;
        metas[3 * chunks + 1] = c.t;
        metas[3 * chunks + 2] = (int64_t)written;
        written += close_record(&c, out + written);
        chunks++;
    }
    *n_chunks = chunks;
    *n_samples = samples;
    return written;
}

/* The chunk part of an index series entry: uvarint(#chunks), then c0.mint (varint),
 * c0.maxt - c0.mint, c0.ref (uvarints), and for each next chunk mint - previous maxt,
 * maxt - mint (uvarints) and ref - previous ref (varint). refs[i] = base_ref + offset. */
size_t encode_chunk_metas(const int64_t *metas, int64_t n_chunks, uint64_t base_ref,
                          uint8_t *out) {
    size_t p = put_uvarint(out, (uint64_t)n_chunks);
    int64_t prev_maxt = 0;
    uint64_t prev_ref = 0;
    for (int64_t i = 0; i < n_chunks; i++) {
        int64_t mint = metas[3 * i], maxt = metas[3 * i + 1];
        uint64_t ref = base_ref + (uint64_t)metas[3 * i + 2];
        if (i == 0) {
            p += put_varint(out + p, mint);
            p += put_uvarint(out + p, (uint64_t)(maxt - mint));
            p += put_uvarint(out + p, ref);
        } else {
            p += put_uvarint(out + p, (uint64_t)(mint - prev_maxt));
            p += put_uvarint(out + p, (uint64_t)(maxt - mint));
            p += put_varint(out + p, (int64_t)(ref - prev_ref));
        }
        prev_maxt = maxt;
        prev_ref = ref;
    }
    return p;
}
