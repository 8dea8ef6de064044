/* dm-verity's lowest level (the hash of every data block), computed while
 * the image is written instead of by reading it back afterwards.
 *
 * Every byte of the image goes through oe_pwrite_all, which hands it here:
 * whole blocks are hashed at once, from memory that is still in the cache;
 * a block written only in part (the superblock at 1024, an inode table's
 * last block) is marked to be read back at the end, when it is final.  A
 * block written again is hashed again, so the last write wins.  Blocks
 * never written are holes, zeros, and share one hash. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"
#include "sha256.h"
#include "verity.h"
#include "verity_hooks.h"

#define OE_VERITY_MAX_SALT 256u   /* veritysetup's limit */
#define READ_BLOCKS 256u          /* 1 MiB read back per call */

/* Per block, what its hash slot holds. */
enum { NEVER_WRITTEN = 0, HASHED = 1, READ_BACK = 2 };

typedef struct oe_verity oe_verity;

struct oe_verity {
    uint8_t *hashes;          /* 32 bytes a block: anonymous memory, touched only where written */
    uint8_t *state;           /* a byte a block, NEVER_WRITTEN until touched */
    uint64_t blocks;          /* capacity: the largest image this writer may make */
    int salt_known;
    uint8_t salt[OE_VERITY_MAX_SALT];
    uint32_t salt_len;
    oe_sha256 salted;         /* the context after the salt, copied for each block */
};

