/* Directories: one linear block when the entries fit, otherwise an htree
 * (entries sorted by name hash into leaves, indexed from the root block and,
 * for very large directories, from one level of interior nodes). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <sys/stat.h>
#include "commit.h"
#include "crc32c.h"
#include "dirhash.h"

#define TAIL_SIZE ((uint32_t)sizeof(struct ext4_dir_entry_tail))
#define LEAF_SPACE (OE_BLOCK_SIZE - TAIL_SIZE)   /* for entries, before the tail */
#define DIRENT_HEAD ((uint32_t)offsetof(struct ext4_dir_entry_2, name))
#define DOT_LEN 12u                              /* "." and ".." records */
#define ROOT_INDEX ((uint32_t)offsetof(struct dx_root, entries))
#define NODE_INDEX ((uint32_t)offsetof(struct dx_node, entries))
#define DX_ENTRY ((uint32_t)sizeof(struct dx_entry))
#define DX_ROOT_LIMIT ((OE_BLOCK_SIZE - ROOT_INDEX - (uint32_t)sizeof(struct dx_tail)) / DX_ENTRY)
#define DX_NODE_LIMIT ((OE_BLOCK_SIZE - NODE_INDEX - (uint32_t)sizeof(struct dx_tail)) / DX_ENTRY)
_Static_assert(DIRENT_HEAD == 8 && DOT_LEN == ((DIRENT_HEAD + 2 + EXT4_DIR_ROUND) & ~EXT4_DIR_ROUND),
               "dot entries");

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

static uint8_t file_type(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return EXT4_FT_REG_FILE;
    case S_IFDIR: return EXT4_FT_DIR;
    case S_IFCHR: return EXT4_FT_CHRDEV;
    case S_IFBLK: return EXT4_FT_BLKDEV;
    case S_IFIFO: return EXT4_FT_FIFO;
    case S_IFSOCK: return EXT4_FT_SOCK;
    case S_IFLNK: return EXT4_FT_SYMLINK;
    default: return EXT4_FT_UNKNOWN;
    }
}

static uint32_t rec_len(uint32_t name_len)
{
    return (DIRENT_HEAD + name_len + EXT4_DIR_ROUND) & ~EXT4_DIR_ROUND;
}

static void put_dirent(uint8_t *p, uint32_t ino, uint32_t rlen, const uint8_t *name,
                       uint32_t name_len, uint8_t type)
{
    EXT4_SET(ext4_dir_entry_2, p, inode, ino);
    EXT4_SET(ext4_dir_entry_2, p, rec_len, rlen);
    EXT4_SET(ext4_dir_entry_2, p, name_len, name_len);
    EXT4_SET(ext4_dir_entry_2, p, file_type, type);
    if (name_len) /* an empty blob may be a null pointer */
        memcpy(EXT4_PTR(ext4_dir_entry_2, p, name), name, name_len);
}

static void seal_leaf(uint8_t *b, uint32_t seed)
{
    uint8_t *t = b + LEAF_SPACE;
    EXT4_SET(ext4_dir_entry_tail, t, det_reserved_zero1, 0);
    EXT4_SET(ext4_dir_entry_tail, t, det_rec_len, TAIL_SIZE);
    EXT4_SET(ext4_dir_entry_tail, t, det_reserved_zero2, 0);
    EXT4_SET(ext4_dir_entry_tail, t, det_reserved_ft, EXT4_FT_DIR_CSUM);
    EXT4_SET(ext4_dir_entry_tail, t, det_checksum, oe_crc32c(seed, b, LEAF_SPACE));
}

/* index: the dx_countlimit and entries of a root or node. */
static void put_countlimit(uint8_t *index, uint32_t limit, uint32_t count)
{
    EXT4_SET(dx_countlimit, index, limit, limit);
    EXT4_SET(dx_countlimit, index, count, count);
}

