/* The commit: everything that can be laid out only once the tree is final.
 *
 * Pass A walks the inodes in order and emits, right after the file data,
 * each inode's own blocks (directory blocks, slow symlink targets, xattr
 * blocks, extent tree blocks), keeping what its inode will say in an ino_out.
 * Then the journal, the bitmaps and the inode tables are placed, and the
 * inodes, bitmaps, descriptors and superblocks are written. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32c.h"
#include "dirhash.h"
#include "internal.h"

#define EXT4_EXTENTS_FL 0x00080000u
#define EXT4_INDEX_FL 0x00001000u
#define EXT4_HUGE_FILE_FL 0x00040000u
#define EXT4_LINK_MAX 65000u
#define XATTR_MAGIC 0xEA020000u
#define IBODY_START 160u           /* 128 + i_extra_isize */
#define IBODY_SIZE (OE_INODE_SIZE - IBODY_START)
#define EXTENTS_PER_BLOCK ((OE_BLOCK_SIZE - 12) / 12)
#define DX_ROOT_LIMIT ((OE_BLOCK_SIZE - 32 - 8) / 8)
#define DX_NODE_LIMIT ((OE_BLOCK_SIZE - 8 - 8) / 8)
#define JOURNAL_INO 8u

typedef struct {
    uint8_t iblock[60];
    uint32_t flags;
    uint64_t acl;        /* xattr block, 0 if none */
    uint64_t blocks;     /* file-system blocks charged to the inode */
    uint64_t size;
    uint32_t ibody;      /* 1 + index into the in-inode xattr areas, 0 if none */
} ino_out;

typedef struct {
    oe_writer *w;
    const oe_commit_params *p;
    const oe_inode *inodes;
    uint32_t n_inodes;
    const oe_dirent *dirents;
    uint32_t n_dirents;
    const uint8_t *blob;
    uint64_t blob_len;
    uint32_t csum_seed;
    uint32_t hash_seed[4];
    ino_out *out;         /* indexed by inode number */
    uint8_t *ibodies;
    uint64_t n_ibodies, cap_ibodies;
    oe_extent *tmp;       /* scratch extent list for one inode */
    uint64_t n_tmp, cap_tmp;
} ctx;

static uint32_t rec_ino(uint32_t k) { return k == 0 ? 2 : 10 + k; }

static uint32_t ino_seed(const ctx *c, uint32_t ino)
{
    uint8_t b[4];
    uint32_t s;
    put32(b, ino);
    s = oe_crc32c(c->csum_seed, b, 4);
    put32(b, 0); /* i_generation */
    return oe_crc32c(s, b, 4);
}

static uint8_t dirent_type(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return 1;
    case S_IFDIR: return 2;
    case S_IFCHR: return 3;
    case S_IFBLK: return 4;
    case S_IFIFO: return 5;
    case S_IFSOCK: return 6;
    case S_IFLNK: return 7;
    default: return 0;
    }
}

/* ---- extent trees ---------------------------------------------------- */

static void put_extent_header(uint8_t *p, uint32_t entries, uint32_t max, uint32_t depth)
{
    put16(p, 0xF30A);
    put16(p + 2, entries);
    put16(p + 4, max);
    put16(p + 6, depth);
    put32(p + 8, 0);
}

static void put_leaf(uint8_t *p, const oe_extent *e)
{
    put32(p, e->lblk);
    put16(p + 4, e->len);
    put16(p + 6, (uint32_t)(e->pblk >> 32));
    put32(p + 8, (uint32_t)e->pblk);
}

static void put_index(uint8_t *p, uint32_t lblk, uint64_t pblk)
{
    put32(p, lblk);
    put32(p + 4, (uint32_t)pblk);
    put16(p + 8, (uint32_t)(pblk >> 32));
    put16(p + 10, 0);
}

/* Builds the smallest tree for the extents: the inode's four slots, then
 * full blocks of 340 entries a level until four remain. */