static void *map(uint64_t bytes)
{
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void oe_verity_free(struct oe_verity *v)
{
    if (!v)
        return;
    if (v->hashes)
        munmap(v->hashes, (size_t)(v->blocks * OE_SHA256_DIGEST));
    if (v->state)
        munmap(v->state, (size_t)v->blocks);
    free(v);
}

int oe_verity_begin(oe_writer *w, int salt_known, const uint8_t *salt, uint32_t salt_len)
{
    oe_verity *v;
    const oe_sha256_impl *impl = oe_sha256_pick(OE_SHA256_AUTO);

    if (w->verity)
        return oe_fail(w, "verity is already on");
    if (w->n_files || w->buf_blocks)
        return oe_fail(w, "verity must be turned on before the first file");
    if (salt_known && salt_len > OE_VERITY_MAX_SALT)
        return oe_fail(w, "verity salt longer than %u bytes", OE_VERITY_MAX_SALT);
    if (w->max_blocks > SIZE_MAX / OE_SHA256_DIGEST)
        return oe_fail(w, "image too large for a verity tree here");
    v = calloc(1, sizeof *v);
    if (!v)
        return oe_fail(w, "out of memory");
    v->blocks = w->max_blocks;
    v->hashes = map(v->blocks * OE_SHA256_DIGEST);
    v->state = map(v->blocks);
    if (!v->hashes || !v->state) {
        int e = errno;
        oe_verity_free(v);
        return oe_fail_errno(w, e, "reserving memory for the verity hashes");
    }
    v->salt_known = salt_known;
    oe_sha256_init(&v->salted, impl);
    if (salt_known && salt_len) {
        memcpy(v->salt, salt, salt_len);
        v->salt_len = salt_len;
        oe_sha256_update(&v->salted, salt, salt_len);
    }
    w->verity = v;
    return 0;
}

static void set_state(oe_verity *v, uint64_t blk, uint8_t state)
{
    /* Past the capacity nothing is recorded: such a block is read back. */
    if (blk < v->blocks)
        v->state[blk] = state;
}

/* The salted hashes of `n` consecutive blocks, two at a time. */
static void hash_blocks(const oe_sha256 *salted, const uint8_t *data, uint64_t n, uint8_t *out)
{
    for (; n >= 2; n -= 2, data += 2 * OE_BLOCK_SIZE, out += 2 * OE_SHA256_DIGEST)
        oe_sha256_pair(salted, data, data + OE_BLOCK_SIZE, OE_BLOCK_SIZE,
                       out, out + OE_SHA256_DIGEST);
    if (n) {
        oe_sha256 s = *salted;
        oe_sha256_update(&s, data, OE_BLOCK_SIZE);
        oe_sha256_final(&s, out);
    }
}

void oe_verity_wrote(oe_writer *w, const uint8_t *data, uint64_t len, uint64_t off)
{
    oe_verity *v = w->verity;
    uint64_t blk = off / OE_BLOCK_SIZE, in = off % OE_BLOCK_SIZE;

    if (!v || !len)
        return;
    if (in) {
        uint64_t skip = OE_BLOCK_SIZE - in;
        set_state(v, blk++, READ_BACK);
        if (skip >= len)
            return;
        data += skip;
        len -= skip;
    }
    if (!v->salt_known) {
        for (; len >= OE_BLOCK_SIZE; len -= OE_BLOCK_SIZE, blk++)
            set_state(v, blk, READ_BACK);
    } else {
        uint64_t whole = len / OE_BLOCK_SIZE, room = blk < v->blocks ? v->blocks - blk : 0;
        uint64_t n = whole < room ? whole : room;
        if (n) {
            hash_blocks(&v->salted, data, n, v->hashes + blk * OE_SHA256_DIGEST);
            memset(v->state + blk, HASHED, (size_t)n);
        }
        for (uint64_t b = blk + n; b < blk + whole; b++)
            set_state(v, b, READ_BACK);
        blk += whole;
        len -= whole * OE_BLOCK_SIZE;
    }
    if (len)
        set_state(v, blk, READ_BACK);
}

void oe_verity_unseen(oe_writer *w, uint64_t pblk, uint64_t count)
{
    if (w->verity)
        for (uint64_t b = pblk; b < pblk + count; b++)
            set_state(w->verity, b, READ_BACK);
}

void oe_verity_zeroed(oe_writer *w, uint64_t pblk, uint64_t count)
{
    if (w->verity)
        for (uint64_t b = pblk; b < pblk + count; b++)
            set_state(w->verity, b, NEVER_WRITTEN);
}

static int same_salt(const oe_verity *v, const uint8_t *salt, uint32_t salt_len)
{
    return v->salt_known && v->salt_len == salt_len && memcmp(v->salt, salt, salt_len) == 0;
}

static int must_read(const oe_verity *v, int same, uint64_t blk)
{
    if (blk >= v->blocks)
        return 1;
    return v->state[blk] == READ_BACK || (v->state[blk] == HASHED && !same);
}

uint64_t oe_verity_to_read(const oe_writer *w, const uint8_t *salt, uint32_t salt_len,
                           uint64_t first, uint64_t count)
{
    const oe_verity *v = w->verity;
    uint64_t n = 0;
    int same;

    if (!v)
        return count;
    same = same_salt(v, salt, salt_len);
    for (uint64_t b = first; b < first + count; b++)
        n += (uint64_t)must_read(v, same, b);
    return n;
}

static int pread_all(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pread(fd, buf, (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return EIO;   /* the image is shorter than its own block count */
        buf += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

int oe_verity_leaves(const oe_writer *w, const uint8_t *salt, uint32_t salt_len,
                     uint64_t first, uint64_t count, uint8_t *out)
{
    const oe_verity *v = w->verity;
    uint64_t b = first, end = first + count;
    uint8_t zero_hash[OE_SHA256_DIGEST], *buf;
    oe_sha256 salted;
    int same, rc = 0;

    if (!v || end < first)
        return EINVAL;
    same = same_salt(v, salt, salt_len);
    oe_sha256_init(&salted, v->salted.impl);
    oe_sha256_update(&salted, salt, salt_len);
    buf = calloc(READ_BLOCKS, OE_BLOCK_SIZE);
    if (!buf)
        return ENOMEM;
    hash_blocks(&salted, buf, 1, zero_hash);
    while (b < end) {
        uint64_t run = 0;
        if (!must_read(v, same, b)) {
            memcpy(out, v->state[b] == HASHED ? v->hashes + b * OE_SHA256_DIGEST : zero_hash,
                   OE_SHA256_DIGEST);
            out += OE_SHA256_DIGEST;
            b++;
            continue;
        }
        while (b + run < end && run < READ_BLOCKS && must_read(v, same, b + run))
            run++;
        if ((rc = pread_all(w->fd, buf, run * OE_BLOCK_SIZE, b * OE_BLOCK_SIZE)))
            break;
        hash_blocks(&salted, buf, run, out);
        out += run * OE_SHA256_DIGEST;
        b += run;
    }
    free(buf);
    return rc;
}

int oe_write_at(oe_writer *w, const uint8_t *data, uint64_t len, uint64_t off)
{
    return oe_pwrite_all(w, data, len, off);
}

int oe_sha256_digest(int impl, const uint8_t *data, uint64_t len, uint8_t *out)
{
    const oe_sha256_impl *chosen = oe_sha256_pick(impl);
    oe_sha256 s;

    if (!chosen)
        return -1;
    oe_sha256_init(&s, chosen);
    oe_sha256_update(&s, data, (size_t)len);
    oe_sha256_final(&s, out);
    return 0;
}

int oe_sha256_digest_pair(int impl, const uint8_t *prefix, uint64_t prefix_len,
                          const uint8_t *a, const uint8_t *b, uint64_t len,
                          uint8_t *out_a, uint8_t *out_b)
{
    const oe_sha256_impl *chosen = oe_sha256_pick(impl);
    oe_sha256 s;

    if (!chosen)
        return -1;
    oe_sha256_init(&s, chosen);
    oe_sha256_update(&s, prefix, (size_t)prefix_len);
    oe_sha256_pair(&s, a, b, (size_t)len, out_a, out_b);
    return 0;
}
