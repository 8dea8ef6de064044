/* SHA-256 contexts for Python (ociext4/hashing.py): the digests of layer
 * blobs, layer tars and downloads.  Meant to be fed a MiB or so per call:
 * cffi lets the GIL go around each call, so other threads run while a
 * call hashes.  Two messages fed at once are compressed side by side (see
 * sha256.h), which costs little more than feeding one. */
#ifndef OCIEXT4_HASH_H
#define OCIEXT4_HASH_H
#include <stddef.h>
#include <stdint.h>

typedef struct oe_hash oe_hash;

/* A new context on implementation `impl` (0 the fastest this CPU has,
 * 1 portable C, 2 x86 SHA extensions); NULL when this CPU lacks it or
 * there is no memory. */
oe_hash *oe_hash_new(int impl);
void oe_hash_free(oe_hash *h);
void oe_hash_update(oe_hash *h, const uint8_t *data, size_t len);
/* `la` bytes into `a` and `lb` bytes into `b`, two messages hashed in one
 * pass as far as both have blocks, the rest of the longer one alone. */
void oe_hash_update2(oe_hash *a, const uint8_t *da, size_t la,
                     oe_hash *b, const uint8_t *db, size_t lb);
/* The digest of the bytes hashed so far (32 bytes into `out`); the context
 * is left as it was, so it may go on. */
void oe_hash_digest(const oe_hash *h, uint8_t *out);
/* How many bytes it has hashed. */
uint64_t oe_hash_size(const oe_hash *h);
/* Back to the empty message, on the same implementation. */
void oe_hash_reset(oe_hash *h);

#endif
