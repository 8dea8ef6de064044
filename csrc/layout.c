/* Layout: how many groups and blocks, how many inodes a group, and where
 * the bitmaps and inode tables go (after everything else, flex_bg style:
 * all block bitmaps, then all inode bitmaps, then all tables). */
#include <stdlib.h>
#include "commit.h"

/* Bitmaps and tables need room; mke2fs drops a last group smaller than this. */
#define MIN_LAST_GROUP 64u

static int last_group_ok(const oe_writer *w, uint64_t blocks)
{
    uint64_t g = (blocks - 1) / OE_BLOCKS_PER_GROUP, rest = blocks - g * OE_BLOCKS_PER_GROUP;
    return rest >= (oe_is_backup_group(g) ? 1 + w->gdt_reserve + MIN_LAST_GROUP : MIN_LAST_GROUP);
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

int oe_plan_layout(oe_ctx *c, uint64_t min_inodes, oe_layout *L)
{
    oe_writer *w = c->w;
    uint64_t groups, end = 0;
    int explicit = c->p->blocks != 0;

    groups = explicit ? oe_div_up(c->p->blocks, OE_BLOCKS_PER_GROUP)
                      : oe_div_up(w->next + c->p->free_blocks + 1, OE_BLOCKS_PER_GROUP);
    for (int round = 0; round < 64; round++) {
        /* A multiple of 16 inodes fills whole inode-table blocks. */
        uint64_t ipg = oe_div_up(oe_div_up(min_inodes, groups), 16) * 16, blocks;
        if (ipg > OE_BLOCKS_PER_GROUP) {  /* one inode bitmap block's worth */
            if (explicit)
                return oe_fail(w, "too many inodes (%llu) for an image of this size",
                               (unsigned long long)min_inodes);
            groups = oe_div_up(min_inodes, OE_BLOCKS_PER_GROUP);
            continue;
        }
        L->ipg = (uint32_t)ipg;
        L->itb = (uint32_t)(ipg * OE_INODE_SIZE / OE_BLOCK_SIZE);
        L->groups = groups;
        L->gdt_blocks = (uint32_t)oe_div_up(groups * OE_DESC_SIZE, OE_BLOCK_SIZE);
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
        blocks = oe_div_up(end + c->p->free_blocks, 256) * 256;
        if (blocks < groups * OE_BLOCKS_PER_GROUP - OE_BLOCKS_PER_GROUP + 1)
            blocks = groups * OE_BLOCKS_PER_GROUP - OE_BLOCKS_PER_GROUP + 1;
        while (!last_group_ok(w, blocks))
            blocks += 256;
        if (oe_div_up(blocks, OE_BLOCKS_PER_GROUP) == groups) {
            L->blocks = blocks;
            if (blocks > w->max_blocks)
                return oe_fail(w, "image would exceed its maximum size of %llu blocks",
                               (unsigned long long)w->max_blocks);
            return 0;
        }
        groups = oe_div_up(blocks, OE_BLOCKS_PER_GROUP);
    }
    return oe_fail(w, "no stable layout found");
}

int oe_place_group_metadata(oe_ctx *c, oe_layout *L)
{
    oe_writer *w = c->w;
    uint64_t g, n;

    L->block_bitmap = malloc(sizeof *L->block_bitmap * L->groups);
    L->inode_bitmap = malloc(sizeof *L->inode_bitmap * L->groups);
    L->inode_table = malloc(sizeof *L->inode_table * L->groups);
    if (!L->block_bitmap || !L->inode_bitmap || !L->inode_table)
        return oe_fail(w, "out of memory");
    for (g = 0; g < L->groups; g++)
        if (oe_reserve_blocks(w, 1, 1, &L->block_bitmap[g], &n))
            return -1;
    for (g = 0; g < L->groups; g++)
        if (oe_reserve_blocks(w, 1, 1, &L->inode_bitmap[g], &n))
            return -1;
    for (g = 0; g < L->groups; g++)
        if (oe_reserve_blocks(w, L->itb, 1, &L->inode_table[g], &n))
            return -1;
    if (w->next > L->blocks)
        return oe_fail(w, "internal: layout overran the image");
    return 0;
}

void oe_free_layout(oe_layout *L)
{
    free(L->block_bitmap);
    free(L->inode_bitmap);
    free(L->inode_table);
}
