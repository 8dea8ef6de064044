/* SHA-256 as FIPS 180-4 specifies it (section 6.2), plus the same
 * compression on x86's SHA extensions (Intel's SHA-NI: sha256rnds2 does two
 * rounds on the state held as ABEF/CDGH, sha256msg1/2 the schedule). */
#include <string.h>
#include "sha256.h"

/* FIPS 180-4 4.2.2: the cube roots of the first 64 primes, fractional bits. */
static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

/* FIPS 180-4 5.3.3: the square roots of the first 8 primes. */
static const uint32_t H0[8] = {
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
    0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static void compress_portable(uint32_t st[8], const uint8_t *data, size_t n)
{
    uint32_t w[64];

    for (; n; n--, data += OE_SHA256_BLOCK) {
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
        uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
        int i;
        for (i = 0; i < 16; i++)
            w[i] = load_be32(data + 4 * i);
        for (i = 16; i < 64; i++) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        for (i = 0; i < 64; i++) {
            uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                          K[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        st[0] += a; st[1] += b; st[2] += c; st[3] += d;
        st[4] += e; st[5] += f; st[6] += g; st[7] += h;
    }
}

static void compress2_portable(uint32_t a[8], uint32_t b[8], const uint8_t *da,
                               const uint8_t *db, size_t n)
{
    compress_portable(a, da, n);
    compress_portable(b, db, n);
}

static const oe_sha256_impl portable = {compress_portable, compress2_portable};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>

#define SHANI_TARGET __attribute__((target("sha,ssse3,sse4.1")))

/* Four rounds of one stream: its message words plus their constants, two
 * rounds from the low half and two from the high.  Each sha256rnds2 turns
 * (CDGH, ABEF) into the next ABEF, and the old ABEF is then the next CDGH:
 * so the two registers swap roles between the halves and are back in place
 * after. */
#define QROUND(abef, cdgh, wk, m, i) do { \
        (wk) = _mm_add_epi32((m), _mm_loadu_si128((const __m128i *)&K[4 * (i)])); \
        (cdgh) = _mm_sha256rnds2_epu32((cdgh), (abef), (wk)); \
        (abef) = _mm_sha256rnds2_epu32((abef), (cdgh), _mm_shuffle_epi32((wk), 0x0E)); \
    } while (0)

/* The next four schedule words into m0, from the sixteen before them in
 * m0..m3 (oldest first): W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]). */
#define SCHEDULE(m0, m1, m2, m3) \
    (m0) = _mm_sha256msg2_epu32( \
        _mm_add_epi32(_mm_sha256msg1_epu32((m0), (m1)), _mm_alignr_epi8((m3), (m2), 4)), (m3))

/* Words are big-endian in the message: swap the bytes of each. */
#define LOAD(p, k) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (k))), \
                                    _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL))

/* The instructions keep the state as ABEF and CDGH, A and C highest. */
SHANI_TARGET static void to_abef(const uint32_t st[8], __m128i *abef, __m128i *cdgh)
{
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[0]), 0xB1);  /* B A D C */
    __m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[4]), 0x1B);  /* H G F E */
    *abef = _mm_alignr_epi8(t, u, 8);                                                /* F E B A */
    *cdgh = _mm_blend_epi16(u, t, 0xF0);                                             /* H G D C */
}

SHANI_TARGET static void from_abef(uint32_t st[8], __m128i abef, __m128i cdgh)
{
    __m128i t = _mm_shuffle_epi32(abef, 0x1B);                                  /* A B E F */
    __m128i u = _mm_shuffle_epi32(cdgh, 0xB1);                                  /* G H C D */
    _mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(t, u, 0xF0));           /* A B C D */
    _mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(u, t, 8));              /* E F G H */
}

