/* Inodes: pass A builds each record's own blocks (directory blocks, slow
 * symlink targets, xattr blocks, extent tree blocks) and notes what its
 * inode will say; then the inode tables are filled and written. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <sys/stat.h>
#include "commit.h"
#include "crc32c.h"

#define INODE_SET(b, field, v) EXT4_SET(ext4_inode, b, field, v)

uint32_t oe_ino_seed(const oe_ctx *c, uint32_t ino)
{
    uint8_t b[4];
    uint32_t s;
    put32(b, ino);
    s = oe_crc32c(c->csum_seed, b, 4);
    put32(b, 0); /* i_generation */
    return oe_crc32c(s, b, 4);
}

static int check_range(oe_ctx *c, uint64_t off, uint64_t len, const char *what, uint32_t k)
{
    if (off > c->blob_len || len > c->blob_len - off)
        return oe_fail(c->w, "record %u: %s outside the blob", k, what);
    return 0;
}

/* What a regular file's inode says of its data: no blocks are emitted for
 * a file of at most four extents, so this is also how its inode is
 * rebuilt when the table is written. */
static int describe_regular(oe_ctx *c, uint32_t k, const oe_file *f, oe_ino_out *o)
{
    oe_extent one;
    const oe_extent *ext;
    uint32_t count;

    o->size = c->inodes[k].size;
    o->flags = EXT4_EXTENTS_FL;
    if (!f) {
        oe_put_empty_extent_root(o->iblock);
        return 0;
    }
    ext = oe_file_extents(c->w, f, &one, &count);
    for (uint32_t e = 0; e < count; e++)
        o->blocks += ext[e].len;
    return oe_build_extent_tree(c, oe_rec_ino(k), ext, count, o);
}

static int build_regular(oe_ctx *c, uint32_t k, oe_ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    const oe_file *f;
    const oe_extent *last;
    oe_extent one;
    uint32_t count;

    int64_t file = oe_rec_file(in);

    if (file < 0)
        return describe_regular(c, k, NULL, o);
    if ((uint64_t)file >= c->w->n_files)
        return oe_fail(c->w, "record %u: bad file handle", k);
    f = &c->w->files[file];
    if (f->open || f->discarded || c->referenced[file])
        return oe_fail(c->w, "record %u: file data is open, discarded or used twice", k);
    c->referenced[file] = 1;
    last = oe_file_extents(c->w, f, &one, &count);
    last = count ? last + count - 1 : NULL;
    if (last && ((uint64_t)last->lblk + last->len - 1) * OE_BLOCK_SIZE >= in->size)
        return oe_fail(c->w, "record %u: size %llu is smaller than its data", k,
                       (unsigned long long)in->size);
    return describe_regular(c, k, f, o);
}

static int check_dirents(oe_ctx *c, uint32_t k)
{
    const oe_inode *in = &c->inodes[k];
    uint64_t first = oe_rec_dirent_first(in);
    uint32_t count = oe_rec_dirent_count(in);
    if (in->parent >= c->n_inodes || first > c->n_dirents || count > c->n_dirents - first)
        return oe_fail(c->w, "record %u: directory range out of bounds", k);
    for (uint32_t i = 0; i < count; i++) {
        const oe_dirent *d = &c->dirents[first + i];
        const uint8_t *name;
        if (d->child >= c->n_inodes || d->child == 0 || d->name_len == 0 ||
            d->name_len > EXT4_NAME_LEN || check_range(c, d->name_off, d->name_len, "name", k))
            return oe_fail(c->w, "record %u: bad directory entry %u", k, i);
        name = c->blob + d->name_off;
        if (memchr(name, '/', d->name_len) || memchr(name, 0, d->name_len))
            return oe_fail(c->w, "record %u: name with '/' or NUL", k);
    }
    return 0;
}

/* Targets shorter than i_block live in it ("fast"); longer ones in a block. */
static int build_symlink(oe_ctx *c, uint32_t k, oe_ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    uint32_t len = oe_rec_target_len(in);
    uint8_t *b;

    o->size = len;
    if (len == 0 || len >= OE_BLOCK_SIZE)
        return oe_fail(c->w, "record %u: symlink target of %u bytes", k, len);
    if (check_range(c, oe_rec_target_off(in), len, "symlink target", k))
        return -1;
    if (len < OE_I_BLOCK_BYTES) {
        memcpy(o->iblock, c->blob + oe_rec_target_off(in), len);
        return 0;
    }
    c->n_tmp = 0;
    if (oe_emit_owned(c, 0, &b))
        return -1;
    memcpy(b, c->blob + oe_rec_target_off(in), len);
    o->flags = EXT4_EXTENTS_FL;
    o->blocks = 1;
    return oe_build_extent_tree(c, oe_rec_ino(k), c->tmp, c->n_tmp, o);
}

