/* The journal: an empty jbd2 log in inode 8.  Its blocks are placed but
 * left as holes (they read as zeroes), but for its superblock. */
#include "commit.h"

int oe_build_journal(oe_ctx *c, uint64_t *first_block)
{
    oe_writer *w = c->w;
    uint64_t left = c->p->journal_blocks, lblk = 0;
    oe_ino_out o;

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
    memset(&o, 0, sizeof o);
    o.flags = EXT4_EXTENTS_FL;
    o.size = (uint64_t)c->p->journal_blocks * OE_BLOCK_SIZE;
    o.blocks = c->p->journal_blocks;
    if (oe_build_extent_tree(c, EXT4_JOURNAL_INO, c->tmp, c->n_tmp, &o))
        return -1;
    return oe_keep_out(c, EXT4_JOURNAL_INO, &o);
}

int oe_write_journal_super(oe_ctx *c, uint64_t block)
{
    uint8_t b[sizeof(journal_superblock_t)];
    memset(b, 0, sizeof b);
    JBD2_SET(journal_superblock_s, b, s_header.h_magic, JBD2_MAGIC_NUMBER);
    JBD2_SET(journal_superblock_s, b, s_header.h_blocktype, JBD2_SUPERBLOCK_V2);
    JBD2_SET(journal_superblock_s, b, s_blocksize, OE_BLOCK_SIZE);
    JBD2_SET(journal_superblock_s, b, s_maxlen, c->p->journal_blocks);
    JBD2_SET(journal_superblock_s, b, s_first, 1);     /* the log follows this block */
    JBD2_SET(journal_superblock_s, b, s_sequence, 1);
    memcpy(EXT4_PTR(journal_superblock_s, b, s_uuid), c->p->uuid, 16);
    JBD2_SET(journal_superblock_s, b, s_nr_users, 1);  /* this file system */
    return oe_pwrite_all(c->w, b, sizeof b, block * OE_BLOCK_SIZE);
}
