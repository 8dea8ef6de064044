/* SHA-256 (FIPS 180-4), for the dm-verity tree hashed as the image is
 * written.  Two compressions: portable C, and x86's SHA extensions where
 * the CPU has them.  The choice is made once by the caller (oe_sha256_pick)
 * and carried in each context, so nothing here is global. */
#ifndef OCIEXT4_SHA256_H
#define OCIEXT4_SHA256_H
#include <stddef.h>
#include <stdint.h>

#define OE_SHA256_DIGEST 32u
#define OE_SHA256_BLOCK 64u

/* Compresses `n` 64-byte blocks of `data` into `state`. */
typedef void (*oe_sha256_compress)(uint32_t state[8], const uint8_t *data, size_t n);

typedef struct {
    uint32_t state[8];
    uint64_t total;                  /* bytes hashed so far */
    uint8_t pending[OE_SHA256_BLOCK];
    uint32_t fill;                   /* bytes in pending */
    oe_sha256_compress compress;
} oe_sha256;

enum { OE_SHA256_AUTO = 0, OE_SHA256_PORTABLE = 1, OE_SHA256_SHANI = 2 };

/* The compression for `impl`, or NULL when this CPU lacks it. */
oe_sha256_compress oe_sha256_pick(int impl);
void oe_sha256_init(oe_sha256 *s, oe_sha256_compress compress);
void oe_sha256_update(oe_sha256 *s, const void *data, size_t len);
void oe_sha256_final(oe_sha256 *s, uint8_t out[OE_SHA256_DIGEST]);

#endif
