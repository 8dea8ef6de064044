/* Extent trees: the inode's four slots, then blocks of entries a level. */
#include <stdlib.h>
#include "commit.h"
#include "crc32c.h"

#define ROOT_SLOTS ((OE_I_BLOCK_BYTES - sizeof(struct ext4_extent_header)) / sizeof(struct ext4_extent))
#define BLOCK_SLOTS ((OE_BLOCK_SIZE - sizeof(struct ext4_extent_header) - \
                      sizeof(struct ext4_extent_tail)) / sizeof(struct ext4_extent))
/* Where the checksum tail sits: right after eh_max entries. */
#define TAIL_OFFSET (sizeof(struct ext4_extent_header) + BLOCK_SLOTS * sizeof(struct ext4_extent))
_Static_assert(ROOT_SLOTS == 4, "four extents in the inode");
_Static_assert(BLOCK_SLOTS == 340, "340 extents a block");

static uint8_t *entry(uint8_t *node, uint64_t i)
{
    return node + sizeof(struct ext4_extent_header) + i * sizeof(struct ext4_extent);
}

static void put_header(uint8_t *p, uint32_t entries, uint32_t max, uint32_t depth)
{
    EXT4_SET(ext4_extent_header, p, eh_magic, EXT4_EXT_MAGIC);
    EXT4_SET(ext4_extent_header, p, eh_entries, entries);
    EXT4_SET(ext4_extent_header, p, eh_max, max);
    EXT4_SET(ext4_extent_header, p, eh_depth, depth);
    EXT4_SET(ext4_extent_header, p, eh_generation, 0);
}

static void put_leaf(uint8_t *p, const oe_extent *e)
{
    EXT4_SET(ext4_extent, p, ee_block, e->lblk);
    EXT4_SET(ext4_extent, p, ee_len, e->len);
    EXT4_SET(ext4_extent, p, ee_start_hi, (uint16_t)(e->pblk >> 32));
    EXT4_SET(ext4_extent, p, ee_start_lo, (uint32_t)e->pblk);
}

static void put_index(uint8_t *p, uint32_t lblk, uint64_t pblk)
{
    EXT4_SET(ext4_extent_idx, p, ei_block, lblk);
    EXT4_SET(ext4_extent_idx, p, ei_leaf_lo, (uint32_t)pblk);
    EXT4_SET(ext4_extent_idx, p, ei_leaf_hi, (uint16_t)(pblk >> 32));
    EXT4_SET(ext4_extent_idx, p, ei_unused, 0);
}

void oe_put_empty_extent_root(uint8_t *iblock) { put_header(iblock, 0, ROOT_SLOTS, 0); }

/* Builds the smallest tree for the extents: the inode's four slots, then
 * full blocks of 340 entries a level until four remain. */
int oe_build_extent_tree(oe_ctx *c, uint32_t ino, const oe_extent *ex, uint64_t n, oe_ino_out *o)
{
    oe_writer *w = c->w;
    uint64_t level_n = n, i, j, depth = 0;
    uint32_t *lblks = NULL;
    uint64_t *pblks = NULL;
    uint32_t seed = oe_ino_seed(c, ino);
    int rc = -1;

    if (n <= ROOT_SLOTS) {
        put_header(o->iblock, (uint32_t)n, ROOT_SLOTS, 0);
        for (i = 0; i < n; i++)
            put_leaf(entry(o->iblock, i), &ex[i]);
        return 0;
    }
    lblks = malloc(sizeof *lblks * oe_div_up(n, BLOCK_SLOTS));
    pblks = malloc(sizeof *pblks * oe_div_up(n, BLOCK_SLOTS));
    if (!lblks || !pblks) {
        oe_fail(w, "out of memory");
        goto out;
    }
    while (level_n > ROOT_SLOTS) {
        uint64_t blocks = oe_div_up(level_n, BLOCK_SLOTS);
        for (i = 0; i < blocks; i++) {
            uint64_t first = i * BLOCK_SLOTS;
            uint64_t cnt = level_n - first < BLOCK_SLOTS ? level_n - first : BLOCK_SLOTS;
            uint64_t pblk;
            uint8_t *b;
            uint32_t first_lblk = depth == 0 ? ex[first].lblk : lblks[first];
            if (oe_emit_block(w, &pblk, &b))
                goto out;
            put_header(b, (uint32_t)cnt, BLOCK_SLOTS, (uint32_t)depth);
            for (j = 0; j < cnt; j++) {
                if (depth == 0)
                    put_leaf(entry(b, j), &ex[first + j]);
                else
                    put_index(entry(b, j), lblks[first + j], pblks[first + j]);
            }
            EXT4_SET(ext4_extent_tail, b + TAIL_OFFSET, et_checksum,
                     oe_crc32c(seed, b, TAIL_OFFSET));
            /* Entry i of the next level; safe in place since i <= first. */
            lblks[i] = first_lblk;
            pblks[i] = pblk;
            o->blocks++;
        }
        level_n = blocks;
        depth++;
    }
    put_header(o->iblock, (uint32_t)level_n, ROOT_SLOTS, (uint32_t)depth);
    for (i = 0; i < level_n; i++)
        put_index(entry(o->iblock, i), lblks[i], pblks[i]);
    rc = 0;
out:
    free(lblks);
    free(pblks);
    return rc;
}

/* Emits one block of the inode being built and notes it in the scratch
 * extent list as logical block lblk. */
int oe_emit_owned(oe_ctx *c, uint32_t lblk, uint8_t **b)
{
    uint64_t pblk;
    if (oe_emit_block(c->w, &pblk, b))
        return -1;
    return oe_extents_append(&c->tmp, &c->n_tmp, &c->cap_tmp, 0, c->w, lblk, pblk, 1);
}
