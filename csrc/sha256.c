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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>

#define SHANI_TARGET __attribute__((target("sha,ssse3,sse4.1")))

/* Four rounds: the message words plus their constants, two rounds from the
 * low half and two from the high.  Each sha256rnds2 turns (CDGH, ABEF) into
 * the next ABEF, and the old ABEF is then the next CDGH: so the two
 * registers swap roles between the halves and are back in place after. */
#define QROUND(m, i) do { \
        wk = _mm_add_epi32((m), _mm_loadu_si128((const __m128i *)&K[4 * (i)])); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk); \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E)); \
    } while (0)

/* The next four schedule words into m0, from the sixteen before them in
 * m0..m3 (oldest first): W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]). */
#define SCHEDULE(m0, m1, m2, m3) \
    (m0) = _mm_sha256msg2_epu32( \
        _mm_add_epi32(_mm_sha256msg1_epu32((m0), (m1)), _mm_alignr_epi8((m3), (m2), 4)), (m3))

SHANI_TARGET static void compress_shani(uint32_t st[8], const uint8_t *data, size_t n)
{
    /* Words are big-endian in the message: swap the bytes of each. */
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i abef, cdgh, t, wk, m0, m1, m2, m3, abef0, cdgh0;
    int i;

    /* The instructions keep the state as ABEF and CDGH, A and C highest. */
    t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[0]), 0xB1);     /* B A D C */
    cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[4]), 0x1B);  /* H G F E */
    abef = _mm_alignr_epi8(t, cdgh, 8);                                         /* F E B A */
    cdgh = _mm_blend_epi16(cdgh, t, 0xF0);                                      /* H G D C */
    for (; n; n--, data += OE_SHA256_BLOCK) {
        abef0 = abef;
        cdgh0 = cdgh;
        m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 0)), bswap);
        m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16)), bswap);
        m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 32)), bswap);
        m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 48)), bswap);
        QROUND(m0, 0);
        QROUND(m1, 1);
        QROUND(m2, 2);
        QROUND(m3, 3);
        for (i = 4; i < 16; i += 4) {
            SCHEDULE(m0, m1, m2, m3);
            QROUND(m0, i);
            SCHEDULE(m1, m2, m3, m0);
            QROUND(m1, i + 1);
            SCHEDULE(m2, m3, m0, m1);
            QROUND(m2, i + 2);
            SCHEDULE(m3, m0, m1, m2);
            QROUND(m3, i + 3);
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    t = _mm_shuffle_epi32(abef, 0x1B);                                  /* A B E F */
    cdgh = _mm_shuffle_epi32(cdgh, 0xB1);                               /* G H C D */
    _mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(t, cdgh, 0xF0)); /* A B C D */
    _mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(cdgh, t, 8));   /* E F G H */
}

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

oe_sha256_compress oe_sha256_pick(int impl)
{
#ifdef OE_SHANI
    if ((impl == OE_SHA256_AUTO || impl == OE_SHA256_SHANI) && have_shani())
        return compress_shani;
#endif
    if (impl == OE_SHA256_AUTO || impl == OE_SHA256_PORTABLE)
        return compress_portable;
    return NULL;
}

void oe_sha256_init(oe_sha256 *s, oe_sha256_compress compress)
{
    memcpy(s->state, H0, sizeof s->state);
    s->total = 0;
    s->fill = 0;
    s->compress = compress;
}

void oe_sha256_update(oe_sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t whole;

    s->total += len;
    if (s->fill) {
        size_t take = OE_SHA256_BLOCK - s->fill;
        if (take > len)
            take = len;
        memcpy(s->pending + s->fill, p, take);
        s->fill += (uint32_t)take;
        p += take;
        len -= take;
        if (s->fill < OE_SHA256_BLOCK)
            return;
        s->compress(s->state, s->pending, 1);
        s->fill = 0;
    }
    whole = len / OE_SHA256_BLOCK;
    if (whole)
        s->compress(s->state, p, whole);
    p += whole * OE_SHA256_BLOCK;
    len -= whole * OE_SHA256_BLOCK;
    memcpy(s->pending, p, len);
    s->fill = (uint32_t)len;
}

void oe_sha256_final(oe_sha256 *s, uint8_t out[OE_SHA256_DIGEST])
{
    uint64_t bits = s->total * 8;
    int i;

    /* FIPS 180-4 5.1.1: a one bit, zeros, and the length in bits, to a
     * multiple of 512 bits. */
    s->pending[s->fill++] = 0x80;
    if (s->fill > OE_SHA256_BLOCK - 8) {
        memset(s->pending + s->fill, 0, OE_SHA256_BLOCK - s->fill);
        s->compress(s->state, s->pending, 1);
        s->fill = 0;
    }
    memset(s->pending + s->fill, 0, OE_SHA256_BLOCK - 8 - s->fill);
    store_be32(s->pending + 56, (uint32_t)(bits >> 32));
    store_be32(s->pending + 60, (uint32_t)bits);
    s->compress(s->state, s->pending, 1);
    for (i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->state[i]);
}
