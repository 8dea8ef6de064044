/* The SHA-256 contexts Python holds: a thin, allocated shell over sha256.c,
 * so the struct's layout stays out of the cffi definitions. */
#include <stdlib.h>
#include "hash.h"
#include "sha256.h"

struct oe_hash {
    oe_sha256 s;
};

oe_hash *oe_hash_new(int impl)
{
    const oe_sha256_impl *chosen = oe_sha256_pick(impl);
    oe_hash *h;

    if (!chosen)
        return NULL;
    h = malloc(sizeof *h);
    if (h)
        oe_sha256_init(&h->s, chosen);
    return h;
}

void oe_hash_free(oe_hash *h)
{
    free(h);
}

void oe_hash_update(oe_hash *h, const uint8_t *data, size_t len)
{
    oe_sha256_update(&h->s, data, len);
}

void oe_hash_update2(oe_hash *a, const uint8_t *da, size_t la,
                     oe_hash *b, const uint8_t *db, size_t lb)
{
    oe_sha256_update2(&a->s, da, la, &b->s, db, lb);
}

void oe_hash_digest(const oe_hash *h, uint8_t *out)
{
    /* Padding changes the context: pad a copy. */
    oe_sha256 done = h->s;

    oe_sha256_final(&done, out);
}

uint64_t oe_hash_size(const oe_hash *h)
{
    return h->s.total;
}

void oe_hash_reset(oe_hash *h)
{
    oe_sha256_init(&h->s, h->s.impl);
}
