/* Block and inode bitmaps, and the group descriptors that count them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include "commit.h"
#include "crc32c.h"
#include "verity_hooks.h"

#define GD_SET(d, field, v) EXT4_SET(ext4_group_desc, d, field, v)

static void mark(uint8_t *bm, uint64_t from, uint64_t len)
{
    for (uint64_t b = from; b < from + len; b++)
        bm[b >> 3] |= (uint8_t)(1u << (b & 7));
}

/* Punches `len` blocks from `pblk` out of the image file: they hold data
 * no inode kept.  A file system that cannot punch keeps the bytes, which
 * nothing references. */
static int punch(oe_writer *w, uint64_t pblk, uint64_t len)
{
    if (!len)
        return 0;
    if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(pblk * OE_BLOCK_SIZE),
                  (off_t)(len * OE_BLOCK_SIZE)) == 0)
        oe_verity_zeroed(w, pblk, len);
    else if (errno != EOPNOTSUPP)
        return oe_fail(w, "freeing unused data: %s", strerror(errno));
    return 0;
}

/* One bitmap of OE_BLOCKS_PER_GROUP bits a group, all groups in a row, so
 * a block number is its bit number. */
static int fill_block_bitmaps(oe_ctx *c, const oe_layout *L, uint8_t *bbm)
{
    oe_writer *w = c->w;
    uint64_t g, k, hole = 0, hole_len = 0;

    for (g = 0; g < L->groups; g++)
        if (oe_is_backup_group(g))
            mark(bbm, g * OE_BLOCKS_PER_GROUP, 1 + L->gdt_blocks);
    /* Data no inode kept (a later layer deleted or replaced it) is freed
     * and punched out of the file.  Files are numbered in the order their
     * data was written, so what a layer deleted together (a directory, a
     * package) usually lies together: one call for each run of it, as a
     * punch costs tens of microseconds on a disk mounted with discard. */
    for (k = 0; k < w->n_files; k++) {
        oe_extent one;
        uint32_t count;
        const oe_extent *ext = oe_file_extents(w, &w->files[k], &one, &count);
        for (uint32_t e = 0; e < count; e++) {
            const oe_extent *x = &ext[e];
            if (c->referenced[k]) {
                mark(bbm, x->pblk, x->len);
            } else if (hole_len && hole + hole_len == x->pblk) {
                hole_len += x->len;
            } else {
                if (punch(w, hole, hole_len))
                    return -1;
                hole = x->pblk;
                hole_len = x->len;
            }
        }
    }
    if (punch(w, hole, hole_len))
        return -1;
    for (k = 0; k < w->n_runs; k++)
        mark(bbm, w->runs[k].pblk, w->runs[k].len);
    /* The last group's bits past the end of the image are set. */
    mark(bbm, L->blocks, L->groups * OE_BLOCKS_PER_GROUP - L->blocks);
    return 0;
}