static int build_device(oe_ctx *c, uint32_t k, oe_ino_out *o)
{
    const oe_inode *in = &c->inodes[k];
    uint32_t major = oe_rec_rdev_major(in), minor = oe_rec_rdev_minor(in);

    if (major <= EXT4_OLD_DEV_MAX && minor <= EXT4_OLD_DEV_MAX) {
        put32(o->iblock, (major << 8) | minor);
        return 0;
    }
    if (major > EXT4_NEW_DEV_MAJOR_MAX || minor > EXT4_NEW_DEV_MINOR_MAX)
        return oe_fail(c->w, "record %u: device number out of range", k);
    /* The new encoding: minor's low byte, major, then minor's high bits. */
    put32(o->iblock + 4, (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12));
    return 0;
}

/* Whether a record's inode can be rebuilt from the record alone, once pass
 * A has checked it: it owns no blocks (xattrs are checked apart). */
static int rebuildable(const oe_ctx *c, const oe_inode *in)
{
    switch (in->mode & S_IFMT) {
    case S_IFREG:
        return oe_rec_file(in) < 0 || oe_file_extent_count(&c->w->files[oe_rec_file(in)]) <= 4;
    case S_IFLNK:
        return oe_rec_target_len(in) < OE_I_BLOCK_BYTES;
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK:
        return 1;
    default:
        return 0;
    }
}

/* Builds again, without emitting anything, what pass A found for a
 * rebuildable record (or nothing for a reserved inode). */
static int rebuild_out(oe_ctx *c, uint32_t ino, const oe_inode *in, oe_ino_out *o)
{
    uint32_t k = (uint32_t)(in ? in - c->inodes : 0);

    memset(o, 0, sizeof *o);
    if (!in)
        return 0;
    switch (in->mode & S_IFMT) {
    case S_IFREG:
        return describe_regular(c, k, oe_rec_file(in) < 0 ? NULL : &c->w->files[oe_rec_file(in)],
                                o);
    case S_IFLNK:
        o->size = oe_rec_target_len(in);
        memcpy(o->iblock, c->blob + oe_rec_target_off(in), oe_rec_target_len(in));
        return 0;
    case S_IFCHR:
    case S_IFBLK:
        return build_device(c, k, o);
    case S_IFIFO:
    case S_IFSOCK:
        return 0;
    default:
        return oe_fail(c->w, "inode %u: no record of its blocks", ino);
    }
}

int oe_keep_out(oe_ctx *c, uint32_t ino, const oe_ino_out *o)
{
    if (ino > c->max_ino || c->n_outs >= UINT32_MAX - 1)
        return oe_fail(c->w, "inode %u: out of range", ino);
    if (oe_grow(c->w, (void **)&c->outs, &c->cap_outs, c->n_outs + 1, sizeof *c->outs))
        return -1;
    c->outs[c->n_outs] = *o;
    c->out_slot[ino] = (uint32_t)++c->n_outs;
    return 0;
}

int oe_build_inode(oe_ctx *c, uint32_t k)
{
    const oe_inode *in = &c->inodes[k];
    uint32_t type = in->mode & S_IFMT;
    oe_ino_out o;
    int rc;

    memset(&o, 0, sizeof o);
    if (check_range(c, in->xattr_off, in->xattr_len, "xattrs", k))
        return -1;
    if (in->nlink == 0 || (in->nlink > EXT4_LINK_MAX && type != S_IFDIR))
        return oe_fail(c->w, "record %u: link count %u out of range", k, in->nlink);
    switch (type) {
    case S_IFREG:
        rc = build_regular(c, k, &o);
        break;
    case S_IFDIR:
        rc = check_dirents(c, k) || oe_build_dir(c, k, &o) ? -1 : 0;
        break;
    case S_IFLNK:
        rc = build_symlink(c, k, &o);
        break;
    case S_IFCHR:
    case S_IFBLK:
        rc = build_device(c, k, &o);
        break;
    case S_IFIFO:
    case S_IFSOCK:
        rc = 0;
        break;
    default:
        return oe_fail(c->w, "record %u: unknown file type %o", k, type);
    }
    if (rc)
        return -1;
    if (in->xattr_len && oe_build_xattrs(c, k, &o))
        return -1;
    if (o.acl || o.ibody || !rebuildable(c, in))
        return oe_keep_out(c, oe_rec_ino(k), &o);
    return 0;
}

/* Bounds come first so the arithmetic cannot overflow. */
static int put_time(uint8_t *b, size_t off, size_t extra_off, int64_t sec, uint32_t nsec)
{
    uint32_t lo;
    int64_t epoch;
    if (sec < INT32_MIN || sec > OE_MAX_TIME || nsec > 999999999u)
        return -1;
    lo = (uint32_t)sec;
    epoch = (sec - (int64_t)(int32_t)lo) >> 32;
    put32(b + off, lo);
    put32(b + extra_off, (nsec << EXT4_EPOCH_BITS) | (uint32_t)epoch);
    return 0;
}

