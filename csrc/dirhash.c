#include "dirhash.h"

#define ROL32(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) (((x) & (y)) + (((x) ^ (y)) & (z)))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define ROUND(f, a, b, c, d, x, s) ((a) += f((b), (c), (d)) + (x), (a) = ROL32((a), (s)))
#define K1 0u
#define K2 013240474631u
#define K3 015666365641u

static void half_md4(uint32_t buf[4], const uint32_t in[8])
{
    uint32_t a = buf[0], b = buf[1], c = buf[2], d = buf[3];

    ROUND(F, a, b, c, d, in[0] + K1, 3);
    ROUND(F, d, a, b, c, in[1] + K1, 7);
    ROUND(F, c, d, a, b, in[2] + K1, 11);
    ROUND(F, b, c, d, a, in[3] + K1, 19);
    ROUND(F, a, b, c, d, in[4] + K1, 3);
    ROUND(F, d, a, b, c, in[5] + K1, 7);
    ROUND(F, c, d, a, b, in[6] + K1, 11);
    ROUND(F, b, c, d, a, in[7] + K1, 19);

    ROUND(G, a, b, c, d, in[1] + K2, 3);
    ROUND(G, d, a, b, c, in[3] + K2, 5);
    ROUND(G, c, d, a, b, in[5] + K2, 9);
    ROUND(G, b, c, d, a, in[7] + K2, 13);
    ROUND(G, a, b, c, d, in[0] + K2, 3);
    ROUND(G, d, a, b, c, in[2] + K2, 5);
    ROUND(G, c, d, a, b, in[4] + K2, 9);
    ROUND(G, b, c, d, a, in[6] + K2, 13);

    ROUND(H, a, b, c, d, in[3] + K3, 3);
    ROUND(H, d, a, b, c, in[7] + K3, 9);
    ROUND(H, c, d, a, b, in[2] + K3, 11);
    ROUND(H, b, c, d, a, in[6] + K3, 15);
    ROUND(H, a, b, c, d, in[1] + K3, 3);
    ROUND(H, d, a, b, c, in[5] + K3, 9);
    ROUND(H, c, d, a, b, in[0] + K3, 11);
    ROUND(H, b, c, d, a, in[4] + K3, 15);

    buf[0] += a;
    buf[1] += b;
    buf[2] += c;
    buf[3] += d;
}

/* Packs up to num*4 name bytes into words, padding with a length pattern. */
static void str2hashbuf(const unsigned char *msg, size_t len, uint32_t *buf, int num)
{
    uint32_t pad = (uint32_t)len | ((uint32_t)len << 8);
    uint32_t val;
    size_t i;

    pad |= pad << 16;
    val = pad;
    if (len > (size_t)num * 4)
        len = (size_t)num * 4;
    for (i = 0; i < len; i++) {
        val = (uint32_t)(int32_t)(signed char)msg[i] + (val << 8);
        if ((i % 4) == 3) {
            *buf++ = val;
            val = pad;
            num--;
        }
    }
    if (--num >= 0)
        *buf++ = val;
    while (--num >= 0)
        *buf++ = pad;
}

void oe_dx_hash(const uint32_t seed[4], const unsigned char *name, size_t len,
                uint32_t *hash, uint32_t *minor)
{
    uint32_t buf[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    uint32_t in[8];
    uint32_t h;

    if (seed[0] | seed[1] | seed[2] | seed[3]) {
        buf[0] = seed[0];
        buf[1] = seed[1];
        buf[2] = seed[2];
        buf[3] = seed[3];
    }
    /* A name shorter than one round still gets one transform. */
    for (;;) {
        str2hashbuf(name, len, in, 8);
        half_md4(buf, in);
        if (len <= 32)
            break;
        len -= 32;
        name += 32;
    }
    h = buf[1] & ~1u;
    if (h == (0x7fffffffu << 1))
        h = (0x7fffffffu - 1) << 1;
    *hash = h;
    *minor = buf[2];
}

uint32_t oe_xattr_entry_hash(const unsigned char *name, size_t name_len,
                             const unsigned char *value, size_t value_len)
{
    uint32_t hash = 0;
    size_t i;

    for (i = 0; i < name_len; i++)
        hash = (hash << 5) ^ (hash >> 27) ^ (uint32_t)(int32_t)(signed char)name[i];
    /* The value is hashed as little-endian words, zero padded to 4 bytes. */
    for (i = 0; i < value_len; i += 4) {
        uint32_t w = 0;
        size_t k;
        for (k = 0; k < 4 && i + k < value_len; k++)
            w |= (uint32_t)value[i + k] << (8 * k);
        hash = (hash << 16) ^ (hash >> 16) ^ w;
    }
    return hash;
}