SHANI_TARGET static void compress_shani(uint32_t st[8], const uint8_t *data, size_t n)
{
    __m128i abef, cdgh, wk, m0, m1, m2, m3, abef0, cdgh0;
    int i;

    to_abef(st, &abef, &cdgh);
    for (; n; n--, data += OE_SHA256_BLOCK) {
        abef0 = abef;
        cdgh0 = cdgh;
        m0 = LOAD(data, 0);
        m1 = LOAD(data, 1);
        m2 = LOAD(data, 2);
        m3 = LOAD(data, 3);
        QROUND(abef, cdgh, wk, m0, 0);
        QROUND(abef, cdgh, wk, m1, 1);
        QROUND(abef, cdgh, wk, m2, 2);
        QROUND(abef, cdgh, wk, m3, 3);
        for (i = 4; i < 16; i += 4) {
            SCHEDULE(m0, m1, m2, m3);
            QROUND(abef, cdgh, wk, m0, i);
            SCHEDULE(m1, m2, m3, m0);
            QROUND(abef, cdgh, wk, m1, i + 1);
            SCHEDULE(m2, m3, m0, m1);
            QROUND(abef, cdgh, wk, m2, i + 2);
            SCHEDULE(m3, m0, m1, m2);
            QROUND(abef, cdgh, wk, m3, i + 3);
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    from_abef(st, abef, cdgh);
}

/* The same rounds for two streams, statement by statement, so each one's
 * instructions fill the other's latency. */
SHANI_TARGET static void compress2_shani(uint32_t sa[8], uint32_t sb[8], const uint8_t *da,
                                         const uint8_t *db, size_t n)
{
    __m128i abef_a, cdgh_a, wk_a, a0, a1, a2, a3, abef_a0, cdgh_a0;
    __m128i abef_b, cdgh_b, wk_b, b0, b1, b2, b3, abef_b0, cdgh_b0;
    int i;

    to_abef(sa, &abef_a, &cdgh_a);
    to_abef(sb, &abef_b, &cdgh_b);
    for (; n; n--, da += OE_SHA256_BLOCK, db += OE_SHA256_BLOCK) {
        abef_a0 = abef_a;
        cdgh_a0 = cdgh_a;
        abef_b0 = abef_b;
        cdgh_b0 = cdgh_b;
        a0 = LOAD(da, 0); b0 = LOAD(db, 0);
        a1 = LOAD(da, 1); b1 = LOAD(db, 1);
        a2 = LOAD(da, 2); b2 = LOAD(db, 2);
        a3 = LOAD(da, 3); b3 = LOAD(db, 3);
        QROUND(abef_a, cdgh_a, wk_a, a0, 0); QROUND(abef_b, cdgh_b, wk_b, b0, 0);
        QROUND(abef_a, cdgh_a, wk_a, a1, 1); QROUND(abef_b, cdgh_b, wk_b, b1, 1);
        QROUND(abef_a, cdgh_a, wk_a, a2, 2); QROUND(abef_b, cdgh_b, wk_b, b2, 2);
        QROUND(abef_a, cdgh_a, wk_a, a3, 3); QROUND(abef_b, cdgh_b, wk_b, b3, 3);
        for (i = 4; i < 16; i += 4) {
            SCHEDULE(a0, a1, a2, a3); SCHEDULE(b0, b1, b2, b3);
            QROUND(abef_a, cdgh_a, wk_a, a0, i); QROUND(abef_b, cdgh_b, wk_b, b0, i);
            SCHEDULE(a1, a2, a3, a0); SCHEDULE(b1, b2, b3, b0);
            QROUND(abef_a, cdgh_a, wk_a, a1, i + 1); QROUND(abef_b, cdgh_b, wk_b, b1, i + 1);
            SCHEDULE(a2, a3, a0, a1); SCHEDULE(b2, b3, b0, b1);
            QROUND(abef_a, cdgh_a, wk_a, a2, i + 2); QROUND(abef_b, cdgh_b, wk_b, b2, i + 2);
            SCHEDULE(a3, a0, a1, a2); SCHEDULE(b3, b0, b1, b2);
            QROUND(abef_a, cdgh_a, wk_a, a3, i + 3); QROUND(abef_b, cdgh_b, wk_b, b3, i + 3);
        }
        abef_a = _mm_add_epi32(abef_a, abef_a0);
        cdgh_a = _mm_add_epi32(cdgh_a, cdgh_a0);
        abef_b = _mm_add_epi32(abef_b, abef_b0);
        cdgh_b = _mm_add_epi32(cdgh_b, cdgh_b0);
    }
    from_abef(sa, abef_a, cdgh_a);
    from_abef(sb, abef_b, cdgh_b);
}

static const oe_sha256_impl shani = {compress_shani, compress2_shani};

static int have_shani(void)
{
    unsigned a, b, c, d;

    /* Leaf 7 EBX bit 29: SHA; leaf 1 ECX bits 9 and 19: SSSE3, SSE4.1. */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b >> 29) & 1;
}
#endif

const oe_sha256_impl *oe_sha256_pick(int which)
{
#ifdef OE_SHANI
    if ((which == OE_SHA256_AUTO || which == OE_SHA256_SHANI) && have_shani())
        return &shani;
#endif
    if (which == OE_SHA256_AUTO || which == OE_SHA256_PORTABLE)
        return &portable;
    return NULL;
}

void oe_sha256_init(oe_sha256 *s, const oe_sha256_impl *impl)
{
    memcpy(s->state, H0, sizeof s->state);
    s->total = 0;
    s->fill = 0;
    s->impl = impl;
}

/* Takes up to a block's missing bytes into pending; 1 when it is full. */
static size_t top_up(oe_sha256 *s, const uint8_t *p, size_t len)
{
    size_t take = OE_SHA256_BLOCK - s->fill;
    if (take > len)
        take = len;
    memcpy(s->pending + s->fill, p, take);
    s->fill += (uint32_t)take;
    s->total += take;
    return take;
}

/* Completes and compresses a partly filled block from the input, so that
 * what is left of the input starts on a block boundary (or is all taken). */
static void drain_pending(oe_sha256 *s, const uint8_t **p, size_t *len)
{
    size_t took;

    if (!s->fill || !*len)
        return;
    took = top_up(s, *p, *len);
    *p += took;
    *len -= took;
    if (s->fill < OE_SHA256_BLOCK)
        return;
    s->impl->compress(s->state, s->pending, 1);
    s->fill = 0;
}

void oe_sha256_update(oe_sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t whole;

    drain_pending(s, &p, &len);
    if (!len)
        return;
    whole = len / OE_SHA256_BLOCK;
    if (whole)
        s->impl->compress(s->state, p, whole);
    s->total += whole * OE_SHA256_BLOCK;
    p += whole * OE_SHA256_BLOCK;
    len -= whole * OE_SHA256_BLOCK;
    top_up(s, p, len);
}

void oe_sha256_update2(oe_sha256 *a, const void *da, size_t la,
                       oe_sha256 *b, const void *db, size_t lb)
{
    const uint8_t *pa = da, *pb = db;
    size_t whole;

    if (a == b || a->impl != b->impl) {
        oe_sha256_update(a, pa, la);
        oe_sha256_update(b, pb, lb);
        return;
    }
    drain_pending(a, &pa, &la);
    drain_pending(b, &pb, &lb);
    /* Input left means the pending block was emptied: both start on a
     * block boundary, so their common whole blocks go through together. */
    whole = (la < lb ? la : lb) / OE_SHA256_BLOCK;
    if (whole) {
        a->impl->compress2(a->state, b->state, pa, pb, whole);
        a->total += whole * OE_SHA256_BLOCK;
        b->total += whole * OE_SHA256_BLOCK;
        pa += whole * OE_SHA256_BLOCK;
        pb += whole * OE_SHA256_BLOCK;
        la -= whole * OE_SHA256_BLOCK;
        lb -= whole * OE_SHA256_BLOCK;
    }
    oe_sha256_update(a, pa, la);
    oe_sha256_update(b, pb, lb);
}

/* FIPS 180-4 5.1.1: a one bit, zeros, and the length in bits, to a multiple
 * of 512 bits.  The last one or two blocks into tail; how many. */
static size_t pad(const oe_sha256 *s, uint8_t tail[2 * OE_SHA256_BLOCK])
{
    uint64_t bits = s->total * 8;
    size_t n = s->fill + 1 + 8 > OE_SHA256_BLOCK ? 2 : 1;

    memcpy(tail, s->pending, s->fill);
    tail[s->fill] = 0x80;
    memset(tail + s->fill + 1, 0, n * OE_SHA256_BLOCK - 8 - s->fill - 1);
    store_be32(tail + n * OE_SHA256_BLOCK - 8, (uint32_t)(bits >> 32));
    store_be32(tail + n * OE_SHA256_BLOCK - 4, (uint32_t)bits);
    return n;
}

static void digest_of(const uint32_t state[8], uint8_t out[OE_SHA256_DIGEST])
{
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, state[i]);
}

