/* Extended attributes: in the inode body while they fit, the rest in one
 * xattr block of the inode's own. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "commit.h"
#include "crc32c.h"
#include "dirhash.h"

#define MAX_XATTRS 256
#define ENTRY_HEAD ((uint32_t)sizeof(struct ext4_xattr_entry))
#define IBODY_HEAD ((uint32_t)sizeof(struct ext4_xattr_ibody_header))
#define BLOCK_HEAD ((uint32_t)sizeof(struct ext4_xattr_header))
/* An area's entries end with four zero bytes. */
#define END_MARK 4u

typedef struct {
    uint8_t index;
    uint8_t name_len;
    uint32_t value_len;
    const uint8_t *name;
    const uint8_t *value;
} xattr;

/* As the kernel sorts a block's entries: by index, name length, name. */
static int cmp_xattr(const void *a, const void *b)
{
    const xattr *x = a, *y = b;
    if (x->index != y->index)
        return x->index - y->index;
    if (x->name_len != y->name_len)
        return x->name_len - y->name_len;
    return memcmp(x->name, y->name, x->name_len);
}

static uint32_t round4(uint32_t n) { return (n + EXT4_XATTR_ROUND) & ~EXT4_XATTR_ROUND; }
static uint32_t xentry_len(const xattr *x) { return round4(ENTRY_HEAD + x->name_len); }
static uint32_t xvalue_len(const xattr *x) { return round4(x->value_len); }

/* Lays entries out in an area: entries from `first`, values down from `end`;
 * value offsets count from `base`.  Returns the hash of a block's entries. */
static uint32_t put_xattrs(uint8_t *area, uint32_t first, uint32_t end, uint32_t base,
                           const xattr *xs, const uint8_t *pick, uint32_t n, uint8_t want)
{
    uint32_t pos = first, vend = end, i, bhash = 0;
    for (i = 0; i < n; i++) {
        const xattr *x = &xs[i];
        uint8_t *e = area + pos;
        uint32_t hash;
        if (pick[i] != want)
            continue;
        vend -= xvalue_len(x);
        memcpy(area + vend, x->value, x->value_len);
        hash = oe_xattr_entry_hash(x->name, x->name_len, x->value, x->value_len);
        EXT4_SET(ext4_xattr_entry, e, e_name_len, x->name_len);
        EXT4_SET(ext4_xattr_entry, e, e_name_index, x->index);
        EXT4_SET(ext4_xattr_entry, e, e_value_offs, x->value_len ? vend - base : 0);
        EXT4_SET(ext4_xattr_entry, e, e_value_inum, 0);
        EXT4_SET(ext4_xattr_entry, e, e_value_size, x->value_len);
        EXT4_SET(ext4_xattr_entry, e, e_hash, hash);
        memcpy(EXT4_PTR(ext4_xattr_entry, e, e_name), x->name, x->name_len);
        pos += xentry_len(x);
        bhash = (bhash << 16) ^ (bhash >> 16) ^ hash;
    }
    return bhash;
}

/* A failed plan's reason, written where the caller says: the check runs
 * while another thread may be writing file data, so it must not touch the
 * writer's error state. */
