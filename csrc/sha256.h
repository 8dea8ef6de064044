/* SHA-256 (FIPS 180-4), for the dm-verity tree hashed as the image is
 * written.  Two compressions: portable C, and x86's SHA extensions where
 * the CPU has them.  The choice is made once by the caller (oe_sha256_pick)
 * and carried in each context, so nothing here changes at run time. */
#ifndef OCIEXT4_SHA256_H
#define OCIEXT4_SHA256_H
#include <stddef.h>
#include <stdint.h>

#define OE_SHA256_DIGEST 32u
#define OE_SHA256_BLOCK 64u

/* A compression function, one stream and two at once: a single stream of
 * SHA-NI waits on each instruction's latency, so two independent messages
 * interleaved go nearly twice as fast. */
typedef struct {
    /* Compresses `n` 64-byte blocks of `data` into `state`. */
    void (*compress)(uint32_t state[8], const uint8_t *data, size_t n);
    /* The same for two states and their data, n blocks each. */
    void (*compress2)(uint32_t a[8], uint32_t b[8], const uint8_t *da, const uint8_t *db,
                      size_t n);
} oe_sha256_impl;

typedef struct {
    uint32_t state[8];
    uint64_t total;                  /* bytes hashed so far */
    uint8_t pending[OE_SHA256_BLOCK];
    uint32_t fill;                   /* bytes in pending */
    const oe_sha256_impl *impl;
} oe_sha256;

enum { OE_SHA256_AUTO = 0, OE_SHA256_PORTABLE = 1, OE_SHA256_SHANI = 2 };

/* The implementation `which` names, or NULL when this CPU lacks it. */
const oe_sha256_impl *oe_sha256_pick(int which);
void oe_sha256_init(oe_sha256 *s, const oe_sha256_impl *impl);
void oe_sha256_update(oe_sha256 *s, const void *data, size_t len);
/* `la` bytes of one message into `a` and `lb` of another into `b` (two
 * contexts, not one), the blocks both have compressed side by side. */
void oe_sha256_update2(oe_sha256 *a, const void *da, size_t la,
                       oe_sha256 *b, const void *db, size_t lb);
void oe_sha256_final(oe_sha256 *s, uint8_t out[OE_SHA256_DIGEST]);
/* The digests of prefix || a and prefix || b, `len` bytes each, where
 * `prefix` is a context that has hashed the common prefix: dm-verity's
 * salted blocks, two at a time. */
void oe_sha256_pair(const oe_sha256 *prefix, const uint8_t *a, const uint8_t *b, size_t len,
                    uint8_t out_a[OE_SHA256_DIGEST], uint8_t out_b[OE_SHA256_DIGEST]);

#endif