static void put_dx_entry(uint8_t *index, uint32_t i, uint32_t hash, uint32_t block)
{
    uint8_t *e = index + i * DX_ENTRY;
    if (i) /* entry 0's hash is the count and limit */
        EXT4_SET(dx_entry, e, hash, hash);
    EXT4_SET(dx_entry, e, block, block);
}

static void seal_dx(uint8_t *b, uint32_t index_offset, uint32_t limit, uint32_t count, uint32_t seed)
{
    static const uint8_t zero_tail[sizeof(struct dx_tail)] = {0};
    uint8_t *tail = b + index_offset + limit * DX_ENTRY;
    uint32_t cs = oe_crc32c(seed, b, index_offset + count * DX_ENTRY);
    cs = oe_crc32c(cs, zero_tail, sizeof zero_tail);
    EXT4_SET(dx_tail, tail, dt_reserved, 0);
    EXT4_SET(dx_tail, tail, dt_checksum, cs);
}

static const uint8_t *dirent_name(const oe_ctx *c, const oe_dirent *d) { return c->blob + d->name_off; }

/* Writes entries [from, to) of the order into one leaf block. */
static void fill_leaf(oe_ctx *c, uint8_t *b, const oe_dirent *base, const uint32_t *order,
                      uint32_t from, uint32_t to, uint32_t pos, uint32_t seed)
{
    uint32_t i;
    for (i = from; i < to; i++) {
        const oe_dirent *d = &base[order ? order[i] : i];
        uint32_t r = i + 1 == to ? LEAF_SPACE - pos : rec_len(d->name_len);
        put_dirent(b + pos, oe_rec_ino(d->child), r, dirent_name(c, d), d->name_len,
                   file_type(c->inodes[d->child].mode));
        pos += r;
    }
    if (from == to && pos < LEAF_SPACE) /* an empty block: one unused entry */
        put_dirent(b + pos, 0, LEAF_SPACE - pos, NULL, 0, EXT4_FT_UNKNOWN);
    seal_leaf(b, seed);
}

static void put_dots(uint8_t *b, uint32_t ino, uint32_t parent, uint32_t dotdot_len)
{
    put_dirent(b, ino, DOT_LEN, (const uint8_t *)".", 1, EXT4_FT_DIR);
    put_dirent(b + DOT_LEN, parent, dotdot_len, (const uint8_t *)"..", 2, EXT4_FT_DIR);
}

static int build_linear(oe_ctx *c, const oe_inode *in, uint32_t ino, uint32_t seed,
                        uint32_t *lblk)
{
    const oe_dirent *base = c->dirents + oe_rec_dirent_first(in);
    uint32_t n = oe_rec_dirent_count(in), blocks = in->min_blocks > 1 ? in->min_blocks : 1;
    uint8_t *b;

    if (oe_emit_owned(c, (*lblk)++, &b))
        return -1;
    put_dots(b, ino, oe_rec_ino(in->parent), n ? DOT_LEN : LEAF_SPACE - DOT_LEN);
    if (n)
        fill_leaf(c, b, base, NULL, 0, n, 2 * DOT_LEN, seed);
    else
        seal_leaf(b, seed);
    while (*lblk < blocks) {
        if (oe_emit_owned(c, (*lblk)++, &b))
            return -1;
        fill_leaf(c, b, base, NULL, 0, 0, 0, seed);
    }
    return 0;
}