void oe_sha256_final(oe_sha256 *s, uint8_t out[OE_SHA256_DIGEST])
{
    uint8_t tail[2 * OE_SHA256_BLOCK];

    s->impl->compress(s->state, tail, pad(s, tail));
    digest_of(s->state, out);
}

void oe_sha256_pair(const oe_sha256 *prefix, const uint8_t *a, const uint8_t *b, size_t len,
                    uint8_t out_a[OE_SHA256_DIGEST], uint8_t out_b[OE_SHA256_DIGEST])
{
    oe_sha256 sa = *prefix, sb = *prefix;
    uint8_t tail_a[2 * OE_SHA256_BLOCK], tail_b[2 * OE_SHA256_BLOCK];
    size_t whole, n;

    /* Both hold the same number of bytes throughout, so they fill, empty
     * and pad in step. */
    if (sa.fill) {
        size_t took = top_up(&sa, a, len);
        top_up(&sb, b, len);
        a += took;
        b += took;
        len -= took;
        if (sa.fill == OE_SHA256_BLOCK) {
            sa.impl->compress2(sa.state, sb.state, sa.pending, sb.pending, 1);
            sa.fill = sb.fill = 0;
        }
    }
    whole = sa.fill ? 0 : len / OE_SHA256_BLOCK;
    if (whole)
        sa.impl->compress2(sa.state, sb.state, a, b, whole);
    sa.total += whole * OE_SHA256_BLOCK;
    sb.total += whole * OE_SHA256_BLOCK;
    if (!sa.fill) {
        top_up(&sa, a + whole * OE_SHA256_BLOCK, len - whole * OE_SHA256_BLOCK);
        top_up(&sb, b + whole * OE_SHA256_BLOCK, len - whole * OE_SHA256_BLOCK);
    }
    n = pad(&sa, tail_a);
    pad(&sb, tail_b);
    sa.impl->compress2(sa.state, sb.state, tail_a, tail_b, n);
    digest_of(sa.state, out_a);
    digest_of(sb.state, out_b);
}