static int build_extent_tree(ctx *c, uint32_t ino, const oe_extent *ex, uint64_t n, ino_out *o)
{
    oe_writer *w = c->w;
    uint64_t level_n = n, i, j, depth = 0;
    uint32_t *lblks = NULL;
    uint64_t *pblks = NULL;
    uint32_t seed = ino_seed(c, ino);
    int rc = -1;

    if (n <= 4) {
        put_extent_header(o->iblock, (uint32_t)n, 4, 0);
        for (i = 0; i < n; i++)
            put_leaf(o->iblock + 12 + 12 * i, &ex[i]);
        return 0;
    }
    lblks = malloc(sizeof *lblks * ((n + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK));
    pblks = malloc(sizeof *pblks * ((n + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK));
    if (!lblks || !pblks) {
        oe_fail(w, "out of memory");
        goto out;
    }
    while (level_n > 4) {
        uint64_t blocks = (level_n + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK;
        for (i = 0; i < blocks; i++) {
            uint64_t first = i * EXTENTS_PER_BLOCK;
            uint64_t cnt = level_n - first < EXTENTS_PER_BLOCK ? level_n - first : EXTENTS_PER_BLOCK;
            uint64_t pblk;
            uint8_t *b;
            uint32_t first_lblk = depth == 0 ? ex[first].lblk : lblks[first];
            if (oe_emit_block(w, &pblk, &b))
                goto out;
            put_extent_header(b, (uint32_t)cnt, EXTENTS_PER_BLOCK, (uint32_t)depth);
            for (j = 0; j < cnt; j++) {
                if (depth == 0)
                    put_leaf(b + 12 + 12 * j, &ex[first + j]);
                else
                    put_index(b + 12 + 12 * j, lblks[first + j], pblks[first + j]);
            }
            put32(b + 12 + 12 * EXTENTS_PER_BLOCK, oe_crc32c(seed, b, 12 + 12 * EXTENTS_PER_BLOCK));
            /* Entry i of the next level; safe in place since i <= first. */
            lblks[i] = first_lblk;
            pblks[i] = pblk;
            o->blocks++;
        }
        level_n = blocks;
        depth++;
    }
    put_extent_header(o->iblock, (uint32_t)level_n, 4, (uint32_t)depth);
    for (i = 0; i < level_n; i++)
        put_index(o->iblock + 12 + 12 * i, lblks[i], pblks[i]);
    rc = 0;
out:
    free(lblks);
    free(pblks);
    return rc;
}

/* Emits one block of the inode being built and notes it in the scratch
 * extent list, as logical block n_blocks_so_far. */
static int emit_owned(ctx *c, uint32_t lblk, uint8_t **b)
{
    uint64_t pblk;
    if (oe_emit_block(c->w, &pblk, b))
        return -1;
    return oe_extents_append(&c->tmp, &c->n_tmp, &c->cap_tmp, 0, c->w, lblk, pblk, 1);
}

/* ---- directories ----------------------------------------------------- */

typedef struct {
    uint32_t hash;
    uint32_t minor;
    uint32_t idx;   /* dirent index */
} hashed;

static int cmp_hashed(const void *a, const void *b)
{
    const hashed *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->minor != y->minor)
        return x->minor < y->minor ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static uint32_t rec_len(uint32_t name_len) { return (8 + name_len + 3) & ~3u; }

static void put_dirent(uint8_t *p, uint32_t ino, uint32_t rlen, const uint8_t *name,
                       uint32_t name_len, uint8_t type)
{
    put32(p, ino);
    put16(p + 4, rlen);
    p[6] = (uint8_t)name_len;
    p[7] = type;
    if (name_len) /* an empty blob may be a null pointer */
        memcpy(p + 8, name, name_len);
}

static void seal_leaf(uint8_t *b, uint32_t seed)
{
    uint8_t *t = b + OE_BLOCK_SIZE - 12;
    put32(t, 0);
    put16(t + 4, 12);
    t[6] = 0;
    t[7] = 0xDE;
    put32(t + 8, oe_crc32c(seed, b, OE_BLOCK_SIZE - 12));
}

static void seal_dx(uint8_t *b, uint32_t count_offset, uint32_t limit, uint32_t count, uint32_t seed)
{
    static const uint8_t zero[8] = {0};
    uint32_t cs = oe_crc32c(seed, b, count_offset + count * 8);
    cs = oe_crc32c(cs, zero, 8); /* dt_reserved, then the checksum as zero */
    put32(b + count_offset + limit * 8, 0);
    put32(b + count_offset + limit * 8 + 4, cs);
}

static const uint8_t *dirent_name(const ctx *c, const oe_dirent *d) { return c->blob + d->name_off; }

static uint32_t child_ino(const oe_dirent *d) { return rec_ino(d->child); }

static uint8_t child_type(const ctx *c, const oe_dirent *d)
{
    return dirent_type(c->inodes[d->child].mode);
}

/* Writes entries [from, to) of the order into one leaf block. */
static void fill_leaf(ctx *c, uint8_t *b, const oe_dirent *base, const uint32_t *order,
                      uint32_t from, uint32_t to, uint32_t pos, uint32_t seed)
{
    uint32_t i;
    for (i = from; i < to; i++) {
        const oe_dirent *d = &base[order ? order[i] : i];
        uint32_t r = i + 1 == to ? OE_BLOCK_SIZE - 12 - pos : rec_len(d->name_len);
        put_dirent(b + pos, child_ino(d), r, dirent_name(c, d), d->name_len, child_type(c, d));
        pos += r;
    }
    if (from == to && pos < OE_BLOCK_SIZE - 12) /* an empty block: one unused entry */
        put_dirent(b + pos, 0, OE_BLOCK_SIZE - 12 - pos, NULL, 0, 0);
    seal_leaf(b, seed);
}

static int build_dir(ctx *c, uint32_t k, ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    const oe_dirent *base = c->dirents + in->dirent_first;
    uint32_t n = in->dirent_count, ino = rec_ino(k), seed = ino_seed(c, ino);
    uint32_t parent = rec_ino(in->parent), i, total = 24, lblk = 0;
    hashed *h = NULL;
    uint32_t *order = NULL, *starts = NULL, *start_hash = NULL;
    uint32_t leaves = 0, nodes = 0;
    uint8_t *b;
    int rc = -1;

    c->n_tmp = 0;
    for (i = 0; i < n; i++)
        total += rec_len(base[i].name_len);
    if (total <= OE_BLOCK_SIZE - 12) {
        uint32_t blocks = in->min_blocks > 1 ? in->min_blocks : 1;
        if (emit_owned(c, lblk++, &b))
            return -1;
        put_dirent(b, ino, 12, (const uint8_t *)".", 1, 2);
        put_dirent(b + 12, parent, n ? 12 : OE_BLOCK_SIZE - 24, (const uint8_t *)"..", 2, 2);
        if (n)
            fill_leaf(c, b, base, NULL, 0, n, 24, seed);
        else
            seal_leaf(b, seed);
        while (lblk < blocks) {
            if (emit_owned(c, lblk++, &b))
                return -1;
            fill_leaf(c, b, base, NULL, 0, 0, 0, seed);
        }
        goto tree;
    }

    /* Hashed: entries sorted by hash, packed into leaves, indexed from the
     * root (and from one level of nodes for very large directories). */
    h = malloc(sizeof *h * n);
    order = malloc(sizeof *order * n);
    starts = malloc(sizeof *starts * (n + 1));
    start_hash = malloc(sizeof *start_hash * (n + 1));
    if (!h || !order || !starts || !start_hash) {
        oe_fail(c->w, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        oe_dx_hash(c->hash_seed, dirent_name(c, &base[i]), base[i].name_len, &h[i].hash, &h[i].minor);
        h[i].idx = i;
    }
    qsort(h, n, sizeof *h, cmp_hashed);
    {
        uint32_t used = OE_BLOCK_SIZE; /* forces a first leaf */
        for (i = 0; i < n; i++) {
            uint32_t r = rec_len(base[h[i].idx].name_len);
            order[i] = h[i].idx;
            if (used + r > OE_BLOCK_SIZE - 12) {
                starts[leaves] = i;
                /* Bit 0 marks a hash that continues from the previous leaf. */
                start_hash[leaves] = h[i].hash | (i && h[i - 1].hash == h[i].hash);
                leaves++;
                used = 0;
            }
            used += r;
        }
        starts[leaves] = n;
    }
    if (leaves > DX_ROOT_LIMIT) {
        nodes = (leaves + DX_NODE_LIMIT - 1) / DX_NODE_LIMIT;
        if (nodes > DX_ROOT_LIMIT) {
            oe_fail(c->w, "directory with %u entries is too large", n);
            goto out;
        }
    }
    if (emit_owned(c, lblk++, &b))
        goto out;
    put_dirent(b, ino, 12, (const uint8_t *)".", 1, 2);
    put_dirent(b + 12, parent, OE_BLOCK_SIZE - 12, (const uint8_t *)"..", 2, 2);
    put32(b + 24, 0);
    b[28] = 1;  /* half_md4 */
    b[29] = 8;  /* info length */
    b[30] = nodes ? 1 : 0;
    b[31] = 0;
    {
        uint32_t count = nodes ? nodes : leaves;
        put16(b + 32, DX_ROOT_LIMIT);
        put16(b + 34, count);
        for (i = 0; i < count; i++) {
            uint32_t child = 1 + i;          /* nodes or leaves follow the root */
            uint32_t first_leaf = nodes ? i * DX_NODE_LIMIT : i;
            if (i)
                put32(b + 32 + 8 * i, start_hash[first_leaf]);
            put32(b + 36 + 8 * i, nodes ? child : 1 + i);
        }
        seal_dx(b, 32, DX_ROOT_LIMIT, count, seed);
    }
    for (i = 0; i < nodes; i++) {
        uint32_t first = i * DX_NODE_LIMIT, j;
        uint32_t cnt = leaves - first < DX_NODE_LIMIT ? leaves - first : DX_NODE_LIMIT;
        if (emit_owned(c, lblk++, &b))
            goto out;
        put32(b, 0);
        put16(b + 4, OE_BLOCK_SIZE);
        put16(b + 8, DX_NODE_LIMIT);
        put16(b + 10, cnt);
        for (j = 0; j < cnt; j++) {
            if (j)
                put32(b + 8 + 8 * j, start_hash[first + j]);
            put32(b + 12 + 8 * j, 1 + nodes + first + j);
        }
        seal_dx(b, 8, DX_NODE_LIMIT, cnt, seed);
    }
    for (i = 0; i < leaves; i++) {
        if (emit_owned(c, lblk++, &b))
            goto out;
        fill_leaf(c, b, base, order, starts[i], starts[i + 1], 0, seed);
    }
    o->flags |= EXT4_INDEX_FL;
tree:
    o->flags |= EXT4_EXTENTS_FL;
    o->size = (uint64_t)lblk * OE_BLOCK_SIZE;
    o->blocks += lblk;
    rc = build_extent_tree(c, ino, c->tmp, c->n_tmp, o);
out:
    free(h);
    free(order);
    free(starts);
    free(start_hash);
    return rc;
}

/* ---- extended attributes --------------------------------------------- */

typedef struct {
    uint8_t index;
    uint8_t name_len;
    uint32_t value_len;
    const uint8_t *name;
    const uint8_t *value;
} xattr;

static int cmp_xattr(const void *a, const void *b)
{
    const xattr *x = a, *y = b;
    if (x->index != y->index)
        return x->index - y->index;
    if (x->name_len != y->name_len)
        return x->name_len - y->name_len;
    return memcmp(x->name, y->name, x->name_len);
}

static uint32_t xentry_len(const xattr *x) { return (16u + x->name_len + 3) & ~3u; }
static uint32_t xvalue_len(const xattr *x) { return (x->value_len + 3) & ~3u; }

/* Lays entries out in an area: entries from `first`, values down from `end`;
 * value offsets count from `base`. */
static uint32_t put_xattrs(uint8_t *area, uint32_t first, uint32_t end, uint32_t base,
                           const xattr *xs, const uint8_t *pick, uint32_t n, uint8_t want,
                           uint32_t *hash_out)
{
    uint32_t pos = first, vend = end, i, bhash = 0;
    for (i = 0; i < n; i++) {
        const xattr *x = &xs[i];
        uint32_t hash;
        if (pick[i] != want)
            continue;
        vend -= xvalue_len(x);
        memcpy(area + vend, x->value, x->value_len);
        hash = oe_xattr_entry_hash(x->name, x->name_len, x->value, x->value_len);
        area[pos] = x->name_len;
        area[pos + 1] = x->index;
        put16(area + pos + 2, x->value_len ? vend - base : 0);
        put32(area + pos + 4, 0);
        put32(area + pos + 8, x->value_len);
        put32(area + pos + 12, hash);
        memcpy(area + pos + 16, x->name, x->name_len);
        pos += xentry_len(x);
        bhash = (bhash << 16) ^ (bhash >> 16) ^ hash;
    }
    if (hash_out)
        *hash_out = bhash;
    return pos;
}

/* Parses an inode's xattr records and decides where each goes: pick[i] 1
 * for the inode body, 2 for the xattr block.  Fails if they do not fit. */
static int plan_xattrs(oe_writer *w, const uint8_t *p, const uint8_t *end, xattr *xs,
                       uint8_t *pick, uint32_t *n_out, uint32_t *ibody_out, uint32_t *in_block_out)
{
    uint32_t n = 0, i, ibody_used = 4 + 4, block_used = 32 + 4, in_block = 0;

    while (p < end) {
        xattr *x;
        if (n == 256)
            return oe_fail(w, "more than 256 xattrs on one inode");
        if (end - p < 8)
            return oe_fail(w, "malformed xattr record");
        x = &xs[n];
        x->index = p[0];
        x->name_len = p[1];
        x->value_len = get32(p + 4);
        if ((uint64_t)(end - p) < 8ull + x->name_len + x->value_len)
            return oe_fail(w, "malformed xattr record");
        x->name = p + 8;
        x->value = p + 8 + x->name_len;
        p += (8u + x->name_len + x->value_len + 3) & ~3u;
        if (x->value_len > OE_BLOCK_SIZE)
            return oe_fail(w, "xattr value of %u bytes is too large", x->value_len);
        n++;
    }
    qsort(xs, n, sizeof *xs, cmp_xattr);
    for (i = 0; i < n; i++) {
        uint32_t need = xentry_len(&xs[i]) + xvalue_len(&xs[i]);
        if (ibody_used + need <= IBODY_SIZE) {
            pick[i] = 1;
            ibody_used += need;
        } else {
            pick[i] = 2;
            block_used += need;
            in_block++;
        }
    }
    if (block_used > OE_BLOCK_SIZE)
        return oe_fail(w, "xattrs need %u bytes, more than one 4 KiB block holds", block_used);
    *n_out = n;
    *ibody_out = ibody_used;
    *in_block_out = in_block;
    return 0;
}

int oe_xattrs_check(oe_writer *w, const uint8_t *blob, uint64_t len)
{
    xattr xs[256];
    uint8_t pick[256];
    uint32_t n, ibody_used, in_block;
    if (len > 256u * (8 + 255 + OE_BLOCK_SIZE + 3))
        return oe_fail(w, "xattrs of %llu bytes are too large", (unsigned long long)len);
    return plan_xattrs(w, blob, blob + len, xs, pick, &n, &ibody_used, &in_block);
}

static int build_xattrs(ctx *c, uint32_t k, ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    const uint8_t *p = c->blob + in->xattr_off, *end = p + in->xattr_len;
    xattr xs[256];
    uint8_t pick[256];
    uint32_t n, ibody_used, in_block;

    if (plan_xattrs(c->w, p, end, xs, pick, &n, &ibody_used, &in_block))
        return -1;
    if (ibody_used > 8) {
        uint8_t *a;
        if (oe_grow(c->w, (void **)&c->ibodies, &c->cap_ibodies, (c->n_ibodies + 1) * IBODY_SIZE, 1))
            return -1;
        a = c->ibodies + c->n_ibodies * IBODY_SIZE;
        memset(a, 0, IBODY_SIZE);
        put32(a, XATTR_MAGIC);
        put_xattrs(a, 4, IBODY_SIZE, 4, xs, pick, n, 1, NULL);
        o->ibody = (uint32_t)++c->n_ibodies;
    }
    if (in_block) {
        uint64_t pblk;
        uint8_t *b, nb[8];
        uint32_t bhash, cs;
        if (oe_emit_block(c->w, &pblk, &b))
            return -1;
        put32(b, XATTR_MAGIC);
        put32(b + 4, 1);   /* refcount */
        put32(b + 8, 1);   /* blocks */
        put_xattrs(b, 32, OE_BLOCK_SIZE, 0, xs, pick, n, 2, &bhash);
        put32(b + 12, bhash);
        put64(nb, pblk);
        cs = oe_crc32c(c->csum_seed, nb, 8);
        put32(b + 16, oe_crc32c(cs, b, OE_BLOCK_SIZE));
        o->acl = pblk;
        o->blocks++;
    }
    return 0;
}

/* ---- pass A: each inode's own blocks ---------------------------------- */

static int check_range(ctx *c, uint64_t off, uint64_t len, const char *what, uint32_t k)
{
    if (off > c->blob_len || len > c->blob_len - off)
        return oe_fail(c->w, "record %u: %s outside the blob", k, what);
    return 0;
}

static int build_inode(ctx *c, uint32_t k, uint8_t *referenced)
{
    const oe_inode *in = &c->inodes[k];
    uint32_t ino = rec_ino(k), type = in->mode & S_IFMT;
    ino_out *o = &c->out[ino];

    memset(o, 0, sizeof *o);
    if (check_range(c, in->xattr_off, in->xattr_len, "xattrs", k) ||
        check_range(c, in->extra_off, in->extra_len, "symlink target", k))
        return -1;
    if (in->nlink == 0 || (in->nlink > EXT4_LINK_MAX && type != S_IFDIR))
        return oe_fail(c->w, "record %u: link count %u out of range", k, in->nlink);
    switch (type) {
    case S_IFREG:
        o->size = in->size;
        o->flags = EXT4_EXTENTS_FL;
        if (in->file >= 0) {
            const oe_file *f;
            const oe_extent *last;
            if ((uint64_t)in->file >= c->w->n_files)
                return oe_fail(c->w, "record %u: bad file handle", k);
            f = &c->w->files[in->file];
            if (f->open || f->discarded || referenced[in->file])
                return oe_fail(c->w, "record %u: file data is open, discarded or used twice", k);
            referenced[in->file] = 1;
            last = f->ext_count ? &c->w->ext[f->ext_first + f->ext_count - 1] : NULL;
            if (last && ((uint64_t)last->lblk + last->len - 1) * OE_BLOCK_SIZE >= in->size)
                return oe_fail(c->w, "record %u: size %llu is smaller than its data", k,
                               (unsigned long long)in->size);
            o->blocks = f->blocks;
            if (build_extent_tree(c, ino, c->w->ext + f->ext_first, f->ext_count, o))
                return -1;
        } else {
            put_extent_header(o->iblock, 0, 4, 0);
        }
        break;
    case S_IFDIR:
        if (in->parent >= c->n_inodes || (uint64_t)in->dirent_first + in->dirent_count > c->n_dirents)
            return oe_fail(c->w, "record %u: directory range out of bounds", k);
        for (uint32_t i = 0; i < in->dirent_count; i++) {
            const oe_dirent *d = &c->dirents[in->dirent_first + i];
            if (d->child >= c->n_inodes || d->child == 0 || d->name_len == 0 || d->name_len > 255 ||
                check_range(c, d->name_off, d->name_len, "name", k))
                return oe_fail(c->w, "record %u: bad directory entry %u", k, i);
            if (memchr(dirent_name(c, d), '/', d->name_len) || memchr(dirent_name(c, d), 0, d->name_len))
                return oe_fail(c->w, "record %u: name with '/' or NUL", k);
        }
        if (build_dir(c, k, o))
            return -1;
        break;
    case S_IFLNK:
        o->size = in->extra_len;
        if (in->extra_len == 0 || in->extra_len >= OE_BLOCK_SIZE)
            return oe_fail(c->w, "record %u: symlink target of %u bytes", k, in->extra_len);
        if (in->extra_len < 60) {
            memcpy(o->iblock, c->blob + in->extra_off, in->extra_len);
        } else {
            uint8_t *b;
            c->n_tmp = 0;
            if (emit_owned(c, 0, &b))
                return -1;
            memcpy(b, c->blob + in->extra_off, in->extra_len);
            o->flags = EXT4_EXTENTS_FL;
            o->blocks = 1;
            if (build_extent_tree(c, ino, c->tmp, c->n_tmp, o))
                return -1;
        }
        break;
    case S_IFCHR:
    case S_IFBLK:
        if (in->rdev_major < 256 && in->rdev_minor < 256) {
            put32(o->iblock, (in->rdev_major << 8) | in->rdev_minor);
        } else {
            if (in->rdev_major > 0xfff || in->rdev_minor > 0xfffff)
                return oe_fail(c->w, "record %u: device number out of range", k);
            put32(o->iblock + 4, (in->rdev_minor & 0xff) | (in->rdev_major << 8) |
                                     ((in->rdev_minor & ~0xffu) << 12));
        }
        break;
    case S_IFIFO:
    case S_IFSOCK:
        break;
    default:
        return oe_fail(c->w, "record %u: unknown file type %o", k, type);
    }
    if (in->xattr_len && build_xattrs(c, k, o))
        return -1;
    return 0;
}

/* The journal: blocks placed but left as holes, but for its superblock. */
static int build_journal(ctx *c, uint64_t *first_block)
{
    oe_writer *w = c->w;
    uint64_t left = c->p->journal_blocks, lblk = 0;
    ino_out *o = &c->out[JOURNAL_INO];

    c->n_tmp = 0;
    *first_block = 0;
    while (left) {
        uint64_t p, n;
        if (oe_reserve_blocks(w, left, 0, &p, &n))
            return -1;
        if (!lblk)
            *first_block = p;
        if (oe_extents_append(&c->tmp, &c->n_tmp, &c->cap_tmp, 0, w, (uint32_t)lblk, p, n))
            return -1;
        lblk += n;
        left -= n;
    }
    memset(o, 0, sizeof *o);
    o->flags = EXT4_EXTENTS_FL;
    o->size = (uint64_t)c->p->journal_blocks * OE_BLOCK_SIZE;
    o->blocks = c->p->journal_blocks;
    return build_extent_tree(c, JOURNAL_INO, c->tmp, c->n_tmp, o);
}

static int write_journal_super(ctx *c, uint64_t block)
{
    uint8_t b[1024];
    memset(b, 0, sizeof b);
    putbe32(b, 0xC03B3998u);
    putbe32(b + 4, 4);               /* superblock v2 */
    putbe32(b + 12, OE_BLOCK_SIZE);
    putbe32(b + 16, c->p->journal_blocks);
    putbe32(b + 20, 1);              /* first log block */
    putbe32(b + 24, 1);              /* sequence */
    memcpy(b + 48, c->p->uuid, 16);
    putbe32(b + 64, 1);              /* users */
    return oe_pwrite_all(c->w, b, sizeof b, block * OE_BLOCK_SIZE);
}

/* ---- inodes ----------------------------------------------------------- */

static int put_time(uint8_t *ino, unsigned off, unsigned extra_off, int64_t sec, uint32_t nsec)
{
    uint32_t lo;
    int64_t epoch;
    /* Bounds first: ext4 reaches (3 << 32) + INT32_MAX, and the arithmetic
     * below must not overflow on anything further out. */
    if (sec < INT32_MIN || sec > (3ll << 32) + INT32_MAX || nsec > 999999999u)
        return -1;
    lo = (uint32_t)sec;
    epoch = (sec - (int64_t)(int32_t)lo) >> 32;
    put32(ino + off, lo);
    put32(ino + extra_off, (nsec << 2) | (uint32_t)epoch);
    return 0;
}

static int fill_inode(ctx *c, uint8_t *b, uint32_t ino, const oe_inode *in)
{
    const ino_out *o = &c->out[ino];
    uint64_t sectors = o->blocks * (OE_BLOCK_SIZE / 512);
    uint32_t cs;
    uint8_t nb[8];

    memset(b, 0, OE_INODE_SIZE);
    put16(b + 128, IBODY_START - 128);
    if (in) {
        uint32_t nlink = in->nlink;
        if ((in->mode & S_IFMT) == S_IFDIR && nlink > EXT4_LINK_MAX)
            nlink = 1; /* dir_nlink: too many subdirectories to count */
        put16(b, in->mode & 0xffff);
        put16(b + 2, in->uid & 0xffff);
        put16(b + 120, in->uid >> 16);
        put16(b + 24, in->gid & 0xffff);
        put16(b + 122, in->gid >> 16);
        put16(b + 26, nlink);
        if (put_time(b, 8, 140, in->atime_sec, in->atime_nsec) ||
            put_time(b, 12, 132, in->ctime_sec, in->ctime_nsec) ||
            put_time(b, 16, 136, in->mtime_sec, in->mtime_nsec) ||
            put_time(b, 144, 148, in->crtime_sec, in->crtime_nsec))
            return oe_fail(c->w, "inode %u: timestamp outside ext4's range (1901-2446)", ino);
    } else if (ino == JOURNAL_INO && c->p->journal_blocks) {
        put16(b, S_IFREG | 0600);
        put16(b + 26, 1);
        put_time(b, 8, 140, c->p->timestamp, 0);
        put_time(b, 12, 132, c->p->timestamp, 0);
        put_time(b, 16, 136, c->p->timestamp, 0);
        put_time(b, 144, 148, c->p->timestamp, 0);
    }
    put32(b + 4, (uint32_t)o->size);
    put32(b + 108, (uint32_t)(o->size >> 32));
    put32(b + 28, (uint32_t)sectors);
    put16(b + 116, (uint32_t)(sectors >> 32));
    put32(b + 32, o->flags);
    memcpy(b + 40, o->iblock, 60);
    put32(b + 104, (uint32_t)o->acl);
    put16(b + 118, (uint32_t)(o->acl >> 32));
    if (o->ibody)
        memcpy(b + IBODY_START, c->ibodies + (uint64_t)(o->ibody - 1) * IBODY_SIZE, IBODY_SIZE);
    put32(nb, ino);
    cs = oe_crc32c(c->csum_seed, nb, 4);
    put32(nb, 0);
    cs = oe_crc32c(cs, nb, 4);
    cs = oe_crc32c(cs, b, OE_INODE_SIZE);
    put16(b + 124, cs & 0xffff);
    put16(b + 130, cs >> 16);
    return 0;
}

/* ---- layout ------------------------------------------------------------ */

typedef struct {
    uint64_t blocks, groups;
    uint32_t ipg, itb, gdt_blocks;
} layout;

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static int last_group_ok(const oe_writer *w, uint64_t blocks)
{
    uint64_t g = (blocks - 1) / OE_BLOCKS_PER_GROUP, rest = blocks - g * OE_BLOCKS_PER_GROUP;
    return rest >= (oe_is_backup_group(g) ? 1 + w->gdt_reserve + 64 : 64);
}

/* Where the bitmaps and tables would end if placed from the cursor now. */
static uint64_t meta_end(oe_writer *w, uint64_t groups, uint32_t itb)
{
    uint64_t cur = w->next, g, p, n;
    for (g = 0; g < 2 * groups; g++) {
        oe_place(w, cur, 1, 1, &p, &n);
        cur = p + n;
    }
    for (g = 0; g < groups; g++) {
        oe_place(w, cur, itb, 1, &p, &n);
        cur = p + n;
    }
    return cur;
}

static int plan_layout(ctx *c, uint64_t min_inodes, layout *L)
{
    oe_writer *w = c->w;
    uint64_t groups, end = 0;
    int explicit = c->p->blocks != 0;

    groups = explicit ? div_up(c->p->blocks, OE_BLOCKS_PER_GROUP)
                      : div_up(w->next + c->p->free_blocks + 1, OE_BLOCKS_PER_GROUP);
    for (int round = 0; round < 64; round++) {
        uint64_t ipg = div_up(div_up(min_inodes, groups), 16) * 16, blocks;
        if (ipg > OE_BLOCKS_PER_GROUP) {
            if (explicit)
                return oe_fail(w, "too many inodes (%llu) for an image of this size",
                               (unsigned long long)min_inodes);
            groups = div_up(min_inodes, OE_BLOCKS_PER_GROUP);
            continue;
        }
        L->ipg = (uint32_t)ipg;
        L->itb = (uint32_t)(ipg * OE_INODE_SIZE / OE_BLOCK_SIZE);
        L->groups = groups;
        L->gdt_blocks = (uint32_t)div_up(groups * OE_DESC_SIZE, OE_BLOCK_SIZE);
        if (L->gdt_blocks > w->gdt_reserve)
            return oe_fail(w, "image larger than the maximum size it was opened for");
        end = meta_end(w, groups, L->itb);
        if (explicit) {
            blocks = c->p->blocks;
            if (!last_group_ok(w, blocks)) {
                blocks = (groups - 1) * OE_BLOCKS_PER_GROUP; /* drop a sliver, as mke2fs does */
                if (blocks > 0 && blocks != c->p->blocks) {
                    groups--;
                    if (groups == 0)
                        return oe_fail(w, "image size too small");
                    continue;
                }
            }
            if (end > blocks)
                return oe_fail(w, "content needs %llu blocks, more than the %llu blocks given",
                               (unsigned long long)end, (unsigned long long)blocks);
            L->blocks = blocks;
            return 0;
        }
        blocks = div_up(end + c->p->free_blocks, 256) * 256;
        if (blocks < groups * OE_BLOCKS_PER_GROUP - OE_BLOCKS_PER_GROUP + 1)
            blocks = groups * OE_BLOCKS_PER_GROUP - OE_BLOCKS_PER_GROUP + 1;
        while (!last_group_ok(w, blocks))
            blocks += 256;
        if (div_up(blocks, OE_BLOCKS_PER_GROUP) == groups) {
            L->blocks = blocks;
            if (blocks > w->max_blocks)
                return oe_fail(w, "image would exceed its maximum size of %llu blocks",
                               (unsigned long long)w->max_blocks);
            return 0;
        }
        groups = div_up(blocks, OE_BLOCKS_PER_GROUP);
    }
    return oe_fail(w, "no stable layout found");
}

/* ---- bitmaps, descriptors, superblocks --------------------------------- */

static void mark(uint8_t *bm, uint64_t from, uint64_t len)
{
    for (uint64_t b = from; b < from + len; b++)
        bm[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static void fill_super(ctx *c, uint8_t *s, const layout *L, uint64_t free_blocks,
                       uint64_t free_inodes, uint16_t group)
{
    const oe_commit_params *p = c->p;
    uint32_t t = p->timestamp < 0 ? 0 : p->timestamp > UINT32_MAX ? UINT32_MAX : (uint32_t)p->timestamp;
    uint32_t compat = 0x8 | 0x20, incompat = 0x2 | 0x40 | 0x80 | 0x200;
    uint32_t ro = 0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x400;

    if (p->journal_blocks)
        compat |= 0x4;
    memset(s, 0, 1024);
    put32(s + 0, (uint32_t)(L->groups * L->ipg));
    put32(s + 4, (uint32_t)L->blocks);
    put32(s + 12, (uint32_t)free_blocks);
    put32(s + 16, (uint32_t)free_inodes);
    put32(s + 20, 0);
    put32(s + 24, OE_LOG_BLOCK);
    put32(s + 28, OE_LOG_BLOCK);
    put32(s + 32, OE_BLOCKS_PER_GROUP);
    put32(s + 36, OE_BLOCKS_PER_GROUP);
    put32(s + 40, L->ipg);
    put32(s + 48, t);
    put16(s + 54, 0xFFFF);           /* max mount count: -1 */
    put16(s + 56, 0xEF53);
    put16(s + 58, 1);                /* clean */
    put16(s + 60, 1);                /* errors: continue */
    put32(s + 64, t);                /* last check */
    put32(s + 76, 1);                /* dynamic revision */
    put32(s + 84, OE_FIRST_INO);
    put16(s + 88, OE_INODE_SIZE);
    put16(s + 90, group);
    put32(s + 92, compat);
    put32(s + 96, incompat);
    put32(s + 100, ro);
    memcpy(s + 104, p->uuid, 16);
    memcpy(s + 120, p->label, 16);
    memcpy(s + 236, p->hash_seed, 16);
    s[252] = 1;                      /* half_md4 */
    put16(s + 254, OE_DESC_SIZE);
    put32(s + 256, 0x4 | 0x8);       /* user_xattr, acl */
    put32(s + 264, t);               /* mkfs time */
    if (p->journal_blocks) {
        const ino_out *j = &c->out[JOURNAL_INO];
        put32(s + 224, JOURNAL_INO);
        s[253] = 1;                  /* s_jnl_blocks holds a copy of the inode's map */
        memcpy(s + 268, j->iblock, 60);
        put32(s + 268 + 60, (uint32_t)(j->size >> 32));
        put32(s + 268 + 64, (uint32_t)j->size);
    }
    put32(s + 336, (uint32_t)(L->blocks >> 32));
    put32(s + 344, (uint32_t)(free_blocks >> 32));
    put16(s + 348, IBODY_START - 128);
    put16(s + 350, IBODY_START - 128);
    put32(s + 352, 0x1);             /* signed directory hash */
    s[372] = (uint8_t)p->log_groups_per_flex;
    s[373] = 1;                      /* crc32c */
    put32(s + 1020, oe_crc32c(0xFFFFFFFFu, s, 1020));
}

int oe_commit(oe_writer *w, const oe_commit_params *params,
              const oe_inode *inodes, uint32_t n_inodes,
              const oe_dirent *dirents, uint32_t n_dirents,
              const uint8_t *blob, uint64_t blob_len,
              oe_commit_result *result)
{
    ctx c;
    layout L = {0};
    uint64_t max_ino, k, g, jblock = 0, free_total = 0, free_inodes_total = 0;
    uint64_t *bb = NULL, *ib = NULL, *it = NULL;
    uint8_t *referenced = NULL, *bbm = NULL, *ibm = NULL, *gdt = NULL, *tab = NULL;
    uint32_t *dirs = NULL;
    uint64_t data_end;
    int rc = -1;

    memset(&c, 0, sizeof c);
    c.w = w;
    c.p = params;
    c.inodes = inodes;
    c.n_inodes = n_inodes;
    c.dirents = dirents;
    c.n_dirents = n_dirents;
    c.blob = blob;
    c.blob_len = blob_len;
    if (w->cur >= 0)
        return oe_fail(w, "a file is still open");
    if (n_inodes == 0 || (inodes[0].mode & S_IFMT) != S_IFDIR)
        return oe_fail(w, "record 0 must be the root directory");
    if (params->journal_blocks && (params->journal_blocks < 1024 || params->journal_blocks > (1u << 20)))
        return oe_fail(w, "journal of %u blocks out of range", params->journal_blocks);
    c.csum_seed = oe_crc32c(0xFFFFFFFFu, params->uuid, 16);
    for (int i = 0; i < 4; i++)
        c.hash_seed[i] = get32(params->hash_seed + 4 * i);
    max_ino = (uint64_t)n_inodes + 9;
    if (max_ino > UINT32_MAX - 16)
        return oe_fail(w, "too many inodes");
    data_end = w->next;

    c.out = calloc(max_ino + 1, sizeof *c.out);
    referenced = calloc(w->n_files + 1, 1);
    if (!c.out || !referenced) {
        oe_fail(w, "out of memory");
        goto out;
    }
    w->meta_mode = 1;
    if (params->journal_blocks && build_journal(&c, &jblock))
        goto out;
    for (k = 0; k < n_inodes; k++)
        if (build_inode(&c, (uint32_t)k, referenced))
            goto out;

    if (plan_layout(&c, params->min_inodes > max_ino ? params->min_inodes : max_ino, &L))
        goto out;
    bb = malloc(sizeof *bb * L.groups);
    ib = malloc(sizeof *ib * L.groups);
    it = malloc(sizeof *it * L.groups);
    if (!bb || !ib || !it) {
        oe_fail(w, "out of memory");
        goto out;
    }
    for (g = 0; g < L.groups; g++) {
        uint64_t n;
        if (oe_reserve_blocks(w, 1, 1, &bb[g], &n))
            goto out;
    }
    for (g = 0; g < L.groups; g++) {
        uint64_t n;
        if (oe_reserve_blocks(w, 1, 1, &ib[g], &n))
            goto out;
    }
    for (g = 0; g < L.groups; g++) {
        uint64_t n;
        if (oe_reserve_blocks(w, L.itb, 1, &it[g], &n))
            goto out;
    }
    if (w->next > L.blocks) {
        oe_fail(w, "internal: layout overran the image");
        goto out;
    }
    if (oe_flush(w))
        goto out;
    w->meta_mode = 0;
    if (params->journal_blocks && write_journal_super(&c, jblock))
        goto out;

    /* Inode tables: only the used prefix of each group is written. */
    dirs = calloc(L.groups, sizeof *dirs);
    tab = malloc((size_t)L.ipg * OE_INODE_SIZE);
    if (!dirs || !tab) {
        oe_fail(w, "out of memory");
        goto out;
    }
    for (g = 0; g < L.groups; g++) {
        uint64_t first = g * L.ipg + 1, last = first + L.ipg - 1, ino;
        if (first > max_ino)
            break;
        if (last > max_ino)
            last = max_ino;
        for (ino = first; ino <= last; ino++) {
            const oe_inode *in = NULL;
            if (ino == 2)
                in = &inodes[0];
            else if (ino >= OE_FIRST_INO)
                in = &inodes[ino - 10];
            if (in && (in->mode & S_IFMT) == S_IFDIR)
                dirs[g]++;
            if (fill_inode(&c, tab + (ino - first) * OE_INODE_SIZE, (uint32_t)ino, in))
                goto out;
        }
        if (oe_pwrite_all(w, tab, (last - first + 1) * OE_INODE_SIZE, it[g] * OE_BLOCK_SIZE))
            goto out;
    }

    /* Block bitmap from what is really in use. */
    bbm = calloc(L.groups, OE_BLOCK_SIZE);
    ibm = calloc(L.groups, OE_BLOCK_SIZE);
    gdt = calloc(L.gdt_blocks, OE_BLOCK_SIZE);
    if (!bbm || !ibm || !gdt) {
        oe_fail(w, "out of memory");
        goto out;
    }
    for (g = 0; g < L.groups; g++)
        if (oe_is_backup_group(g))
            mark(bbm, g * OE_BLOCKS_PER_GROUP, 1 + L.gdt_blocks);
    for (k = 0; k < w->n_files; k++) {
        const oe_file *f = &w->files[k];
        for (uint64_t e = 0; e < f->ext_count; e++) {
            const oe_extent *x = &w->ext[f->ext_first + e];
            if (referenced[k])
                mark(bbm, x->pblk, x->len);
            else if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)(x->pblk * OE_BLOCK_SIZE), (off_t)x->len * OE_BLOCK_SIZE) &&
                     errno != EOPNOTSUPP) {
                oe_fail(w, "freeing unused data: %s", strerror(errno));
                goto out;
            }
        }
    }
    for (k = 0; k < w->n_runs; k++)
        mark(bbm, w->runs[k].pblk, w->runs[k].len);
    for (uint64_t b = L.blocks; b < L.groups * OE_BLOCKS_PER_GROUP; b++)
        bbm[b >> 3] |= (uint8_t)(1u << (b & 7));
    for (uint64_t ino = 1; ino <= max_ino; ino++)
        ibm[((ino - 1) / L.ipg) * OE_BLOCK_SIZE + ((ino - 1) % L.ipg) / 8] |= (uint8_t)(1u << ((ino - 1) % L.ipg % 8));
    for (g = 0; g < L.groups; g++)
        for (uint32_t bit = L.ipg; bit < OE_BLOCK_SIZE * 8; bit++)
            ibm[g * OE_BLOCK_SIZE + bit / 8] |= (uint8_t)(1u << (bit % 8));

    for (g = 0; g < L.groups; g++) {
        uint8_t *d = gdt + g * OE_DESC_SIZE, gb[4];
        const uint8_t *bm = bbm + g * OE_BLOCK_SIZE;
        uint64_t used_ino = 0, first = g * L.ipg + 1;
        uint32_t free_b = 0, bcs, ics, dcs, flags = 0x4; /* inode table zeroed */
        uint64_t gblocks = g + 1 == L.groups ? L.blocks - g * OE_BLOCKS_PER_GROUP : OE_BLOCKS_PER_GROUP;
        for (uint64_t b = 0; b < gblocks; b++)
            if (!(bm[b >> 3] & (1u << (b & 7))))
                free_b++;
        if (max_ino >= first)
            used_ino = max_ino - first + 1 > L.ipg ? L.ipg : max_ino - first + 1;
        if (!used_ino)
            flags |= 0x1; /* inode bitmap and table unused */
        free_total += free_b;
        free_inodes_total += L.ipg - used_ino;
        bcs = oe_crc32c(c.csum_seed, bm, OE_BLOCKS_PER_GROUP / 8);
        ics = oe_crc32c(c.csum_seed, ibm + g * OE_BLOCK_SIZE, L.ipg / 8);
        put32(d + 0, (uint32_t)bb[g]);
        put32(d + 4, (uint32_t)ib[g]);
        put32(d + 8, (uint32_t)it[g]);
        put16(d + 12, free_b & 0xffff);
        put16(d + 14, (uint32_t)(L.ipg - used_ino) & 0xffff);
        put16(d + 16, dirs[g] & 0xffff);
        put16(d + 18, flags);
        put16(d + 24, bcs & 0xffff);
        put16(d + 26, ics & 0xffff);
        put16(d + 28, (uint32_t)(L.ipg - used_ino) & 0xffff);
        put32(d + 32, (uint32_t)(bb[g] >> 32));
        put32(d + 36, (uint32_t)(ib[g] >> 32));
        put32(d + 40, (uint32_t)(it[g] >> 32));
        put16(d + 44, free_b >> 16);
        put16(d + 46, (uint32_t)(L.ipg - used_ino) >> 16);
        put16(d + 48, dirs[g] >> 16);
        put16(d + 50, (uint32_t)(L.ipg - used_ino) >> 16);
        put16(d + 56, bcs >> 16);
        put16(d + 58, ics >> 16);
        put32(gb, (uint32_t)g);
        dcs = oe_crc32c(c.csum_seed, gb, 4);
        dcs = oe_crc32c(dcs, d, OE_DESC_SIZE);
        put16(d + 30, dcs & 0xffff);
        if (oe_pwrite_all(w, bm, OE_BLOCK_SIZE, bb[g] * OE_BLOCK_SIZE) ||
            oe_pwrite_all(w, ibm + g * OE_BLOCK_SIZE, OE_BLOCK_SIZE, ib[g] * OE_BLOCK_SIZE))
            goto out;
    }
    for (g = 0; g < L.groups; g++) {
        uint8_t sb[1024];
        if (!oe_is_backup_group(g))
            continue;
        fill_super(&c, sb, &L, free_total, free_inodes_total, (uint16_t)g);
        if (oe_pwrite_all(w, sb, 1024, g ? g * OE_BLOCKS_PER_GROUP * OE_BLOCK_SIZE : 1024) ||
            oe_pwrite_all(w, gdt, (uint64_t)L.gdt_blocks * OE_BLOCK_SIZE,
                          (g * OE_BLOCKS_PER_GROUP + 1) * OE_BLOCK_SIZE))
            goto out;
    }
    if (!w->out_is_device && ftruncate(w->fd, (off_t)(L.blocks * OE_BLOCK_SIZE))) {
        oe_fail(w, "sizing the image: %s", strerror(errno));
        goto out;
    }
    result->blocks = L.blocks;
    result->free_blocks = free_total;
    result->inodes = L.groups * L.ipg;
    result->free_inodes = free_inodes_total;
    result->groups = L.groups;
    result->data_blocks = data_end;
    result->metadata_blocks = L.blocks - free_total;
    rc = 0;
out:
    w->meta_mode = 0;
    free(c.out);
    free(c.ibodies);
    free(c.tmp);
    free(referenced);
    free(bb);
    free(ib);
    free(it);
    free(bbm);
    free(ibm);
    free(gdt);
    free(tab);
    free(dirs);
    return rc;
}