static int build_htree(oe_ctx *c, const oe_inode *in, uint32_t ino, uint32_t seed,
                       uint32_t *lblk)
{
    const oe_dirent *base = c->dirents + oe_rec_dirent_first(in);
    uint32_t n = oe_rec_dirent_count(in), i, leaves = 0, nodes = 0;
    hashed *h = malloc(sizeof *h * n);
    uint32_t *order = malloc(sizeof *order * n);
    uint32_t *starts = malloc(sizeof *starts * (n + 1));
    uint32_t *start_hash = malloc(sizeof *start_hash * (n + 1));
    uint8_t *b;
    int rc = -1;

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
            if (used + r > LEAF_SPACE) {
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
        nodes = oe_div_up(leaves, DX_NODE_LIMIT);
        if (nodes > DX_ROOT_LIMIT) {
            oe_fail(c->w, "directory with %u entries is too large", n);
            goto out;
        }
    }
    if (oe_emit_owned(c, (*lblk)++, &b))
        goto out;
    /* The root: ".." spans the rest of the block, hiding the index from
     * readers that do not know htrees. */
    put_dots(b, ino, oe_rec_ino(in->parent), OE_BLOCK_SIZE - DOT_LEN);
    {
        uint8_t *info = EXT4_PTR(dx_root, b, info);
        uint32_t count = nodes ? nodes : leaves;
        EXT4_SET(dx_root_info, info, reserved_zero, 0);
        EXT4_SET(dx_root_info, info, hash_version, DX_HASH_HALF_MD4);
        EXT4_SET(dx_root_info, info, info_length, sizeof(struct dx_root_info));
        EXT4_SET(dx_root_info, info, indirect_levels, nodes ? 1 : 0);
        EXT4_SET(dx_root_info, info, unused_flags, 0);
        put_countlimit(b + ROOT_INDEX, DX_ROOT_LIMIT, count);
        /* Nodes, or leaves when there are none, follow the root. */
        for (i = 0; i < count; i++)
            put_dx_entry(b + ROOT_INDEX, i, start_hash[nodes ? i * DX_NODE_LIMIT : i], 1 + i);
        seal_dx(b, ROOT_INDEX, DX_ROOT_LIMIT, count, seed);
    }
    for (i = 0; i < nodes; i++) {
        uint32_t first = i * DX_NODE_LIMIT, j;
        uint32_t cnt = leaves - first < DX_NODE_LIMIT ? leaves - first : DX_NODE_LIMIT;
        if (oe_emit_owned(c, (*lblk)++, &b))
            goto out;
        EXT4_SET(fake_dirent, b, inode, 0);
        EXT4_SET(fake_dirent, b, rec_len, OE_BLOCK_SIZE);
        put_countlimit(b + NODE_INDEX, DX_NODE_LIMIT, cnt);
        for (j = 0; j < cnt; j++)
            put_dx_entry(b + NODE_INDEX, j, start_hash[first + j], 1 + nodes + first + j);
        seal_dx(b, NODE_INDEX, DX_NODE_LIMIT, cnt, seed);
    }
    for (i = 0; i < leaves; i++) {
        if (oe_emit_owned(c, (*lblk)++, &b))
            goto out;
        fill_leaf(c, b, base, order, starts[i], starts[i + 1], 0, seed);
    }
    rc = 0;
out:
    free(h);
    free(order);
    free(starts);
    free(start_hash);
    return rc;
}

int oe_build_dir(oe_ctx *c, uint32_t k, oe_ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    const oe_dirent *base = c->dirents + oe_rec_dirent_first(in);
    uint32_t ino = oe_rec_ino(k), seed = oe_ino_seed(c, ino), total = 2 * DOT_LEN, lblk = 0, i;

    c->n_tmp = 0;
    for (i = 0; i < oe_rec_dirent_count(in); i++)
        total += rec_len(base[i].name_len);
    if (total <= LEAF_SPACE) {
        if (build_linear(c, in, ino, seed, &lblk))
            return -1;
    } else {
        if (build_htree(c, in, ino, seed, &lblk))
            return -1;
        o->flags |= EXT4_INDEX_FL;
    }
    o->flags |= EXT4_EXTENTS_FL;
    o->size = (uint64_t)lblk * OE_BLOCK_SIZE;
    o->blocks += lblk;
    return oe_build_extent_tree(c, ino, c->tmp, c->n_tmp, o);
}