static int plan_fail(char *err, uint32_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Parses an inode's xattr records and decides where each goes: pick[i] 1
 * for the inode body, 2 for the xattr block.  Fails if they do not fit. */
static int plan_xattrs(char *err, uint32_t errlen, const uint8_t *p, const uint8_t *end, xattr *xs,
                       uint8_t *pick, uint32_t *n_out, uint32_t *ibody_out, uint32_t *in_block_out)
{
    uint32_t n = 0, i, ibody_used = IBODY_HEAD + END_MARK, block_used = BLOCK_HEAD + END_MARK;
    uint32_t in_block = 0;

    while (p < end) {
        xattr *x;
        if (n == MAX_XATTRS)
            return plan_fail(err, errlen, "more than %u xattrs on one inode", MAX_XATTRS);
        if (end - p < 8)
            return plan_fail(err, errlen, "malformed xattr record");
        x = &xs[n];
        x->index = p[0];
        x->name_len = p[1];
        x->value_len = get32(p + 4);
        if ((uint64_t)(end - p) < 8ull + x->name_len + x->value_len)
            return plan_fail(err, errlen, "malformed xattr record");
        x->name = p + 8;
        x->value = p + 8 + x->name_len;
        p += round4(8u + x->name_len + x->value_len);
        if (x->value_len > OE_BLOCK_SIZE)
            return plan_fail(err, errlen, "xattr value of %u bytes is too large", x->value_len);
        n++;
    }
    qsort(xs, n, sizeof *xs, cmp_xattr);
    for (i = 0; i < n; i++) {
        uint32_t need = xentry_len(&xs[i]) + xvalue_len(&xs[i]);
        if (ibody_used + need <= OE_IBODY_SIZE) {
            pick[i] = 1;
            ibody_used += need;
        } else {
            pick[i] = 2;
            block_used += need;
            in_block++;
        }
    }
    if (block_used > OE_BLOCK_SIZE)
        return plan_fail(err, errlen, "xattrs need %u bytes, more than one 4 KiB block holds",
                         block_used);
    *n_out = n;
    *ibody_out = ibody_used;
    *in_block_out = in_block;
    return 0;
}

int oe_xattrs_check(const uint8_t *blob, uint64_t len, char *err, uint32_t errlen)
{
    xattr xs[MAX_XATTRS];
    uint8_t pick[MAX_XATTRS];
    uint32_t n, ibody_used, in_block;
    if (len > MAX_XATTRS * (8u + 255 + OE_BLOCK_SIZE + 3))
        return plan_fail(err, errlen, "xattrs of %llu bytes are too large", (unsigned long long)len);
    return plan_xattrs(err, errlen, blob, blob + len, xs, pick, &n, &ibody_used, &in_block);
}

int oe_build_xattrs(oe_ctx *c, uint32_t k, oe_ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    const uint8_t *p = c->blob + in->xattr_off, *end = p + in->xattr_len;
    xattr xs[MAX_XATTRS];
    uint8_t pick[MAX_XATTRS];
    uint32_t n, ibody_used, in_block;
    char err[160];

    if (plan_xattrs(err, sizeof err, p, end, xs, pick, &n, &ibody_used, &in_block))
        return oe_fail(c->w, "%s", err);
    if (ibody_used > IBODY_HEAD + END_MARK) {
        uint8_t *a;
        if (oe_grow(c->w, (void **)&c->ibodies, &c->cap_ibodies, (c->n_ibodies + 1) * OE_IBODY_SIZE, 1))
            return -1;
        a = c->ibodies + c->n_ibodies * OE_IBODY_SIZE;
        memset(a, 0, OE_IBODY_SIZE);
        EXT4_SET(ext4_xattr_ibody_header, a, h_magic, EXT4_XATTR_MAGIC);
        /* In the inode, value offsets count from the first entry. */
        put_xattrs(a, IBODY_HEAD, OE_IBODY_SIZE, IBODY_HEAD, xs, pick, n, 1);
        o->ibody = (uint32_t)++c->n_ibodies;
    }
    if (in_block) {
        uint64_t pblk;
        uint8_t *b, nb[8];
        uint32_t cs;
        if (oe_emit_block(c->w, &pblk, &b))
            return -1;
        EXT4_SET(ext4_xattr_header, b, h_magic, EXT4_XATTR_MAGIC);
        EXT4_SET(ext4_xattr_header, b, h_refcount, 1);
        EXT4_SET(ext4_xattr_header, b, h_blocks, 1);
        EXT4_SET(ext4_xattr_header, b, h_hash,
                 put_xattrs(b, BLOCK_HEAD, OE_BLOCK_SIZE, 0, xs, pick, n, 2));
        /* The checksum covers the block number, then the block with a zero checksum. */
        put64(nb, pblk);
        cs = oe_crc32c(c->csum_seed, nb, 8);
        EXT4_SET(ext4_xattr_header, b, h_checksum, oe_crc32c(cs, b, OE_BLOCK_SIZE));
        o->acl = pblk;
        o->blocks++;
    }
    return 0;
}