/* Inodes 1..max_ino are in use; the bits past inodes_per_group are set. */
static void fill_inode_bitmaps(const oe_ctx *c, const oe_layout *L, uint8_t *ibm)
{
    for (uint64_t ino = 1; ino <= c->max_ino; ino++) {
        uint64_t g = (ino - 1) / L->ipg, bit = (ino - 1) % L->ipg;
        ibm[g * OE_BLOCK_SIZE + bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
    for (uint64_t g = 0; g < L->groups; g++)
        for (uint32_t bit = L->ipg; bit < OE_BLOCK_SIZE * 8; bit++)
            ibm[g * OE_BLOCK_SIZE + bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static void fill_desc(const oe_ctx *c, const oe_layout *L, uint64_t g, uint8_t *d,
                      uint32_t free_blocks, uint32_t free_inodes, uint32_t bcs, uint32_t ics)
{
    uint32_t flags = EXT4_BG_INODE_ZEROED, dcs;
    uint8_t gb[4];

    if (free_inodes == L->ipg)
        flags |= EXT4_BG_INODE_UNINIT;
    GD_SET(d, bg_block_bitmap_lo, (uint32_t)L->block_bitmap[g]);
    GD_SET(d, bg_inode_bitmap_lo, (uint32_t)L->inode_bitmap[g]);
    GD_SET(d, bg_inode_table_lo, (uint32_t)L->inode_table[g]);
    GD_SET(d, bg_free_blocks_count_lo, free_blocks & 0xffff);
    GD_SET(d, bg_free_inodes_count_lo, free_inodes & 0xffff);
    GD_SET(d, bg_used_dirs_count_lo, c->dirs[g] & 0xffff);
    GD_SET(d, bg_flags, flags);
    GD_SET(d, bg_block_bitmap_csum_lo, bcs & 0xffff);
    GD_SET(d, bg_inode_bitmap_csum_lo, ics & 0xffff);
    /* Every inode past the used ones is unused: e2fsck need not read them. */
    GD_SET(d, bg_itable_unused_lo, free_inodes & 0xffff);
    GD_SET(d, bg_block_bitmap_hi, (uint32_t)(L->block_bitmap[g] >> 32));
    GD_SET(d, bg_inode_bitmap_hi, (uint32_t)(L->inode_bitmap[g] >> 32));
    GD_SET(d, bg_inode_table_hi, (uint32_t)(L->inode_table[g] >> 32));
    GD_SET(d, bg_free_blocks_count_hi, free_blocks >> 16);
    GD_SET(d, bg_free_inodes_count_hi, free_inodes >> 16);
    GD_SET(d, bg_used_dirs_count_hi, c->dirs[g] >> 16);
    GD_SET(d, bg_itable_unused_hi, free_inodes >> 16);
    GD_SET(d, bg_block_bitmap_csum_hi, bcs >> 16);
    GD_SET(d, bg_inode_bitmap_csum_hi, ics >> 16);
    /* crc32c(uuid, group number, descriptor with a zero checksum), low half. */
    put32(gb, (uint32_t)g);
    dcs = oe_crc32c(c->csum_seed, gb, 4);
    dcs = oe_crc32c(dcs, d, OE_DESC_SIZE);
    GD_SET(d, bg_checksum, dcs & 0xffff);
}

int oe_write_groups(oe_ctx *c, const oe_layout *L, uint8_t *gdt,
                    uint64_t *free_blocks_total, uint64_t *free_inodes_total)
{
    oe_writer *w = c->w;
    uint8_t *bbm = calloc(L->groups, OE_BLOCK_SIZE), *ibm = calloc(L->groups, OE_BLOCK_SIZE);
    int rc = -1;

    *free_blocks_total = *free_inodes_total = 0;
    if (!bbm || !ibm) {
        oe_fail(w, "out of memory");
        goto out;
    }
    if (fill_block_bitmaps(c, L, bbm))
        goto out;
    fill_inode_bitmaps(c, L, ibm);
    for (uint64_t g = 0; g < L->groups; g++) {
        const uint8_t *bm = bbm + g * OE_BLOCK_SIZE, *im = ibm + g * OE_BLOCK_SIZE;
        uint64_t used_ino = 0, first = g * L->ipg + 1;
        uint64_t gblocks = g + 1 == L->groups ? L->blocks - g * OE_BLOCKS_PER_GROUP : OE_BLOCKS_PER_GROUP;
        uint32_t free_b = 0;
        for (uint64_t b = 0; b < gblocks; b++)
            if (!(bm[b >> 3] & (1u << (b & 7))))
                free_b++;
        if (c->max_ino >= first)
            used_ino = c->max_ino - first + 1 > L->ipg ? L->ipg : c->max_ino - first + 1;
        *free_blocks_total += free_b;
        *free_inodes_total += L->ipg - used_ino;
        /* Bitmap checksums cover the bits in use: a group's blocks, its inodes. */
        fill_desc(c, L, g, gdt + g * OE_DESC_SIZE, free_b, (uint32_t)(L->ipg - used_ino),
                  oe_crc32c(c->csum_seed, bm, OE_BLOCKS_PER_GROUP / 8),
                  oe_crc32c(c->csum_seed, im, L->ipg / 8));
        if (oe_pwrite_all(w, bm, OE_BLOCK_SIZE, L->block_bitmap[g] * OE_BLOCK_SIZE) ||
            oe_pwrite_all(w, im, OE_BLOCK_SIZE, L->inode_bitmap[g] * OE_BLOCK_SIZE))
            goto out;
    }
    rc = 0;
out:
    free(bbm);
    free(ibm);
    return rc;
}