#define PUT_TIME(b, name, sec, nsec) \
    put_time(b, offsetof(struct ext4_inode, i_##name), offsetof(struct ext4_inode, i_##name##_extra), \
             sec, nsec)

static int fill_inode(oe_ctx *c, uint8_t *b, uint32_t ino, const oe_inode *in)
{
    oe_ino_out rebuilt;
    const oe_ino_out *o = &rebuilt;
    uint64_t sectors;
    uint32_t cs;
    uint8_t nb[8];

    if (c->out_slot[ino])
        o = &c->outs[c->out_slot[ino] - 1];
    else if (rebuild_out(c, ino, in, &rebuilt))
        return -1;
    sectors = o->blocks * (OE_BLOCK_SIZE / 512);
    memset(b, 0, OE_INODE_SIZE);
    INODE_SET(b, i_extra_isize, OE_EXTRA_ISIZE);
    if (in) {
        uint32_t nlink = in->nlink;
        if ((in->mode & S_IFMT) == S_IFDIR && nlink > EXT4_LINK_MAX)
            nlink = 1; /* dir_nlink: too many subdirectories to count */
        INODE_SET(b, i_mode, in->mode & 0xffff);
        INODE_SET(b, i_uid, in->uid & 0xffff);
        INODE_SET(b, l_i_uid_high, in->uid >> 16);
        INODE_SET(b, i_gid, in->gid & 0xffff);
        INODE_SET(b, l_i_gid_high, in->gid >> 16);
        INODE_SET(b, i_links_count, nlink);
        if (PUT_TIME(b, atime, in->atime_sec, in->atime_nsec) ||
            PUT_TIME(b, ctime, in->ctime_sec, in->ctime_nsec) ||
            PUT_TIME(b, mtime, in->mtime_sec, in->mtime_nsec) ||
            PUT_TIME(b, crtime, in->mtime_sec, in->mtime_nsec))
            return oe_fail(c->w, "inode %u: timestamp outside ext4's range (1901-2446)", ino);
    } else if (ino == EXT4_JOURNAL_INO && c->p->journal_blocks) {
        int64_t t = c->p->timestamp;
        INODE_SET(b, i_mode, S_IFREG | 0600);
        INODE_SET(b, i_links_count, 1);
        if (PUT_TIME(b, atime, t, 0) || PUT_TIME(b, ctime, t, 0) || PUT_TIME(b, mtime, t, 0) ||
            PUT_TIME(b, crtime, t, 0))
            return oe_fail(c->w, "journal: timestamp %lld outside ext4's range (1901-2446)",
                           (long long)t);
    }
    INODE_SET(b, i_size_lo, (uint32_t)o->size);
    INODE_SET(b, i_size_high, (uint32_t)(o->size >> 32));
    INODE_SET(b, i_blocks_lo, (uint32_t)sectors);
    INODE_SET(b, l_i_blocks_high, (uint16_t)(sectors >> 32));
    INODE_SET(b, i_flags, o->flags);
    memcpy(EXT4_PTR(ext4_inode, b, i_block), o->iblock, OE_I_BLOCK_BYTES);
    INODE_SET(b, i_file_acl_lo, (uint32_t)o->acl);
    INODE_SET(b, l_i_file_acl_high, (uint16_t)(o->acl >> 32));
    if (o->ibody)
        memcpy(b + OE_IBODY_START, c->ibodies + (uint64_t)(o->ibody - 1) * OE_IBODY_SIZE,
               OE_IBODY_SIZE);
    /* The checksum covers inode number, generation, then the inode with
     * both checksum fields zero (they are, as the buffer was cleared). */
    put32(nb, ino);
    cs = oe_crc32c(c->csum_seed, nb, 4);
    put32(nb, 0);
    cs = oe_crc32c(cs, nb, 4);
    cs = oe_crc32c(cs, b, OE_INODE_SIZE);
    INODE_SET(b, l_i_checksum_lo, cs & 0xffff);
    INODE_SET(b, i_checksum_hi, cs >> 16);
    return 0;
}

/* Only the used prefix of each group's table is written; the rest is a
 * hole, which reads as zeroes (bg_flags says so). */
int oe_write_inode_tables(oe_ctx *c, const oe_layout *L)
{
    uint8_t *tab = malloc((size_t)L->ipg * OE_INODE_SIZE);
    int rc = -1;

    if (!tab)
        return oe_fail(c->w, "out of memory");
    for (uint64_t g = 0; g < L->groups; g++) {
        uint64_t first = g * L->ipg + 1, last = first + L->ipg - 1, ino;
        if (first > c->max_ino)
            break;
        if (last > c->max_ino)
            last = c->max_ino;
        for (ino = first; ino <= last; ino++) {
            const oe_inode *in = oe_ino_rec(c, ino);
            if (in && (in->mode & S_IFMT) == S_IFDIR)
                c->dirs[g]++;
            if (fill_inode(c, tab + (ino - first) * OE_INODE_SIZE, (uint32_t)ino, in))
                goto out;
        }
        if (oe_pwrite_all(c->w, tab, (last - first + 1) * OE_INODE_SIZE,
                          L->inode_table[g] * OE_BLOCK_SIZE))
            goto out;
    }
    rc = 0;
out:
    free(tab);
    return rc;
}
